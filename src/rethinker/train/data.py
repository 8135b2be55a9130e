"""Training data: where queries come from and in what order.

``load_datasets(cfg)`` gives the training and held-out records (the toy world when no
files are named); ``QuerySampler`` hands out queries in a seeded order, epoch after
epoch, and its position is part of every checkpoint so that a resumed run sees the same
queries as an uninterrupted one.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.stream import open_records
from ..records import Record
from ..toyworld.puzzles import DEFAULT_KINDS, generate


@dataclass
class Datasets:
    """Training and held-out records: lists for the toy world, ``StreamedRecords`` (read on
    demand, see ``data/stream.py``) for parquet and JSONL files."""

    train: Sequence[Record]
    eval: Sequence[Record]
    base_dir: str | None = None
    eval_base_dir: str | None = None
    test: Sequence[Record] = ()
    test_base_dir: str | None = None
    skipped: list[tuple[Any, ...]] = field(default_factory=list)


def _read(path: str) -> tuple[Sequence[Record], list, str | None]:
    result = open_records(path)
    base = str(Path(path).parent) if Path(path).is_file() else str(path)
    for row in result.skipped[:20]:
        print(f"warning: skipped record {row}", file=sys.stderr)
    if len(result.skipped) > 20:
        print(f"warning: ... {len(result.skipped) - 20} more skipped records in {path}", file=sys.stderr)
    return result.records, list(result.skipped), base


def _toy_kinds(data_cfg) -> tuple[str, ...]:
    return tuple(data_cfg.toy_kinds) if data_cfg.toy_kinds else DEFAULT_KINDS


def load_datasets(data_cfg, seed: int) -> Datasets:
    skipped: list = []
    train_base = eval_base = None
    if data_cfg.train:
        train, sk, train_base = _read(data_cfg.train)
        skipped += sk
    else:
        train = generate(data_cfg.toy_train_size, seed=seed, split="train", kinds=_toy_kinds(data_cfg))
    evals, eval_base, sk = _held_out(data_cfg.eval, data_cfg, "dev", data_cfg.toy_eval_size)
    skipped += sk
    tests, test_base, sk = _held_out(data_cfg.test, data_cfg, "test", data_cfg.toy_test_size)
    skipped += sk
    if not train:
        raise ValueError("no usable training records")
    return Datasets(train, evals, train_base, eval_base, skipped=skipped, test=tests, test_base_dir=test_base)


def _held_out(path: str | None, data_cfg, toy_split: str, toy_size: int) -> tuple[Sequence[Record], str | None, list]:
    """A held-out set: the named file, else (toy world only) ``toy_size`` puzzles of the
    toy split (seed 0: the same puzzles for every run, so runs are paired), else none."""
    if path:
        records, skipped, base = _read(path)
        return records, base, skipped
    if data_cfg.train or toy_size <= 0:
        return [], None, []
    return generate(toy_size, seed=0, split=toy_split, kinds=_toy_kinds(data_cfg)), None, []


class QuerySampler:
    """Seeded epoch-wise shuffling; ``next(n)`` returns the next n records."""

    def __init__(self, records: Sequence[Record], seed: int, shuffle: bool = True):
        self.records = records
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0
        self._order = self._make_order()

    def _make_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.records))
        return np.random.Generator(np.random.PCG64([self.seed, self.epoch])).permutation(len(self.records))

    def next(self, n: int) -> list[Record]:
        out = []
        for _ in range(n):
            if self.position >= len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._make_order()
            out.append(self.records[int(self._order[self.position])])
            self.position += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "n": len(self.records)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["n"] != len(self.records):
            raise ValueError(
                f"the data changed since the checkpoint ({state['n']} records then, {len(self.records)} now)"
            )
        self.seed = state["seed"]
        self.epoch = state["epoch"]
        self.position = state["position"]
        self._order = self._make_order()
