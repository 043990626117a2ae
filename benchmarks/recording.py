"""What the long benchmarks record: the commit that made a result, and their tables in BENCHMARKS.md
(kept between two HTML comments and replaced on every run)."""

from __future__ import annotations

import subprocess
from pathlib import Path


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
