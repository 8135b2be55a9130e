"""Build the toy policy: tokenizer + random model, then a short supervised warm start.

``build(path)`` runs the whole recipe deterministically (fixed seeds, 2 threads):
1. puzzles of the train split -> tokenizer corpus (chat-template renderings of question
   and worked solution, plus the method's rethinking triggers) -> byte-level BPE;
2. a random ``Qwen2_5_VLForConditionalGeneration`` of the tiny shape;
3. supervised fine-tuning on worked solutions (loss on assistant tokens only, prompts
   built exactly as the trainer builds them: ``rethinker.prompt.build_messages`` + the
   processor's chat template), stopped early so the policy is good but far from perfect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from ..prompt import build_messages, question_text
from ..records import Record
from .model import CHAT_TEMPLATE, build_model, build_processor, build_tokenizer, save_toy
from .puzzles import CONFIRM_TRIGGERS, FIX_TRIGGER, generate, solution_of

#: Rethinking triggers of the method, so that they tokenize compactly.
TRIGGERS = ("\n\nWait", "\n\nWait, does it seem right?", "\n\nWait, let's double check",
            "\n\nWait, there might be a mistake", *CONFIRM_TRIGGERS, FIX_TRIGGER)


def tokenizer_corpus(records: Iterable[Record]) -> list[str]:
    """Texts the BPE is trained on: the default system turn, each record's user text and
    worked solution, and the rethinking triggers."""
    texts = ["You are a helpful assistant.", "system", "user", "assistant", *TRIGGERS]
    for r in records:
        texts.append(question_text(r))
        texts.append(solution_of(r))
    return texts


def build_untrained(seed: int = 0, n_corpus: int = 4000):
    """Tokenizer, processor and random-init model (no training): ``(model, processor)``."""
    records = generate(n_corpus, seed=seed, split="train")
    tokenizer = build_tokenizer(tokenizer_corpus(records))
    processor = build_processor(tokenizer)
    model = build_model(tokenizer, seed=seed)
    return model, processor


def main_untrained(path: str | Path, seed: int = 0) -> Path:
    model, processor = build_untrained(seed)
    return save_toy(model, processor, path)


__all__ = ["tokenizer_corpus", "build_untrained", "main_untrained", "CHAT_TEMPLATE", "build_messages"]
