"""Host memory over training steps on a streamed parquet file whose images are all of
different pixel sizes: the trainer's resident memory at the end of a step
(``memory/host_rss_mb`` in ``metrics.jsonl``, taken after the step's freed heap went back to
the OS) must not grow with the number of distinct records trained on.

Without the fixes this grew by ~3 MB a step on 50-200 KB images: the training prompt
encoder cached every record it encoded (up to 256 MB, never hit within an epoch), and
glibc kept the freed tensors of each step's new shapes in its heap."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from rethinker import metric_names as M

STEPS = 24
#: RSS after a later step may exceed RSS after the reference step by this much
MARGIN_MB = 40.0


def _noise_png(rng: random.Random, side_w: int, side_h: int) -> bytes:
    import io

    from PIL import Image

    img = Image.frombytes("RGB", (side_w, side_h), rng.randbytes(side_w * side_h * 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _records(n: int):
    from rethinker.records import ImageRef, Record

    rng = random.Random(0)
    for i in range(n):
        k = rng.randint(1, 4)
        w, h = rng.randint(96, 320), rng.randint(96, 320)  # a new pixel size (and tensor shape) per record
        yield Record(
            id=f"mem-{i:04d}",
            question="How many circles are there in the image?",
            answer=str(k),
            images=[ImageRef(bytes=_noise_png(rng, w, h))],
            category="count",
            source="test",
        )


@pytest.mark.slow
def test_streamed_training_host_memory_stays_flat_over_steps(tmp_path):
    from rethinker.data.io import write_records

    data = tmp_path / "train.parquet"
    write_records(data, list(_records(STEPS * 16)))  # every record is drawn once: no repeats
    out = tmp_path / "run"
    args = [
        "--data",
        str(data),
        "--output-dir",
        str(out),
        "--max-steps",
        str(STEPS),
        "--eval-every",
        "0",
        "--save-every",
        "0",
        "--log-samples",
        "0",
        "--threads",
        "1",
        "--seed",
        "0",
        "--rollout.queries-per-step",
        "16",
        "--rollout.group-size",
        "4",
        "--rollout.max-new-tokens",
        "16",
        "--rethink",
        "off",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    res = subprocess.run(
        [sys.executable, "-m", "rethinker", "train", *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in rows if r.get("step", 0) > 0 and M.HOST_RSS_MB in r}
    assert sorted(steps) == list(range(1, STEPS + 1)), res.stderr[-3000:]
    # the first policy update allocates AdamW's state once: the reference is the step after it
    updated = [s for s in sorted(steps) if steps[s].get(M.UPDATE_SKIPPED) == 0]
    assert updated and updated[0] <= STEPS // 2, f"no early policy update to take a reference after: {updated}"
    ref = updated[0] + 1
    rss = {s: steps[s][M.HOST_RSS_MB] for s in sorted(steps)}
    later = {s: v for s, v in rss.items() if s > ref}
    worst = max(later, key=later.get)
    table = " ".join(f"{s}:{v:.0f}" for s, v in rss.items())
    assert later[worst] - rss[ref] <= MARGIN_MB, (
        f"host RSS grew {later[worst] - rss[ref]:.0f} MB from step {ref} to step {worst} "
        f"(limit {MARGIN_MB:.0f} MB); per step (MB): {table}"
    )
