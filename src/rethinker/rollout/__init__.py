"""rethinker.rollout."""
