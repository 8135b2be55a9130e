"""Toy-world puzzles: determinism, split disjointness, verifiable answers, images."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rethinker.prompt import question_text
from rethinker.records import Record, load_image
from rethinker.toyworld.puzzles import (
    DEFAULT_KINDS,
    KINDS,
    LETTERS,
    PALETTE,
    SIZE,
    TEACHER_CONFUSIONS,
    generate,
    make_record,
    solution_of,
)
from rethinker.toyworld.warmstart import boxed, exact_check

N = 8 * len(KINDS)


def _fingerprint(r: Record) -> str:
    return hashlib.sha1(r.question.encode() + repr(r.choices).encode() + r.images[0].bytes).hexdigest()


@pytest.fixture(scope="module")
def train():
    return generate(N, seed=0, split="train")


@pytest.fixture(scope="module")
def test():
    return generate(N, seed=0, split="test")


def test_deterministic(train):
    again = generate(N, seed=0, split="train")
    assert [r.to_dict() for r in again] == [r.to_dict() for r in train]
    other = generate(N, seed=1, split="train")
    assert sum(a.images[0].bytes == b.images[0].bytes for a, b in zip(train, other)) < N // 4


def test_prefix_stable(train):
    """Item i does not depend on n: a longer list starts with the shorter one."""
    assert [r.to_dict() for r in generate(len(KINDS), seed=0, split="train")] == [
        r.to_dict() for r in train[: len(KINDS)]
    ]


def test_splits_disjoint_by_content(train, test):
    assert not {_fingerprint(r) for r in train} & {_fingerprint(r) for r in test}
    assert not {r.id for r in train} & {r.id for r in test}
    assert len({r.id for r in train}) == N
    dev = generate(N, seed=0, split="dev")
    assert not {_fingerprint(r) for r in dev} & ({_fingerprint(r) for r in train} | {_fingerprint(r) for r in test})
    assert {r.meta["split"] for r in dev} == {"dev"}


def test_train_split_kept_its_puzzles_when_dev_was_added():
    """Ownership: bit 0 of the content hash gives train what it had with two splits;
    the rest is halved into dev and test (so train-only artefacts need no rebuild)."""
    import hashlib

    for r in (
        generate(40, seed=0, split="train") + generate(40, seed=0, split="dev") + generate(40, seed=0, split="test")
    ):
        digest = hashlib.sha1(
            (r.question + "|" + "|".join(r.choices or [])).encode() + b"\0" + b"\0".join(im.bytes for im in r.images)
        ).digest()
        owner = "train" if not digest[0] & 1 else ("dev", "test")[(digest[0] >> 1) & 1]
        assert owner == r.meta["split"]


def test_every_kind_round_robin(train):
    assert [r.category for r in train[: len(KINDS)]] == list(KINDS)
    assert {r.category for r in generate(6, 0, "test", kinds=["count", "size"])} == {"count", "size"}


def test_records_are_valid_and_images_decode(train):
    for r in train:
        r.validate()
        assert r.source == "toyworld" and r.category in KINDS
        assert r.answer_type in {"text", "integer", "multiple_choice"}
        img = load_image(r.images[0], record_id=r.id)
        assert img.size == (SIZE, SIZE)
        colours = {c for _, c in img.getcolors(maxcolors=SIZE * SIZE)}
        assert any(c in colours for c in PALETTE.values())  # something is drawn
        assert Record.from_dict(r.to_dict()).to_dict() == r.to_dict()  # on-disk round trip


def test_worked_solution_boxes_the_ground_truth(train, test):
    for r in train + test:
        sol = solution_of(r)
        assert boxed(sol) == r.answer
        assert exact_check(sol, r)
        assert len(sol.split()) < 45


def test_multiple_choice_answers_are_letters(train):
    mc = [r for r in train if r.category.endswith("_mc")]
    assert mc
    for r in mc:
        assert r.answer_type == "multiple_choice" and r.choices and len(r.choices) == 4
        assert r.answer in LETTERS
        assert len(set(r.choices)) == 4
        assert re.search(r"\nA\. .+\nB\. .+\nC\. .+\nD\. ", question_text(r))
        # the letter points at the option the solution names
        assert r.choices[LETTERS.index(r.answer)] in solution_of(r)


def test_answers_follow_from_parameters(train):
    for r in train:
        p = r.meta["params"]
        if r.category == "bar_max":
            assert r.answer == p["colors"][p["heights"].index(max(p["heights"]))]
        elif r.category == "count":
            assert r.answer == str(p["n"])
        elif r.category == "add":
            assert r.answer == str(p["n"] + p["k"])
        elif r.category == "bar_compare":
            h = dict(zip(p["colors"], p["heights"]))
            a, b = p["asked"]
            assert r.answer == ("yes" if h[a] > h[b] else "no")
        elif r.category == "bar_min":
            assert r.answer == p["colors"][p["heights"].index(min(p["heights"]))]
        elif r.category == "count_color":
            assert r.answer == str(p["n"]) and p["target"] in r.question and p["target"] != p["other"]
        elif r.category == "more_color":
            assert p["counts"][r.answer] > max(v for c, v in p["counts"].items() if c != r.answer)
        elif r.category == "sub":
            assert r.answer == str(p["n"] - p["k"]) and int(r.answer) >= 1


def test_large_answer_spaces_span_one_to_twenty():
    """The kinds over 0-20 (counts, sums, differences, chart values): answers follow from
    the parameters, cover the range, and the images show what is counted."""
    recs = generate(4 * 150, seed=7, split="train", kinds=["count_many", "add_many", "sub_many", "bar_value"])
    answers: dict[str, set[int]] = {}
    for r in recs:
        p = r.meta["params"]
        a = int(r.answer)
        answers.setdefault(r.category, set()).add(a)
        assert r.answer_type == "integer" and str(a) in solution_of(r)
        if r.category == "count_many":
            assert a == p["n"]
        elif r.category == "add_many":
            assert a == p["n"] + p["k"] and f"{p['k']} more" in r.question and p["n"] <= 5
        elif r.category == "sub_many":
            assert a == p["total"] - p["n"] >= 1 and f"make {p['total']}?" in r.question and p["n"] <= 5
        else:
            assert a == p["values"][p["colors"].index(p["asked"])] and p["asked"] in r.question
        if r.category != "bar_value":
            img = load_image(r.images[0], record_id=r.id).convert("RGB")
            assert _blobs(img, PALETTE[p["color"]]) == p["n"]
    assert max(answers["count_many"]) == 20 and min(answers["count_many"]) == 1
    assert max(answers["add_many"]) >= 19 and max(answers["sub_many"]) >= 17
    assert len(answers["bar_value"]) == 20


def _blobs(img, rgb) -> int:
    """Connected regions of exactly ``rgb`` (4-neighbour flood fill)."""
    w, h = img.size
    px = img.load()
    seen, n = set(), 0
    for y in range(h):
        for x in range(w):
            if px[x, y] == rgb and (x, y) not in seen:
                n += 1
                stack = [(x, y)]
                seen.add((x, y))
                while stack:
                    cx, cy = stack.pop()
                    for nx, ny in ((cx + 1, cy), (cx - 1, cy), (cx, cy + 1), (cx, cy - 1)):
                        if 0 <= nx < w and 0 <= ny < h and (nx, ny) not in seen and px[nx, ny] == rgb:
                            seen.add((nx, ny))
                            stack.append((nx, ny))
    return n


def test_counting_images_show_the_counted_circles():
    recs = generate(4 * 6, seed=2, split="train", kinds=["count", "count_color", "more_color", "sub"])
    for r in recs:
        img = load_image(r.images[0], record_id=r.id).convert("RGB")
        p = r.meta["params"]
        if r.category == "count":
            assert _blobs(img, PALETTE[p["color"]]) == p["n"]
        elif r.category == "count_color":
            assert _blobs(img, PALETTE[p["target"]]) == p["n"] and _blobs(img, PALETTE[p["other"]]) == p["m"]
        elif r.category == "more_color":
            assert all(_blobs(img, PALETTE[c]) == k for c, k in p["counts"].items())
        else:
            assert _blobs(img, PALETTE[p["color"]]) == p["n"]


def test_default_mix_is_a_subset_of_the_kinds():
    assert set(DEFAULT_KINDS) <= set(KINDS)
    assert [r.category for r in generate(len(DEFAULT_KINDS), kinds=DEFAULT_KINDS)] == list(DEFAULT_KINDS)


def test_answer_classes_are_balanced():
    recs = generate(40 * 3, seed=3, split="train", kinds=["bar_compare", "relation", "position"])
    for kind in ("bar_compare", "relation"):
        yes = sum(r.answer == "yes" for r in recs if r.category == kind)
        assert 10 <= yes <= 30
    assert len({r.answer for r in recs if r.category == "position"}) == 4


def test_self_checks_are_a_small_share():
    sols = [solution_of(r) for r in generate(400, seed=5, split="train")]
    share = sum("Wait" in s for s in sols) / len(sols)
    assert 0.04 <= share <= 0.18
    assert any("Wait, there might be a mistake." in s for s in sols)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown toy puzzle kind"):
        generate(2, kinds=["sudoku"])
    with pytest.raises(ValueError, match="split"):
        generate(2, split="validation")
    with pytest.raises(ValueError):
        generate(-1)
    with pytest.raises(ValueError, match="worked solution"):
        solution_of(Record(id="x", question="q", answer="a"))


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(list(KINDS)),
    seed=st.integers(0, 2**31),
    index=st.integers(0, 10**6),
    split=st.sampled_from(["train", "dev", "test"]),
)
def test_any_item_is_verifiable(kind, seed, index, split):
    r = make_record(kind, seed, split, index)
    assert boxed(solution_of(r)) == r.answer
    assert r.meta["split"] == split
    assert make_record(kind, seed, split, index).images[0].bytes == r.images[0].bytes


def test_the_teacher_errs_systematically_and_only_where_documented():
    recs = generate(60 * len(DEFAULT_KINDS), seed=4, split="train", kinds=DEFAULT_KINDS)
    with_error = [r for r in recs if "teacher_solution" in r.meta]
    assert 0.3 < len(with_error) / len(recs) < 0.55
    for r in recs:
        wrong = r.meta.get("teacher_solution")
        if r.answer_type == "integer":
            assert (wrong is not None) == (int(r.answer) >= 4)  # undercounts 4 and more
            if wrong is not None:
                assert boxed(wrong) == str(int(r.answer) - 1)
        elif r.answer in TEACHER_CONFUSIONS:
            assert wrong is not None and boxed(wrong) != r.answer
            if r.category in ("size", "more_color"):  # two options: the other one
                assert boxed(wrong) in r.meta["params"].get("asked", r.meta["params"].get("colors"))
            else:
                assert boxed(wrong) == TEACHER_CONFUSIONS[r.answer]
        else:
            assert wrong is None
        if wrong is not None:
            assert not exact_check(wrong, r)
    mc = generate(12, seed=4, kinds=["count_mc", "bar_max_mc"])
    assert not any("teacher_solution" in r.meta for r in mc)


def test_warm_start_imitates_the_teacher_at_its_error_rate():
    from rethinker.toyworld.warmstart import teacher_solutions

    recs = [r for r in generate(400, seed=6, kinds=DEFAULT_KINDS) if "teacher_solution" in r.meta]
    assert teacher_solutions(recs, 0.0, 0, 1) == [solution_of(r) for r in recs]
    assert teacher_solutions(recs, 1.0, 0, 1) == [r.meta["teacher_solution"] for r in recs]
    sols = teacher_solutions(recs, 0.6, 0, 1)
    share = sum(s == r.meta["teacher_solution"] for s, r in zip(sols, recs)) / len(recs)
    assert 0.5 < share < 0.7
    assert sols == teacher_solutions(recs, 0.6, 0, 1)  # deterministic per (seed, step)


def test_teacher_is_exact_on_named_kinds_and_batches_follow_kind_weights():
    from collections import Counter

    from rethinker.toyworld.warmstart import generate_batch, teacher_solutions

    recs = [r for r in generate(300, seed=6, kinds=["color", "count", "more_color"]) if "teacher_solution" in r.meta]
    assert {r.category for r in recs} == {"color", "count", "more_color"}
    sols = teacher_solutions(recs, 1.0, 0, 1, exact_kinds=("color",))
    for s, r in zip(sols, recs):
        assert s == (solution_of(r) if r.category == "color" else r.meta["teacher_solution"])
    kinds = ["color", "size", "count"]
    drawn = Counter(r.category for step in range(30) for r in generate_batch(0, step, 32, kinds, {"color": 2}))
    assert 0.42 < drawn["color"] / sum(drawn.values()) < 0.58  # 2 / (2 + 1 + 1)
    assert generate_batch(0, 3, 8, kinds) == generate_batch(0, 3, 8, kinds, None)  # no weights: as before
