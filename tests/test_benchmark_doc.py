"""benchmarks/_doc.py: a benchmark writes its table into its own marked section of
docs/results.md (replacing the old one, keeping the prose around it) and refuses, with a
message naming the markers, a file without them; docs/results.md holds a section for
every script that writes one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _doc  # noqa: E402

DOC = """# Results

Prose before.

<!-- results:speed:begin -->
| old | table |
|---|---|
<!-- results:speed:end -->

Prose after.

<!-- results:other:begin -->
other section
<!-- results:other:end -->
"""


def test_replace_section_replaces_only_its_own_text(tmp_path):
    p = tmp_path / "results.md"
    p.write_text(DOC)
    _doc.replace_section(p, "speed", "| new | table |\n|---|---|\n| 1 | 2 |\n")
    text = p.read_text()
    assert "| old | table |" not in text
    assert "<!-- results:speed:begin -->\n| new | table |\n|---|---|\n| 1 | 2 |\n<!-- results:speed:end -->" in text
    assert text.startswith("# Results\n\nProse before.\n") and "\nProse after.\n" in text
    assert "<!-- results:other:begin -->\nother section\n<!-- results:other:end -->" in text
    _doc.replace_section(p, "speed", "| new | table |\n|---|---|\n| 1 | 2 |\n")  # idempotent
    assert p.read_text() == text


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (DOC.replace("<!-- results:speed:begin -->\n", ""), "<!-- results:speed:begin --> is missing from"),
        (DOC.replace("<!-- results:speed:end -->\n", ""), "<!-- results:speed:end --> is missing from"),
        (DOC + "<!-- results:speed:end -->\n", "appears 2 times"),
        (DOC.replace("speed:begin", "tmp").replace("speed:end", "speed:begin").replace("tmp", "speed:end"), "before"),
    ],
)
def test_replace_section_refuses_bad_markers(tmp_path, doc, message):
    p = tmp_path / "results.md"
    p.write_text(doc)
    with pytest.raises(_doc.SectionError, match=re.escape(message)):
        _doc.replace_section(p, "speed", "x")
    with pytest.raises(_doc.SectionError):
        _doc.check_section(p, "speed")
    assert p.read_text() == doc  # untouched


def test_missing_section_names_the_markers_to_add(tmp_path):
    p = tmp_path / "results.md"
    p.write_text("# Results\n")
    with pytest.raises(_doc.SectionError) as e:
        _doc.replace_section(p, "vs_trl", "x")
    assert "<!-- results:vs_trl:begin -->\n<!-- results:vs_trl:end -->" in str(e.value)


def test_provenance_drops_the_write_doc_flag():
    line = _doc.provenance(["/x/benchmarks/vs_trl.py", "--steps", "10", "--write-doc", "docs/results.md"])
    assert "`python benchmarks/vs_trl.py --steps 10`" in line and "results.md" not in line
    assert "write-doc" not in _doc.provenance(["b.py", "--write-doc=docs/results.md"])


def test_stdout_section_writes_what_the_script_printed(tmp_path):
    p = tmp_path / "results.md"
    p.write_text(DOC)
    script = tmp_path / "bench.py"
    script.write_text(
        "import argparse, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
        "import _doc\n"
        "ap = argparse.ArgumentParser(); _doc.add_argument(ap); args = ap.parse_args()\n"
        "doc = _doc.StdoutSection(args.write_doc, 'speed')\n"
        "print('| grader | verdicts/s |'); print('|---|---|'); print('| ours | 2343 |')\n"
        "print('progress', file=sys.stderr)\n"
        "doc.write()\n"
    )
    res = subprocess.run([sys.executable, str(script), "--write-doc", str(p)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "| ours | 2343 |" in res.stdout  # still printed
    section = p.read_text().split("<!-- results:speed:begin -->")[1].split("<!-- results:speed:end -->")[0]
    assert section.startswith("\n*Written by `python benchmarks/bench.py` on ")
    assert section.endswith("| grader | verdicts/s |\n|---|---|\n| ours | 2343 |\n")
    assert "progress" not in section
    # a file without the section fails before the benchmark runs
    q = tmp_path / "other.md"
    q.write_text("# nothing\n")
    res = subprocess.run([sys.executable, str(script), "--write-doc", str(q)], capture_output=True, text=True)
    assert res.returncode != 0 and "SectionError" in res.stderr and "| ours |" not in res.stdout


def test_every_writing_script_has_its_section_in_docs_results():
    """A script's --write-doc must find its section in docs/results.md (and the images
    the page shows exist)."""
    doc = ROOT / "docs" / "results.md"
    names = set()
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        src = script.read_text(encoding="utf-8")
        names |= set(re.findall(r'StdoutSection\(args\.write_doc, "(\w+)"', src))
        names |= set(re.findall(r'replace_section\(path, "(\w+)"', src))
        names |= set(re.findall(r'section(?::\s*str)?\s*=\s*"(\w+)"', src))  # toy_ablation's experiments
    assert {"toy_ablation", "toy_e1", "toy_e2", "judge_agreement", "data_scale", "vs_trl"} <= names
    for name in names:
        _doc.check_section(doc, name)
    for link in re.findall(r"\]\(([^)#:]+)\)", doc.read_text(encoding="utf-8")):
        assert (doc.parent / link).exists(), link
