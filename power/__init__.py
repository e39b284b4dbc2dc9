"""Energy per block from gate-level activity (``strum power``)."""
