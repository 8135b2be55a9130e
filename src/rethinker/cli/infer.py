"""``rethinker infer``: answer one question about one or more images, streaming the
response (``rethinker.eval.infer``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..eval.engines import EngineOptions, add_engine_arguments
from ..records import RecordError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", help="the question (the method's reasoning suffix is appended)")
    parser.add_argument("--model", help="a local model directory (default: the packaged toy policy)")
    parser.add_argument(
        "--image", action="append", default=[], metavar="FILE", help="an image file (repeat for several, in order)"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, help="response limit (default: the model's generation config, else 8192)"
    )
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0, help="top-p when sampling (default 1.0)")
    parser.add_argument("--min-pixels", type=int, help="image pixel floor (default: the model's processor)")
    parser.add_argument("--max-pixels", type=int, help="image pixel ceiling (default: the model's processor)")
    parser.add_argument("--device", default="auto", help="cpu, cuda ... (default auto)")
    add_engine_arguments(parser)


def _engine(args: argparse.Namespace) -> dict:
    """``infer``'s keywords for the chosen engine: none for the transformers one (loaded and
    streamed by ``infer``); for vLLM the built engine, its processor and the model's limit."""
    opts = EngineOptions.from_args(args)
    opts.check()
    if opts.engine == "transformers":
        return {}
    from ..eval.engines import build_engine
    from ..eval.suite import model_max_new_tokens
    from ..toyworld.model import resolve_model_path

    path = resolve_model_path(args.model)
    engine, processor, _ = build_engine(
        opts, path, device=args.device, min_pixels=args.min_pixels, max_pixels=args.max_pixels
    )  # the transformers engine's dtype (auto)
    limit = args.max_new_tokens or model_max_new_tokens(path)
    return {"engine": engine, "processor": processor, "max_new_tokens": limit}


def run(args: argparse.Namespace) -> int:
    missing = [p for p in args.image if not Path(p).is_file()]
    if missing:
        print(f"rethinker infer: image file not found: {missing[0]}", file=sys.stderr)
        return 2
    from ..eval.infer import infer  # torch and the model: only when a run starts

    try:
        kwargs = {"max_new_tokens": args.max_new_tokens, **_engine(args)}
        res = infer(
            args.question,
            args.image,
            model_path=args.model,
            temperature=args.temperature,
            top_p=args.top_p,
            min_pixels=args.min_pixels,
            max_pixels=args.max_pixels,
            stream=sys.stdout,
            device=args.device,
            **kwargs,
        )
    except (RecordError, FileNotFoundError, ValueError) as exc:  # EngineError is a ValueError
        print(f"rethinker infer: {exc}", file=sys.stderr)
        return 2
    if not res.finished:
        print(f"(stopped at the length limit of {args.max_new_tokens or 'the default'} tokens)", file=sys.stderr)
    print(f"answer: {res.answer if res.answer is not None else '(none: no final answer in the response)'}")
    return 0
