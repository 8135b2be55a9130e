"""rethinker.data."""
