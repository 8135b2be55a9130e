"""rethinker.judge."""
