"""benchmarks/zero_adv_pilot.py: per-kind zero-advantage shares from annotated pass rates and
the saturated-mix rule of docs/experiments.md (drop the least saturated kind until the rest
reach the target)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import zero_adv_pilot as zp  # noqa: E402

RATES = (
    [("easy", 1.0)] * 9 + [("easy", 0.875)]  # share 0.9
    + [("edge", 0.5)] * 6 + [("edge", 1.0)] * 4  # 0.4
    + [("hard", 0.0)] * 8 + [("hard", 0.125)] * 2  # 0.8
    + [("mid", 0.625)] * 5 + [("mid", 0.0)] * 5  # 0.5
)  # fmt: skip


def test_kind_shares_and_the_mix_share():
    shares = zp.kind_shares(RATES)
    assert shares["easy"] == pytest.approx((10, 0.9875, 0.9))
    assert shares["edge"] == pytest.approx((10, 0.7, 0.4))
    assert zp.mix_share(shares, shares) == pytest.approx(0.65)
    assert zp.mix_share(shares, ["easy", "hard"]) == pytest.approx(0.85)
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        zp.kind_shares([("x", 1.5)])
    with pytest.raises(ValueError, match="empty mix"):
        zp.mix_share(shares, [])


def test_saturated_mix_drops_the_least_saturated_kinds_first():
    shares = zp.kind_shares(RATES)
    assert zp.saturated_mix(shares, 0.6) == (["easy", "edge", "hard", "mid"], [])
    assert zp.saturated_mix(shares, 0.7) == (["easy", "hard", "mid"], ["edge"])  # 0.733
    assert zp.saturated_mix(shares, 0.85) == (["easy", "hard"], ["edge", "mid"])
    assert zp.saturated_mix(shares, 0.9) == (["easy"], ["edge", "mid", "hard"])
    with pytest.raises(ValueError, match="no mix of these kinds reaches"):
        zp.saturated_mix(shares, 0.95)


def test_the_command_refuses_records_without_the_annotation(tmp_path):
    data = tmp_path / "train.jsonl"
    subprocess.run(
        [sys.executable, "-m", "rethinker", "toy", "data", "--split", "train", "--n", "4", "--output", str(data)],
        check=True,
        capture_output=True,
    )
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "zero_adv_pilot.py"), str(data), "--name", "start"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "4 of 4 records lack pass_rates['start']" in res.stderr
