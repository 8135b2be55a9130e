"""Verifiable visual puzzles for the toy world, rendered with Pillow.

Each puzzle is a 112x112 image (16 visual tokens for the toy processor) with big,
high-contrast shapes, a question, a ground-truth answer and a worked solution (a short
step-by-step text ending in ``\\boxed{answer}``; about 10% of them hold a self-check in
the Forced-Rethinking trigger phrasing). The kinds mirror ViRL39K's categories at a scale
a 3M-parameter model can learn:

=============  ==========================  =========================================
kind           ViRL39K family              question (answer)
=============  ==========================  =========================================
bar_max        chart reading               which of 3 bars is tallest (colour)
bar_compare    chart reading               is bar X taller than bar Y (yes/no)
count          counting                    how many circles, 1-4 (integer)
position       spatial relation            where is the shape (left/right/top/bottom)
relation       spatial relation            is X left of Y (yes/no)
size           geometry-like comparison    which of two shapes is larger (colour)
color          attribute recognition       colour of the single shape (colour)
add            arithmetic read from image  circles shown + k more (integer)
*_mc           multiple choice             bar_max / count / position with A-D
bar_min        chart reading               which of 3 bars is shortest (colour)
count_color    counting                    how many circles of one colour, 1-4
more_color     counting / comparison       which colour has more circles (colour)
sub            arithmetic read from image  circles shown - k taken away (integer)
count_two      multi-image counting        circles in two images together, 2-8
count_many     counting                    how many dots, 1-20 (integer)
add_many       arithmetic read from image  dots shown (1-5) + k more (1-15), 2-20
sub_many       arithmetic read from image  dots needed to make T (6-20), 1-19
bar_value      chart reading               value of a bar against a grid, 1-20
=============  ==========================  =========================================

``count_two`` is the one kind with two images per question (the model sees both, in
order); it exercises the multi-image path of rollout, update, evaluation and resume.

``WARM_START_KINDS`` are the kinds the shipped policy was warm-started on, the ones the
tiny model learns by imitation; the spatial ones, ``bar_compare`` and the ``*_mc`` variants
stay at chance after 1000 supervised steps and are available on request. ``DEFAULT_KINDS``
(RL training and held-out evaluation by default) mixes kinds the warm start nearly
saturates, kinds at its edge and two 1-20 kinds beyond it. Each record may also carry
``meta["teacher_solution"]``: the worked solution of an imperfect teacher (it undercounts
answers of 4 and more, and confuses purple with blue, yellow with green), which the warm
start imitates part of the time, as instruct models imitate imperfect demonstrations; RL
against the verifiable reward has those habits to unlearn.

Generation is deterministic from ``(seed, split, index)``. The splits never share a
puzzle: every candidate is hashed (question + image bytes) and kept only by the split
that owns its hash bucket, so train and test are disjoint by content, not just by seed.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from ..records import ImageRef, Record

SIZE = 112
BACKGROUND = (255, 255, 255)
#: Six colours far apart in RGB.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (20, 160, 40),
    "blue": (30, 60, 230),
    "yellow": (235, 200, 0),
    "purple": (150, 40, 180),
    "black": (20, 20, 20),
}
COLORS = list(PALETTE)
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("left", "right", "top", "bottom")
LETTERS = "ABCD"
#: Half of all content belongs to train, a quarter each to dev (every choice: warm-start
#: length, learning rate, kinds, preset) and test (the numbers reported).
SPLITS = ("train", "dev", "test")
#: Rethinking triggers of the method (``docs/method.md``, Forced Rethinking step 4).
CONFIRM_TRIGGERS = ("Wait, let's double check.", "Wait, does it seem right?", "Wait, let me double check.")
FIX_TRIGGER = "Wait, there might be a mistake."
SELF_CHECK_RATE = 0.07
CORRECTION_RATE = 0.03


@dataclass
class Puzzle:
    """One generated puzzle before it becomes a record."""

    kind: str
    family: str
    image: Image.Image
    question: str
    answer: str
    answer_type: str
    options: list[str]  # the answer's class (for corrections and multiple choice)
    context: str  # the observation step of the worked solution
    claim: Callable[[str], str]  # the concluding step, for a given answer
    choices: list[str] | None = None
    params: dict | None = None
    more_images: list[Image.Image] | None = None  # images after ``image``, in order


# -- drawing ---------------------------------------------------------------------------
def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    return img, ImageDraw.Draw(img)


def _shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, color: str) -> None:
    fill = PALETTE[color]
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)


def _bars(draw: ImageDraw.ImageDraw, colors: Sequence[str], heights: Sequence[int]) -> None:
    n = len(colors)
    slot = (SIZE - 8) / n
    width = slot * 0.7
    base = SIZE - 6
    draw.line([(2, base), (SIZE - 2, base)], fill=(0, 0, 0), width=2)
    for i, (c, h) in enumerate(zip(colors, heights)):
        x0 = 4 + i * slot + (slot - width) / 2
        draw.rectangle([x0, base - h, x0 + width, base - 1], fill=PALETTE[c])


def _spread_points(rng: random.Random, n: int, r: float, margin: float = 4) -> list[tuple[float, float]]:
    """n centres of radius-r discs inside the canvas, at least 2r + 6 apart."""
    lo, hi = r + margin, SIZE - r - margin
    while True:
        pts: list[tuple[float, float]] = []
        for _ in range(200):
            p = (rng.uniform(lo, hi), rng.uniform(lo, hi))
            if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= (2 * r + 6) ** 2 for q in pts):
                pts.append(p)
                if len(pts) == n:
                    return pts


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# -- kinds -----------------------------------------------------------------------------
def _bar_max(rng: random.Random) -> Puzzle:
    colors = rng.sample(COLORS, 3)
    heights = sorted(rng.sample(range(25, 96, 7), 3))
    rng.shuffle(heights)
    return _bar_extreme("bar_max", colors, heights, max, "tallest")


def _bar_extreme(kind: str, colors: list[str], heights: list[int], pick: Callable, word: str) -> Puzzle:
    """A bar chart asking for the bar whose height ``pick`` (max/min) selects."""
    img, draw = _canvas()
    _bars(draw, colors, heights)
    answer = colors[heights.index(pick(heights))]
    return Puzzle(
        kind,
        "chart",
        img,
        f"Which bar is the {word}? Answer with its colour.",
        answer,
        "text",
        COLORS,
        f"The bars are {_and(colors)}.",
        lambda a: f"The {a} bar is the {word}.",
        params={"colors": colors, "heights": heights},
    )


def _bar_compare(rng: random.Random) -> Puzzle:
    colors = rng.sample(COLORS, 2)
    heights = rng.sample(range(25, 96, 7), 2)
    img, draw = _canvas()
    _bars(draw, colors, heights)
    a, b = rng.sample(colors, 2)
    taller = heights[colors.index(a)] > heights[colors.index(b)]
    return Puzzle(
        "bar_compare",
        "chart",
        img,
        f"Is the {a} bar taller than the {b} bar? Answer yes or no.",
        "yes" if taller else "no",
        "text",
        ["yes", "no"],
        "I compare the two bars.",
        lambda ans: f"The {a} bar is {'taller' if ans == 'yes' else 'shorter'} than the {b} bar.",
        params={"colors": colors, "heights": heights, "asked": [a, b]},
    )


def _count_image(rng: random.Random, n: int, r: float = 11) -> tuple[Image.Image, str]:
    """n circles of one random colour, radius r, spread apart."""
    color = rng.choice(COLORS)
    img, draw = _canvas()
    for cx, cy in _spread_points(rng, n, r):
        _shape(draw, "circle", cx, cy, r, color)
    return img, color


def _count(rng: random.Random) -> Puzzle:
    n = rng.randint(1, 4)
    img, color = _count_image(rng, n)
    return Puzzle(
        "count",
        "counting",
        img,
        "How many circles are there in the image?",
        str(n),
        "integer",
        ["1", "2", "3", "4"],
        "I count the circles.",
        lambda a: f"There {'is' if a == '1' else 'are'} {a} circle{'' if a == '1' else 's'}.",
        params={"n": n, "color": color},
    )


def _add(rng: random.Random) -> Puzzle:
    n, k = rng.randint(1, 4), rng.randint(1, 3)
    img, color = _count_image(rng, n)
    total = n + k
    return Puzzle(
        "add",
        "arithmetic",
        img,
        f"If {k} more circle{'' if k == 1 else 's'} {'is' if k == 1 else 'are'} added, how many circles will there be?",
        str(total),
        "integer",
        [str(v) for v in range(2, 8)],
        f"There {'is' if n == 1 else 'are'} {n} circle{'' if n == 1 else 's'}.",
        lambda a: f"{n} + {k} = {a}.",
        params={"n": n, "k": k, "color": color},
    )


_POS_XY = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75)}


def _position(rng: random.Random) -> Puzzle:
    pos, color, shape = rng.choice(POSITIONS), rng.choice(COLORS), rng.choice(SHAPES)
    fx, fy = _POS_XY[pos]
    r = rng.uniform(12, 16)
    jit = 8
    img, draw = _canvas()
    _shape(draw, shape, fx * SIZE + rng.uniform(-jit, jit), fy * SIZE + rng.uniform(-jit, jit), r, color)
    return Puzzle(
        "position",
        "spatial",
        img,
        f"Where is the {color} {shape}: left, right, top or bottom?",
        pos,
        "text",
        list(POSITIONS),
        f"I find the {color} {shape}.",
        lambda a: f"It is at the {a}.",
        params={"pos": pos, "color": color, "shape": shape},
    )


def _relation(rng: random.Random) -> Puzzle:
    c1, c2 = rng.sample(COLORS, 2)
    shape = rng.choice(SHAPES)
    x1 = rng.uniform(18, 38)
    x2 = rng.uniform(74, 94)
    y1, y2 = rng.uniform(20, 92), rng.uniform(20, 92)
    img, draw = _canvas()
    _shape(draw, shape, x1, y1, 13, c1)
    _shape(draw, shape, x2, y2, 13, c2)
    a, b = rng.sample([c1, c2], 2)
    left = a == c1
    return Puzzle(
        "relation",
        "spatial",
        img,
        f"Is the {a} {shape} to the left of the {b} {shape}? Answer yes or no.",
        "yes" if left else "no",
        "text",
        ["yes", "no"],
        f"The {c1} {shape} is on the left.",
        lambda ans: f"So the answer is {ans}.",
        params={"colors": [c1, c2], "asked": [a, b], "shape": shape},
    )


def _size(rng: random.Random) -> Puzzle:
    c1, c2 = rng.sample(COLORS, 2)
    shape = rng.choice(SHAPES)
    big, small = rng.uniform(20, 25), rng.uniform(8, 13)
    r1, r2 = (big, small) if rng.random() < 0.5 else (small, big)
    img, draw = _canvas()
    _shape(draw, shape, 28, rng.uniform(30, 82), r1, c1)
    _shape(draw, shape, 84, rng.uniform(30, 82), r2, c2)
    a, b = rng.sample([c1, c2], 2)
    larger = c1 if r1 > r2 else c2
    return Puzzle(
        "size",
        "geometry",
        img,
        f"Which {shape} is larger, the {a} one or the {b} one?",
        larger,
        "text",
        [a, b],
        "I compare the sizes.",
        lambda ans: f"The {ans} {shape} is larger.",
        params={"colors": [c1, c2], "radii": [round(r1, 2), round(r2, 2)], "shape": shape},
    )


def _color(rng: random.Random) -> Puzzle:
    color, shape = rng.choice(COLORS), rng.choice(SHAPES)
    img, draw = _canvas()
    r = rng.uniform(14, 22)
    _shape(draw, shape, rng.uniform(r + 6, SIZE - r - 6), rng.uniform(r + 6, SIZE - r - 6), r, color)
    return Puzzle(
        "color",
        "attribute",
        img,
        f"What colour is the {shape}?",
        color,
        "text",
        COLORS,
        f"I look at the {shape}.",
        lambda a: f"It is {a}.",
        params={"color": color, "shape": shape},
    )


def _bar_min(rng: random.Random) -> Puzzle:
    colors = rng.sample(COLORS, 3)
    heights = rng.sample(range(25, 96, 7), 3)
    return _bar_extreme("bar_min", colors, heights, min, "shortest")


def _count_color(rng: random.Random) -> Puzzle:
    target, other = rng.sample(COLORS, 2)
    n, m = rng.randint(1, 4), rng.randint(1, 3)
    img, draw = _canvas()
    pts = _spread_points(rng, n + m, 10)
    for i, (cx, cy) in enumerate(pts):
        _shape(draw, "circle", cx, cy, 10, target if i < n else other)
    return Puzzle(
        "count_color",
        "counting",
        img,
        f"How many {target} circles are there?",
        str(n),
        "integer",
        ["1", "2", "3", "4"],
        f"I count the {target} circles.",
        lambda a: f"There {'is' if a == '1' else 'are'} {a} {target} circle{'' if a == '1' else 's'}.",
        params={"n": n, "m": m, "target": target, "other": other},
    )


def _more_color(rng: random.Random) -> Puzzle:
    c1, c2 = rng.sample(COLORS, 2)
    n1 = rng.randint(1, 4)
    n2 = rng.choice([k for k in range(1, 5) if k != n1])
    img, draw = _canvas()
    pts = _spread_points(rng, n1 + n2, 10)
    colors = [c1] * n1 + [c2] * n2
    rng.shuffle(colors)
    for (cx, cy), c in zip(pts, colors):
        _shape(draw, "circle", cx, cy, 10, c)
    a, b = rng.sample([c1, c2], 2)
    more = c1 if n1 > n2 else c2
    return Puzzle(
        "more_color",
        "counting",
        img,
        f"Which colour has more circles, {a} or {b}?",
        more,
        "text",
        [a, b],
        f"I compare the {a} and {b} circles.",
        lambda ans: f"There are more {ans} circles.",
        params={"counts": {c1: n1, c2: n2}, "asked": [a, b]},
    )


def _sub(rng: random.Random) -> Puzzle:
    n = rng.randint(2, 5)
    k = rng.randint(1, n - 1)
    img, color = _count_image(rng, n, r=10)
    left = n - k
    return Puzzle(
        "sub",
        "arithmetic",
        img,
        f"If {k} circle{'' if k == 1 else 's'} {'is' if k == 1 else 'are'} taken away, how many circles are left?",
        str(left),
        "integer",
        [str(v) for v in range(1, 5)],
        f"There are {n} circles.",
        lambda a: f"{n} - {k} = {a}.",
        params={"n": n, "k": k, "color": color},
    )


def _count_two(rng: random.Random) -> Puzzle:
    n1, n2 = rng.randint(1, 4), rng.randint(1, 4)
    img1, c1 = _count_image(rng, n1)
    img2, c2 = _count_image(rng, n2)
    return Puzzle(
        "count_two",
        "counting",
        img1,
        "How many circles are there in the two images together?",
        str(n1 + n2),
        "integer",
        [str(v) for v in range(2, 9)],
        f"The first image has {n1} circle{'' if n1 == 1 else 's'}. "
        f"The second image has {n2} circle{'' if n2 == 1 else 's'}.",
        lambda a: f"{n1} + {n2} = {a}.",
        params={"n1": n1, "n2": n2, "colors": [c1, c2]},
        more_images=[img2],
    )


# -- larger answer spaces (0-20): an all-wrong group means "too hard", not "unlucky" ------
def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _count_many(rng: random.Random) -> Puzzle:
    n = rng.randint(1, 20)
    img, color = _count_image(rng, n, r=5)  # small dots: up to 20 fit
    return Puzzle(
        "count_many",
        "counting",
        img,
        "How many dots are there in the image?",
        str(n),
        "integer",
        [str(v) for v in range(1, 21)],
        "I count the dots.",
        lambda a: f"There {'is' if a == '1' else 'are'} {_plural(int(a), 'dot')}.",
        params={"n": n, "color": color},
    )


def _add_many(rng: random.Random) -> Puzzle:
    """Few dots (1-5: countable), many added (1-15): a sum over 2-20."""
    n, k = rng.randint(1, 5), rng.randint(1, 15)
    img, color = _count_image(rng, n, r=7)
    return Puzzle(
        "add_many",
        "arithmetic",
        img,
        f"If {k} more dot{'' if k == 1 else 's'} {'is' if k == 1 else 'are'} added, how many dots will there be?",
        str(n + k),
        "integer",
        [str(v) for v in range(2, 21)],
        f"There {'is' if n == 1 else 'are'} {_plural(n, 'dot')}.",
        lambda a: f"{n} + {k} = {a}.",
        params={"n": n, "k": k, "color": color},
    )


def _sub_many(rng: random.Random) -> Puzzle:
    """Few dots (1-5) and a target of 6-20: a difference over 1-19."""
    n, total = rng.randint(1, 5), rng.randint(6, 20)
    img, color = _count_image(rng, n, r=7)
    return Puzzle(
        "sub_many",
        "arithmetic",
        img,
        f"How many more dots are needed to make {total}?",
        str(total - n),
        "integer",
        [str(v) for v in range(1, 20)],
        f"There {'is' if n == 1 else 'are'} {_plural(n, 'dot')}.",
        lambda a: f"{total} - {n} = {a}.",
        params={"n": n, "total": total, "color": color},
    )


#: The value axis of ``bar_value``: 0 at the base line, 20 near the top, a grey grid line
#: every 5.
_AXIS_MAX, _AXIS_UNIT = 20, 4.8


def _bar_value(rng: random.Random) -> Puzzle:
    colors = rng.sample(COLORS, 3)
    values = [rng.randint(1, 20) for _ in colors]
    img, draw = _canvas()
    base = SIZE - 6
    for v in range(5, _AXIS_MAX + 1, 5):
        y = base - v * _AXIS_UNIT
        draw.line([(2, y), (SIZE - 2, y)], fill=(190, 190, 190), width=1)
    _bars(draw, colors, [round(v * _AXIS_UNIT) for v in values])
    asked = rng.choice(colors)
    value = values[colors.index(asked)]
    return Puzzle(
        "bar_value",
        "chart",
        img,
        f"What is the value of the {asked} bar? Grid lines are drawn every 5, from 0.",
        str(value),
        "integer",
        [str(v) for v in range(1, 21)],
        f"I read the {asked} bar against the grid lines.",
        lambda a: f"The {asked} bar reaches {a}.",
        params={"colors": colors, "values": values, "asked": asked},
    )


def _multiple_choice(base: Callable[[random.Random], Puzzle]) -> Callable[[random.Random], Puzzle]:
    """The same puzzle with four options A-D; the answer is the letter."""

    def make(rng: random.Random) -> Puzzle:
        p = base(rng)
        wrong = rng.sample([o for o in p.options if o != p.answer], 3)
        options = wrong + [p.answer]
        rng.shuffle(options)
        letter = {o: LETTERS[i] for i, o in enumerate(options)}
        inner_claim = p.claim
        question = p.question.split("?")[0] + "?"
        return Puzzle(
            p.kind + "_mc",
            "multiple_choice",
            p.image,
            question,
            letter[p.answer],
            "multiple_choice",
            list(LETTERS),
            p.context,
            lambda a: f"{inner_claim(options[LETTERS.index(a)])} That is option {a}.",
            choices=options,
            params=dict(p.params or {}, options=options),
        )

    return make


KINDS: dict[str, Callable[[random.Random], Puzzle]] = {
    "bar_max": _bar_max,
    "bar_compare": _bar_compare,
    "count": _count,
    "position": _position,
    "relation": _relation,
    "size": _size,
    "color": _color,
    "add": _add,
    "bar_max_mc": _multiple_choice(_bar_max),
    "count_mc": _multiple_choice(_count),
    "position_mc": _multiple_choice(_position),
    "bar_min": _bar_min,
    "count_color": _count_color,
    "more_color": _more_color,
    "sub": _sub,
    "count_many": _count_many,
    "add_many": _add_many,
    "sub_many": _sub_many,
    "bar_value": _bar_value,
}

#: Kinds with more than one image per question (opt-in everywhere; ``KINDS`` holds the
#: one-image kinds, what ``generate`` draws from when no kinds are named).
MULTI_IMAGE_KINDS: dict[str, Callable[[random.Random], Puzzle]] = {"count_two": _count_two}
ALL_KINDS: dict[str, Callable[[random.Random], Puzzle]] = {**KINDS, **MULTI_IMAGE_KINDS}

#: The kinds the shipped policy was warm-started on (``WarmStartConfig.kinds``): the ones
#: the tiny model learns by imitation, easy ones (``color``, ``size``) beside ones at the
#: edge of its ability. The spatial kinds (``position``, ``relation``), ``bar_compare``
#: and the ``*_mc`` variants stay near chance after 1000 supervised steps (they need
#: absolute positions, which the vision tower's rotary embedding hardly carries, or
#: copying an option letter): pass ``kinds`` to use them.
WARM_START_KINDS: tuple[str, ...] = (
    "bar_max",
    "bar_min",
    "count",
    "count_color",
    "more_color",
    "add",
    "sub",
    "size",
    "color",
)

#: The default mix (RL training and held-out evaluation), a regime like the paper's: kinds
#: the warm start nearly saturates or soon saturates under RL (``color``, ``size``), kinds
#: at its edge (``more_color``, ``count``, ``add``, ``sub``), and two kinds with answers
#: over 1-20 that it never saw (``count_many``, ``add_many``: all-wrong groups there
#: mean "too hard", not "unlucky"). The warm-start kinds that stay near chance under RL
#: (``bar_max``, ``bar_min``, ``count_color``: 2-4 answers, so mostly mixed groups of
#: lucky guesses) are left out. Chosen on the dev split (docs/toyworld.md).
DEFAULT_KINDS: tuple[str, ...] = ("color", "size", "more_color", "count", "add", "sub", "count_many", "add_many")


# -- worked solutions -----------------------------------------------------------------
def worked_solution(p: Puzzle, rng: random.Random) -> str:
    """Observation, conclusion, ``\\boxed{answer}``. With probability SELF_CHECK_RATE a
    confirming self-check precedes the box; with CORRECTION_RATE a wrong first conclusion
    is followed by "Wait, there might be a mistake." and the right one."""
    u = rng.random()
    right = p.claim(p.answer)
    box = f"\\boxed{{{p.answer}}}"
    if u < SELF_CHECK_RATE:
        trigger = rng.choice(CONFIRM_TRIGGERS)
        return f"{p.context} {right}\n\n{trigger} Yes. {right} {box}"
    if u < SELF_CHECK_RATE + CORRECTION_RATE:
        wrong = rng.choice([o for o in _answer_space(p) if o != p.answer])
        return f"{p.context} {p.claim(wrong)}\n\n{FIX_TRIGGER} Looking again, {right[0].lower()}{right[1:]} {box}"
    return f"{p.context} {right} {box}"


#: The warm start's teacher is imperfect in systematic ways, as the demonstrations real
#: instruct models imitate are: it undercounts (an integer answer of 4 or more comes out
#: one less) and confuses purple with blue and yellow with green (in two-option questions
#: it then names the other option). ``teacher_answer`` is its answer where it errs.
TEACHER_CONFUSIONS = {"purple": "blue", "yellow": "green"}


def teacher_answer(p: Puzzle) -> str | None:
    """The imperfect teacher's wrong answer for ``p``, or None where it is right."""
    if p.choices:
        return None
    if p.answer_type == "integer":
        wrong = str(int(p.answer) - 1) if int(p.answer) >= 4 else None
    elif p.answer in TEACHER_CONFUSIONS:
        wrong = [o for o in p.options if o != p.answer][0] if len(p.options) == 2 else TEACHER_CONFUSIONS[p.answer]
    else:
        wrong = None
    return wrong if wrong in p.options and wrong != p.answer else None


def _answer_space(p: Puzzle) -> list[str]:
    return list(LETTERS) if p.choices else p.options


# -- records ---------------------------------------------------------------------------
def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _owner(question: str, png: bytes) -> str:
    """The split that owns this content, from two bits of its SHA-1: bit 0 clear -> train,
    else bit 1 picks dev or test (so train owns what it owned when there was no dev split)."""
    digest = hashlib.sha1(question.encode() + b"\0" + png).digest()
    return "train" if not digest[0] & 1 else ("dev", "test")[(digest[0] >> 1) & 1]


def _item_rng(seed: int, split: str, index: int, attempt: int) -> random.Random:
    key = hashlib.sha256(f"toyworld:{seed}:{split}:{index}:{attempt}".encode()).digest()
    return random.Random(int.from_bytes(key[:8], "big"))


def make_record(kind: str, seed: int, split: str, index: int) -> Record:
    """The ``index``-th puzzle of ``kind`` for ``(seed, split)``: deterministic, and owned
    by ``split`` (candidates whose content hash belongs to the other split are redrawn)."""
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown toy puzzle kind {kind!r}; known: {', '.join(ALL_KINDS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    for attempt in range(128):
        rng = _item_rng(seed, split, index, attempt)
        p = ALL_KINDS[kind](rng)
        pngs = [_png(im) for im in (p.image, *(p.more_images or []))]
        if _owner(p.question + "|" + "|".join(p.choices or []), b"\0".join(pngs)) == split:
            break
    else:  # pragma: no cover - probability 0.75**128
        raise RuntimeError("could not draw a puzzle owned by this split")
    return Record(
        id=f"toy-{split}-{seed}-{index:06d}",
        question=p.question,
        answer=p.answer,
        images=[ImageRef(bytes=png) for png in pngs],
        choices=p.choices,
        answer_type=p.answer_type,
        category=p.kind,
        source="toyworld",
        meta=_meta(p, split, rng),
    )


def _meta(p: Puzzle, split: str, rng: random.Random) -> dict:
    meta = {"family": p.family, "split": split, "solution": worked_solution(p, rng), "params": p.params or {}}
    wrong = teacher_answer(p)
    if wrong is not None:  # the imperfect teacher's worked solution (warm start only)
        meta["teacher_solution"] = f"{p.context} {p.claim(wrong)} \\boxed{{{wrong}}}"
    return meta


def generate(n: int, seed: int = 0, split: str = "train", kinds: Sequence[str] | None = None) -> list[Record]:
    """``n`` puzzles, kinds in round-robin order (``kinds`` defaults to every one-image
    kind, ``KINDS``).
    The worked solution is ``record.meta["solution"]``."""
    if n < 0:
        raise ValueError("n must be >= 0")
    kinds = list(kinds) if kinds is not None else list(KINDS)
    if not kinds:
        raise ValueError("kinds must not be empty")
    return [make_record(kinds[i % len(kinds)], seed, split, i) for i in range(n)]


def solution_of(record: Record) -> str:
    """The worked solution of a toy record (step-by-step text ending in ``\\boxed{}``)."""
    try:
        return record.meta["solution"]
    except KeyError:
        raise ValueError(f"record {record.id!r} carries no worked solution (not a toy-world record?)") from None
