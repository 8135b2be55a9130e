"""rethinker vs TRL's ``GRPOTrainer``: the same GRPO configuration on the toy world, CPU.

    python benchmarks/vs_trl.py [--steps 10] [--warmup 2] [--threads 2] [--repeats 2] [--seed 0]

Both frameworks train the built-in tiny Qwen2.5-VL policy on the same toy puzzles (the
first ``(warmup + steps) * queries`` records of ``toyworld.puzzles.generate(.., seed,
"train")``, in order, no shuffling), with the same prompt (image first, then the question
and the reasoning suffix), the same reward (``rethinker.judge.reward``, truncated
completions counted as invalid), and the same GRPO settings:

    queries per step 8, G = 8 (64 completions), up to 48 new tokens, temperature 1.0,
    top_k 0, top_p 1.0, fp32, sdpa attention, no gradient checkpointing, AdamW lr 6e-5
    (constant), grad clip 1.0, one optimizer step per batch (on-policy: old log-probs =
    current, detached), clip 0.2 / 0.35, token-mean loss (TRL ``loss_type="dapo"``),
    advantages (r - mean) / std per group, no KL (no reference model), whole batch in one
    forward/backward; rethinker with ``--ssr off --rethink off``.

Each (framework, repeat) runs in its own subprocess (so peak RSS, read from ``wait4``'s
``ru_maxrss``, is per framework, model + data + framework imports included); repeats
alternate the order (A B, B A, ...) so drift in the machine's load hits both. A step is
timed the same way for both: wall and process-CPU time between consecutive step-end
events (rethinker: the metrics row of a step; TRL: ``on_step_end``), after ``--warmup``
untimed steps. Rollout tokens/s is generated tokens (EOS included) over the time spent in
generation (rethinker: ``time/rollout_s``; TRL: its ``_generate_single_turn``).

The GPU variant (a Qwen2.5-VL-3B-shaped model, update MFU and rollout tokens/s against
plain ``generate``) is ``benchmarks/gpu_step.py``.

TRL is not a dependency of rethinker: ``pip install trl`` (measured with trl 1.16.0,
transformers 5.24, torch 2.14) into the same environment to run this.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rethinker import metric_names as M

QUERIES = 8
GROUP = 8
MAX_NEW_TOKENS = 48
LR = 6e-5
CLIP_LOW, CLIP_HIGH = 0.2, 0.35
FRAMEWORKS = ("rethinker", "trl")


# -- shared ------------------------------------------------------------------------------
def _records(n: int, seed: int):
    from rethinker.toyworld.puzzles import generate

    return generate(n, seed=seed, split="train")


def _reward_config():
    """The reward settings of ``rethinker train`` (its resolved defaults), as a judge config."""
    from rethinker.train.config import resolve

    return resolve(None, {}).reward


class StepClock:
    """Wall and CPU time between consecutive step-end events."""

    def __init__(self) -> None:
        self.last: tuple[float, float] | None = None
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def start(self) -> None:
        self.last = (time.perf_counter(), time.process_time())

    def tick(self) -> None:
        now = (time.perf_counter(), time.process_time())
        if self.last is not None:
            self.wall.append(now[0] - self.last[0])
            self.cpu.append(now[1] - self.last[1])
        self.last = now


# -- workers (one framework per process) -------------------------------------------------
def run_rethinker(args: argparse.Namespace, out_dir: Path) -> dict:
    import rethinker.train.loop as loop
    import rethinker.train.run as run
    from rethinker.train.config import resolve
    from rethinker.train.metrics import read_metrics

    total = args.warmup + args.steps
    cfg = resolve(
        None,
        {
            "output_dir": str(out_dir),
            "seed": args.seed,
            "max_steps": total,
            "threads": args.threads,
            "eval_every": 0,
            "save_every": 0,
            "ssr": "off",
            "rethink": "off",
            "data.shuffle": "off",
            "data.toy_train_size": total * QUERIES,
            "data.toy_eval_size": 1,
            "rollout.queries_per_step": QUERIES,
            "rollout.group_size": GROUP,
            "rollout.max_new_tokens": MAX_NEW_TOKENS,
            "rollout.temperature": 1.0,
            "rollout.top_k": 0,
            "rollout.top_p": 1.0,
            "optim.lr": LR,
            "optim.mini_batch_size": None,
            "optim.micro_batch_size": QUERIES * GROUP,
            "optim.scheduler": "constant",
            "optim.grad_clip": 1.0,
            "algo.kl_coef": 0.0,
            "algo.clip_low": CLIP_LOW,
            "algo.clip_high": CLIP_HIGH,
            "algo.aggregation": "token-mean",
            "algo.advantage_scale": "std",
            "model.gradient_checkpointing": "off",
            "model.dtype": "float32",
            "model.attn_implementation": "sdpa",
        },
    )
    clock = StepClock()

    class ClockedLogger(run.MetricsLogger):  # a step ends when its metrics row is written
        def log(self, row):  # noqa: ANN001
            super().log(row)
            if M.TIME_STEP in row:
                clock.tick()
            elif row.get("step") == 0:
                clock.start()

    run.MetricsLogger = ClockedLogger
    loop.train(cfg, progress=False)
    rows = [r for r in read_metrics(out_dir) if M.TIME_STEP in r][args.warmup :]
    return {
        "step_s": clock.wall[args.warmup :],
        "cpu_s": clock.cpu[args.warmup :],
        "own_step_s": [r[M.TIME_STEP] for r in rows],
        "rollout_s": [r[M.TIME_ROLLOUT] for r in rows],
        "rollout_tokens": [r[M.ROLLOUT_TOKENS] for r in rows],
        "update_s": [r.get(M.TIME_UPDATE) or 0.0 for r in rows],
        "overhead_s": [r.get(M.TIME_OVERHEAD) or 0.0 for r in rows],
        "reward_mean": statistics.mean(r[M.REWARD_MEAN] for r in rows),
        "version": _version("rethinker"),
    }


def _trl_dataset(records):
    from io import BytesIO

    from datasets import Dataset, Features, Image, Sequence, Value
    from PIL import Image as PILImage

    from rethinker.prompt import question_text

    rows = []
    for rec in records:
        if len(rec.images) != 1 or rec.images[0].bytes is None:
            raise ValueError(f"{rec.id}: the benchmark expects one in-memory image per toy record")
        img = PILImage.open(BytesIO(rec.images[0].bytes)).convert("RGB")
        rows.append(
            {
                "prompt": [{"role": "user", "content": question_text(rec)}],
                "image": img,
                "answer": rec.answer,
                "choices": list(rec.choices or []),
            }
        )
    features = Features(
        {
            "prompt": [{"role": Value("string"), "content": Value("string")}],
            "image": Image(),
            "answer": Value("string"),
            "choices": Sequence(Value("string")),
        }
    )
    return Dataset.from_list(rows, features=features)


def run_trl(args: argparse.Namespace, out_dir: Path) -> dict:
    try:
        import trl
        from trl import GRPOConfig, GRPOTrainer
    except ImportError:
        raise SystemExit(
            "trl is not installed: `pip install trl` (1.16.0 was measured; it must not change "
            "torch/transformers, check with `pip install --dry-run trl`)"
        ) from None
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback

    from rethinker.judge import reward
    from rethinker.toyworld.model import toy_model_path

    torch.set_num_threads(args.threads)
    total = args.warmup + args.steps
    path = str(toy_model_path())
    processor = AutoProcessor.from_pretrained(path)
    processor.tokenizer.padding_side = "left"  # TRL's VLM path needs left padding (get_rope_index)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    gen_eos = model.generation_config.eos_token_id
    eos = {processor.tokenizer.eos_token_id, *(gen_eos if isinstance(gen_eos, list) else [gen_eos])} - {None}
    reward_cfg = _reward_config()

    def judge_reward(prompts, completions, completion_ids, answer, choices, **_):  # noqa: ANN001
        out = []
        for comp, ids, gt, ch in zip(completions, completion_ids, answer, choices):
            text = comp[-1]["content"] if isinstance(comp, list) else comp
            finished = bool(ids) and ids[-1] in eos
            out.append(float(reward(text, gt, choices=ch or None, finished=finished, config=reward_cfg).value))
        return out

    clock = StepClock()
    gen: dict[int, tuple[float, int]] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):  # noqa: ANN001
            clock.start()

        def on_step_end(self, a, state, control, **kw):  # noqa: ANN001
            clock.tick()

    class TimedGRPOTrainer(GRPOTrainer):
        def _generate_single_turn(self, *a, **kw):  # noqa: ANN002, ANN003
            t = time.perf_counter()
            ids, logprobs = super()._generate_single_turn(*a, **kw)
            s, n = gen.get(self.state.global_step, (0.0, 0))
            gen[self.state.global_step] = (s + time.perf_counter() - t, n + sum(len(x) for x in ids))
            return ids, logprobs

    config = GRPOConfig(
        output_dir=str(out_dir),
        seed=args.seed,
        max_steps=total,
        use_cpu=True,
        bf16=False,
        fp16=False,
        per_device_train_batch_size=QUERIES * GROUP,
        gradient_accumulation_steps=1,
        num_generations=GROUP,
        steps_per_generation=1,
        num_iterations=1,
        max_completion_length=MAX_NEW_TOKENS,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=0.0,
        epsilon=CLIP_LOW,
        epsilon_high=CLIP_HIGH,
        loss_type="dapo",
        scale_rewards="group",
        gradient_checkpointing=False,
        shuffle_dataset=False,
        dataloader_num_workers=0,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        log_completions=False,
    )
    dataset = _trl_dataset(_records(total * QUERIES, args.seed))
    trainer = TimedGRPOTrainer(
        model=model,
        reward_funcs=judge_reward,
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[Clock()],
    )
    trainer.train()
    timed = [gen[k] for k in sorted(gen)][args.warmup :]
    logs = [h for h in trainer.state.log_history if "reward" in h][args.warmup :]
    rewards = [h["reward"] for h in logs]
    return {
        "step_s": clock.wall[args.warmup :],
        "cpu_s": clock.cpu[args.warmup :],
        "own_step_s": [h["step_time"] for h in logs if "step_time" in h],
        "rollout_s": [t for t, _ in timed],
        "rollout_tokens": [n for _, n in timed],
        "reward_mean": statistics.mean(rewards) if rewards else None,
        "version": trl.__version__,
    }


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return "?"


def worker(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    out = Path(args.result)
    with tempfile.TemporaryDirectory(prefix=f"vs_trl_{args.worker}_") as tmp:
        fn = run_rethinker if args.worker == "rethinker" else run_trl
        res = fn(args, Path(tmp))
    if len(res["step_s"]) != args.steps:
        raise RuntimeError(f"{args.worker}: timed {len(res['step_s'])} steps, expected {args.steps}")
    out.write_text(json.dumps(res))
    return 0


# -- driver --------------------------------------------------------------------------------
def launch(name: str, args: argparse.Namespace, result: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--result",
        str(result),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
    ]
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        TQDM_DISABLE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONWARNINGS="ignore",
    )
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL if not args.verbose else None,
        stderr=subprocess.PIPE if not args.verbose else None,
        text=True,
    )
    err = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(err[-4000:])
        raise SystemExit(f"{name} worker failed (exit {proc.returncode})")
    res = json.loads(result.read_text())
    res.update(
        peak_rss_mb=usage.ru_maxrss / 1024, wall_s=time.perf_counter() - t, load=(load0 + os.getloadavg()[0]) / 2
    )
    return res


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _spread(xs: list[float]) -> str:
    """Relative interquartile range (how noisy the steps were)."""
    if len(xs) < 4:
        return "-"
    q = statistics.quantiles(xs, n=4)
    return f"{100 * (q[2] - q[0]) / q[1]:.0f}%"


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    out = {}
    for name, rs in runs.items():
        steps = [x for r in rs for x in r["step_s"]]
        cpu = [x for r in rs for x in r["cpu_s"]]
        tok = sum(sum(r["rollout_tokens"]) for r in rs)
        gen_s = sum(sum(r["rollout_s"]) for r in rs)
        out[name] = {
            "step_s": _median(steps),
            "spread": _spread(steps),
            "cpu_s": _median(cpu),
            "per_run": [_median(r["step_s"]) for r in rs],
            "rollout_s": _median([x for r in rs for x in r["rollout_s"]]),
            "tok_per_step": tok / max(sum(len(r["rollout_tokens"]) for r in rs), 1),
            "tok_s": tok / gen_s if gen_s else float("nan"),
            "rss_mb": max(r["peak_rss_mb"] for r in rs),
            "reward": statistics.mean(r["reward_mean"] for r in rs if r["reward_mean"] is not None),
            "version": rs[0]["version"],
            "load": statistics.mean(r["load"] for r in rs),
        }
        overhead = [x for r in rs for x in r.get("overhead_s", [])]
        if overhead:  # rethinker's own bookkeeping: heap trim, metrics row, RSS read, sample log
            out[name]["overhead_s"] = _median(overhead)
            out[name]["overhead_share"] = sum(overhead) / sum(x for r in rs for x in r["own_step_s"])
    return out


def print_table(s: dict[str, dict], args: argparse.Namespace) -> None:
    cols = [
        ("step s (median)", "step_s", "{:.3f}"),
        ("step spread (IQR)", "spread", "{}"),
        ("step CPU s", "cpu_s", "{:.3f}"),
        ("rollout s", "rollout_s", "{:.3f}"),
        ("rollout tokens/step", "tok_per_step", "{:.0f}"),
        ("rollout tokens/s", "tok_s", "{:.0f}"),
        ("peak RSS MB", "rss_mb", "{:.0f}"),
        ("reward mean", "reward", "{:+.3f}"),
    ]
    names = [n for n in FRAMEWORKS if n in s]
    print(
        f"\n{QUERIES} queries x G={GROUP}, <= {MAX_NEW_TOKENS} new tokens, {args.steps} timed steps after "
        f"{args.warmup} warm-up, {args.threads} threads, {args.repeats} repeat(s), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    head = f"| {'':22}| " + " | ".join(f"{n} {s[n]['version']:>8}" for n in names)
    ratio = len(names) == 2
    print(head + (" | rethinker/TRL |" if ratio else " |"))
    print("|" + "-" * 23 + "|" + "|".join("-" * (len(n) + 11) for n in names) + ("|---------------|" if ratio else "|"))
    for label, key, fmt in cols:
        cells = [fmt.format(s[n][key]) for n in names]
        line = f"| {label:22}| " + " | ".join(f"{c:>{len(n) + 9}}" for c, n in zip(cells, names))
        if ratio and isinstance(s["rethinker"][key], float) and key not in ("reward",):
            line += f" | {s['rethinker'][key] / s['trl'][key]:>13.2f} |"
        elif ratio:
            line += " |" + " " * 15 + "|"
        else:
            line += " |"
        print(line)
    if ratio:
        print("ratio < 1 favours rethinker in every row but rollout tokens/s (there > 1 does)")
    if "overhead_s" in s.get("rethinker", {}):
        r = s["rethinker"]
        print(
            f"rethinker's step overhead (time/overhead_s: heap trim, metrics, RSS read, sample log): "
            f"{r['overhead_s'] * 1000:.1f} ms median, {100 * r['overhead_share']:.1f}% of its step time"
        )
    for n in names:
        print(
            f"{n}: per-run median step s {', '.join(f'{x:.3f}' for x in s[n]['per_run'])}; "
            f"mean 1-min load average during its runs {s[n]['load']:.2f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--repeats", type=int, default=2, help="runs per framework, order alternating")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=FRAMEWORKS, default=None, help="run one framework")
    ap.add_argument("--json", default=None, help="also write the raw per-step numbers here")
    ap.add_argument("--verbose", action="store_true", help="show the workers' output")
    ap.add_argument("--worker", choices=FRAMEWORKS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    from _doc import StdoutSection, add_argument  # benchmarks/_doc.py (this script's folder)

    add_argument(ap)
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.threads < 1 or args.repeats < 1:
        ap.error("--steps, --threads and --repeats must be >= 1, --warmup >= 0")
    if args.worker:
        return worker(args)
    doc = StdoutSection(args.write_doc, "vs_trl", fence=True)  # the workers' output is not the table
    names = [args.only] if args.only else list(FRAMEWORKS)
    if "trl" in names:
        try:
            import trl  # noqa: F401
        except ImportError:
            print(
                "trl is not installed: `pip install trl` into this environment (1.16.0 was measured; check with "
                "`pip install --dry-run trl` that it leaves torch and transformers alone). "
                "Run with --only rethinker to time rethinker alone.",
                file=sys.stderr,
            )
            return 2
    runs: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="vs_trl_") as tmp:
        for rep in range(args.repeats):
            for name in names if rep % 2 == 0 else names[::-1]:
                print(f"repeat {rep + 1}/{args.repeats}: {name} ...", file=sys.stderr, flush=True)
                res = launch(name, args, Path(tmp) / f"{name}-{rep}.json")
                print(
                    f"  median step {_median(res['step_s']):.3f} s, peak RSS {res['peak_rss_mb']:.0f} MB, "
                    f"run {res['wall_s']:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                runs[name].append(res)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    print_table(summarize(runs), args)
    doc.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
