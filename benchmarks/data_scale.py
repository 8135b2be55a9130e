"""Host memory against data-set size: peak RSS of the commands that read a training file.

    python benchmarks/data_scale.py --sizes 1000 40000 --out /tmp/data_scale

For each size N it writes a parquet file of N records in the record schema whose images
are PNGs of random noise between 50 and 200 KB (ViRL39K's size is 38,870 queries; noise
does not compress, so the bytes are real), then runs, each in its own process, and
reports the peak resident set size of that process:

- ``rethinker train --data FILE --max-steps 3`` (toy policy, no evaluation or checkpoint);
- ``rethinker eval --benchmark records --data FILE --limit 64``;
- ``rethinker data annotate FILE --limit 16 --samples 2`` (writes all N records back).

If memory does not grow with the data, the rows for 1K and 40K records differ by the
runtime's own noise, not by the ~5 GB of images the larger file holds.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rethinker.data.io import write_records  # noqa: E402
from rethinker.records import ImageRef, Record  # noqa: E402


def noise_png(rng: random.Random, n_bytes: int) -> bytes:
    """A PNG of random RGB noise of about ``n_bytes`` (noise does not compress)."""
    import io

    from PIL import Image

    side = max(16, int((n_bytes / 3) ** 0.5))
    img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class Synthetic(Sequence):
    """N records made on demand (so that writing 40K of them does not hold 5 GB)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not 0 <= i < self.n:
            raise IndexError(i)
        rng = random.Random(self.seed * 1_000_003 + i)
        k = rng.randint(1, 4)
        return Record(
            id=f"scale-{i:06d}",
            question="How many circles are there in the image?",
            answer=str(k),
            images=[ImageRef(bytes=noise_png(rng, rng.randint(50_000, 200_000)))],
            category="count",
            source="data_scale",
        )


def peak_rss_mb(cmd: list[str], log: Path) -> tuple[float, float, int]:
    """(peak RSS in MB of the command's process tree's largest process, seconds, exit code)."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        res = subprocess.run(["/usr/bin/time", "-f", "MAXRSS_KB %M", *cmd], stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    kb = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("MAXRSS_KB")]
    return (int(kb[-1]) / 1024 if kb else float("nan")), seconds, res.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 40000])
    ap.add_argument("--out", default="/tmp/rethinker-data-scale")
    ap.add_argument("--threads", type=int, default=2)
    from _doc import StdoutSection, add_argument  # benchmarks/_doc.py (this script's folder)

    add_argument(ap)
    args = ap.parse_args()
    doc = StdoutSection(args.write_doc, "data_scale")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rk = [sys.executable, "-m", "rethinker"]
    rows = []
    for n in args.sizes:
        data = out / f"records-{n}.parquet"
        if not data.exists():
            t0 = time.perf_counter()
            write_records(data, Synthetic(n))
            print(
                f"wrote {data} ({data.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
            )
        size_gb = data.stat().st_size / 2**30
        jobs = {
            "train --max-steps 3": rk
            + [
                "train",
                "--data",
                str(data),
                "--output-dir",
                str(out / f"train-{n}"),
                "--overwrite-output-dir",  # a rerun of the benchmark starts the run again
                "on",
                "--max-steps",
                "3",
                "--eval-every",
                "0",
                "--save-every",
                "0",
                "--threads",
                str(args.threads),
                "--no-progress",
            ],
            "eval --limit 64": rk
            + [
                "eval",
                "--benchmark",
                "records",
                "--data",
                str(data),
                "--limit",
                "64",
                "--output-dir",
                str(out / f"eval-{n}"),
                "--max-new-tokens",
                "48",
                "--restart",
                "--quiet",
            ],
            "data annotate --limit 16": rk
            + [
                "data",
                "annotate",
                str(data),
                "--limit",
                "16",
                "--samples",
                "2",
                "--max-new-tokens",
                "48",
                "--output",
                str(out / f"annotated-{n}.parquet"),
            ],
        }
        for name, cmd in jobs.items():
            rss, secs, rc = peak_rss_mb(cmd, out / f"{name.split()[0]}-{n}.log")
            rows.append((n, size_gb, name, rss, secs, rc))
            print(f"{n} records: {name}: {rss:.0f} MB peak RSS, {secs:.0f} s, exit {rc}", file=sys.stderr)
    print("| records | file GiB | command | peak RSS MB | seconds | exit |")
    print("|---|---|---|---|---|---|")
    for n, gb, name, rss, secs, rc in rows:
        print(f"| {n} | {gb:.2f} | `rethinker {name}` | {rss:.0f} | {secs:.0f} | {rc} |")
    doc.write()


if __name__ == "__main__":
    main()
