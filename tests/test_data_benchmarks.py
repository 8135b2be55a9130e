"""Benchmark readers on small fixture files in each benchmark's published layout.

Rows marked VERIFIED copy question / options / answer / type fields of real published
items (checked against public copies of the data, see docs/benchmarks.md); rows marked
SCHEMA are in the real schema with content made up for the test (no verbatim row was
at hand, or the row exercises bad input). Images are drawn locally with PIL.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rethinker.data.benchmarks import BENCHMARKS
from rethinker.data.benchmarks.common import parse_option_list
from rethinker.data.benchmarks.mathverse import parse_choices
from rethinker.data.io import DataError, reason_kind
from rethinker.prompt import SUFFIX, question_text
from rethinker.records import RecordError, load_image


def png(color=(200, 30, 30), size=(12, 8)) -> dict:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


BROKEN = {"bytes": b"\x89PNG but not really", "path": None}


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def by_id(res):
    return {r.id: r for r in res.records}


def kinds(res):
    return {s.id: reason_kind(s.reason) for s in res.skipped}


# ---------------------------------------------------------------------------- MathVista

MV_SPRING = (
    "When a spring does work on an object, we cannot find the work by simply multiplying the spring force "
    "by the object's displacement. The reason is that there is no one value for the force-it changes. "
    "However, we can split the displacement up into an infinite number of tiny parts and then approximate "
    "the force in each as being constant. Integration sums the work done in all those parts. Here we use "
    "the generic result of the integration.\r\n\r\nIn Figure, a cumin canister of mass $m=0.40 \\mathrm{~kg}$ "
    "slides across a horizontal frictionless counter with speed $v=0.50 \\mathrm{~m} / \\mathrm{s}$. It then "
    "runs into and compresses a spring of spring constant $k=750 \\mathrm{~N} / \\mathrm{m}$. When the canister "
    "is momentarily stopped by the spring, by what distance $d$ is the spring compressed?"
)
HINT_FLOAT1 = (
    "Hint: Please answer the question requiring a floating-point number with one decimal place and provide "
    "the final value, e.g., 1.2, 1.3, 1.4, at the end."
)
HINT_INT = (
    "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, "
    "at the end."
)
HINT_MC = "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end."


def mathvista_row(
    pid, question, answer, *, choices=None, unit=None, precision=None, qtype, atype, task, query, image=None
):
    return {
        "pid": pid,
        "question": question,
        "image": f"images/{pid}.jpg",
        "decoded_image": image or png(),
        "choices": choices,
        "unit": unit,
        "precision": precision,
        "answer": answer,
        "question_type": qtype,
        "answer_type": atype,
        "metadata": {
            "category": "math-targeted-vqa",
            "context": "scientific figure",
            "grade": "college",
            "img_height": 8,
            "img_width": 12,
            "language": "english",
            "skills": ["algebraic reasoning"],
            "source": "fixture",
            "split": "testmini",
            "task": task,
        },
        "query": query,
    }


def mathvista_verified_rows() -> list[dict]:
    """VERIFIED MathVista testmini pids 1, 2, 5 (pid, question, answer, types, precision,
    query hint); metadata values are placeholders."""
    return [
        mathvista_row(
            "1",
            MV_SPRING,
            "1.2",
            precision=1.0,
            qtype="free_form",
            atype="float",
            task="textbook question answering",
            query=f"{HINT_FLOAT1}\nQuestion: {MV_SPRING}",
        ),
        mathvista_row(
            "2",
            "what is the total volume of the measuring cup?",
            "1000",
            unit="g",
            qtype="free_form",
            atype="integer",
            task="visual question answering",
            query=f"{HINT_INT}\nQuestion: what is the total volume of the measuring cup? (Unit: g)",
        ),
        mathvista_row(
            "5",
            "Find $m\\angle H$",
            "97",
            choices=["97", "102", "107", "122"],
            qtype="multi_choice",
            atype="text",
            task="geometry problem solving",
            query=f"{HINT_MC}\nQuestion: Find $m\\angle H$\nChoices:\n(A) 97\n(B) 102\n(C) 107\n(D) 122",
        ),
    ]


@pytest.fixture
def mathvista_dir(tmp_path):
    rows = [
        *mathvista_verified_rows(),
        # SCHEMA: bad input
        mathvista_row(
            "900", "How many?", "", qtype="free_form", atype="integer", task="figure question answering", query=""
        ),  # test-split style item without answer
        mathvista_row(
            "901",
            "Which one?",
            "blue",
            choices=["red", "green"],
            qtype="multi_choice",
            atype="text",
            task="figure question answering",
            query="",
        ),  # answer not among the choices
        mathvista_row(
            "902",
            "How many?",
            "3",
            qtype="free_form",
            atype="integer",
            task="figure question answering",
            query="",
            image=BROKEN,
        ),  # unreadable image
    ]
    write(tmp_path / "MathVista" / "data" / "testmini-00000-of-00001-725687bf7a18d64b.parquet", rows)
    write(tmp_path / "MathVista" / "data" / "test-00000-of-00002-6b81bd7f7e2065e6.parquet", rows[3:4])
    return tmp_path / "MathVista"


def test_mathvista_records(mathvista_dir):
    res = BENCHMARKS["mathvista"](mathvista_dir)
    recs = by_id(res)
    assert sorted(recs) == ["1", "2", "5"]
    assert kinds(res) == {"900": "missing answer", "901": "bad answer", "902": "unreadable image"}
    assert "not among the choices" in next(s.reason for s in res.skipped if s.id == "901")
    spring, cup, angle = recs["1"], recs["2"], recs["5"]
    assert (spring.answer, spring.answer_type, spring.precision, spring.choices) == ("1.2", "float", 1, None)
    assert (cup.answer, cup.answer_type, cup.precision, cup.meta["unit"]) == ("1000", "integer", None, "g")
    assert (angle.answer, angle.answer_type, angle.choices) == ("A", "multiple_choice", ["97", "102", "107", "122"])
    assert angle.meta["answer_text"] == "97"
    assert angle.category == "geometry problem solving" and spring.source == "AI4Math/MathVista"
    assert load_image(angle.images[0]).size == (12, 8)


def test_mathvista_prompts(mathvista_dir):
    recs = by_id(BENCHMARKS["mathvista"](mathvista_dir))
    assert question_text(recs["5"]) == (
        f"{HINT_MC}\nQuestion: Find $m\\angle H$\nA. 97\nB. 102\nC. 107\nD. 122" + SUFFIX
    )
    assert question_text(recs["2"]) == (
        f"{HINT_INT}\nQuestion: what is the total volume of the measuring cup? (Unit: g)" + SUFFIX
    )
    assert question_text(recs["1"]) == f"{HINT_FLOAT1}\nQuestion: {MV_SPRING}" + SUFFIX


def test_mathvista_split_and_single_file(mathvista_dir):
    res = BENCHMARKS["mathvista"](mathvista_dir, split="test")
    assert res.records == [] and kinds(res) == {"900": "missing answer"}
    one = BENCHMARKS["mathvista"](next((mathvista_dir / "data").glob("testmini-*.parquet")))
    assert len(one.records) == 3


# ---------------------------------------------------------------------------- MathVerse

MVERSE_Q1 = (
    "As shown in the figure, in triangle ABC, it is known that angle A = 80.0, angle B = 60.0, point D is on AB "
    "and point E is on AC, DE parallel BC, then the size of angle CED is ()\nChoices:\nA:40°\nB:60°\nC:120°\nD:140°"
)
MVERSE_Q2 = (
    "As shown in the figure, it is known that angle A = 80.0, angle B = 60.0, DE parallel BC, then the size of "
    "angle CED is ()\nChoices:\nA:40°\nB:60°\nC:120°\nD:140°"
)
MVERSE_WO = "Please directly answer the question and provide the correct option letter, e.g., A, B, C, D.\nQuestion: "


def mathverse_row(sid, pidx, version, question, answer, qtype="multi-choice", image="png", cot=""):
    return {
        "sample_index": sid,
        "problem_index": pidx,
        "problem_version": version,
        "question": question,
        "image": png() if image == "png" else image,
        "answer": answer,
        "question_type": qtype,
        "metadata": {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry", "subfield": "Angle"},
        "query_wo": MVERSE_WO + question,
        "query_cot": cot or question,
        "question_for_eval": question,
    }


# VERIFIED MathVerse items copied from the benchmark authors' repository github.com/ZrrSkywalker/MathVerse:
# samples 3422 (Text Lite, free-form) and 3425 (Vision Only: empty question, the instruction in query_wo/query_cot)
# from output_templates/output_testmini.json (every dataset field verbatim; that copy has no question_for_eval, so
# the column is left empty here), and Text Only sample 592 from data/testmini_text_only.json. Images drawn locally.
MVERSE_META_685 = {"split": "testmini", "source": "Geo3D_collected", "subject": "Solid Geometry", "subfield": "Length"}
MVERSE_3422 = {
    "sample_index": "3422",
    "problem_index": "685",
    "problem_version": "Text Lite",
    "question": "The radius is 3 cm. Find L.\n\nGive your answer rounded down to the nearest cm.",
    "image": png(),
    "answer": "14",
    "question_type": "free-form",
    "metadata": MVERSE_META_685,
    "query_wo": (
        "Please directly answer the question and provide the final value, e.g., 1, 2.5, 300.\n"
        "Question: The radius is 3 cm. Find L.\n\nGive your answer rounded down to the nearest "
        "cm."
    ),
    "query_cot": (
        "Please first conduct reasoning, and then answer the question and provide the final "
        "value, e.g., 1, 2.5, 300, at the end.\nQuestion: The radius is 3 cm. Find L.\n\nGive "
        "your answer rounded down to the nearest cm."
    ),
    "question_for_eval": None,
}
MVERSE_VO_FF_COT = (
    "According to the question shown in the image, please first conduct reasoning, and then answer the "
    "question and provide the final value, e.g., 1, 2.5, 300, at the end."
)
MVERSE_3425 = {
    "sample_index": "3425",
    "problem_index": "685",
    "problem_version": "Vision Only",
    "question": "",
    "image": png(),
    "answer": "14",
    "question_type": "free-form",
    "metadata": MVERSE_META_685,
    "query_wo": (
        "According to the question shown in the image, please directly answer the question and "
        "provide the final value, e.g., 1, 2.5, 300."
    ),
    "query_cot": MVERSE_VO_FF_COT,
    "question_for_eval": None,
}
MVERSE_TO_592_Q = "The line passes (3,4) and (-1,-3). What is the slope of the line?\n"
MVERSE_TO_592 = {
    "sample_index": "592",
    "problem_index": "592",
    "problem_version": "Text Only",
    "question": MVERSE_TO_592_Q,
    "image": None,
    "answer": "=\\frac{7}{4}",
    "question_type": "free-form",
    "metadata": {"split": "testmini", "source": "Functions_collected", "subject": "Functions", "subfield": "Property"},
    "query_wo": (
        "Please directly answer the question and provide the final value, e.g., 1, 2.5, 300.\n"
        "Question: " + MVERSE_TO_592_Q
    ),
    "query_cot": (
        "Please first conduct reasoning, and then answer the question and provide the final "
        "value, e.g., 1, 2.5, 300, at the end.\nQuestion: " + MVERSE_TO_592_Q
    ),
    "question_for_eval": None,
}  # image "" in that JSON (no image)


@pytest.fixture
def mathverse_dir(tmp_path):
    rows = [
        mathverse_row("1", "1", "Text Dominant", MVERSE_Q1, "D"),  # VERIFIED
        mathverse_row("2", "1", "Text Lite", MVERSE_Q2, "D"),  # VERIFIED
        MVERSE_3425,  # VERIFIED (Vision Only)
        MVERSE_3422,  # VERIFIED (free-form)
        mathverse_row("7", "3", "Vision Dominant", MVERSE_Q2, "D", image=None),  # SCHEMA: image missing
        mathverse_row("8", "3", "Text Lite", MVERSE_Q2, "E"),  # SCHEMA: answer outside A-D
    ]
    write(tmp_path / "MathVerse" / "testmini.parquet", rows)
    write(tmp_path / "MathVerse" / "testmini_text_only.parquet", [MVERSE_TO_592])  # VERIFIED
    return tmp_path / "MathVerse"


def test_mathverse_records_and_versions(mathverse_dir):
    res = BENCHMARKS["mathverse"](mathverse_dir)
    recs = by_id(res)
    assert sorted(recs) == ["1", "2", "3422", "3425"]
    assert kinds(res) == {"7": "missing image", "8": "bad answer"}
    r1 = recs["1"]
    assert (r1.answer, r1.answer_type, r1.choices) == ("D", "multiple_choice", ["40°", "60°", "120°", "140°"])
    assert [recs[k].category for k in ("1", "2", "3425", "3422")] == [
        "Text Dominant",
        "Text Lite",
        "Vision Only",
        "Text Lite",
    ]
    assert r1.meta["problem_version"] == "Text Dominant" and r1.meta["subfield"] == "Angle"
    lite = recs["3422"]
    assert (lite.answer, lite.answer_type, lite.choices, lite.meta["subject"]) == (
        "14",
        "integer",
        None,
        "Solid Geometry",
    )
    assert question_text(lite) == MVERSE_3422["question"] + SUFFIX
    # the question lists its options already: the prompt keeps them as published, once
    assert question_text(r1) == MVERSE_Q1 + SUFFIX
    # a Vision Only item's question is in the image: the published instruction stands in for it
    only = recs["3425"]
    assert (only.question, only.answer, only.meta["problem_index"]) == (MVERSE_VO_FF_COT, "14", "685")
    assert question_text(only) == MVERSE_VO_FF_COT + SUFFIX
    text_only = BENCHMARKS["mathverse"](mathverse_dir, split="testmini_text_only")
    assert [(r.id, r.images, r.category) for r in text_only.records] == [("592", [], "Text Only")]
    slope = text_only.records[0]
    assert (slope.answer, slope.answer_type) == ("=\\frac{7}{4}", "expression")
    assert question_text(slope) == "The line passes (3,4) and (-1,-3). What is the slope of the line?" + SUFFIX


def test_parse_choices():
    assert parse_choices(MVERSE_Q2) == ["40°", "60°", "120°", "140°"]
    assert parse_choices("Find x.") == []
    assert parse_choices("Choices:\nA:1\nC:2") == []  # letters out of order: not an option list


# ---------------------------------------------------------------------------- MathVision

# VERIFIED MathVision items: id, question, options, answer, solution, level, subject and image path copied from the
# authors' data files in github.com/mathllm/MATH-V (data/test.jsonl: ids 1, 3, 2431; data/testmini.jsonl: id 4).
# The hub parquet adds the embedded `decoded_image`, drawn locally here.
MATHV_2431_Q = (
    "A circle with center $ O$ is tangent to the coordinate axes and to the hypotenuse of the $ 30^\\circ$-$ "
    "60^\\circ$-$ 90^\\circ$ triangle $ ABC$ as shown, where $ AB = 1$. To the nearest hundredth, what is "
    "the radius of the circle?\n<image1>"
)


def mathvision_row(rid, question, options, answer, level, subject, image="png"):
    return {
        "id": rid,
        "question": question,
        "options": options,
        "image": f"images/{rid}.jpg",
        "decoded_image": png() if image == "png" else image,
        "answer": answer,
        "solution": None,
        "level": level,
        "subject": subject,
    }


@pytest.fixture
def mathvision_dir(tmp_path):
    rows = [
        mathvision_row(
            "1", "Which number should be written in place of the question mark?\n<image1>", [], "60", 2, "arithmetic"
        ),  # VERIFIED
        mathvision_row(
            "3",
            "Which kite has the longest string?\n<image1>",
            ["A", "B", "C", "D", "E"],
            "C",
            1,
            "metric geometry - length",
        ),  # VERIFIED: options drawn in the image, letters as options
        mathvision_row("2431", MATHV_2431_Q, [], "2.37", 5, "metric geometry - length"),  # VERIFIED
        mathvision_row("9001", "Pick one.\n<image1>", ["A", "B"], "D", 2, "logic"),  # SCHEMA: letter outside options
        {
            **mathvision_row("9002", "Pick one.\n<image1>", [], "7", 2, "logic", image=None),
            "image": "images/missing.jpg",
        },  # SCHEMA: image file missing
    ]
    write(tmp_path / "MathVision" / "data" / "test-00000-of-00001-3532b8d3f1b4047a.parquet", rows)
    write(
        tmp_path / "MathVision" / "data" / "testmini-00000-of-00001-f8ff70fcb2f29b1d.parquet",
        [
            mathvision_row(
                "4", "How many different digits can you find in this picture?\n<image1>", [], "6", 1, "counting"
            )
        ],
    )  # VERIFIED (testmini)
    return tmp_path / "MathVision"


def test_mathvision(mathvision_dir):
    res = BENCHMARKS["mathvision"](mathvision_dir)
    recs = by_id(res)
    assert sorted(recs) == ["1", "2431", "3"]
    assert kinds(res) == {"9001": "bad answer", "9002": "missing image"}  # ids past the real 3,040
    one, kite, radius = recs["1"], recs["3"], recs["2431"]
    assert (one.answer, one.answer_type, one.choices, one.category) == ("60", "integer", None, "arithmetic")
    assert one.question == "Which number should be written in place of the question mark?\n<image 1>"
    assert question_text(one) == "Which number should be written in place of the question mark?" + SUFFIX
    assert (kite.answer, kite.answer_type, kite.choices) == ("C", "multiple_choice", ["A", "B", "C", "D", "E"])
    assert question_text(kite) == "Which kite has the longest string?\nA. A\nB. B\nC. C\nD. D\nE. E" + SUFFIX
    assert (radius.answer_type, radius.precision, radius.meta["level"]) == ("float", 2, 5)
    assert question_text(radius).endswith("To the nearest hundredth, what is the radius of the circle?" + SUFFIX)
    assert [r.id for r in BENCHMARKS["mathvision"](mathvision_dir, split="testmini").records] == ["4"]


# ---------------------------------------------------------------------------- MMMU / MMMU-Pro


MMMU_IMAGES = (png(),)  # the default: one image


def mmmu_row(rid, question, options, answer, *, images=MMMU_IMAGES, qtype="multiple-choice", **extra):
    row = {
        "id": rid,
        "question": question,
        "options": options,
        "explanation": "",
        **{f"image_{k}": (images[k - 1] if k <= len(images) else None) for k in range(1, 8)},
        "img_type": "['Tables']",
        "answer": answer,
        "topic_difficulty": "Easy",
        "question_type": qtype,
        "subfield": "Financial Accounting",
    }
    row.update(extra)
    return row


MMMU_ACC_Q = (
    "Each of the following situations relates to a different company. <image 1> "
    "For company B, find the missing amounts."
)


# VERIFIED: validation_Accounting_1 (question, options, answer, question_type, subfield, explanation, img_type,
# topic_difficulty) as shown in the "Sample Example" of evalscope's MMMU page (github.com/modelscope/evalscope
# docs/en/benchmarks/mmmu.md), which splits the question at `<image 1>`. Image drawn locally.
MMMU_VAL_ACC_Q = (
    "<image 1> Baxter Company has a relevant range of production between 15,000 and 30,000 units. The "
    "following cost data represents average variable costs per unit for 25,000 units of production. If "
    "30,000 units are produced, what are the per unit manufacturing overhead costs incurred?"
)
MMMU_VAL_ACC_1 = mmmu_row(
    "validation_Accounting_1",
    MMMU_VAL_ACC_Q,
    "['$6', '$7', '$8', '$9']",
    "B",
    topic_difficulty="Medium",
    subfield="Managerial Accounting",
)


@pytest.fixture
def mmmu_dir(tmp_path):
    red, green = png((255, 0, 0)), png((0, 255, 0))
    acc = [
        mmmu_row("dev_Accounting_1", MMMU_ACC_Q, "['$63,020', '$58,410', '$71,320', '$77,490']", "D"),  # VERIFIED
        # SCHEMA: two images, the second referenced from an option; an open question; bad rows
        mmmu_row(
            "dev_Accounting_2",
            "Compare <image 1> with the options.",
            "['<image 2>', 'neither']",
            "A",
            images=(red, green),
        ),
        mmmu_row("dev_Accounting_3", "Compute the ratio in <image 1>.", "[]", "0.25", qtype="open"),
        mmmu_row("dev_Accounting_4", "Which?", "['a', 'b'", "A"),  # options text is not a list literal
        mmmu_row("dev_Accounting_5", "Which?", "__import__('os').system('true')", "A"),  # never evaluated
        mmmu_row("dev_Accounting_6", "Which?", "['a', 'b']", "A", images=()),  # no image at all
        mmmu_row("dev_Accounting_7", "Which?", "[1, 2]", "A"),  # non-string choices
    ]
    write(tmp_path / "MMMU" / "Accounting" / "dev-00000-of-00001.parquet", acc)
    write(tmp_path / "MMMU" / "Accounting" / "validation-00000-of-00001.parquet", [MMMU_VAL_ACC_1])
    return tmp_path / "MMMU"


def test_mmmu(mmmu_dir):
    res = BENCHMARKS["mmmu"](mmmu_dir, split="dev")
    recs = by_id(res)
    assert sorted(recs) == ["dev_Accounting_1", "dev_Accounting_2", "dev_Accounting_3"]
    assert kinds(res) == {
        "dev_Accounting_4": "malformed row",
        "dev_Accounting_5": "malformed row",
        "dev_Accounting_6": "missing image",
        "dev_Accounting_7": "bad choices",
    }
    acc = recs["dev_Accounting_1"]
    assert (acc.answer, acc.answer_type, acc.category) == ("D", "multiple_choice", "Accounting")
    assert acc.choices == ["$63,020", "$58,410", "$71,320", "$77,490"]
    assert acc.meta["subfield"] == "Financial Accounting" and acc.meta["topic_difficulty"] == "Easy"
    assert question_text(acc) == (
        "Each of the following situations relates to a different company. For company B, "
        "find the missing amounts.\nA. $63,020\nB. $58,410\nC. $71,320\nD. $77,490" + SUFFIX
    )
    two = recs["dev_Accounting_2"]
    assert [load_image(im).getpixel((0, 0)) for im in two.images] == [(255, 0, 0), (0, 255, 0)]
    assert two.choices == ["<image 2>", "neither"]
    opened = recs["dev_Accounting_3"]
    assert (opened.answer, opened.answer_type, opened.choices) == ("0.25", "float", None)
    val = BENCHMARKS["mmmu"](mmmu_dir).records  # default split: validation
    assert [(r.id, r.answer, r.choices, r.meta["subfield"]) for r in val] == [
        ("validation_Accounting_1", "B", ["$6", "$7", "$8", "$9"], "Managerial Accounting")
    ]
    assert question_text(val[0]) == MMMU_VAL_ACC_Q.replace("<image 1> ", "") + "\nA. $6\nB. $7\nC. $8\nD. $9" + SUFFIX


def test_option_lists_are_parsed_not_evaluated():
    assert parse_option_list("['$63,020', '$58,410']") == ["$63,020", "$58,410"]
    assert parse_option_list("[]") == [] and parse_option_list(["x"]) == ["x"]
    for bad in ("__import__('os').system('true')", "{'a': 1}", "'a' * 10**9", "[" * 5000):
        with pytest.raises(RecordError):
            parse_option_list(bad)


TEN = [f"{v} units" for v in (10, 12, 14, 16, 18, 20, 22, 24, 26, 28)]

# VERIFIED: MMMU-Pro `standard (4 options)` item test_Accounting_42 (id, question, options, answer, explanation,
# img_type, topic_difficulty, subject) as shown in the "Sample Example" of evalscope's MMMU-Pro page
# (github.com/modelscope/evalscope docs/en/benchmarks/mmmu_pro.md, https://evalscope.readthedocs.io/en/v1.6.0/
# benchmarks/mmmu_pro.html), which loads that config; the page splits the question at `<image 1>`. This item has
# three options in that config. Image drawn locally.
PRO_ACC_Q = (
    "Prices of zero-coupon bonds reveal the following pattern of forward rates: <image 1> In addition to the "
    "zero-coupon bond, investors also may purchase a 3-year bond making annual payments of $60 with par value "
    "$1,000. Under the expectations hypothesis, what is the expected realized compound yield of the coupon "
    "bond?"
)
PRO_ACC_42 = {
    "id": "test_Accounting_42",
    "question": PRO_ACC_Q,
    "options": "['6.66%', '6.79%', '6.91%']",
    "explanation": "?",
    "image_1": png(),
    **{f"image_{k}": None for k in range(2, 8)},
    "img_type": "['Tables']",
    "answer": "A",
    "topic_difficulty": "Hard",
    "subject": "Accounting",
}


# VERIFIED: the `standard (10 options)` items test_History_1 and test_Accounting_42 (id, question, options, explanation,
# img_type, answer, topic_difficulty, subject) as the MMMU authors publish them with their GPT-4o outputs:
# github.com/MMMU-Benchmark/MMMU mmmu-pro/output/gpt-4o_standard(10 options)_direct.jsonl (dataset columns
# verbatim; the response columns dropped). The `vision` item test_History_1 (options, answer, subject) is in
# mmmu-pro/output/gpt-4o_vision_direct.jsonl. test_Accounting_42 has nine options in this config.
PRO_HISTORY_Q = "Which of the following best explains the overall trend shown in the <image 1>?"
PRO_HISTORY_OPTIONS = (
    "['Political instability leading to population decline', 'The spread of pathogens across the "
    "Silk Road', 'Development of new trade routes', 'Climate change affecting the Silk Road', "
    "'Migrations to areas of Central Asia for resettlement', 'Technological advancements in "
    "transportation', 'Invasions by Mongol tribes', 'Large-scale famine due to crop failures', "
    "'Economic prosperity and population growth', 'Rise of religious conflicts along the Silk Road']"
)
PRO10_HISTORY_1 = {
    "id": "test_History_1",
    "question": PRO_HISTORY_Q,
    "options": PRO_HISTORY_OPTIONS,
    "explanation": "?",
    "image_1": png(),
    **{f"image_{k}": None for k in range(2, 8)},
    "img_type": "['Diagrams']",
    "answer": "B",
    "topic_difficulty": "Medium",
    "subject": "History",
}
PRO10_ACC_42 = {
    **PRO_ACC_42,
    "options": "['6.91%', '7.15%', '6.56%', '6.98%', '7.02%', '6.45%', '6.66%', '6.79%', '6.85%']",
    "answer": "G",
}


@pytest.fixture
def mmmu_pro_dir(tmp_path):
    root = tmp_path / "MMMU_Pro"
    bad = mmmu_row("test_Physics_2", "What is the length in <image 1>?", repr(TEN), "K", subject="Physics")
    del bad["question_type"]  # SCHEMA: answer letter outside the ten options
    write(root / "standard (10 options)" / "test-00000-of-00001.parquet", [PRO10_HISTORY_1, PRO10_ACC_42, bad])
    write(root / "standard (4 options)" / "test-00000-of-00001.parquet", [PRO_ACC_42])
    vision = [
        {
            "id": "test_History_1",
            "image": png(),
            "options": PRO_HISTORY_OPTIONS,
            "answer": "B",
            "subject": "History",
        },  # VERIFIED (screenshot drawn locally)
        {"id": "test_Physics_3", "image": None, "options": repr(TEN), "answer": "C", "subject": "Physics"},
    ]  # SCHEMA: screenshot missing
    write(root / "vision" / "test-00000-of-00001.parquet", vision)
    return root


def test_mmmu_pro_standard_and_vision(mmmu_pro_dir):
    std = BENCHMARKS["mmmu_pro_standard"](mmmu_pro_dir)
    assert [r.id for r in std.records] == ["test_History_1", "test_Accounting_42"]
    assert kinds(std) == {"test_Physics_2": "bad answer"}
    r, acc = std.records
    assert (len(r.choices), r.answer, r.answer_type, r.category, r.source) == (
        10,
        "B",
        "multiple_choice",
        "History",
        "MMMU/MMMU_Pro",
    )
    assert r.choices[1] == "The spread of pathogens across the Silk Road"
    assert (r.meta["topic_difficulty"], r.meta["img_type"]) == ("Medium", "['Diagrams']")
    assert question_text(r) == (
        "Which of the following best explains the overall trend shown in the?\n"
        "A. Political instability leading to population decline\n"
        "B. The spread of pathogens across the Silk Road\n"
        "C. Development of new trade routes\n"
        "D. Climate change affecting the Silk Road\n"
        "E. Migrations to areas of Central Asia for resettlement\n"
        "F. Technological advancements in transportation\n"
        "G. Invasions by Mongol tribes\n"
        "H. Large-scale famine due to crop failures\n"
        "I. Economic prosperity and population growth\n"
        "J. Rise of religious conflicts along the Silk Road" + SUFFIX
    )
    # the same item keeps its correct option text across configs: G of nine here, A of three in the 4-options config
    assert (len(acc.choices), acc.answer, acc.choices[6]) == (9, "G", "6.66%")
    vis = BENCHMARKS["mmmu_pro_vision"](mmmu_pro_dir / "vision")
    assert [v.id for v in vis.records] == ["test_History_1"] and kinds(vis) == {"test_Physics_3": "missing image"}
    v = vis.records[0]
    assert (v.choices, v.answer, v.meta["n_options"], v.category) == (None, "B", 10, "History")
    assert question_text(v) == (
        "Answer the multiple-choice question shown in the image with the letter of the correct option." + SUFFIX
    )


def test_mmmu_pro_published_item_from_a_config_folder(mmmu_pro_dir):
    # the reader takes a config folder too; the 4-options config holds the published item
    res = BENCHMARKS["mmmu_pro_standard"](mmmu_pro_dir / "standard (4 options)")
    assert res.skipped == [] and [r.id for r in res.records] == ["test_Accounting_42"]
    acc = res.records[0]
    assert (acc.answer, acc.answer_type, acc.choices) == ("A", "multiple_choice", ["6.66%", "6.79%", "6.91%"])
    assert (acc.category, acc.meta["topic_difficulty"], acc.meta["img_type"]) == ("Accounting", "Hard", "['Tables']")
    assert question_text(acc) == (PRO_ACC_Q.replace(" <image 1>", "") + "\nA. 6.66%\nB. 6.79%\nC. 6.91%" + SUFFIX)
    assert len(acc.images) == 1


# ---------------------------------------------------------------------------- EMMA


def emma_row(
    pid,
    subject,
    question,
    options,
    answer,
    *,
    images=1,
    context=None,
    category="Pattern Inference",
    source="Newly annotated",
    task=None,
):
    return {
        "pid": pid,
        "question": question,
        "options": options,
        "answer": answer,
        **{f"image_{k}": (png((20 * k, 0, 0)) if k <= images else None) for k in range(1, 6)},
        "solution": None,
        "subject": subject,
        "task": task,
        "category": category,
        "source": source,
        "type": "Multiple Choice" if options else "Open-ended",
        "context": context,
    }


def emma_published(item, images):
    """A published EMMA item (all text columns verbatim) with `images` locally drawn images."""
    return {**item, **{f"image_{k}": (png((20 * k, 0, 0)) if k <= images else None) for k in range(1, 6)}}


# VERIFIED EMMA items: every text column (pid, question, options, answer, solution, subject, task, category,
# source, type, context) copied verbatim from the benchmark authors' published outputs in
# github.com/hychaochao/EMMA (commit 838b6de): results/random_choice.json (Math_1, phy_30, chem_107, coding_524)
# and results/gemini-2.0-flash-thinking-exp-1219_Math_CoT.json (Math_824, an EMMA-mini open-ended item).
# Those files store each item's dataset fields plus the model's response (dropped here). Only images are drawn.
EMMA_MATH_1 = {
    "pid": "Math_1",
    "question": "Which of the figures shown bellow cannot be cut out of the figure illustrated nearby?\n<image_1>",
    "options": ["A", "B", "C", "D", "E"],
    "answer": "E",
    "solution": None,
    "subject": "Math",
    "task": "",
    "category": "2D Transformation",
    "source": "MathVision",
    "type": "Multiple Choice",
    "context": "",
}
EMMA_MATH_824 = {
    "pid": "Math_824",
    "question": "<image_1>\nWhich number is missing?",
    "options": None,
    "answer": "15",
    "solution": "",
    "subject": "Math",
    "task": "",
    "category": "Pattern Inference",
    "source": "MathVista",
    "type": "Open-ended",
    "context": "",
}
EMMA_PHY_30 = {
    "pid": "phy_30",
    "question": (
        "A small toy car rolls down three ramps with the same height and horizontal length, but"
        " different shapes, starting from rest. The car stays in contact with the ramp at all t"
        "imes and no energy is lost. Order the ramps from the fastest to slowest time it takes "
        "for the toy car to drop the full $1 \\mathrm{~m}$. For example, if ramp 1 is the faste"
        "st and ramp 3 is the slowest, then enter 123 as your answer choice.\n"
        "\nFigure 1\n\n<image_1>\n\nFigure 2\n\n<image_2>\n"
        "\nFigure 3\n\n<image_3>"
    ),
    "options": ["231", "123", "213", "321"],
    "answer": "C",
    "solution": (
        "['One can solve this by finding the time it takes for each ramp. For ramp 1:\\n$$\\n\\"
        "\\begin{aligned}\\n\\\\sqrt{2} & =\\\\frac{1}{2} g \\\\sin \\\\left(45^{\\\\circ}\\\\r"
        "ight) t^{2} \\\\\\\\\\n\\\\Longrightarrow t & =0.639 \\\\mathrm{~s}\\n\\\\end{aligned}"
        "\\n$$\\n\\nFor ramps 2, let the length of the dashed region be $x$. Then:\\n\\n$$\\nx+"
        "x / \\\\tan \\\\left(30^{\\\\circ}\\\\right)=1 \\\\Longrightarrow x=0.366 \\\\mathrm{~"
        "m}\\n\\\\tag{1}\\n$$\\n\\nDue to symmetry, both the steep and shallow regions of both "
        "ramps 2 and 3 have a length of $x / \\\\cos \\\\left(60^{\\\\circ}\\\\right)=0.732 \\\\"
        "mathrm{~m}$. This results in a time for ramp 2 as:\\n\\n$$\\n\\\\begin{aligned}\\n& 0."
        "732=\\\\frac{1}{2} g \\\\sin \\\\left(60^{\\\\circ}\\\\right) t_{1}^{2} \\\\Longrighta"
        "rrow t_{1}=0.415 \\\\mathrm{~s} \\\\\\\\\\n& 0.732=\\\\sqrt{2 g(1-x)} t_{2}+\\\\frac{1"
        "}{2} g \\\\sin \\\\left(30^{\\\\circ}\\\\right) t_{2}^{2} \\\\Longrightarrow t_{2}=0.1"
        "84 \\\\mathrm{~s}\\n\\\\end{aligned}\\n$$\\n\\nfor a total time of $t_{1}+t_{2}=0.599 "
        "\\\\mathrm{~s}$. For ramp 3 ,\\n\\n$$\\n\\\\begin{aligned}\\n& 0.732=\\\\frac{1}{2} g "
        "\\\\sin \\\\left(30^{\\\\circ}\\\\right) t_{1}^{2} \\\\Longrightarrow t_{1}=0.546 \\\\"
        "mathrm{~s} \\\\\\\\\\n& 0.732=\\\\sqrt{2 g(1-x)} t_{2}+\\\\frac{1}{2} g \\\\sin \\\\le"
        "ft(60^{\\\\circ}\\\\right) t_{2}^{2} \\\\Longrightarrow t_{2}=0.206 \\\\mathrm{~s}\\n\\"
        "\\end{aligned}\\n$$\\n\\nwhich gives a total time of $t_{1}+t_{2}=0.752 \\\\mathrm{~s}"
        "$. From fastest to slowest, the answer becomes 213 . Note that this answer is easily g"
        "uessable via intuition.']"
    ),
    "subject": "Physics",
    "task": "",
    "category": "Multi-hop Visual Reasoning",
    "source": "OlympiadBench",
    "type": "Multiple Choice",
    "context": (
        "- Proton mass, $m_{p}=1.67 \\cdot 10^{-27} \\mathrm{~kg}$\n"
        "- Neutron mass, $m_{n}=1.67 \\cdot 10^{-27} \\mathrm{~kg}$\n"
        "- Electron mass, $m_{e}=9.11 \\cdot 10^{-31} \\mathrm{~kg}$\n"
        "- Avogadro's constant, $N_{0}=6.02 \\cdot 10^{23} \\mathrm{~mol}^{-1}$\n"
        "- Universal gas constant, $R=8.31 \\mathrm{~J} /(\\mathrm{mol} \\cdot \\mathrm{K})$\n"
        "- Boltzmann's constant, $k_{B}=1.38 \\cdot 10^{-23} \\mathrm{~J} / \\mathrm{K}$\n"
        "- Electron charge magnitude, $e=1.60 \\cdot 10^{-19} \\mathrm{C}$\n"
        "- 1 electron volt, $1 \\mathrm{eV}=1.60 \\cdot 10^{-19} \\mathrm{~J}$\n"
        "- Speed of light, $c=3.00 \\cdot 10^{8} \\mathrm{~m} / \\mathrm{s}$\n"
        "- Universal Gravitational constant,\n\n$$\nG=6.67 \\cdot 10^{-11}\\left(\\mathrm{~N} \\"
        "cdot \\mathrm{m}^{2}\\right) / \\mathrm{kg}^{2}\n"
        "$$\n\n- Solar Mass\n\n$$\nM_{\\odot}=1.988 \\cdot 10^{30} \\mathrm{~kg}\n"
        "$$\n\n- Acceleration due to gravity, $g=9.8 \\mathrm{~m} / \\mathrm{s}^{2}$\n"
        "- 1 unified atomic mass unit,\n\n$$\n1 \\mathrm{u}=1.66 \\cdot 10^{-27} \\mathrm{~kg}="
        "931 \\mathrm{MeV} / \\mathrm{c}^{2}\n$$\n\n- Planck's constant,\n"
        "\n$$\nh=6.63 \\cdot 10^{-34} \\mathrm{~J} \\cdot \\mathrm{s}=4.41 \\cdot 10^{-15} \\ma"
        "thrm{eV} \\cdot \\mathrm{s}\n$$\n\n- Permittivity of free space,\n"
        "\n$$\n\\epsilon_{0}=8.85 \\cdot 10^{-12} \\mathrm{C}^{2} /\\left(\\mathrm{N} \\cdot \\"
        "mathrm{m}^{2}\\right)\n$$\n\n- Coulomb's law constant,\n"
        "\n$$\nk=\\frac{1}{4 \\pi \\epsilon_{0}}=8.99 \\cdot 10^{9}\\left(\\mathrm{~N} \\cdot \\"
        "mathrm{m}^{2}\\right) / \\mathrm{C}^{2}\n$$\n"
        "\n- Permeability of free space,\n\n$$\n\\mu_{0}=4 \\pi \\cdot 10^{-7} \\mathrm{~T} \\c"
        "dot \\mathrm{m} / \\mathrm{A}\n$$\n\n- Magnetic constant,\n"
        "\n$$\n\\frac{\\mu_{0}}{4 \\pi}=1 \\cdot 10^{-7}(\\mathrm{~T} \\cdot \\mathrm{m}) / \\m"
        "athrm{A}\n$$\n\n- 1 atmospheric pressure,\n\n$$\n"
        "1 \\mathrm{~atm}=1.01 \\cdot 10^{5} \\mathrm{~N} / \\mathrm{m}^{2}=1.01 \\cdot 10^{5} "
        "\\mathrm{~Pa}\n$$\n\n- Wien's displacement constant, $b=2.9$. $10^{-3} \\mathrm{~m} \\"
        "cdot \\mathrm{K}$\n- Stefan-Boltzmann constant,\n"
        "\n$$\n\\sigma=5.67 \\cdot 10^{-8} \\mathrm{~W} / \\mathrm{m}^{2} / \\mathrm{K}^{4}\n"
        "$$"
    ),
}
EMMA_CHEM_107 = {
    "pid": "chem_107",
    "question": "The structure of the intermediate I is <image_1>",
    "options": ["A", "B", "C", "D"],
    "answer": "B",
    "solution": "",
    "subject": "Chemistry",
    "task": "",
    "category": "Structure Recognition",
    "source": "EXAMS-V",
    "type": "Multiple choice",
    "context": "",
}
EMMA_CODING_524 = {
    "pid": "coding_524",
    "question": (
        "<image_1>\n<image_2>\n\nOur goal is to reproduce the visualization in the first image "
        "shown. The code snippet below currently does not accurately generate the target visual"
        "ization. It instead generates the visualization in the second image.\n"
        "\n1\timport matplotlib.pyplot as plt\n2\timport numpy as np\n"
        "3\tfig, ax = plt.subplots()\n4\tax.set_xlim(0, 10)\n"
        "5\tax.set_ylim(0, 10)\n6\tax.set_xticks(np.arange(0, 11, 1))\n"
        '7\tax.set_yticks(np.arange(0, 11, 1))\n8\tax.grid(True, color="blue", linewidth=2)\n'
        "9\tmain_diag = np.linspace(0, 10, 100)\n10\tax.plot(main_diag, main_diag, color='light"
        "gray', zorder=1)\n11\tax.fill_betweenx(main_diag, main_diag - 1, main_diag + 1, color="
        "'lightblue', alpha=0.5, zorder=0)\n12\tsolution_x = np.linspace(0, 10, 100)\n"
        "13\tsolution_y = main_diag + 0.5 * np.sin(2 * np.pi * solution_x / 3)\n"
        "14\tax.plot(solution_x, solution_y, color='red', linewidth=2, label='Solution')\n"
        "15\tax.set_xlabel('Query', fontsize=12)\n16\tax.set_ylabel('Reference', fontsize=12)\n"
        "17\tax.text(5, 7, 'Main diagonal', fontsize=10, rotation=45, color='gray')\n"
        "18\tax.text(7.5, 5, 'Solution Space', fontsize=10, rotation=0, color='black')\n"
        "19\tax.text(8, 3, 'Solution', fontsize=10, rotation=0, color='red')\n"
        "20\tplt.show()\n\nWe are using Python version 3.11.0, matplotlib version 3.6.3, and se"
        "aborn version 0.12.2 (if applicable). What change should we apply to the original code"
        " in order to generate the target visualization?"
    ),
    "options": [
        (
            "Replace lines 6-19 with:\nmain_diag = np.linspace(0, 10, 100)\n"
            "solution_x = np.linspace(0, 10, 100)\nsolution_y = main_diag + 0.7 * np.sin(2 * np.pi "
            "* solution_x / 2.8)\nax.plot(solution_x, solution_y, color='red', linewidth=3, label='"
            "Solution')\nmajor_ticks = np.arange(0, 11, 2)\n"
            "ax.set_xticks(major_ticks)\nax.set_yticks(major_ticks)\n"
            "ax.tick_params(axis='both', which='both', length=0)\n"
            "ax.vlines(major_ticks, ymin=0, ymax=10, colors='red', linewidth=1, zorder=0)\n"
            "ax.hlines(major_ticks, xmin=0, xmax=10, colors='red', linewidth=1, zorder=0)\n"
            "minor_ticks = np.arange(2, 10, 1)\nax.vlines(minor_ticks, ymin=2, ymax=9, colors='blue"
            "', linewidth=1, zorder=0)\nax.hlines(minor_ticks, xmin=2, xmax=9, colors='blue', linew"
            "idth=1, zorder=0)\nmain_diag = np.linspace(0, 10, 100)\n"
            "ax.plot(main_diag, main_diag, color='lightgray', linewidth=2, zorder=1)\n"
            "ax.fill_betweenx(main_diag, main_diag - 2, main_diag + 2, color='lightblue', alpha=0.9"
            ", zorder=-1)\nax.set_xlabel('Query', fontsize=12)\n"
            "ax.set_ylabel('Reference', fontsize=12)\nax.text(4, 6, 'Main diagonal', fontsize=10, r"
            "otation=45, color='gray')\nax.text(7, 3.5, 'Solution Space', fontsize=10, rotation=0, "
            "color='black')\nax.text(8.5, 1.5, 'Solution', fontsize=10, rotation=0, color='red')"
        ),
        (
            "Replace lines 6-19 with:\nax.set_xticks(np.arange(0, 11, 2))\n"
            "ax.set_yticks(np.arange(0, 11, 2))\nax.grid(True, which='major', color='blue', linewid"
            "th=2)\nax.set_xticks(np.arange(2, 9, 1))\nax.set_yticks(np.arange(2, 9, 1))\n"
            "ax.grid(True, which='minor', color='red', linewidth=2)\n"
            "main_diag = np.linspace(0, 10, 100)\nax.plot(main_diag, main_diag, color='lightgray', "
            "linewidth=2, zorder=1)\nax.fill_betweenx(main_diag, main_diag - 2, main_diag + 2, colo"
            "r='lightblue', alpha=0.9, zorder=0)\nsolution_x = np.linspace(0, 10, 100)\n"
            "solution_y = main_diag + 0.7 * np.sin(2 * np.pi * solution_x / 2.8)\n"
            "ax.plot(solution_x, solution_y, color='red', linewidth=3, label='Solution')\n"
            "ax.set_xlabel('Query', fontsize=12)\nax.set_ylabel('Reference', fontsize=12)\n"
            "ax.text(4, 6, 'Main diagonal', fontsize=10, rotation=45, color='gray')\n"
            "ax.text(7, 3.5, 'Solution Space', fontsize=10, rotation=0, color='black')\n"
            "ax.text(8.5, 1.5, 'Solution', fontsize=10, rotation=0, color='red')"
        ),
        (
            "Replace lines 6-19 with:\nmain_diag = np.linspace(0, 10, 100)\n"
            "solution_x = np.linspace(0, 10, 100)\nsolution_y = main_diag + 0.7 * np.sin(2 * np.pi "
            "* solution_x / 2.8)\nax.plot(solution_x, solution_y, color='red', linewidth=3, label='"
            "Solution')\nmajor_ticks = np.arange(0, 11, 2)\n"
            "ax.set_xticks(major_ticks)\nax.set_yticks(major_ticks)\n"
            "ax.tick_params(axis='both', which='both', length=0)\n"
            "ax.vlines(major_ticks, ymin=0, ymax=10, colors='red', linewidth=2, zorder=0)\n"
            "ax.hlines(major_ticks, xmin=0, xmax=10, colors='red', linewidth=2, zorder=0)\n"
            "minor_ticks = np.arange(2, 10, 1)\nax.vlines(minor_ticks, ymin=2, ymax=9, colors='blue"
            "', linewidth=2, zorder=0)\nax.hlines(minor_ticks, xmin=2, xmax=9, colors='blue', linew"
            "idth=2, zorder=0)\nmain_diag = np.linspace(0, 10, 100)\n"
            "ax.plot(main_diag, main_diag, color='lightgray', linewidth=2, zorder=1)\n"
            "ax.fill_betweenx(main_diag, main_diag - 2, main_diag + 2, color='lightblue', alpha=0.9"
            ", zorder=0)\nax.set_xlabel('Query', fontsize=12)\n"
            "ax.set_ylabel('Reference', fontsize=12)\nax.text(4, 6, 'Main diagonal', fontsize=10, r"
            "otation=45, color='gray')\nax.text(7, 3.5, 'Solution Space', fontsize=10, rotation=0, "
            "color='black')\nax.text(8.5, 1.5, 'Solution', fontsize=10, rotation=0, color='red')"
        ),
        (
            "Replace lines 6-19 with:\nax.set_xticks(np.arange(0, 11, 2))\n"
            "ax.set_yticks(np.arange(0, 11, 2))\nax.grid(True, which='major', color='red', linewidt"
            "h=2)\nax.set_xticks(np.arange(2, 9, 1))\nax.set_yticks(np.arange(2, 9, 1))\n"
            "ax.grid(True, which='minor', color='blue', linewidth=2)\n"
            "main_diag = np.linspace(0, 10, 100)\nax.plot(main_diag, main_diag, color='lightgray', "
            "linewidth=2, zorder=1)\nax.fill_betweenx(main_diag, main_diag - 2, main_diag + 2, colo"
            "r='lightblue', alpha=0.9, zorder=0)\nsolution_x = np.linspace(0, 10, 100)\n"
            "solution_y = main_diag + 0.7 * np.sin(2 * np.pi * solution_x / 2.8)\n"
            "ax.plot(solution_x, solution_y, color='red', linewidth=3, label='Solution')\n"
            "ax.set_xlabel('Query', fontsize=12)\nax.set_ylabel('Reference', fontsize=12)\n"
            "ax.text(4, 6, 'Main diagonal', fontsize=10, rotation=45, color='gray')\n"
            "ax.text(7, 3.5, 'Solution Space', fontsize=10, rotation=0, color='black')\n"
            "ax.text(8.5, 1.5, 'Solution', fontsize=10, rotation=0, color='red')"
        ),
    ],
    "answer": "D",
    "solution": "",
    "subject": "Coding",
    "task": "Modify With Image",
    "category": "Gridline;Color & Texture",
    "source": "new_annotated",
    "type": "Multiple Choice",
    "context": "",
}


def image_n(text):
    return re.sub(r"<image_(\d+)>", r"<image \1>", text)


@pytest.fixture
def emma_dir(tmp_path):
    root = tmp_path / "EMMA"
    write(
        root / "Math" / "test-00000-of-00001.parquet",
        [
            emma_published(EMMA_MATH_1, 1),  # VERIFIED
            emma_published(EMMA_MATH_824, 1),  # VERIFIED (open-ended)
            emma_row(
                "math_3", "Math", "Which one?\n<image_1>", ["A", "B"], "", category="Pattern Inference"
            ),  # SCHEMA: no answer
        ],
    )
    write(root / "Physics" / "test-00000-of-00001.parquet", [emma_published(EMMA_PHY_30, 3)])  # VERIFIED
    write(root / "Chemistry" / "test-00000-of-00001.parquet", [emma_published(EMMA_CHEM_107, 1)])  # VERIFIED
    write(
        root / "Coding" / "test-00000-of-00001.parquet",
        [
            emma_published(EMMA_CODING_524, 2),  # VERIFIED
            emma_row(
                "coding_1",
                "Coding",
                "Which code draws <image_1>?",
                ["a", "b", "c", "d"],
                "A",
                images=0,
                category="Legend",
            ),  # SCHEMA: image missing
        ],
    )
    return root


def test_emma(emma_dir):
    res = BENCHMARKS["emma"](emma_dir)
    recs = by_id(res)
    assert sorted(recs) == ["Math_1", "Math_824", "chem_107", "coding_524", "phy_30"]
    assert kinds(res) == {"math_3": "missing answer", "coding_1": "missing image"}
    assert {r.category for r in recs.values()} == {"Math", "Physics", "Chemistry", "Coding"}
    phys = recs["phy_30"]
    assert (phys.answer, phys.answer_type, phys.choices) == ("C", "multiple_choice", ["231", "123", "213", "321"])
    assert len(phys.images) == 3
    # context first, then the question, with <image_N> written <image N>
    assert phys.question == EMMA_PHY_30["context"] + "\n" + image_n(EMMA_PHY_30["question"])
    assert "<image 3>" in phys.question and "<image_3>" not in phys.question
    text = question_text(phys)
    assert text.startswith("- Proton mass, $m_{p}=1.67 \\cdot 10^{-27} \\mathrm{~kg}$\n")
    assert text.endswith("Figure 2\n\n\n\nFigure 3\nA. 231\nB. 123\nC. 213\nD. 321" + SUFFIX)
    assert phys.meta["category"] == "Multi-hop Visual Reasoning" and phys.meta["source"] == "OlympiadBench"
    plot = recs["coding_524"]
    assert plot.question.startswith("<image 1>\n<image 2>\n\nOur goal") and len(plot.images) == 2
    assert question_text(plot).startswith("Our goal is to reproduce the visualization in the first image shown.")
    assert (plot.answer, len(plot.choices), plot.meta["task"]) == ("D", 4, "Modify With Image")
    assert plot.choices[3].startswith("Replace lines 6-19 with:\nax.set_xticks(np.arange(0, 11, 2))")
    assert question_text(plot).endswith("\nD. " + EMMA_CODING_524["options"][3] + SUFFIX)
    shape = recs["Math_1"]
    assert (shape.answer, shape.choices, shape.meta["source"]) == ("E", ["A", "B", "C", "D", "E"], "MathVision")
    assert question_text(shape) == (
        "Which of the figures shown bellow cannot be cut out of the figure illustrated "
        "nearby?\nA. A\nB. B\nC. C\nD. D\nE. E" + SUFFIX
    )
    missing = recs["Math_824"]
    assert (missing.answer, missing.answer_type, missing.choices) == ("15", "integer", None)
    assert question_text(missing) == "Which number is missing?" + SUFFIX
    chem = recs["chem_107"]
    assert (chem.answer, chem.choices, chem.meta["type"]) == ("B", ["A", "B", "C", "D"], "Multiple choice")
    assert question_text(chem) == "The structure of the intermediate I is\nA. A\nB. B\nC. C\nD. D" + SUFFIX
    only_math = BENCHMARKS["emma"](emma_dir / "Math")
    assert sorted(r.id for r in only_math.records) == ["Math_1", "Math_824"]


# ---------------------------------------------------------------------------- MEGA-Bench

# Task-level fields copied from MEGA-Bench's task_examples READMEs (github.com/TIGER-AI-Lab/MEGA-Bench,
# task_examples/<taxonomy>/<task_name>/README.md): task description, 1-shot example text, metric_info, taxonomy path,
# application, input / output format, example image file name. The example image is written as <image> where the
# README shows it. Media paths use the published layout ./data/<taxonomy>/<task_name>/<file> (as in MEGA-Bench's
# megabench/results/SI_results/Grok-2-vision-1212/data_with_scores_open.json); task_name is the folder name.
EXAMPLE_TAIL = (
    "Answer the new question below. The last part of your response should be of the following format: "
    '"Answer: <YOUR ANSWER>" (without angle brackets) where YOUR ANSWER is your answer, following the '
    "same task logic and output format of the demonstration example(s). For your answer, do not output "
    "additional contents that violate the specified format. Think step by step before answering."
)


def mega_example(answer: str) -> str:
    return (
        "Demonstration example(s) of the task:\nExample 1:\n<image>\nExample Response:\n"
        "[PLEASE OUTPUT YOUR REASONING]\nAnswer: " + answer + "\n" + EXAMPLE_TAIL
    )


MAXFLOW_DESC = (
    "You are given a weighted directed graph and two query nodes. (one source node in red and one sink node "
    "in blue). The source node is the\nnode where the flow starts and the sink node is the node where the "
    "flow ends.\nYOUR TASK is to solve the maxflow problem given the weighted directed graph. Definition of "
    "Maxflow problem:\nIn the max flow problem, we have a directed graph with a source node s and a sink "
    "node t, and each edge has a capacity (integer\nvalued, colored in green) that represents the maximum "
    "amount of flow that can be sent through it.\nThe goal is to find the maximum amount of flow that can "
    "be sent from s to t, while respecting the capacity constraints on the\nedges.\nPlease compute the "
    "maximum flow from the red source node to the blue sink node."
)
MAXFLOW_DIR = "./data/Mathematics/Graph_Theory/graph_maxflow/"
MAXFLOW = {
    "task_name": "graph_maxflow",
    "task_description": MAXFLOW_DESC,
    "example_text": mega_example("11"),
    "example_media": f"['{MAXFLOW_DIR}maxflow_1.png']",
    "taxonomy_tree_path": "Mathematics;Graph_Theory",
    "application": "Mathematics",
    "input_format": "Diagrams and Data Visualizations",
    "output_format": "numerical_data",
    "field": "answer",
}

PLATE_DESC = "Please extract the license plate name from the image, ignore the punctuations."
PLATE_DIR = "./data/Perception/Visual_Recognition/license_plate_recognition/"
PLATE = {
    "task_name": "license_plate_recognition",
    "task_description": PLATE_DESC,
    "example_text": mega_example("渝A999U9"),
    "example_media": f"['{PLATE_DIR}0.png']",
    "taxonomy_tree_path": "Perception;Visual_Recognition",
    "application": "Perception",
    "input_format": "Photographs",
    "output_format": "exact_text",
    "field": "Answer",
}


def mega_row(rid, task, answer, metric, *, query_media=None, output_format=None, field=None):
    field = field or task["field"]
    return {
        "id": rid,
        "task_name": task["task_name"],
        "task_description": task["task_description"],
        "global_media": "[]",
        "example_text": task["example_text"],
        "example_media": task["example_media"],
        "query_text": "<image>",
        "query_media": query_media,
        "answer": answer,
        "metric_info": (
            "{'field_score_function': {'" + field + "': '" + metric + "'}, 'aggregation': "
            "{'function': 'mean', 'field_weights': {'" + field + "': 1}}, "
            "'response_parse_function': 'answer_string'}"
        ),
        "eval_context": "{}",
        "taxonomy_tree_path": task["taxonomy_tree_path"],
        "application": task["application"],
        "input_format": task["input_format"],
        "output_format": output_format or task["output_format"],
    }


@pytest.fixture
def megabench_dir(tmp_path):
    root = tmp_path / "MEGA-Bench"
    for folder, names in ((MAXFLOW_DIR, ("maxflow_1.png", "maxflow_2.png")), (PLATE_DIR, ("0.png", "query.png"))):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.new("RGB", (16, 16), (0, 0, 200)).save(root / folder / name)
    maxflow_query = f"['{MAXFLOW_DIR}maxflow_2.png']"
    rows = [
        # VERIFIED query: the license_plate_recognition query shown with its correct answer (and the query image) in
        # MEGA-Bench's behavior-inspection figure (project page tiger-ai-lab.github.io/MEGA-Bench, file
        # static/images/inspection/13.png on the repository's gh-pages branch); task fields from
        # task_examples/Perception/Visual_Recognition/license_plate_recognition/README.md. Its id and query image
        # file name are not published: "plate-fig13" and query.png are this test's.
        mega_row(
            "plate-fig13",
            PLATE,
            "{'Answer': '京NHINIO'}",
            "exact_str_match_case_insensitive",
            query_media=f"['{PLATE_DIR}query.png']",
        ),
        # SCHEMA: graph_maxflow task fields (VERIFIED, task_examples/Mathematics/Graph_Theory/graph_maxflow/README.md)
        # with a made-up query answer; the metric is switched to the numeric match to exercise it
        mega_row("335", MAXFLOW, "{'answer': '7.5'}", "general_numerical_match", query_media=maxflow_query),
        # SCHEMA: out of scope (excluded) and bad input (skipped)
        mega_row("336", MAXFLOW, "{'answer': 'x'}", "gpt_4o_as_judge", query_media=maxflow_query),
        mega_row("337", MAXFLOW, "{'answer': '1'}", "exact_str_match", query_media="['./data/v/clip.mp4']"),
        mega_row("338", MAXFLOW, "{'answer': '1'}", "exact_str_match", query_media=f"['{MAXFLOW_DIR}missing.png']"),
        mega_row("339", MAXFLOW, "{'other': '1'}", "exact_str_match", query_media=maxflow_query),
        mega_row(
            "340",
            MAXFLOW,
            "{'Answer': 'D'}",
            "exact_str_match",
            query_media=maxflow_query,
            output_format="multiple_choice",
            field="Answer",
        ),
    ]
    write(root / "core" / "test-00000-of-00002.parquet", rows[:4])
    write(root / "core" / "test-00001-of-00002.parquet", rows[4:])
    return root


def test_megabench_scope_and_coverage(megabench_dir):
    res = BENCHMARKS["megabench"](megabench_dir)
    recs = by_id(res)
    assert sorted(recs) == ["335", "340", "plate-fig13"]
    assert {e.id: e.reason for e in res.excluded} == {
        "336": "metric gpt_4o_as_judge is not rule-scorable here",
        "337": "video input",
    }
    assert kinds(res) == {"338": "missing image", "339": "malformed row"}
    assert res.coverage() == pytest.approx(3 / 5)
    exact, num, mc = recs["plate-fig13"], recs["335"], recs["340"]
    assert (exact.answer, exact.answer_type) == ("京NHINIO", "text")
    assert (exact.meta["metric"], exact.meta["answer_field"]) == ("exact_str_match_case_insensitive", "Answer")
    assert (exact.meta["task_name"], exact.meta["output_format"]) == ("license_plate_recognition", "exact_text")
    assert (num.answer, num.answer_type) == ("7.5", "float")
    assert (mc.answer, mc.answer_type) == ("D", "multiple_choice")
    assert exact.category == "Perception" and len(exact.images) == 2
    assert [load_image(im, megabench_dir).size for im in exact.images] == [(16, 16), (16, 16)]
    assert question_text(exact) == (PLATE_DESC + "\n" + mega_example("渝A999U9").replace("<image>\n", "\n") + SUFFIX)
    assert question_text(num).startswith(MAXFLOW_DESC + "\nDemonstration example(s) of the task:\nExample 1:\n")


# ---------------------------------------------------------------------------- registry and whole-file errors


def test_registry_names():
    assert set(BENCHMARKS) == {
        "mathvista",
        "mathverse",
        "mathvision",
        "mmmu",
        "mmmu_pro_standard",
        "mmmu_pro_vision",
        "emma",
        "megabench",
    }


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_missing_path_is_a_clear_error(name, tmp_path):
    with pytest.raises(DataError, match="no such file"):
        BENCHMARKS[name](tmp_path / "nowhere")


def test_wrong_schema_rows_are_counted_not_crashing(tmp_path):
    f = write(tmp_path / "x" / "test-00000-of-00001.parquet", [{"foo": 1}, {"foo": 2}])
    for name, reader in BENCHMARKS.items():
        res = reader(tmp_path / "x", split="test") if name != "mathverse" else reader(f)
        assert res.records == [] and len(res.skipped) + len(res.excluded) == 2, name
