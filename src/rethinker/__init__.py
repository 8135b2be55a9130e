"""rethinker: RL from verifiable rewards for vision-language models (VL-Rethinker)."""

__version__ = "0.1.0"
