"""The ``rethinker`` command: train / eval / infer / data / toy / plot / report / export.

Each subcommand is a module of this package that exposes ``add_arguments(parser)`` and
``run(args) -> int`` and calls into the library for the work; this file only dispatches,
importing the chosen module alone so that ``rethinker --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("rethinker.cli.train", "RL-train a VLM (GRPO + SSR + Forced Rethinking); the toy world by default"),
    "eval": ("rethinker.cli.eval", "evaluate a model on benchmarks with the training judge"),
    "infer": ("rethinker.cli.infer", "answer one question about an image"),
    "data": ("rethinker.cli.data", "inspect, select and annotate training data"),
    "toy": ("rethinker.cli.toy", "the built-in toy world: model, data, rebuild"),
    "plot": ("rethinker.cli.plot", "plot a run's metrics to a PNG"),
    "report": ("rethinker.cli.report", "a run's or an evaluation's self-contained HTML page (curves, samples)"),
    "export": ("rethinker.cli.export", "a checkpoint's policy in save_pretrained format (streamed, loadable anywhere)"),
}


def _usage() -> str:
    lines = ["usage: rethinker COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<7} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n`rethinker COMMAND --help` shows a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from .. import __version__

        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"rethinker: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"rethinker {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    if getattr(module, "ACCEPTS_OVERRIDES", False):
        args, extra = parser.parse_known_args(argv[1:])
        args.overrides = extra
    else:
        args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Leave the torchrun process group before the interpreter exits, as PyTorch asks:
    a gloo group torn down by the exit itself can abort a rank whose work is done
    (``terminate called without an active exception``). vLLM's engines tear down the
    groups they joined themselves."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and "vllm" not in sys.modules and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
