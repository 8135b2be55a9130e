"""rethinker.eval."""
