"""The paper's ablation on the toy world, held to a reviewer's standard.

    python benchmarks/toy_ablation.py [--seeds N] [--steps S] [--jobs J] [--out DIR] [--only V ...]
        [--write-doc docs/results.md] [-- extra train flags]
    python benchmarks/toy_ablation.py --from-results --out DIR --write-doc docs/results.md   # tables from saved runs
    python benchmarks/toy_ablation.py --experiment E1|E2 ...   # the pre-registered experiments (docs/experiments.md)
    python benchmarks/toy_ablation.py --experiment E1 --round2 ...        # E1's round 2, chosen by its rule
    python benchmarks/toy_ablation.py --experiment E2-saturated --start-from runs/E2 ...
    python benchmarks/toy_ablation.py --experiment E2-saturated-mix --start-from runs/E2 ...
    python benchmarks/toy_ablation.py --experiment E2-24 --from-results ...   # E2's runs on 24 seeds

Six variants (each one flag away from plain GRPO; everything else is the toy preset):

=========================  ==================================================================
GRPO                       ``--ssr off --rethink off``
GRPO+DynSampling           plus ``--rollout.dynamic-sampling on`` (DAPO: redraw queries until
                           the step holds 8 informative groups, at most 4 draws)
GRPO+SSR                   ``--ssr paper`` (the paper's SSR: this step's non-zero-|A| samples)
GRPO+SSR(released,age<=4)  ``--ssr released --ssr.max-age 4`` (cross-step replay, capped)
GRPO+Rethink               ``--rethink on`` (Forced Rethinking)
GRPO+SSR+Rethink           ``--ssr paper --rethink on`` (the method; the toy preset runs plain GRPO)
=========================  ==================================================================

Budgets are equal in generated samples: every run stops after ``S * 64`` first-pass
responses (``--max-samples``; dynamic sampling draws more a step and so stops earlier),
with the same learning-rate schedule (``--max-steps S``). Tokens (rollouts plus Forced
Rethinking's continuations) and optimizer steps are reported beside it. The same seeds for
every variant (paired): seed ``s`` fixes the train puzzles, their order and the sampling
state. Choices are read off the dev curve (evaluated every 25 steps on the dev split); the
reported accuracy is on the test split (2,000 puzzles, the same for every run) at the end.

Per variant: final test accuracy (mean and spread over seeds); its paired difference to
GRPO with a 95% bootstrap interval over seeds and test puzzles
(``rethinker.report.compare``); the samples each seed needed to reach GRPO's final dev
accuracy of the same seed; the area under the dev curve (dev accuracy averaged over the
sample budget); the zero-advantage share of groups (first pass) in the second half; the
reflection rate of rollouts and of the final greedy test answers; tokens, optimizer steps
and time. Plots (``DIR/ablation.png``): dev accuracy against samples, zero-advantage share
and reflection rate against steps (mean over seeds).

``--jobs J`` runs J trainings at once, each with ``--threads`` / J torch threads (the same
thread count for every run, so results do not depend on J); finished runs are reused, so
an interrupted ablation resumes where it stopped, and a run killed part-way goes on from
its last checkpoint (every 50 steps; deleted when the run finishes). ``--from-results`` trains nothing: it
analyses the finished runs saved in ``--out`` (and stops, naming them, if some are missing).
``--write-doc docs/results.md`` writes the tables into that file's ``toy_ablation`` section
and the plot beside it (``docs/images/toy_ablation.png``), so the document shows what the
saved runs say.

Each finished run's summary (what the tables need: per-puzzle test verdicts, dev curve,
per-step series) is archived in ``--archive`` (default ``benchmarks/results/EXPERIMENT``,
one small ``.json.gz`` per run, committed), so an experiment longer than one sitting goes on
from the archive on another machine. ``--interim`` (with ``--from-results``) analyses only
the seeds every variant has finished and says so: an interim table decides nothing.
The pre-registered experiments add their own analyses (``experiment_analysis.py``): E1 the
test-time rethinking table and its decision rule, E2 SSR's verdict and the Adam hypothesis.
``--round2`` (E1) adds the combination E1's rule picks from the finished round 1 (every
seed of every round-1 variant must be in) and runs it on the same seeds. ``E2-saturated``
continues each seed from the final policy of E2's GRPO run (``--start-from``, E2's runs
folder; ``DIR/grpo-seedS/final``) for another ``--steps``, GRPO against SSR, and says
whether the continuation is inside the saturated regime.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rethinker import metric_names as M  # noqa: E402
from rethinker.files import read_jsonl  # noqa: E402
from rethinker.report.compare import area_under_curve, budget_to_reach, paired_bootstrap  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "GRPO": ["--ssr", "off", "--rethink", "off"],
    "GRPO+DynSampling": ["--ssr", "off", "--rethink", "off", "--rollout.dynamic-sampling", "on"],
    "GRPO+SSR": ["--ssr", "paper", "--rethink", "off"],
    "GRPO+SSR(released,age<=4)": ["--ssr", "released", "--ssr.max-age", "4", "--rethink", "off"],
    "GRPO+Rethink": ["--ssr", "off", "--rethink", "on"],
    "GRPO+SSR+Rethink": ["--ssr", "paper", "--rethink", "on"],
}
SAMPLES_PER_STEP = 8 * 8  # the toy preset's queries per step x G
SAVE_EVERY = 50  # steps between a run's checkpoints, so that a killed run goes on from there

_SSR_RETHINK = ["--ssr", "paper", "--rethink", "on"]


#: E2-saturated-mix's kinds: the default mix without add, sub and count, the rule of
#: docs/experiments.md applied to the pilot's per-kind zero-advantage shares
SATURATED_MIX = "color,size,more_color,count_many,add_many"


@dataclass(frozen=True)
class Experiment:
    """A set of variants run on the same seeds and budget (``docs/experiments.md`` states
    each one before its runs): the variants' flags, flags every run gets, its section of
    docs/results.md, the default seed count."""

    variants: dict[str, list[str]]
    common: tuple[str, ...] = ()
    section: str = "toy_ablation"
    seeds: int = 5
    #: each seed starts from the final policy of this experiment's GRPO run of the same seed
    #: (``--start-from``, its runs folder), with a fresh optimizer and the toy schedule
    start_from: str | None = None
    #: reads and extends this experiment's runs and archive (more seeds of the same runs)
    runs_of: str | None = None
    #: seeds from this one on were run after the first analysis (re-checks use them alone)
    held_out_from: int | None = None


_GRPO_VS_SSR = {"GRPO": VARIANTS["GRPO"], "GRPO+SSR": VARIANTS["GRPO+SSR"]}  # E2's pair
_UPDATE_NORM = ("--optim.log-update-norm", "on")

EXPERIMENTS: dict[str, Experiment] = {
    "ablation": Experiment(VARIANTS),
    # E1: why Forced Rethinking hurts (each variant one change of SSR + Forced Rethinking)
    "E1": Experiment(
        {
            "GRPO": VARIANTS["GRPO"],
            "GRPO+SSR+Rethink": _SSR_RETHINK,
            "Released recipe": [*_SSR_RETHINK, "--algo.sft-coef", "0.05", "--reward.reflection-shaping", "on"],
            "Mask wrong first pass": [*_SSR_RETHINK, "--rethink.first-pass-loss", "mask-wrong"],
            "Append": [*_SSR_RETHINK, "--rethink.placement", "append"],
            "Verify only": [*_SSR_RETHINK, "--rethink.only-correct", "on"],
        },
        common=("--rethink-at-test", "on"),
        section="toy_e1",
    ),
    # E2: SSR with the power to see an effect, and the update norm behind the hypothesis
    "E2": Experiment(
        _GRPO_VS_SSR,
        common=_UPDATE_NORM,
        section="toy_e2",
        seeds=10,
    ),
    # E2 on 24 seeds: E2's runs plus seeds 10-23 (its 10-seed interval was wider than planned)
    "E2-24": Experiment(
        _GRPO_VS_SSR,
        common=_UPDATE_NORM,
        section="toy_e2_24",
        seeds=24,
        runs_of="E2",
        held_out_from=10,
    ),
    # E2, saturated regime: GRPO's final policies trained on for another 300 steps, GRPO against SSR
    "E2-saturated": Experiment(
        _GRPO_VS_SSR,
        common=_UPDATE_NORM,
        section="toy_e2_saturated",
        seeds=3,
        start_from="E2",
    ),
    # E2, saturated regime by the data mix: the same continuation on the kinds the pilot
    # (benchmarks/zero_adv_pilot.py) found mostly all-right or all-wrong for these policies
    "E2-saturated-mix": Experiment(
        _GRPO_VS_SSR,
        common=(*_UPDATE_NORM, "--data.toy-kinds", SATURATED_MIX),
        section="toy_e2_saturated_mix",
        seeds=3,
        start_from="E2",
    ),
}


def read_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return read_jsonl(path, torn="raise", missing_ok=True)


def finished(run_dir: Path) -> bool:
    return any("test/accuracy" in r and r.get("step", 0) > 0 for r in read_rows(run_dir))


def run_dir_of(out: Path, name: str, seed: int) -> Path:
    return out / f"{slug(name)}-seed{seed}"


def run_variant(name: str, flags: list[str], seed: int, steps: int, threads: int, out: Path, extra: list[str]) -> Path:
    """Train one variant on one seed (reused when finished). A run killed part-way goes on
    from its last checkpoint (``--resume``: the trainer is exact across kills); one killed
    before its first checkpoint starts again in an emptied folder; a finished run's
    checkpoints are deleted (its metrics, predictions and ``final/`` stay)."""
    run_dir = run_dir_of(out, name, seed)
    if finished(run_dir):
        return run_dir  # finished earlier: reuse
    if _checkpoints(run_dir):
        cmd = [sys.executable, "-m", "rethinker", "train", "--resume", str(run_dir), "--no-progress"]
    else:
        if run_dir.exists():  # killed before its first checkpoint: what it logged would mix with the new run's rows
            shutil.rmtree(run_dir)
        cmd = _fresh_command(run_dir, flags, seed, steps, threads, extra)
    print("$", " ".join(cmd), flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(out / f"{slug(name)}-seed{seed}.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, TQDM_DISABLE="1"))
    for ckpt in _checkpoints(run_dir):
        shutil.rmtree(ckpt)
    print(f"done: {run_dir} ({time.time() - t0:.0f} s)", flush=True)
    return run_dir


def _checkpoints(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob("checkpoint-*") if p.is_dir()) if run_dir.is_dir() else []


def _fresh_command(run_dir: Path, flags: list[str], seed: int, steps: int, threads: int, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rethinker",
        "train",
        "--output-dir",
        str(run_dir),
        "--seed",
        str(seed),
        "--max-steps",
        str(steps),
        "--max-samples",
        str(steps * SAMPLES_PER_STEP),
        "--eval-every",
        "25",
        "--save-every",
        str(SAVE_EVERY),
        "--log-samples",
        "0",
        "--threads",
        str(threads),
        "--no-progress",
        *flags,
        *extra,
    ]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").lower()


def summarize(run_dir: Path) -> dict:
    rows = read_rows(run_dir)
    train = [r for r in rows if M.REWARD_MEAN in r]
    samples_at = {r["step"]: r[M.BUDGET_SAMPLES] for r in train}
    samples_at[0] = 0
    dev = [
        (samples_at[r["step"]], r["eval/accuracy"])
        for r in rows
        if r.get("eval/accuracy") is not None and "eval/n" in r and r["step"] in samples_at
    ]
    tests = {r["step"]: r for r in rows if "test/accuracy" in r}
    last = max(tests)
    half = train[len(train) // 2 :]
    preds = read_jsonl(run_dir / f"test-predictions-{last}.jsonl", torn="raise")
    base = read_jsonl(run_dir / "test-predictions-0.jsonl", torn="raise", missing_ok=True)
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    out = {
        "dev": dev,
        "test_final": tests[last]["test/accuracy"],
        "test_base": tests[0]["test/accuracy"] if 0 in tests else float("nan"),
        "test_correct": {p["id"]: int(p["correct"]) for p in preds},
        "test_kind": {p["id"]: p.get("category") or "?" for p in preds},
        "test_reflection": tests[last].get("test/reflection_rate", float("nan")),
        "zero_adv_half": mean([r[M.ZERO_ADV_BEFORE_RETHINK] for r in half]),
        "zero_adv_first": mean([r[M.ZERO_ADV_BEFORE_RETHINK] for r in train[: len(train) // 10 or 1]]),
        "reflection_half": mean([r["reflection_rate"] for r in half]),
        "samples": train[-1][M.BUDGET_SAMPLES],
        "tokens": sum(r.get(M.ROLLOUT_TOKENS, 0) + r.get(M.RETHINK_TOKENS, 0) for r in train),
        "opt_steps": sum(r.get(M.OPTIMIZER_STEPS, 0) for r in train),
        "steps": len(train),
        "hours": sum(r.get(M.TIME_STEP, 0) for r in train) / 3600,
        "curves": {
            k: [(r["step"], r.get(k)) for r in train]
            for k in (M.ZERO_ADV_BEFORE_RETHINK, "reflection_rate", M.GRAD_NORM, M.PARAM_DELTA_NORM, M.LR)
        },
    }
    return out | _rethink_verdicts(preds, base)


def _rethink_verdicts(preds: list[dict], base: list[dict]) -> dict:
    """Per-puzzle verdicts after the forced trigger (``--rethink-at-test``), of the final
    and of the base policy, when the run measured them."""
    out: dict = {}
    if preds and all("correct_after_rethink" in p for p in preds):
        out["test_after"] = {p["id"]: int(p["correct_after_rethink"]) for p in preds}
    if base and all("correct_after_rethink" in p for p in base):
        out["base_correct"] = {p["id"]: int(p["correct"]) for p in base}
        out["base_after"] = {p["id"]: int(p["correct_after_rethink"]) for p in base}
    return out


def archive_path(archive: Path, name: str, seed: int) -> Path:
    return archive / f"{slug(name)}-seed{seed}.json.gz"


def read_json_gz(path: Path) -> dict:
    return json.loads(gzip.decompress(path.read_bytes()))


def write_json_gz(path: Path, obj: dict) -> None:
    """Atomically (a temporary file, then a rename); the same object gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(json.dumps(obj, sort_keys=True).encode(), mtime=0))
    tmp.replace(path)


def load_archived(archive: Path | None, name: str, seed: int) -> dict | None:
    path = archive_path(archive, name, seed) if archive else None
    if path is None or not path.exists():
        return None
    return read_json_gz(path)


def save_archived(archive: Path | None, name: str, seed: int, summary: dict) -> None:
    if archive is not None:
        write_json_gz(archive_path(archive, name, seed), summary)


def fmt(xs: list[float], k: float = 100, digits: int = 1) -> str:
    xs = [x for x in xs if x == x]
    if not xs:
        return "-"
    sd = statistics.stdev(xs) * k if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs) * k:.{digits}f} ± {sd:.{digits}f}"


def table(results: dict[str, list[dict]], seeds: list[int], steps: int) -> str:
    ref = results["GRPO"]
    ids = sorted(ref[0]["test_correct"])
    matrix = {name: np.array([[r["test_correct"][i] for i in ids] for r in rs]) for name, rs in results.items()}
    lines = [
        "| variant | test acc % (mean ± sd) | vs GRPO, points [95% CI] | samples to GRPO's final dev acc "
        "(per seed) | dev AUC % | zero-adv share, 1st 10% -> 2nd half | reflection: rollouts / test | "
        "tokens (M) | optimizer steps | steps | hours/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in results.items():
        if name == "GRPO":
            diff = "-"
        else:
            d, lo, hi = paired_bootstrap(matrix[name], matrix["GRPO"])
            diff = f"{d * 100:+.1f} [{lo * 100:+.1f}, {hi * 100:+.1f}]"
        reach = [budget_to_reach(r["dev"], g["dev"][-1][1]) for r, g in zip(rs, ref)]
        reach_s = ", ".join("-" if x is None else f"{x / 1000:.1f}K" for x in reach)
        lines.append(
            f"| {name} | {fmt([r['test_final'] for r in rs])} | {diff} | {reach_s} | "
            f"{fmt([area_under_curve(r['dev']) for r in rs])} | "
            f"{fmt([r['zero_adv_first'] for r in rs], 1, 2)} -> {fmt([r['zero_adv_half'] for r in rs], 1, 2)} | "
            f"{fmt([r['reflection_half'] for r in rs], 1, 2)} / {fmt([r['test_reflection'] for r in rs], 1, 2)} | "
            f"{fmt([r['tokens'] / 1e6 for r in rs], 1, 2)} | {fmt([r['opt_steps'] for r in rs], 1, 0)} | "
            f"{fmt([r['steps'] for r in rs], 1, 0)} | {fmt([r['hours'] for r in rs], 1, 2)} |"
        )
    lines += ["", per_kind(results)]
    bases = [r["test_base"] for r in ref]
    if len(set(bases)) == 1:  # every seed starts from the same toy policy
        start = f"base policy {bases[0] * 100:.1f}%"
    else:  # each seed continues from its own policy (--start-from)
        start = f"starting policies {np.mean(bases) * 100:.1f}%, per seed " + ", ".join(f"{b * 100:.1f}" for b in bases)
    head = (
        f"toy ablation: {len(seeds)} paired seeds ({', '.join(map(str, seeds))}), budget {steps * SAMPLES_PER_STEP:,} "
        f"samples per run, test split of {len(ids)} puzzles ({start})"
    )
    return head + "\n\n" + "\n".join(lines)


def per_kind(results: dict[str, list[dict]]) -> str:
    """Final test accuracy per puzzle kind, mean over seeds (%): where the variants differ."""
    kinds = sorted(set(results["GRPO"][0]["test_kind"].values()))
    lines = ["| variant | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for name, rs in results.items():
        cells = []
        for k in kinds:
            accs = [np.mean([r["test_correct"][i] for i, kk in r["test_kind"].items() if kk == k]) for r in rs]
            cells.append(f"{np.mean(accs) * 100:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "final test accuracy per kind (%, mean over seeds)\n\n" + "\n".join(lines)


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for c, (name, rs) in enumerate(results.items()):
        color = f"C{c}"
        xs = [x / 1000 for x, _ in rs[0]["dev"]]
        n = min(len(r["dev"]) for r in rs)
        ys = np.array([[y for _, y in r["dev"][:n]] for r in rs])
        axes[0].plot(xs[:n], ys.mean(0) * 100, color=color, label=name)
        axes[0].fill_between(xs[:n], ys.min(0) * 100, ys.max(0) * 100, color=color, alpha=0.12)
        for ax, key in ((axes[1], M.ZERO_ADV_BEFORE_RETHINK), (axes[2], "reflection_rate")):
            m = min(len(r["curves"][key]) for r in rs)
            steps = [s for s, _ in rs[0]["curves"][key][:m]]
            vals = np.array([[v for _, v in r["curves"][key][:m]] for r in rs]).mean(0)
            k = max(1, min(10, m // 5))  # a 10-step moving average (shorter for short runs)
            smooth = np.convolve(vals, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1 :], smooth, color=color, label=name)
    axes[0].set(
        xlabel="generated samples (thousands)",
        ylabel="dev accuracy, greedy (%)",
        title="Dev accuracy (mean over seeds; band: min-max)",
    )
    axes[1].set(
        xlabel="rollout step",
        ylabel="share of groups",
        ylim=(0, 1),
        title="Zero-advantage groups (first pass, 10-step mean)",
    )
    axes[2].set(
        xlabel="rollout step",
        ylabel="share of rollouts",
        ylim=(0, None),
        title="Reflection rate of rollouts (10-step mean)",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def write_doc(path: Path, text: str, results: dict[str, list[dict]], section: str = "toy_ablation") -> None:
    """Section ``section`` of ``path`` (docs/results.md): the tables this script prints,
    and the plot, written to ``images/SECTION.png`` beside the document."""
    from _doc import provenance, replace_section  # benchmarks/_doc.py (this script's folder)

    image = Path(path).parent / "images" / f"{section}.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    plot(results, image)
    rel = os.path.relpath(image, Path(path).parent).replace(os.sep, "/")
    alt = "Toy ablation: dev accuracy against samples, zero-advantage share and reflection rate against steps"
    body = text.rsplit("\n\n", 1)[0]  # without the timing line
    replace_section(path, section, f"{provenance()}\n\n{body}\n\n![{alt}]({rel})")


def _arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=None, help="paired seeds (default: the experiment's)")
    ap.add_argument("--steps", type=int, default=300, help="rollout steps of the schedule; budget = steps x 64 samples")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores shared by the runs")
    ap.add_argument("--out", default=None, help="runs folder (default: runs/EXPERIMENT)")
    ap.add_argument(
        "--archive", default=None, help="run summaries kept for later (default: benchmarks/results/EXPERIMENT)"
    )
    ap.add_argument(
        "--experiment", choices=list(EXPERIMENTS), default="ablation", help="which pre-registered set of variants"
    )
    ap.add_argument("--round2", action="store_true", help="E1: add the combination its round-2 rule picks")
    ap.add_argument(
        "--start-from", default=None, help="runs folder of the experiment each seed continues from (default: runs/E2)"
    )
    ap.add_argument("--only", nargs="+", help="run only these variants of the experiment (GRPO is always run)")
    ap.add_argument(
        "--from-results", action="store_true", help="train nothing: analyse the finished runs saved in --out"
    )
    ap.add_argument(
        "--interim", action="store_true", help="with --from-results: only the seeds every variant has finished"
    )
    ap.add_argument("extra", nargs="*", help="extra `rethinker train` flags (after --)")
    from _doc import add_argument, check_section  # benchmarks/_doc.py (this script's folder)

    add_argument(ap)
    args = ap.parse_args()
    exp = EXPERIMENTS[args.experiment]
    unknown = sorted(set(args.only or ()) - set(exp.variants))
    if unknown:
        ap.error(f"--only: {unknown} are not variants of {args.experiment} ({', '.join(exp.variants)})")
    if args.interim and not args.from_results:
        ap.error("--interim analyses saved runs: give --from-results too")
    if args.round2 and args.experiment != "E1":
        ap.error("--round2 is E1's second round")
    if args.start_from and not exp.start_from:
        ap.error(f"--start-from: {args.experiment} starts from the toy policy, not from another experiment's runs")
    if args.write_doc:
        check_section(args.write_doc, exp.section)  # a wrong file fails now, not after hours
    args.error = ap.error
    return args


def _saved(out: Path, archive: Path | None, name: str, seed: int) -> dict | None:
    """A finished run's summary: archived, or summarised (and archived) from its folder."""
    summary = load_archived(archive, name, seed)
    if summary is None and finished(run_dir_of(out, name, seed)):
        summary = summarize(run_dir_of(out, name, seed))
        save_archived(archive, name, seed, summary)
    return summary


def start_flags(start: Path | None, seed: int) -> list[str]:
    """The flags that start a seed's run from the final policy of ``start``'s GRPO run."""
    if start is None:
        return []
    return ["--model", str(run_dir_of(start, "GRPO", seed) / "final"), "--preset", "toy"]


def _check_start(start: Path, seeds: list[int], error) -> None:
    missing = [str(run_dir_of(start, "GRPO", s) / "final") for s in seeds]
    missing = [m for m in missing if not (Path(m) / "config.json").is_file()]
    if missing:
        error("--start-from: these final policies are missing: " + ", ".join(missing))


def _round2(variants: dict, out: Path, archive: Path | None, seeds: list[int], error) -> dict[str, list[str]]:
    """E1's variants plus the combination its round-2 rule picks from the finished round 1."""
    import experiment_analysis as ea  # this script's folder

    saved = {(n, s): _saved(out, archive, n, s) for n in variants for s in seeds}
    missing = [f"{slug(n)}-seed{s}" for (n, s), v in saved.items() if v is None]
    if missing:
        error("--round2: round 1 is not finished: " + ", ".join(missing))
    parts, why = ea.round2_parts({n: [saved[n, s] for s in seeds] for n in variants})
    if not parts:
        print(f"round 2 runs nothing ({why})")
        return dict(variants)
    flags = list(_SSR_RETHINK)
    for part in parts:  # each part's own change on top of SSR + Forced Rethinking
        flags += variants[part][len(_SSR_RETHINK) :]
    name = ea.round2_name(parts)
    print(f"round 2: {name} ({why}): {' '.join(flags)}")
    return {**variants, name: flags}


def _train_all(todo, variants: dict, exp: Experiment, args, out: Path, archive: Path | None, threads: int) -> dict:
    start = Path(args.start_from or f"runs/{exp.start_from}") if exp.start_from else None
    if start is not None:  # the seeds still to train need their starting policies
        pending = {s for n, s in todo if load_archived(archive, n, s) is None and not finished(run_dir_of(out, n, s))}
        _check_start(start, sorted(pending), args.error)

    def one(name: str, seed: int) -> dict:
        summary = _saved(out, archive, name, seed)
        if summary is None:
            flags = [*variants[name], *exp.common, *start_flags(start, seed)]
            summary = summarize(run_variant(name, flags, seed, args.steps, threads, out, args.extra))
            save_archived(archive, name, seed, summary)
        return summary

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {(n, s): pool.submit(one, n, s) for n, s in todo}
        return {key: f.result() for key, f in futures.items()}


def analyses(experiment: str, results: dict[str, list[dict]], seeds: list[int]) -> str:
    """The pre-registered experiment's own analyses (``experiment_analysis``)."""
    import experiment_analysis as ea  # this script's folder

    if experiment == "E2-24":  # E2's analyses on every seed, the re-check on the held-out ones
        first = EXPERIMENTS[experiment].held_out_from
        held = {n: [r for s, r in zip(seeds, runs) if s >= first] for n, runs in results.items()}
        recheck = ea.e2_replication(held) if held[ea.REFERENCE] else "(no held-out seed finished yet)"
        return analyses("E2", results, seeds) + "\n\n" + recheck
    if experiment == "E1":
        return "\n\n" + ea.rethink_at_test_table(results) + "\n\n" + ea.e1_decision(results)
    if experiment == "E2":
        return "\n\n" + ea.e2_verdict(results) + "\n\n" + ea.e2_mechanism(results)
    if experiment in ("E2-saturated", "E2-saturated-mix"):
        return "\n\n" + ea.saturated_verdict(results) + "\n\n" + ea.e2_mechanism(results)
    return ""


def main() -> int:
    args = _arguments()
    exp = EXPERIMENTS[args.experiment]
    runs = exp.runs_of or args.experiment  # the experiment whose runs and archive these are
    out = Path(args.out or f"runs/{runs}")
    out.mkdir(parents=True, exist_ok=True)
    archive = Path(args.archive) if args.archive else ROOT / "benchmarks" / "results" / runs
    if args.experiment == "ablation" and not args.archive:
        archive = None  # the earlier ablation's runs were never archived
    threads = max(1, args.threads // max(1, args.jobs))
    seeds = list(range(args.seeds or exp.seeds))
    variants = _round2(exp.variants, out, archive, seeds, args.error) if args.round2 else dict(exp.variants)
    added = [n for n in variants if n not in exp.variants]  # round 2's combination
    names = ["GRPO", *[n for n in variants if n != "GRPO" and (not args.only or n in args.only or n in added)]]
    todo = [(name, seed) for seed in seeds for name in names]
    t0 = time.time()
    interim = ""
    if args.from_results:
        saved = {(n, s): _saved(out, archive, n, s) for n, s in todo}
        missing = [str(run_dir_of(out, n, s)) for (n, s), v in saved.items() if v is None]
        if missing and not args.interim:
            args.error("--from-results: these runs are missing or unfinished: " + ", ".join(missing))
        planned = len(seeds)
        seeds = [s for s in seeds if all(saved[n, s] is not None for n in names)]
        if not seeds:
            args.error("--interim: no seed has every variant finished yet")
        interim = f"INTERIM: {len(seeds)} of {planned} planned seeds finished; this table decides nothing.\n\n"
        interim = interim if args.interim and len(seeds) < planned else ""
        done = saved
    else:
        done = _train_all(todo, variants, exp, args, out, archive, threads)
    results = {n: [done[n, s] for s in seeds] for n in names}
    text = interim + table(results, seeds, args.steps) + ("" if interim else analyses(args.experiment, results, seeds))
    text += (
        f"\n\n{threads} thread(s) per run, {args.jobs} run(s) at once; this invocation took "
        f"{(time.time() - t0) / 3600:.2f} h (finished runs are reused)"
    )
    print(text)
    (out / "table.md").write_text(text + "\n")
    plot(results, out / "ablation.png")
    print(f"plot: {out / 'ablation.png'}")
    if args.write_doc:
        write_doc(Path(args.write_doc), text, results, exp.section)
        print(f"wrote section '{exp.section}' of {args.write_doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
