"""The end-of-sequence and padding ids every generation path uses, worked out once."""

from __future__ import annotations


def _as_id_list(value) -> list[int]:
    """``eos_token_id`` as ``GenerationConfig`` may hold it (None, an int, a list or a
    tensor of ints) as a list of ints."""
    if value is None:
        return []
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [int(t) for t in value]
    return [int(value)]


def end_token_ids(tokenizer, generation_config=None) -> tuple[list[int], int]:
    """``(stop_ids, pad_id)`` for generating with a model.

    ``stop_ids``: the generation config's ``eos_token_id`` (what ``model.generate`` stops
    on: an int or a list), else the tokenizer's ``eos_token_id``. ``pad_id``: the
    tokenizer's pad token, else the first stop id. Raises ``ValueError`` when neither
    names a pad."""
    cfg_eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    stop_ids = _as_id_list(cfg_eos) or _as_id_list(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id
    if pad is None:
        if not stop_ids:
            raise ValueError("the tokenizer has no pad token and no end-of-sequence token is known")
        pad = stop_ids[0]
    return stop_ids, int(pad)
