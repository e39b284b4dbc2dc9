"""strum.hw."""
