"""strum.synth."""
