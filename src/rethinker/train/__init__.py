"""rethinker.train: the RL trainer.

- ``loop``: the RL loop, top to bottom (read this first).
- ``run``: a run's state; set-up, restore, evaluation, save, finish.
- ``config``: the configuration (sections, presets, YAML and flags).
- ``experience``: rollouts, rewards and Forced Rethinking for one step.
- ``update``: the clipped policy-gradient update over micro-batches.
- ``optim``, ``data``, ``checkpoint``, ``distributed``, ``metrics``, ``plot``.
"""
