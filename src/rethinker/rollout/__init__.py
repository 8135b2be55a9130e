"""rethinker.rollout: prompts in, judged completions out.

- ``inputs``: the one place prompts are encoded and batches padded.
- ``base``: the ``RolloutEngine`` interface, ``Sampling`` / ``SamplingParams``.
- ``hf``: the transformers engine (its own decode loop on ``prefix``).
- ``prefix``: shared-prompt forwards (prefill once, repeat the cache, continue).
- ``scoring``: per-token log-probs of completions (the update's forward).
- ``evaluate``: batched, judged greedy evaluation (trainer and ``rethinker eval``).
- ``vllm``: the vLLM engine (optional extra).
"""
