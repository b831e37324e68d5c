"""Rewrite PEP 695 syntax (Python 3.12) in an installed lerobot so that it imports on Python 3.11.

Runs in (or against) the reference venv only; never part of the project. Idempotent: a rewritten file no
longer contains the 3.12 syntax, so a second run changes nothing. Handles the three forms lerobot 0.6.1 uses:

    type Name = expr           ->  Name = expr
    class Name[A, B](Base):    ->  class Name(Base, Generic[A, B]):   (+ TypeVars above)
    def name[T: Bound](...)    ->  def name(...)                      (+ TypeVar("T", bound=Bound))

Usage: python rewrite_pep695.py <site-packages>/lerobot
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

FILES = (
    "processor/pipeline.py",
    "motors/motors_bus.py",
    "datasets/streaming_dataset.py",
    "datasets/aggregate.py",
    "utils/io_utils.py",
)
IMPORT_LINE = "from typing import Generic as _Generic695, TypeVar as _TypeVar695  # pep695 rewrite\n"
TYPE_ALIAS = re.compile(r"^type (\w+) = (.*)$")
GENERIC_CLASS = re.compile(r"^class (\w+)\[([^\]]+)\](?:\((.*)\))?:(.*)$")
GENERIC_DEF = re.compile(r"^def (\w+)\[([^\]]+)\]\((.*)$")


def _typevars(params: str) -> tuple[list[str], list[str]]:
    names, lines = [], []
    for part in params.split(","):
        part = part.strip()
        if ":" in part:
            name, bound = (s.strip() for s in part.split(":", 1))
            lines.append(f'{name} = _TypeVar695("{name}", bound={bound})\n')
        else:
            name = part
            lines.append(f'{name} = _TypeVar695("{name}")\n')
        names.append(name)
    return names, lines


def rewrite_source(src: str) -> str:
    lines = src.splitlines(keepends=True)
    out: list[str] = []
    changed = False
    for line in lines:
        body = line.rstrip("\n")
        m = TYPE_ALIAS.match(body)
        if m:
            out.append(f"{m.group(1)} = {m.group(2)}\n")
            changed = True
            continue
        m = GENERIC_CLASS.match(body)
        if m:
            names, tv_lines = _typevars(m.group(2))
            bases = [b for b in [m.group(3)] if b]
            bases.append(f"_Generic695[{', '.join(names)}]")
            # TypeVars go above the decorators of this class
            insert_at = len(out)
            while insert_at > 0 and out[insert_at - 1].startswith("@"):
                insert_at -= 1
            out[insert_at:insert_at] = tv_lines
            out.append(f"class {m.group(1)}({', '.join(bases)}):{m.group(4)}\n")
            changed = True
            continue
        m = GENERIC_DEF.match(body)
        if m:
            _, tv_lines = _typevars(m.group(2))
            insert_at = len(out)
            while insert_at > 0 and out[insert_at - 1].startswith("@"):
                insert_at -= 1
            out[insert_at:insert_at] = tv_lines
            out.append(f"def {m.group(1)}({m.group(3)}\n")
            changed = True
            continue
        out.append(line)
    if not changed:
        return src
    # import Generic/TypeVar under private names before the first non-__future__ import
    for i, line in enumerate(out):
        if (line.startswith("import ") or line.startswith("from ")) and not line.startswith(
            "from __future__"
        ):
            out.insert(i, IMPORT_LINE)
            break
    return "".join(out)


def main(argv: list[str]) -> int:
    root = Path(argv[1])
    for rel in FILES:
        path = root / rel
        src = path.read_text()
        new = rewrite_source(src)
        if new != src:
            path.write_text(new)
            print(f"rewrote {rel}")
        compile(path.read_text(), str(path), "exec")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
