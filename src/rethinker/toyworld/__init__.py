"""rethinker.toyworld."""
