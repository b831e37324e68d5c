"""LeRobot dataset v3.0: the constants and small helpers every reader and writer of this package shares.

Layout (lerobot 0.6.1, see /work/shared/notes/LEROBOT_FORMATS.md)::

    meta/info.json  meta/stats.json  meta/tasks.parquet  meta/episodes/chunk-000/file-000.parquet
    data/chunk-000/file-000.parquet           frames of many episodes
    videos/<video_key>/chunk-000/file-000.mp4 many episodes concatenated, located by from/to_timestamp

Plain Python (no rclpy, no lerobot). The dataset writer is ``smolvla_train.lerobot_dataset``; the training
loader reads the same files through these names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CODEBASE_VERSION = "v3.0"

#: Feature names (contract C).
STATE = "observation.state"
ACTION = "action"
IMAGE_PREFIX = "observation.images."
TIMESTAMP, FRAME_INDEX, EPISODE_INDEX, INDEX, TASK_INDEX = (
    "timestamp",
    "frame_index",
    "episode_index",
    "index",
    "task_index",
)
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    TIMESTAMP: {"dtype": "float32", "shape": [1], "names": None},
    FRAME_INDEX: {"dtype": "int64", "shape": [1], "names": None},
    EPISODE_INDEX: {"dtype": "int64", "shape": [1], "names": None},
    INDEX: {"dtype": "int64", "shape": [1], "names": None},
    TASK_INDEX: {"dtype": "int64", "shape": [1], "names": None},
}

#: Path templates, exactly as lerobot writes them into info.json.
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
#: This project's extra key in info.json: joint units of observation.state / action.
UNITS_KEY = "smolvla_units"
#: Statistics per feature (stats.json and the per-episode ``stats/<feature>/<stat>`` columns).
STAT_NAMES = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}

#: Video defaults = lerobot's encoder defaults (AV1 via libsvtav1, GOP 2, crf 30, preset 12).
VIDEO_DEFAULTS: dict[str, dict[str, Any]] = {
    "av1": {"encoder": "libsvtav1", "codec": "av1", "pix_fmt": "yuv420p", "g": 2, "crf": 30, "preset": 12},
    "h264": {
        "encoder": "libx264",
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "g": 2,
        "crf": 23,
        "preset": "veryfast",
    },
}


def image_key(camera: str) -> str:
    return IMAGE_PREFIX + camera


def camera_of(key: str) -> str:
    return key[len(IMAGE_PREFIX) :] if key.startswith(IMAGE_PREFIX) else key


def chunk_file(index: int, chunks_size: int = CHUNKS_SIZE) -> tuple[int, int]:
    """Running file number -> (chunk_index, file_index)."""
    return index // chunks_size, index % chunks_size


def file_number(chunk_index: int, file_index: int, chunks_size: int = CHUNKS_SIZE) -> int:
    return chunk_index * chunks_size + file_index


def data_path(chunk_index: int, file_index: int) -> str:
    return DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)


def video_path(video_key: str, chunk_index: int, file_index: int) -> str:
    return VIDEO_PATH.format(video_key=video_key, chunk_index=chunk_index, file_index=file_index)


def episodes_path(chunk_index: int, file_index: int) -> str:
    return EPISODES_PATH.format(chunk_index=chunk_index, file_index=file_index)


def vector_feature(names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    return {"dtype": "float32", "shape": [len(names)], "names": list(names)}


def video_feature(
    height: int, width: int, fps: int, codec: str, pix_fmt: str, g: int, crf: int, preset: int | str
) -> dict[str, Any]:
    """A video feature entry as lerobot 0.6.1 writes it."""
    return {
        "dtype": "video",
        "shape": [height, width, 3],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": height,
            "video.width": width,
            "video.codec": codec,
            "video.pix_fmt": pix_fmt,
            "video.fps": fps,
            "video.channels": 3,
            "has_audio": False,
            "video.g": g,
            "video.crf": crf,
            "video.preset": preset,
            "video.fast_decode": 0,
            "video.video_backend": "pyav",
            "video.extra_options": {},
            "is_depth_map": False,
        },
    }


def make_info(
    fps: int,
    features: dict[str, dict[str, Any]],
    robot_type: str,
    total_episodes: int,
    total_frames: int,
    total_tasks: int,
    units: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """info.json content in lerobot's key order; ``features`` gets the mandatory five appended."""
    feats = dict(features)
    for k, v in DEFAULT_FEATURES.items():
        feats.setdefault(k, v)
    has_video = any(f["dtype"] == "video" for f in feats.values())
    info: dict[str, Any] = {
        "codebase_version": CODEBASE_VERSION,
        "fps": int(fps),
        "features": feats,
        "total_episodes": int(total_episodes),
        "total_frames": int(total_frames),
        "total_tasks": int(total_tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if has_video else None,
        "robot_type": robot_type,
        "splits": {"train": f"0:{int(total_episodes)}"},
    }
    if units is not None:
        info[UNITS_KEY] = units
    return info


def video_keys(info: dict[str, Any]) -> list[str]:
    return [k for k, f in info["features"].items() if f["dtype"] == "video"]


def read_info(root: str | Path) -> dict[str, Any]:
    path = Path(root) / INFO_PATH
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise FormatError(f"not a LeRobot dataset (no {INFO_PATH}): {root}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise FormatError(f"cannot read {path}: {exc}") from exc
    if info.get("codebase_version") != CODEBASE_VERSION:
        raise FormatError(
            f"{path}: codebase_version {info.get('codebase_version')!r}, only {CODEBASE_VERSION} is supported"
        )
    return info


class FormatError(ValueError):
    """A dataset that is not LeRobot v3.0 or is inconsistent."""
