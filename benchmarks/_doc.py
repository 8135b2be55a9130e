"""Write a benchmark's table into its own marked section of a Markdown file.

``docs/results.md`` holds one section per benchmark between two HTML comments::

    <!-- results:NAME:begin -->
    ...the table the script printed last...
    <!-- results:NAME:end -->

A script given ``--write-doc docs/results.md`` replaces the text between its markers with
what it printed, so re-running a benchmark updates the document and the two cannot drift.
The prose around the markers is kept as written.

Scripts run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path`` and they
import this module as ``_doc``.
"""

from __future__ import annotations

import io
import os
import shlex
import sys
import time
from pathlib import Path


class SectionError(ValueError):
    """The file lacks a section's markers, or holds them more than once or out of order."""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->"


def _span(text: str, name: str, path: Path) -> tuple[int, int]:
    """Where section ``name``'s body lies in ``text``: (after the begin marker, at the end marker)."""
    begin, end = markers(name)
    for m in (begin, end):
        count = text.count(m)
        if count != 1:
            found = "is missing from" if count == 0 else f"appears {count} times in"
            raise SectionError(
                f"{m} {found} {path}: add the two lines\n{begin}\n{end}\n"
                f"where the '{name}' results belong, then run again"
            )
    i, j = text.index(begin) + len(begin), text.index(end)
    if j < i:
        raise SectionError(f"{end} comes before {begin} in {path}")
    return i, j


def check_section(path: str | os.PathLike, name: str) -> None:
    """Raise ``SectionError`` now if ``replace_section(path, name, ...)`` would refuse later
    (a benchmark calls it before it runs, so that a typo costs seconds, not hours)."""
    _span(Path(path).read_text(encoding="utf-8"), name, Path(path))


def replace_section(path: str | os.PathLike, name: str, markdown: str) -> None:
    """Replace the text between section ``name``'s markers in ``path`` with ``markdown``.

    Refuses (``SectionError``, file untouched) when either marker is missing, appears more
    than once, or the end marker comes before the begin marker: a section is added to the
    document by hand, with its prose, never by a script.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    i, j = _span(text, name, path)
    body = markdown.strip("\n")
    path.write_text(text[:i] + "\n" + body + ("\n" if body else "") + text[j:], encoding="utf-8")


def provenance(argv: list[str] | None = None) -> str:
    """One line naming the command (without ``--write-doc``) and the date, for a section's top."""
    argv = list(sys.argv if argv is None else argv)
    shown: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--write-doc":
            skip = True
        elif not a.startswith("--write-doc="):
            shown.append(a)
    script = Path(shown[0]).name if shown else "?"
    cmd = " ".join(["python", f"benchmarks/{script}", *map(shlex.quote, shown[1:])])
    return f"*Written by `{cmd}` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU core(s) visible.*"


class _Tee(io.TextIOBase):
    def __init__(self, stream) -> None:
        self.stream, self.buffer_ = stream, io.StringIO()

    def write(self, s: str) -> int:
        self.buffer_.write(s)
        return self.stream.write(s)

    def flush(self) -> None:
        self.stream.flush()


class StdoutSection:
    """Records what a script prints on stdout (still printing it) and writes it as a section.

    ``doc = StdoutSection(args.write_doc, "judge_speed")`` after parsing the arguments,
    ``doc.write()`` at the end; with ``path`` None it does nothing. ``fence`` wraps the
    output in a code block (for fixed-width tables that are not Markdown).
    """

    def __init__(self, path: str | os.PathLike | None, name: str, fence: bool = False) -> None:
        self.path, self.name, self.fence = path, name, fence
        self._tee: _Tee | None = None
        if path is not None:
            check_section(path, name)  # fail before the benchmark runs, not after
            self._tee = _Tee(sys.stdout)
            sys.stdout = self._tee

    def write(self, note: str = "") -> None:
        if self._tee is None:
            return
        sys.stdout = self._tee.stream
        out = self._tee.buffer_.getvalue().strip("\n")
        if self.fence:
            out = f"```text\n{out}\n```"
        parts = [provenance(), note, out]
        replace_section(self.path, self.name, "\n\n".join(p for p in parts if p))
        print(f"wrote section '{self.name}' of {self.path}", file=sys.stderr)
        self._tee = None


def add_argument(parser) -> None:
    """The shared ``--write-doc PATH`` flag."""
    parser.add_argument(
        "--write-doc",
        metavar="PATH",
        default=None,
        help="also write the table into this script's marked section of PATH (docs/results.md)",
    )
