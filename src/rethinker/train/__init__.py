"""rethinker.train."""
