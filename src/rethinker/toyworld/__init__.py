"""rethinker.toyworld: the built-in toy world that lets everything run on a CPU.

- ``puzzles``: verifiable visual puzzles rendered with Pillow, deterministic from a seed,
  as ``rethinker.records.Record`` items (``generate(n, seed, split, kinds)``).
- ``model``: a tiny Qwen2.5-VL made locally (BPE tokenizer with Qwen's special tokens and
  chat template, ``Qwen2_5_VLProcessor``, ``Qwen2_5_VLForConditionalGeneration``), saved in
  ``save_pretrained`` layout (``toy_model_path()``, ``load_toy()``).
- ``warmstart``: the supervised warm start that turns the random model into the packaged
  base policy (``rethinker toy build``).
- ``cli``: ``rethinker toy build | model | data | eval``.

Submodules are imported on use (``from rethinker.toyworld.puzzles import generate``) so
that importing the package stays cheap.
"""
