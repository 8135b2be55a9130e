"""Prompt building: one record -> the chat messages the policy sees.

The method's prompt: images first, then the question (with its options rendered as
``A. ...`` lines), followed by the reasoning suffix. No system prompt.
"""

from __future__ import annotations

import re
import string

from .records import Record

#: The paper's suffix (the released code's default template adds a final period).
SUFFIX = "\n\nPlease reason step by step, and put your final answer within \\boxed{}"

#: Recommended pixel limits for Qwen2.5-VL checkpoints (the method's setting).
MIN_PIXELS = 256 * 28 * 28
MAX_PIXELS = 1280 * 28 * 28

LETTERS = string.ascii_uppercase


def render_choices(choices: list[str]) -> str:
    """Options as the paper shows them: one ``A. text`` line each."""
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def question_text(record: Record, suffix: str = SUFFIX) -> str:
    """The user text: question, options (when the question does not already list them),
    then the suffix. ``<image N>`` placeholders are removed (the images come first)."""
    text = re.sub(r"[ \t]*<image\s*\d+>", "", record.question).strip()
    if record.choices and not _lists_options(text, record.choices):
        text = f"{text}\n{render_choices(record.choices)}"
    return text + suffix


def _lists_options(text: str, choices: list[str]) -> bool:
    return all(re.search(rf"(^|\n)\s*\(?{LETTERS[i]}[.):]", text) for i in range(len(choices)))


def build_messages(record: Record, suffix: str = SUFFIX) -> list[dict]:
    """Chat messages in the ``transformers`` multimodal format: one user turn holding an
    ``{"type": "image"}`` entry per image, then the text."""
    content: list[dict] = [{"type": "image"} for _ in record.images]
    content.append({"type": "text", "text": question_text(record, suffix)})
    return [{"role": "user", "content": content}]
