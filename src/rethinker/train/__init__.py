"""rethinker.train: the RL trainer.

- ``loop``: the RL loop, top to bottom (read this first).
- ``run``: a run's state; set-up, restore, evaluation, save, finish.
- ``config``: the configuration (sections, presets, YAML and flags).
- ``experience``: a step's record (``Experience``) and its stages: rollout, judge,
  advantages, and the gather of every rank's experience.
- ``rethinking``: the Forced Rethinking stage; ``dynamic``: DAPO's dynamic sampling.
- ``update``: the clipped policy-gradient update over micro-batches.
- ``optim``, ``data``, ``checkpoint``, ``distributed``, ``metrics``, ``plot``.
"""
