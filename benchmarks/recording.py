"""What the long benchmarks record: the commit that made a result, and their tables in BENCHMARKS.md
(kept between two HTML comments and replaced on every run)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path


def command_line(script: str, argv: list[str] | None = None) -> str:
    """The command that reproduces a result: ``python benchmarks/SCRIPT`` and its arguments
    (``argv`` when ``main(argv)`` was called from Python, else the process's own).

    >>> command_line("reproduce.py", ["burda-1l-vae", "--max-hours", "2"])
    'python benchmarks/reproduce.py burda-1l-vae --max-hours 2'
    """
    return shlex.join(["python", f"benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


def git_commit() -> str:
    """The checkout's commit, or ``"unknown"`` outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_block(benchmarks: Path, name: str, table: str, heading: str) -> None:
    """Put ``table`` between ``<!-- name -->`` and ``<!-- /name -->`` in ``benchmarks``, replacing what
    was there; the first time, append it under ``heading`` (a Markdown section title)."""
    text = Path(benchmarks).read_text()
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{begin}\n{table}\n{end}"
    if begin in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"
    Path(benchmarks).write_text(text)
