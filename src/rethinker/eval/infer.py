"""``rethinker infer``: answer one question about an image, streaming the response.

    rethinker infer [--model PATH] [--image FILE ...] "question"
                    [--min-pixels P --max-pixels P] [--max-new-tokens T] [--temperature T]

The question gets the method's prompt (images first, then the question and the
recommended suffix ``Please reason step by step, and put your final answer within
\\boxed{}``), built by the same ``PromptEncoder`` the trainer and ``rethinker eval`` use.
The response is streamed as it is generated (``transformers.TextStreamer``), then the
extracted final answer is printed on its own line (``answer: ...``). Pixel limits default
to the model's own processor settings; Qwen2.5-VL checkpoints are meant to get
``--min-pixels 200704 --max-pixels 1003520`` (256*28*28, 1280*28*28). Without
``--model`` the packaged toy policy answers.

Python: ``infer(question, image=..., model=..., processor=...)`` -> ``InferResult``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from transformers import TextStreamer

from ..judge import EVAL_RULES, extract_answer
from ..model.load import load_policy, pick_device, pick_dtype
from ..prompt import SUFFIX
from ..records import ImageRef, Record
from ..rollout.base import SamplingParams
from ..rollout.hf import TransformersEngine
from ..rollout.inputs import PromptEncoder
from ..toyworld.model import resolve_model_path


@dataclass
class InferResult:
    response: str
    answer: str | None  # the extracted final answer (None: the response gives none)
    finished: bool  # ended with an end-of-sequence token (not cut at the length limit)
    prompt: str  # the chat text the model saw
    n_image_tokens: int = 0  # visual tokens the images became (set by the pixel limits)


def _streamer(tokenizer, out: IO[str] | None):
    """A ``TextStreamer`` that skips the prompt and writes to ``out``."""

    class _Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if out is None:
                return
            out.write(text + ("\n" if stream_end else ""))
            out.flush()

    return _Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def infer(
    question: str,
    image: str | Path | bytes | Sequence[str | Path | bytes] | None = None,
    *,
    model=None,
    processor=None,
    model_path: str | None = None,
    max_new_tokens: int | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    suffix: str = SUFFIX,
    stream: IO[str] | None = None,
    device: str = "auto",
    engine=None,
) -> InferResult:
    """Answer ``question`` about ``image`` (a path, encoded bytes, or several of them).

    ``model`` / ``processor``: an already loaded policy; else loaded from ``model_path``
    (default: the packaged toy policy). ``engine``: another ``RolloutEngine`` to generate
    with (``processor`` still needed; e.g. vLLM, whose response is written whole). Greedy
    unless ``temperature > 0``. The response is streamed to ``stream`` (e.g.
    ``sys.stdout``) while it is generated. Raises
    ``RecordError`` when an image is missing or unreadable."""
    if not question or not question.strip():
        raise ValueError("the question is empty")
    if engine is not None and processor is None:
        raise ValueError("infer with an engine needs the model's processor (to encode the prompt)")
    if engine is None and (model is None or processor is None):
        dev = pick_device(device)
        model, processor = load_policy(
            resolve_model_path(model_path), device=dev, dtype=pick_dtype("auto", dev), trainable=False
        )
    images = [] if image is None else list(image) if isinstance(image, (list, tuple)) else [image]
    refs = [
        ImageRef(bytes=bytes(im)) if isinstance(im, (bytes, bytearray)) else ImageRef(path=str(im)) for im in images
    ]
    record = Record(id="infer", question=question, answer="", images=refs)
    keep = getattr(engine, "needs_images", False)
    q = PromptEncoder(processor, suffix=suffix, min_pixels=min_pixels, max_pixels=max_pixels, keep_images=keep)
    q = q.encode(record)
    if max_new_tokens is None:
        max_new_tokens = getattr(getattr(model, "generation_config", None), "max_new_tokens", None) or 8192
    sample = bool(temperature and temperature > 0)
    params = SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature if sample else 1.0,
        top_p=top_p,
        top_k=0,
        greedy=not sample,
    )
    if engine is None:
        engine = TransformersEngine(
            model, processor, max_batch_queries=1, streamer=_streamer(processor.tokenizer, stream)
        )
        (completion,) = engine.generate([q], params)[0]
    else:  # another engine (vLLM): the response is written whole once generated
        (completion,) = engine.generate([q], params)[0]
        if stream is not None:
            stream.write(completion.text + "\n")
            stream.flush()
    response = completion.text
    n_image = int((q.mm_token_type_ids == 1).sum())
    return InferResult(response, extract_answer(response, EVAL_RULES), completion.finished, q.text, n_image)
