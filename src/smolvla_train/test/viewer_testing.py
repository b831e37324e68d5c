"""Read a Rerun .rrd file back through Rerun's own reader (rerun.chunk.RrdReader): {entity: [row dicts]}."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any


def read_rrd(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Every non-static row of every entity, time-ordered by the ``time`` timeline when present; static rows
    are listed under ``<entity>#static``."""
    from rerun.chunk import RrdReader

    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for chunk in RrdReader(str(path)).stream():
        rows = chunk.to_record_batch().to_pylist()
        key = chunk.entity_path + ("#static" if chunk.is_static else "")
        out[key].extend(rows)
    for rows in out.values():
        if rows and "time" in rows[0]:
            rows.sort(key=lambda r: r["time"])
    return dict(out)
