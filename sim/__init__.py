"""strum.sim."""
