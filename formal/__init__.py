"""Formal proofs that the generated PE equals its specification (``docs/verification.md``)."""
