"""rethinker.algo."""
