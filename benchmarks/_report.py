"""Shared helpers for the benchmarks: a markdown table printer and the docs/benchmarks.md section writer.

Each benchmark owns one section of docs/benchmarks.md, delimited by ``<!-- BEGIN <name> -->`` and
``<!-- END <name> -->``; re-running a benchmark replaces only its own section.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = REPO_ROOT / "docs" / "benchmarks.md"
sys.path.insert(0, str(REPO_ROOT / "tools"))

HEADER = """# Benchmarks

Measured on the project's build machine unless stated otherwise (2 shared cores, no GPU; other jobs may run
at the same time, so treat figures as noisy). Each section is written by the benchmark script named in it;
re-run the script to refresh it.
"""


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load:.2f} at start"
    )


def write_section(name: str, body: str) -> Path:
    """Replace (or append) section ``name`` of docs/benchmarks.md with ``body``."""
    BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else HEADER
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)
    return BENCHMARKS_MD
