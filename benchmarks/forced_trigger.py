"""Test-time rethinking of an experiment's final policies, measured after training.

    python benchmarks/forced_trigger.py --experiment E2-24 --runs /work/runs/E2 --out runs/E2-forced [--jobs 2]
    python benchmarks/forced_trigger.py --experiment E2-24 --from-results --write-doc docs/results.md

For runs that trained without ``--rethink-at-test`` (E2's), ``rethinker eval
--rethink-at-test`` judges each run's final policy, and the base policy, on the trainer's
test split (the toy test puzzles of seed 0, 48 new tokens, greedy): the answer, then the
trigger and a greedy continuation, judged again. The per-puzzle verdicts are archived in
``benchmarks/results/NAME-forced/`` (so the table regenerates without the runs) and read
into E1's table (``experiment_analysis.rethink_at_test_table``). Each policy's accuracy
before the trigger is checked against the run's archived final test accuracy, so a
mismatch between this measure and the trainer's shows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _doc
import experiment_analysis as ea
import toy_ablation as ta

TEST_ITEMS = 2000  # the toy preset's test split (data.toy_test_size), generated with seed 0
MAX_NEW_TOKENS = 48  # the toy preset's response limit, which its test evaluation uses
BASE = "base"  # the archive's name for the base policy's verdicts


def eval_command(model: Path | None, out: Path) -> list[str]:
    """``rethinker eval`` on the trainer's toy test split with the forced trigger."""
    cmd = [sys.executable, "-m", "rethinker", "eval", *(["--model", str(model)] if model else [])]
    return cmd + [
        "--benchmark", "toy", "--toy-items", str(TEST_ITEMS), "--toy-seed", "0",
        "--max-new-tokens", str(MAX_NEW_TOKENS), "--rethink-at-test", "--quiet", "--output-dir", str(out),
    ]  # fmt: skip


def verdicts(predictions: Path) -> dict[str, dict[str, int]]:
    """Per-puzzle verdicts before (``correct``) and after the trigger (``after``) from an
    eval's ``predictions.jsonl``; a row without its continuation's verdict is an error."""
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    for n, line in enumerate(predictions.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        again = row.get("rethought")
        if not isinstance(again, dict) or "correct" not in again:
            raise ValueError(f"{predictions}:{n}: no verdict after the trigger (was --rethink-at-test on?)")
        before[row["id"]], after[row["id"]] = int(bool(row["correct"])), int(bool(again["correct"]))
    if not before:
        raise ValueError(f"{predictions}: no predictions")
    return {"correct": before, "after": after}


def archive_file(archive: Path, name: str, seed: int | None) -> Path:
    """A run's verdicts where the experiment's archive keeps its summary; the base policy's
    (``seed`` None) in ``base.json.gz``."""
    return archive / f"{BASE}.json.gz" if seed is None else ta.archive_path(archive, name, seed)


def measure(model: Path | None, out: Path, archive: Path, name: str, seed: int | None) -> str:
    """Evaluate one policy (skipped when archived) and archive its verdicts."""
    path = archive_file(archive, name, seed)
    if path.exists():
        return f"{path.name}: archived"
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")  # one thread per evaluation
    subprocess.run(eval_command(model, out), check=True, env=env, stdout=subprocess.DEVNULL)
    ta.write_json_gz(path, verdicts(out / "predictions.jsonl"))
    return f"{path.name}: measured"


def load(archive: Path, names: list[str], seeds: list[int]) -> dict[str, list[dict]]:
    """The archived verdicts as ``rethink_at_test_table``'s runs (the base policy's on each)."""
    base = ta.read_json_gz(archive_file(archive, BASE, None))
    results: dict[str, list[dict]] = {}
    for name in names:
        for seed in seeds:
            got = ta.read_json_gz(archive_file(archive, name, seed))
            results.setdefault(name, []).append(
                {"test_correct": got["correct"], "test_after": got["after"]}
                | {"base_correct": base["correct"], "base_after": base["after"], "seed": seed}
            )
    return results


def agreement(results: dict[str, list[dict]], trained: Path) -> str:
    """How many policies' accuracy before the trigger equals the run's archived final test
    accuracy (the trainer's own measure of the same answers)."""
    same, diffs = 0, []
    for name, runs in results.items():
        for run in runs:
            summary = ta.load_archived(trained, name, run["seed"])
            if summary is None:
                continue
            here = sum(run["test_correct"].values()) / len(run["test_correct"])
            diffs.append(abs(here - summary["test_final"]))
            same += summary["test_correct"] == run["test_correct"]
    if not diffs:
        return "no archived training summary to check against"
    return (
        f"check against the trainer: {same} of {len(diffs)} policies give the same verdict on every test puzzle "
        f"before the trigger as the run's own final test evaluation (largest accuracy difference "
        f"{max(diffs) * 100:.2f} points)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", required=True, choices=sorted(ta.EXPERIMENTS))
    ap.add_argument("--runs", type=Path, help="the experiment's runs folder (RUNS/<variant>-seed<N>/final)")
    ap.add_argument("--out", type=Path, default=Path("runs/forced-trigger"), help="where the evaluations go")
    ap.add_argument("--jobs", type=int, default=1, help="evaluations at once (one thread each)")
    ap.add_argument("--from-results", action="store_true", help="only read the archive; evaluate nothing")
    ap.add_argument("--write-doc", metavar="MD", help="write the table into this file's section")
    args = ap.parse_args()
    exp = ta.EXPERIMENTS[args.experiment]
    source = exp.runs_of or args.experiment
    archive = ta.ROOT / "benchmarks" / "results" / f"{source}-forced"
    names, seeds = list(exp.variants), list(range(exp.seeds))
    section = f"{exp.section}_forced"
    if args.write_doc:
        _doc.check_section(args.write_doc, section)
    if not args.from_results:
        if args.runs is None:
            ap.error("--runs is needed unless --from-results")
        jobs = [(None, args.out / BASE, BASE, None)] + [
            (args.runs / f"{ta.slug(n)}-seed{s}" / "final", args.out / f"{ta.slug(n)}-seed{s}", n, s)
            for n in names
            for s in seeds
        ]
        missing = [str(m) for m, *_ in jobs if m is not None and not m.is_dir()]
        if missing:
            ap.error(f"{len(missing)} final policies are missing (first: {missing[0]})")
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            for line in pool.map(lambda j: measure(j[0], j[1], archive, j[2], j[3]), jobs):
                print(line, flush=True)
    results = load(archive, names, seeds)
    text = (
        f"{args.experiment}'s final policies under a forced trigger, {len(seeds)} seeds, "
        f"{TEST_ITEMS} test puzzles\n\n" + ea.rethink_at_test_table(results) + "\n\n"
        + agreement(results, ta.ROOT / "benchmarks" / "results" / source)
    )  # fmt: skip
    print(text)
    if args.write_doc:
        _doc.replace_section(args.write_doc, section, _doc.provenance() + "\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
