"""``smolvla_train inspect DATASET|BAG``: a one-screen summary of a LeRobot v3.0 dataset or a rosbag2 bag.

Dataset: version, fps, robot, episodes, frames, tasks, features (dtype, shape, joint names / codec and
size), units, the conversion's sync report (drops per feature) if there is one, and the first episodes.
Bag: storage, files, duration, topics (type, count, rate), ``custom_data``, recorder episode events, and
whether the mapped topics for ``bag2lerobot`` are there. ``--sync`` also aligns the bag on the frame grid
(a dry run of the conversion, nothing written). ``--json`` prints the same as JSON. Plain Python.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from smolvla_train import lerobot_format as lf
from smolvla_train.bagio import BagError, find_bags, is_bag, open_bag


def dataset_summary(root: Path, max_episodes: int = 10) -> dict[str, Any]:
    from smolvla_train.lerobot_dataset import DatasetReader

    r = DatasetReader(root)
    info = r.info
    feats = {}
    for name, f in info["features"].items():
        entry: dict[str, Any] = {"dtype": f["dtype"], "shape": f.get("shape")}
        if f["dtype"] == "video":
            vi = f.get("info") or {}
            entry["video"] = f"{vi.get('video.codec')} {vi.get('video.width')}x{vi.get('video.height')} " + (
                f"{vi.get('video.pix_fmt')} g={vi.get('video.g')} crf={vi.get('video.crf')}"
            )
        elif isinstance(f.get("names"), list):
            entry["names"] = f["names"]
        feats[name] = entry
    eps = []
    for _, row in r.episodes.head(max_episodes).iterrows():
        tasks = list(row["tasks"]) if row.get("tasks") is not None else []
        eps.append(
            {
                "episode_index": int(row["episode_index"]),
                "length": int(row["length"]),
                "seconds": round(int(row["length"]) / r.fps, 2),
                "tasks": tasks,
            }
        )
    units = info.get(lf.UNITS_KEY) or {
        "kind": "unknown (no smolvla_units; lerobot datasets use degrees/0..100)"
    }
    out: dict[str, Any] = {
        "kind": "lerobot_dataset",
        "path": str(root),
        "codebase_version": info.get("codebase_version"),
        "fps": r.fps,
        "robot_type": info.get("robot_type"),
        "total_episodes": info.get("total_episodes"),
        "total_frames": info.get("total_frames"),
        "seconds": round(int(info.get("total_frames", 0)) / r.fps, 1),
        "tasks": list(r.tasks.values()),
        "features": feats,
        "units": units,
        "stats": sorted(r.stats()),
        "episodes": eps,
    }
    rep = root / "meta/smolvla_sync_report.json"
    if rep.exists():
        try:
            runs = json.loads(rep.read_text()).get("runs", [])
        except (OSError, ValueError):
            runs = []
        drops: dict[str, int] = {}
        grid = kept = 0
        for run in runs:
            for b in run.get("bags", []):
                for e in b.get("episodes", []):
                    grid += e.get("grid_frames", 0)
                    kept += e.get("frames", 0)
                    for f, fr in e.get("features", {}).items():
                        drops[f] = drops.get(f, 0) + int(fr.get("drops", 0))
        out["sync"] = {
            "runs": len(runs),
            "grid_frames": grid,
            "kept_frames": kept,
            "drops_per_feature": drops,
        }
    return out


def bag_summary(
    path: Path, salvage: bool = False, sync: bool = False, mapping_path: Path | None = None
) -> dict:
    from smolvla_train.bag2lerobot import check_topics
    from smolvla_train.mapping import load_mapping

    mapping = load_mapping(mapping_path)
    with open_bag(path, salvage=salvage) as bag:
        dur = (bag.end_ns - bag.start_ns) / 1e9 if bag.end_ns else 0.0
        topics = {
            t.name: {
                "type": t.msgtype,
                "count": t.count,
                "rate_hz": round(t.count / dur, 2) if dur > 0 and t.count > 1 else None,
            }
            for t in sorted(bag.topics.values(), key=lambda t: t.name)
        }
        cams, problems = check_topics(bag, mapping)
        events = []
        if mapping.episode_topic in bag.topics:
            for _, _, raw in bag.messages([mapping.episode_topic]):
                try:
                    events.append(json.loads(bag.deserialize(mapping.episode_topic, raw).data))
                except (BagError, ValueError, AttributeError):
                    events.append({"unreadable": True})
        out: dict[str, Any] = {
            "kind": "rosbag2",
            "path": str(path),
            "storage": bag.storage,
            "duration_s": round(dur, 3),
            "start_ns": bag.start_ns,
            "messages": bag.message_count,
            "topics": topics,
            "custom_data": bag.custom_data,
            "episode_events": events,
            "mapping": {
                "state": mapping.state.topic,
                "action": mapping.action.topic,
                "cameras": {c: s.topic for c, s in cams.items()},
                "convertible": not problems,
                "problems": problems,
            },
            "notes": list(bag.notes),
        }
        if sync and not problems:
            from smolvla_train.bag2lerobot import ConvertOptions, _plan, scan

            sc = scan(bag, mapping, cams, progress=False)
            opts = ConvertOptions(mapping=mapping, task="(inspect)")
            out["sync"] = [p.report for p in _plan(sc, mapping, opts, None)]
            out["notes"] = list(bag.notes)
    return out


def format_summary(s: dict[str, Any]) -> str:
    lines: list[str] = []
    if s["kind"] == "lerobot_dataset":
        lines.append(f"LeRobot dataset {s['path']} ({s['codebase_version']})")
        lines.append(
            f"  {s['total_episodes']} episodes, {s['total_frames']} frames ({s['seconds']} s) "
            f"at {s['fps']} fps, "
            f"robot {s['robot_type']}, {len(s['tasks'])} task(s)"
        )
        lines.append(
            f"  units: {s['units'].get('kind')}"
            + (f" ({s['units']['joints']})" if "joints" in s["units"] else "")
        )
        lines.append("  features:")
        for name, f in s["features"].items():
            extra = f.get("video") or (", ".join(f["names"]) if "names" in f else "")
            lines.append(f"    {name:<28} {f['dtype']:<8} {str(f['shape']):<14} {extra}")
        lines.append(f"  stats: {', '.join(s['stats']) if s['stats'] else 'none'}")
        if "sync" in s:
            sy = s["sync"]
            drops = ", ".join(f"{k} {v}" for k, v in sy["drops_per_feature"].items())
            lines.append(
                f"  sync: {sy['kept_frames']} of {sy['grid_frames']} grid frames kept; "
                f"drops by feature: {drops}"
            )
        lines.append(
            "  tasks: "
            + "; ".join(f"'{t}'" for t in s["tasks"][:5])
            + (" ..." if len(s["tasks"]) > 5 else "")
        )
        for e in s["episodes"]:
            lines.append(
                f"    episode {e['episode_index']:>4}: {e['length']:>6} frames {e['seconds']:>7} s  "
                f"{e['tasks']}"
            )
        if s["total_episodes"] and s["total_episodes"] > len(s["episodes"]):
            lines.append(f"    ... {s['total_episodes'] - len(s['episodes'])} more")
        return "\n".join(lines)
    lines.append(f"rosbag2 bag {s['path']} ({s['storage']}), {s['duration_s']} s, {s['messages']} messages")
    for name, t in s["topics"].items():
        rate = f"{t['rate_hz']} Hz" if t["rate_hz"] else ""
        lines.append(f"    {name:<40} {t['type']:<40} {t['count']:>7} {rate}")
    if s["custom_data"]:
        lines.append("  custom_data: " + ", ".join(f"{k}={v}" for k, v in s["custom_data"].items()))
    for ev in s["episode_events"]:
        lines.append(f"  event: {ev}")
    m = s["mapping"]
    cams = ", ".join(f"{c}={t}" for c, t in m["cameras"].items()) or "none"
    lines.append(f"  bag2lerobot: state {m['state']}, action {m['action']}, cameras {cams}")
    lines.append(
        "  convertible: yes" if m["convertible"] else "  convertible: NO\n    " + "\n    ".join(m["problems"])
    )
    for n in s["notes"]:
        lines.append(f"  note: {n}")
    for i, e in enumerate(s.get("sync", [])):
        lines.append(
            f"  sync episode {i}: {e['frames']} frames, {e['dropped_frames']} dropped of {e['grid_frames']} "
            f"({e['window']})"
        )
        for f, r in e["features"].items():
            lines.append(
                f"    {f:<32} drops {r['drops']:>5}  age max {r['max_age_ms']} ms  mean {r['mean_age_ms']} ms"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="smolvla_train inspect",
        description="One-screen summary of a LeRobot v3.0 dataset or a rosbag2 bag.",
    )
    p.add_argument(
        "path", type=Path, help="dataset root, bag directory, .mcap/.db3 file, or a directory of bags"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--sync", action="store_true", help="bags: align on the frame grid (dry run) and show drops"
    )
    p.add_argument("--mapping", type=Path, help="bags: bag2lerobot mapping YAML")
    p.add_argument("--salvage", action="store_true", help="bags: read damaged files up to the damage")
    p.add_argument(
        "--episodes", type=int, default=10, help="datasets: how many episodes to list (default 10)"
    )
    args = p.parse_args(argv)
    try:
        if (args.path / lf.INFO_PATH).exists():
            summaries = [dataset_summary(args.path, args.episodes)]
        elif is_bag(args.path) or args.path.is_dir():
            summaries = [bag_summary(b, args.salvage, args.sync, args.mapping) for b in find_bags(args.path)]
        else:
            raise BagError(f"{args.path}: neither a LeRobot dataset nor a rosbag2 bag")
    except (BagError, lf.FormatError, ValueError, OSError) as exc:
        print(f"inspect: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2, default=str))
    else:
        print("\n\n".join(format_summary(s) for s in summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
