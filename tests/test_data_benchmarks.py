"""Benchmark readers on small fixture files in each benchmark's published layout.

Rows marked VERIFIED copy question / options / answer / type fields of real published
items (checked against public copies of the data, see docs/benchmarks.md); rows marked
SCHEMA are in the real schema with content made up for the test (no verbatim row was
at hand, or the row exercises bad input). Images are drawn locally with PIL.
"""

from __future__ import annotations

import io
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

MV_SPRING = ("When a spring does work on an object, we cannot find the work by simply multiplying the spring force "
             "by the object's displacement. The reason is that there is no one value for the force-it changes. "
             "However, we can split the displacement up into an infinite number of tiny parts and then approximate "
             "the force in each as being constant. Integration sums the work done in all those parts. Here we use "
             "the generic result of the integration.\r\n\r\nIn Figure, a cumin canister of mass $m=0.40 \\mathrm{~kg}$ "
             "slides across a horizontal frictionless counter with speed $v=0.50 \\mathrm{~m} / \\mathrm{s}$. It then "
             "runs into and compresses a spring of spring constant $k=750 \\mathrm{~N} / \\mathrm{m}$. When the canister "
             "is momentarily stopped by the spring, by what distance $d$ is the spring compressed?")
HINT_FLOAT1 = ("Hint: Please answer the question requiring a floating-point number with one decimal place and provide "
               "the final value, e.g., 1.2, 1.3, 1.4, at the end.")
HINT_INT = ("Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, "
            "at the end.")
HINT_MC = "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end."


def mathvista_row(pid, question, answer, *, choices=None, unit=None, precision=None, qtype, atype, task, query,
                  image=None):
    return {"pid": pid, "question": question, "image": f"images/{pid}.jpg", "decoded_image": image or png(),
            "choices": choices, "unit": unit, "precision": precision, "answer": answer, "question_type": qtype,
            "answer_type": atype,
            "metadata": {"category": "math-targeted-vqa", "context": "scientific figure", "grade": "college",
                         "img_height": 8, "img_width": 12, "language": "english", "skills": ["algebraic reasoning"],
                         "source": "fixture", "split": "testmini", "task": task},
            "query": query}


@pytest.fixture
def mathvista_dir(tmp_path):
    rows = [
        # VERIFIED (pid, question, answer, types, precision, query hint); metadata values are placeholders
        mathvista_row("1", MV_SPRING, "1.2", precision=1.0, qtype="free_form", atype="float",
                      task="textbook question answering", query=f"{HINT_FLOAT1}\nQuestion: {MV_SPRING}"),
        mathvista_row("2", "what is the total volume of the measuring cup?", "1000", unit="g", qtype="free_form",
                      atype="integer", task="visual question answering",
                      query=f"{HINT_INT}\nQuestion: what is the total volume of the measuring cup? (Unit: g)"),
        mathvista_row("5", "Find $m\\angle H$", "97", choices=["97", "102", "107", "122"], qtype="multi_choice",
                      atype="text", task="geometry problem solving",
                      query=f"{HINT_MC}\nQuestion: Find $m\\angle H$\nChoices:\n(A) 97\n(B) 102\n(C) 107\n(D) 122"),
        # SCHEMA: bad input
        mathvista_row("900", "How many?", "", qtype="free_form", atype="integer", task="figure question answering",
                      query=""),  # test-split style item without answer
        mathvista_row("901", "Which one?", "blue", choices=["red", "green"], qtype="multi_choice", atype="text",
                      task="figure question answering", query=""),  # answer not among the choices
        mathvista_row("902", "How many?", "3", qtype="free_form", atype="integer", task="figure question answering",
                      query="", image=BROKEN),  # unreadable image
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
    assert question_text(recs["5"]) == (f"{HINT_MC}\nQuestion: Find $m\\angle H$\nA. 97\nB. 102\nC. 107\nD. 122"
                                        + SUFFIX)
    assert question_text(recs["2"]) == (f"{HINT_INT}\nQuestion: what is the total volume of the measuring cup? "
                                        "(Unit: g)" + SUFFIX)
    assert question_text(recs["1"]) == f"{HINT_FLOAT1}\nQuestion: {MV_SPRING}" + SUFFIX


def test_mathvista_split_and_single_file(mathvista_dir):
    res = BENCHMARKS["mathvista"](mathvista_dir, split="test")
    assert res.records == [] and kinds(res) == {"900": "missing answer"}
    one = BENCHMARKS["mathvista"](next((mathvista_dir / "data").glob("testmini-*.parquet")))
    assert len(one.records) == 3


# ---------------------------------------------------------------------------- MathVerse

MVERSE_Q1 = ("As shown in the figure, in triangle ABC, it is known that angle A = 80.0, angle B = 60.0, point D is on AB "
             "and point E is on AC, DE parallel BC, then the size of angle CED is ()\nChoices:\nA:40°\nB:60°\nC:120°\nD:140°")
MVERSE_Q2 = ("As shown in the figure, it is known that angle A = 80.0, angle B = 60.0, DE parallel BC, then the size of "
             "angle CED is ()\nChoices:\nA:40°\nB:60°\nC:120°\nD:140°")
MVERSE_WO = "Please directly answer the question and provide the correct option letter, e.g., A, B, C, D.\nQuestion: "
MVERSE_VO_COT = ("According to the question shown in the image, please first conduct reasoning, and then answer the "
                 "question and provide the correct option letter, e.g., A, B, C, D, at the end.")


def mathverse_row(sid, pidx, version, question, answer, qtype="multi-choice", image="png", cot=""):
    return {"sample_index": sid, "problem_index": pidx, "problem_version": version, "question": question,
            "image": png() if image == "png" else image, "answer": answer, "question_type": qtype,
            "metadata": {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry", "subfield": "Angle"},
            "query_wo": MVERSE_WO + question, "query_cot": cot or question, "question_for_eval": question}


@pytest.fixture
def mathverse_dir(tmp_path):
    rows = [
        mathverse_row("1", "1", "Text Dominant", MVERSE_Q1, "D"),  # VERIFIED
        mathverse_row("2", "1", "Text Lite", MVERSE_Q2, "D"),  # VERIFIED
        mathverse_row("5", "1", "Vision Only", "", "D", cot=MVERSE_VO_COT),  # SCHEMA (question drawn in the image)
        mathverse_row("6", "2", "Text Lite", "Find the length of AB.", "5\\sqrt{3}", qtype="free-form"),  # SCHEMA
        mathverse_row("7", "3", "Vision Dominant", MVERSE_Q2, "D", image=None),  # SCHEMA: image missing
        mathverse_row("8", "3", "Text Lite", MVERSE_Q2, "E"),  # SCHEMA: answer outside A-D
    ]
    write(tmp_path / "MathVerse" / "testmini.parquet", rows)
    write(tmp_path / "MathVerse" / "testmini_text_only.parquet",
          [mathverse_row("9", "2", "Text Only", "In triangle ABC, AB = 5 and angle C = 90°. Find BC.", "4",
                         qtype="free-form", image=None)])  # SCHEMA
    return tmp_path / "MathVerse"


def test_mathverse_records_and_versions(mathverse_dir):
    res = BENCHMARKS["mathverse"](mathverse_dir)
    recs = by_id(res)
    assert sorted(recs) == ["1", "2", "5", "6"]
    assert kinds(res) == {"7": "missing image", "8": "bad answer"}
    r1 = recs["1"]
    assert (r1.answer, r1.answer_type, r1.choices) == ("D", "multiple_choice", ["40°", "60°", "120°", "140°"])
    assert [recs[k].category for k in ("1", "2", "5", "6")] == ["Text Dominant", "Text Lite", "Vision Only", "Text Lite"]
    assert r1.meta["problem_version"] == "Text Dominant" and r1.meta["subfield"] == "Angle"
    assert (recs["6"].answer, recs["6"].answer_type) == ("5\\sqrt{3}", "expression")
    # the question lists its options already: the prompt keeps them as published, once
    assert question_text(r1) == MVERSE_Q1 + SUFFIX
    assert question_text(recs["5"]) == MVERSE_VO_COT + SUFFIX
    text_only = BENCHMARKS["mathverse"](mathverse_dir, split="testmini_text_only")
    assert [(r.id, r.images, r.category) for r in text_only.records] == [("9", [], "Text Only")]


def test_parse_choices():
    assert parse_choices(MVERSE_Q2) == ["40°", "60°", "120°", "140°"]
    assert parse_choices("Find x.") == []
    assert parse_choices("Choices:\nA:1\nC:2") == []  # letters out of order: not an option list


# ---------------------------------------------------------------------------- MathVision

@pytest.fixture
def mathvision_dir(tmp_path):
    rows = [
        # VERIFIED question/options/answer (test id 1); level/subject values are placeholders
        {"id": "1", "question": "Which number should be written in place of the question mark?\n<image1>",
         "options": [], "image": "images/1.jpg", "decoded_image": png(), "answer": "60", "solution": None,
         "level": 1, "subject": "arithmetic"},
        # SCHEMA: options drawn in the image, letters as options
        {"id": "3", "question": "Which kite has the longest string?\n<image1>", "options": ["A", "B", "C", "D", "E"],
         "image": "images/3.jpg", "decoded_image": png(), "answer": "C", "solution": None, "level": 1,
         "subject": "metric geometry - length"},
        {"id": "4", "question": "What is the area?\n<image1>", "options": [], "image": "images/4.jpg",
         "decoded_image": png(), "answer": "2.25", "solution": None, "level": 3, "subject": "metric geometry - area"},
        {"id": "5", "question": "Pick one.\n<image1>", "options": ["A", "B"], "image": "images/5.jpg",
         "decoded_image": png(), "answer": "D", "solution": None, "level": 2, "subject": "logic"},  # bad letter
        {"id": "6", "question": "Pick one.\n<image1>", "options": [], "image": "images/missing.jpg",
         "decoded_image": None, "answer": "7", "solution": None, "level": 2, "subject": "logic"},  # file missing
    ]
    write(tmp_path / "MathVision" / "data" / "test-00000-of-00001-3532b8d3f1b4047a.parquet", rows)
    write(tmp_path / "MathVision" / "data" / "testmini-00000-of-00001-f8ff70fcb2f29b1d.parquet", rows[:1])
    return tmp_path / "MathVision"


def test_mathvision(mathvision_dir):
    res = BENCHMARKS["mathvision"](mathvision_dir)
    recs = by_id(res)
    assert sorted(recs) == ["1", "3", "4"]
    assert kinds(res) == {"5": "bad answer", "6": "missing image"}
    one, kite, area = recs["1"], recs["3"], recs["4"]
    assert (one.answer, one.answer_type, one.choices, one.category) == ("60", "integer", None, "arithmetic")
    assert one.question == "Which number should be written in place of the question mark?\n<image 1>"
    assert question_text(one) == "Which number should be written in place of the question mark?" + SUFFIX
    assert (kite.answer, kite.answer_type, kite.choices) == ("C", "multiple_choice", ["A", "B", "C", "D", "E"])
    assert question_text(kite) == "Which kite has the longest string?\nA. A\nB. B\nC. C\nD. D\nE. E" + SUFFIX
    assert (area.answer_type, area.precision, area.meta["level"]) == ("float", 2, 3)
    assert [r.id for r in BENCHMARKS["mathvision"](mathvision_dir, split="testmini").records] == ["1"]


# ---------------------------------------------------------------------------- MMMU / MMMU-Pro

def mmmu_row(rid, question, options, answer, *, images=(png(),), qtype="multiple-choice", **extra):
    row = {"id": rid, "question": question, "options": options, "explanation": "",
           **{f"image_{k}": (images[k - 1] if k <= len(images) else None) for k in range(1, 8)},
           "img_type": "['Tables']", "answer": answer, "topic_difficulty": "Easy", "question_type": qtype,
           "subfield": "Financial Accounting"}
    row.update(extra)
    return row


MMMU_ACC_Q = "Each of the following situations relates to a different company. <image 1> For company B, find the missing amounts."


@pytest.fixture
def mmmu_dir(tmp_path):
    red, green = png((255, 0, 0)), png((0, 255, 0))
    acc = [
        mmmu_row("dev_Accounting_1", MMMU_ACC_Q, "['$63,020', '$58,410', '$71,320', '$77,490']", "D"),  # VERIFIED
        # SCHEMA: two images, the second referenced from an option; an open question; bad rows
        mmmu_row("dev_Accounting_2", "Compare <image 1> with the options.", "['<image 2>', 'neither']", "A",
                 images=(red, green)),
        mmmu_row("dev_Accounting_3", "Compute the ratio in <image 1>.", "[]", "0.25", qtype="open"),
        mmmu_row("dev_Accounting_4", "Which?", "['a', 'b'", "A"),  # options text is not a list literal
        mmmu_row("dev_Accounting_5", "Which?", "__import__('os').system('true')", "A"),  # never evaluated
        mmmu_row("dev_Accounting_6", "Which?", "['a', 'b']", "A", images=()),  # no image at all
        mmmu_row("dev_Accounting_7", "Which?", "[1, 2]", "A"),  # non-string choices
    ]
    write(tmp_path / "MMMU" / "Accounting" / "dev-00000-of-00001.parquet", acc)
    write(tmp_path / "MMMU" / "Accounting" / "validation-00000-of-00001.parquet", acc[1:2])
    return tmp_path / "MMMU"


def test_mmmu(mmmu_dir):
    res = BENCHMARKS["mmmu"](mmmu_dir, split="dev")
    recs = by_id(res)
    assert sorted(recs) == ["dev_Accounting_1", "dev_Accounting_2", "dev_Accounting_3"]
    assert kinds(res) == {"dev_Accounting_4": "malformed row", "dev_Accounting_5": "malformed row",
                          "dev_Accounting_6": "missing image", "dev_Accounting_7": "bad choices"}
    acc = recs["dev_Accounting_1"]
    assert (acc.answer, acc.answer_type, acc.category) == ("D", "multiple_choice", "Accounting")
    assert acc.choices == ["$63,020", "$58,410", "$71,320", "$77,490"]
    assert acc.meta["subfield"] == "Financial Accounting" and acc.meta["topic_difficulty"] == "Easy"
    assert question_text(acc) == ("Each of the following situations relates to a different company. For company B, "
                                  "find the missing amounts.\nA. $63,020\nB. $58,410\nC. $71,320\nD. $77,490" + SUFFIX)
    two = recs["dev_Accounting_2"]
    assert [load_image(im).getpixel((0, 0)) for im in two.images] == [(255, 0, 0), (0, 255, 0)]
    assert two.choices == ["<image 2>", "neither"]
    opened = recs["dev_Accounting_3"]
    assert (opened.answer, opened.answer_type, opened.choices) == ("0.25", "float", None)
    assert [r.id for r in BENCHMARKS["mmmu"](mmmu_dir).records] == ["dev_Accounting_2"]  # default split validation


def test_option_lists_are_parsed_not_evaluated():
    assert parse_option_list("['$63,020', '$58,410']") == ["$63,020", "$58,410"]
    assert parse_option_list("[]") == [] and parse_option_list(["x"]) == ["x"]
    for bad in ("__import__('os').system('true')", "{'a': 1}", "'a' * 10**9", "[" * 5000):
        with pytest.raises(RecordError):
            parse_option_list(bad)


TEN = [f"{v} units" for v in (10, 12, 14, 16, 18, 20, 22, 24, 26, 28)]


@pytest.fixture
def mmmu_pro_dir(tmp_path):
    root = tmp_path / "MMMU_Pro"
    # SCHEMA rows: MMMU-Pro columns (standard adds `subject`, has no `question_type`)
    std = [mmmu_row("test_Physics_1", "What is the length in <image 1>?", repr(TEN), "C", subject="Physics"),
           mmmu_row("test_Physics_2", "What is the length in <image 1>?", repr(TEN), "K", subject="Physics")]
    for r in std:
        del r["question_type"]
    write(root / "standard (10 options)" / "test-00000-of-00001.parquet", std)
    write(root / "standard (4 options)" / "test-00000-of-00001.parquet", std[:1])
    vision = [{"id": "test_Physics_1", "image": png(), "options": repr(TEN), "answer": "C", "subject": "Physics"},
              {"id": "test_Physics_3", "image": None, "options": repr(TEN), "answer": "C", "subject": "Physics"}]
    write(root / "vision" / "test-00000-of-00001.parquet", vision)
    return root


def test_mmmu_pro_standard_and_vision(mmmu_pro_dir):
    std = BENCHMARKS["mmmu_pro_standard"](mmmu_pro_dir)
    assert [r.id for r in std.records] == ["test_Physics_1"] and kinds(std) == {"test_Physics_2": "bad answer"}
    r = std.records[0]
    assert (len(r.choices), r.answer, r.answer_type, r.category, r.source) == (10, "C", "multiple_choice", "Physics",
                                                                              "MMMU/MMMU_Pro")
    assert question_text(r).endswith("\nI. 26 units\nJ. 28 units" + SUFFIX)
    vis = BENCHMARKS["mmmu_pro_vision"](mmmu_pro_dir / "vision")
    assert [v.id for v in vis.records] == ["test_Physics_1"] and kinds(vis) == {"test_Physics_3": "missing image"}
    v = vis.records[0]
    assert (v.choices, v.answer, v.meta["n_options"]) == (None, "C", 10)
    assert question_text(v) == ("Answer the multiple-choice question shown in the image with the letter of the "
                                "correct option." + SUFFIX)


# ---------------------------------------------------------------------------- EMMA

def emma_row(pid, subject, question, options, answer, *, images=1, context=None, category="Pattern Inference",
             source="Newly annotated", task=None):
    return {"pid": pid, "question": question, "options": options, "answer": answer,
            **{f"image_{k}": (png((20 * k, 0, 0)) if k <= images else None) for k in range(1, 6)},
            "solution": None, "subject": subject, "task": task, "category": category, "source": source,
            "type": "Multiple Choice" if options else "Open-ended", "context": context}


# Physics phy_30 and Coding coding_524: PARTLY VERIFIED against a copy of the dataset viewer, which truncates long
# text — pid, options (phy_30), answer, subject, category, source, type and the visible start of question and
# context are as published; the truncated tails are cut here. The other EMMA rows are SCHEMA rows.
RAMPS_Q = ("A small toy car rolls down three ramps with the same height and horizontal length, but different shapes, "
           "starting from rest. The car stays in contact with the ramp at all times and no energy is lost. Order the "
           "ramps from the fastest to slowest time it takes for the toy car to drop the full $1 \\mathrm{~m}$.")
RAMPS_CONTEXT = ("- Proton mass, $m_{p}=1.67 \\cdot 10^{-27} \\mathrm{~kg}$\n- Neutron mass, $m_{n}=1.67 \\cdot "
                 "10^{-27} \\mathrm{~kg}$")
PLOT_Q = ("<image_1>\n<image_2>\nOur goal is to reproduce the visualization in the first image shown. The code "
          "snippet below currently does not accurately generate the target visualization. It instead generates the "
          "visualization in the second image.")


@pytest.fixture
def emma_dir(tmp_path):
    root = tmp_path / "EMMA"
    write(root / "Math" / "test-00000-of-00001.parquet", [
        emma_row("math_1", "Math", "Which shape comes next?\n<image_1>", ["A", "B", "C", "D"], "B"),
        emma_row("math_2", "Math", "How many squares are there in <image_1>?", None, "14",
                 category="Multi-hop Visual Object Counting"),
        emma_row("math_3", "Math", "Which one?\n<image_1>", ["A", "B"], "", category="Pattern Inference"),
    ])
    write(root / "Physics" / "test-00000-of-00001.parquet", [
        emma_row("phy_30", "Physics", RAMPS_Q, ["231", "123", "213", "321"], "C", images=2, context=RAMPS_CONTEXT,
                 category="Multi-hop Visual Reasoning", source="OlympiadBench"),
    ])
    write(root / "Chemistry" / "test-00000-of-00001.parquet", [
        emma_row("chem_1", "Chemistry", "Which product forms?\n<image_1>", ["X", "Y", "Z"], "C",
                 category="Reaction Simulation"),
    ])
    write(root / "Coding" / "test-00000-of-00001.parquet", [
        emma_row("coding_524", "Coding", PLOT_Q, ["Replace line 6 with: ax.grid(True)", "Delete line 7"], "B",
                 images=2, category="Gridline", task="Modify With Image"),
        emma_row("coding_1", "Coding", "Which code draws <image_1>?", ["a", "b", "c", "d"], "A", images=0,
                 category="Legend"),
    ])
    return root


def test_emma(emma_dir):
    res = BENCHMARKS["emma"](emma_dir)
    recs = by_id(res)
    assert sorted(recs) == ["chem_1", "coding_524", "math_1", "math_2", "phy_30"]
    assert kinds(res) == {"math_3": "missing answer", "coding_1": "missing image"}
    assert {r.category for r in recs.values()} == {"Math", "Physics", "Chemistry", "Coding"}
    phys = recs["phy_30"]
    assert (phys.answer, phys.answer_type, phys.choices) == ("C", "multiple_choice", ["231", "123", "213", "321"])
    assert phys.question == RAMPS_CONTEXT + "\n" + RAMPS_Q
    assert question_text(phys) == RAMPS_CONTEXT + "\n" + RAMPS_Q + "\nA. 231\nB. 123\nC. 213\nD. 321" + SUFFIX
    assert phys.meta["category"] == "Multi-hop Visual Reasoning" and phys.meta["source"] == "OlympiadBench"
    plot = recs["coding_524"]
    assert plot.question.startswith("<image 1>\n<image 2>\nOur goal") and len(plot.images) == 2
    assert question_text(plot).startswith("Our goal is to reproduce the visualization in the first image shown.")
    assert plot.meta["task"] == "Modify With Image"
    assert (recs["math_2"].answer, recs["math_2"].answer_type, recs["math_2"].choices) == ("14", "integer", None)
    only_math = BENCHMARKS["emma"](emma_dir / "Math")
    assert sorted(r.id for r in only_math.records) == ["math_1", "math_2"]


# ---------------------------------------------------------------------------- MEGA-Bench

MAXFLOW_DESC = ("You are given a weighted directed graph and two query nodes. (one source node in red and one sink node "
                "in blue). The source node is the\nnode where the flow starts and the sink node is the node where the "
                "flow ends.\nYOUR TASK is to solve the maxflow problem given the weighted directed graph. Definition of "
                "Maxflow problem:\nIn the max flow problem, we have a directed graph with a source node s and a sink "
                "node t, and each edge has a capacity (integer\nvalued, colored in green) that represents the maximum "
                "amount of flow that can be sent through it.\nThe goal is to find the maximum amount of flow that can "
                "be sent from s to t, while respecting the capacity constraints on the\nedges.\nPlease compute the "
                "maximum flow from the red source node to the blue sink node.")
MAXFLOW_EXAMPLE = ("Demonstration example(s) of the task:\nExample 1:\n<image>\nExample Response:\n[PLEASE OUTPUT YOUR "
                   "REASONING]\nAnswer: 11\nAnswer the new question below. The last part of your response should be "
                   "of the following format: \"Answer: <YOUR ANSWER>\" (without angle brackets) where YOUR ANSWER is "
                   "your answer, following the same task logic and output format of the demonstration example(s). For "
                   "your answer, do not output additional contents that violate the specified format. Think step by "
                   "step before answering.")


def mega_row(rid, task, answer, metric, *, query_media="['./data/Graph_maxflow/maxflow_2.png']",
             output_format="numerical_data", field="answer"):
    return {"id": rid, "task_name": task, "task_description": MAXFLOW_DESC, "global_media": "[]",
            "example_text": MAXFLOW_EXAMPLE, "example_media": "['./data/Graph_maxflow/maxflow_1.png']",
            "query_text": "<image>", "query_media": query_media, "answer": answer,
            "metric_info": ("{'field_score_function': {'" + field + "': '" + metric + "'}, 'aggregation': "
                            "{'function': 'mean', 'field_weights': {'" + field + "': 1}}, "
                            "'response_parse_function': 'answer_string'}"),
            "eval_context": "{}", "taxonomy_tree_path": "Mathematics;Graph_Theory", "application": "Mathematics",
            "input_format": "Diagrams and Data Visualizations", "output_format": output_format}


@pytest.fixture
def megabench_dir(tmp_path):
    root = tmp_path / "MEGA-Bench"
    for name in ("maxflow_1.png", "maxflow_2.png"):
        (root / "data" / "Graph_maxflow").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (0, 0, 200)).save(root / "data" / "Graph_maxflow" / name)
    rows = [
        # task description / example text / metric_info as MEGA-Bench's task_examples show them (VERIFIED text);
        # the query's own answer is a placeholder
        mega_row("334", "Graph_maxflow", "{'answer': '9'}", "exact_str_match"),
        mega_row("335", "Graph_maxflow", "{'answer': '7.5'}", "general_numerical_match"),
        # SCHEMA: out of scope (excluded) and bad input (skipped)
        mega_row("336", "Graph_maxflow", "{'answer': 'x'}", "gpt_4o_as_judge"),
        mega_row("337", "Graph_maxflow", "{'answer': '1'}", "exact_str_match", query_media="['./data/v/clip.mp4']"),
        mega_row("338", "Graph_maxflow", "{'answer': '1'}", "exact_str_match",
                 query_media="['./data/Graph_maxflow/missing.png']"),
        mega_row("339", "Graph_maxflow", "{'other': '1'}", "exact_str_match"),
        mega_row("340", "Graph_maxflow", "{'Answer': 'D'}", "exact_str_match", output_format="multiple_choice",
                 field="Answer"),
    ]
    write(root / "core" / "test-00000-of-00002.parquet", rows[:4])
    write(root / "core" / "test-00001-of-00002.parquet", rows[4:])
    return root


def test_megabench_scope_and_coverage(megabench_dir):
    res = BENCHMARKS["megabench"](megabench_dir)
    recs = by_id(res)
    assert sorted(recs) == ["334", "335", "340"]
    assert {e.id: e.reason for e in res.excluded} == {"336": "metric gpt_4o_as_judge is not rule-scorable here",
                                                      "337": "video input"}
    assert kinds(res) == {"338": "missing image", "339": "malformed row"}
    assert res.coverage() == pytest.approx(3 / 5)
    exact, num, mc = recs["334"], recs["335"], recs["340"]
    assert (exact.answer, exact.answer_type, exact.meta["metric"]) == ("9", "text", "exact_str_match")
    assert (num.answer, num.answer_type) == ("7.5", "float")
    assert (mc.answer, mc.answer_type) == ("D", "multiple_choice")
    assert exact.category == "Mathematics" and len(exact.images) == 2
    assert question_text(exact) == (MAXFLOW_DESC + "\n" + MAXFLOW_EXAMPLE.replace("<image>\n", "\n") + SUFFIX)


# ---------------------------------------------------------------------------- registry and whole-file errors

def test_registry_names():
    assert set(BENCHMARKS) == {"mathvista", "mathverse", "mathvision", "mmmu", "mmmu_pro_standard",
                               "mmmu_pro_vision", "emma", "megabench"}


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_missing_path_is_a_clear_error(name, tmp_path):
    with pytest.raises(DataError, match="no such file"):
        BENCHMARKS[name](tmp_path / "nowhere")


def test_wrong_schema_rows_are_counted_not_crashing(tmp_path):
    f = write(tmp_path / "x" / "test-00000-of-00001.parquet", [{"foo": 1}, {"foo": 2}])
    for name, reader in BENCHMARKS.items():
        res = reader(tmp_path / "x", split="test") if name != "mathverse" else reader(f)
        assert res.records == [] and len(res.skipped) + len(res.excluded) == 2, name
