"""Training reader of LeRobot v3.0 datasets (the converter's and lerobot's own), plain Python, no lerobot.

One sample = one frame of one episode, as lerobot's ``LeRobotDataset`` with SmolVLA's ``delta_timestamps``
returns it:

- ``observation.state`` float32 [S] (the frame's row);
- ``action`` float32 [chunk, A]: rows ``i + k`` (k = 0..chunk-1) of the same episode, clamped to its last row,
  and ``action_is_pad`` bool [chunk], True where ``i + k`` is past the episode end (lerobot's query indices,
  ``delta = round(k / fps * fps)``);
- one uint8 [H, W, 3] image per camera, decoded with PyAV from the episode's concatenated mp4 at
  ``from_timestamp + timestamp`` (the closest decoded frame, which must lie within ``tolerance_s``, lerobot's
  1e-4 s, of the requested time; else :class:`VideoDecodeError`), or decoded from the PNG bytes of ``image``
  features;
- ``task`` (string), ``index``, ``episode_index``, ``frame_index``, ``timestamp``.

Parquet is read through pyarrow (only the needed columns). Video containers are opened lazily per process
(so DataLoader workers each have their own) and every decoded frame is kept in a bounded LRU cache: the
frames decoded on the way from a keyframe to the requested one are reused by later samples.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from smolvla_train.lerobot_format import (
    ACTION,
    EPISODE_INDEX,
    FRAME_INDEX,
    INDEX,
    STATE,
    STATS_PATH,
    TASK_INDEX,
    TASKS_PATH,
    TIMESTAMP,
    FormatError,
    read_info,
)

TOLERANCE_S = 1e-4  # lerobot's default tolerance between a requested and a decoded frame time


class VideoDecodeError(RuntimeError):
    """No decoded frame within the tolerance of the requested time (names file and time)."""


# ------------------------------------------------------------------------------------------------------------
# metadata
# ------------------------------------------------------------------------------------------------------------
@dataclass
class DatasetMeta:
    """meta/ of a v3.0 dataset: info, stats, tasks and the per-episode table."""

    root: Path
    info: dict[str, Any]
    stats: dict[str, dict[str, np.ndarray]]
    tasks: list[str]  # task_index -> task string
    episodes: dict[int, dict[str, Any]]  # episode_index -> row of meta/episodes

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> DatasetMeta:
        root = Path(root)
        info = read_info(root)
        stats: dict[str, dict[str, np.ndarray]] = {}
        stats_path = root / STATS_PATH
        if stats_path.exists():
            raw = json.loads(stats_path.read_text())
            stats = {
                key: {name: np.asarray(val, dtype=np.float64) for name, val in d.items()}
                for key, d in raw.items()
            }
        tasks_path = root / TASKS_PATH
        if not tasks_path.exists():
            raise FormatError(f"{root}: {TASKS_PATH} is missing")
        table = pq.read_table(tasks_path)
        names = table.column_names
        if TASK_INDEX not in names:
            raise FormatError(f"{tasks_path}: no task_index column")
        text_col = (
            "task" if "task" in names else ("__index_level_0__" if "__index_level_0__" in names else None)
        )
        if text_col is None:
            raise FormatError(f"{tasks_path}: no task strings (expected the pandas index 'task')")
        idx = table.column(TASK_INDEX).to_pylist()
        text = table.column(text_col).to_pylist()
        tasks = [""] * (max(idx) + 1 if idx else 0)
        for i, t in zip(idx, text):
            tasks[int(i)] = str(t)
        ep_files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not ep_files:
            raise FormatError(f"{root}: no meta/episodes/chunk-*/file-*.parquet")
        episodes: dict[int, dict[str, Any]] = {}
        for path in ep_files:
            t = pq.read_table(path)
            cols = [c for c in t.column_names if not c.startswith("stats/")]
            for row in t.select(cols).to_pylist():
                episodes[int(row[EPISODE_INDEX])] = row
        return cls(root=root, info=info, stats=stats, tasks=tasks, episodes=episodes)

    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return self.info["features"]

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(int(v) for v in self.features[key]["shape"])

    def names(self, key: str) -> list[str] | None:
        names = self.features[key].get("names")
        if isinstance(names, dict):  # older writers: {"motors": [...]}
            names = next(iter(names.values()), None)
        return list(names) if names else None

    def video_file(self, key: str, episode: int) -> Path:
        row = self.episodes[episode]
        template = self.info.get("video_path")
        if not template:
            raise FormatError(f"{self.root}: info.json has no video_path but {key} is a video feature")
        rel = template.format(
            video_key=key,
            chunk_index=int(row[f"videos/{key}/chunk_index"]),
            file_index=int(row[f"videos/{key}/file_index"]),
        )
        return self.root / rel


def resolve_dataset_root(dataset: str) -> Path:
    """A local directory, lerobot's cache ``$HF_LEROBOT_HOME/<repo_id>``, or a hub dataset repo id."""
    path = Path(dataset).expanduser()
    if path.is_dir():
        return path
    text = str(dataset)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise FileNotFoundError(f"dataset directory {text!r} does not exist")
    home = Path(
        os.environ.get(
            "HF_LEROBOT_HOME",
            Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "lerobot",
        )
    )
    cached = home / text
    if (cached / "meta" / "info.json").exists():
        return cached
    try:
        from huggingface_hub import snapshot_download

        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        return Path(
            snapshot_download(repo_id=text, repo_type="dataset", local_dir=cached, local_files_only=offline)
        )
    except Exception as exc:  # noqa: BLE001 - network/cache errors come in many types
        raise FileNotFoundError(
            f"dataset {text!r}: not a local directory, not in {home}, and the hub download failed "
            f"({type(exc).__name__}: {exc})"
        ) from exc


# ------------------------------------------------------------------------------------------------------------
# frames
# ------------------------------------------------------------------------------------------------------------
class FrameDecoder:
    """Random access to video frames by timestamp (PyAV), with an LRU cache of decoded frames."""

    def __init__(self, cache_mb: float = 256.0, tolerance_s: float = TOLERANCE_S, max_open: int = 16):
        self.cache_bytes = int(cache_mb * 1024 * 1024)
        self.tolerance_s = tolerance_s
        self.max_open = max_open
        self._containers: OrderedDict[str, Any] = OrderedDict()
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cached = 0

    def __getstate__(self) -> dict[str, Any]:  # workers start with nothing open
        state = dict(self.__dict__)
        state["_containers"] = OrderedDict()
        state["_cache"] = OrderedDict()
        state["_cached"] = 0
        return state

    def close(self) -> None:
        for c in self._containers.values():
            c.close()
        self._containers.clear()

    def _open(self, path: str) -> Any:
        import av

        c = self._containers.get(path)
        if c is None:
            try:
                c = av.open(path)
            except (OSError, av.FFmpegError) as exc:
                raise VideoDecodeError(f"cannot open video {path}: {exc}") from exc
            self._containers[path] = c
            while len(self._containers) > self.max_open:
                self._containers.popitem(last=False)[1].close()
        else:
            self._containers.move_to_end(path)
        return c

    def _remember(self, key: tuple[str, int], frame: np.ndarray) -> None:
        if key in self._cache or frame.nbytes > self.cache_bytes:
            return
        self._cache[key] = frame
        self._cached += frame.nbytes
        while self._cached > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.nbytes

    def frame(self, path: str | Path, t: float) -> np.ndarray:
        """uint8 [H, W, 3] RGB frame of ``path`` closest to ``t`` seconds (must be within the tolerance)."""
        path = str(path)
        container = self._open(path)
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 90000)
        target = round(t / tb)
        hit = self._cache.get((path, target))
        if hit is not None:
            self._cache.move_to_end((path, target))
            return hit
        tol_pts = max(1, int(self.tolerance_s / tb))
        # cache keys are exact pts; also accept a cached neighbour within the tolerance
        for d in range(1, min(tol_pts, 4) + 1):
            for cand in (target - d, target + d):
                hit = self._cache.get((path, cand))
                if hit is not None:
                    return hit
        best: tuple[float, np.ndarray] | None = None
        try:
            container.seek(max(0, target), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                rgb = frame.to_ndarray(format="rgb24")
                self._remember((path, int(frame.pts)), rgb)
                ft = float(frame.pts * tb)
                diff = abs(ft - t)
                if best is None or diff < best[0]:
                    best = (diff, rgb)
                if ft > t + self.tolerance_s:
                    break
        except Exception as exc:  # noqa: BLE001 - PyAV raises many error types
            raise VideoDecodeError(f"decoding {path} at t={t:.6f}s failed: {exc}") from exc
        if best is None or best[0] > self.tolerance_s:
            got = "no frame" if best is None else f"closest frame {best[0]:.6f}s away"
            raise VideoDecodeError(
                f"{path}: no frame at t={t:.6f}s ({got}; tolerance {self.tolerance_s}s). The dataset's "
                "timestamps and its video do not agree"
            )
        return best[1]


def decode_image_bytes(value: Any) -> np.ndarray:
    """``image`` features: PNG (or JPEG) bytes stored in the parquet -> uint8 [H, W, 3] RGB."""
    import cv2

    data = value.get("bytes") if isinstance(value, Mapping) else value
    if data is None:
        path = value.get("path") if isinstance(value, Mapping) else None
        raise FormatError(f"image feature without embedded bytes (path {path!r}) is not supported")
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise FormatError("cannot decode an embedded image")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------------------------------------
# the dataset
# ------------------------------------------------------------------------------------------------------------
def _vector_column(col: pa.ChunkedArray, dim: int) -> np.ndarray:
    arr = col.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type):
        flat = arr.flatten().to_numpy(zero_copy_only=False)
        return np.asarray(flat, dtype=np.float32).reshape(len(arr), dim)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(arr), dim)


@dataclass
class Frames:
    """The numeric columns of the selected episodes, ordered by ``index``."""

    state: np.ndarray
    action: np.ndarray
    timestamp: np.ndarray
    frame_index: np.ndarray
    episode_index: np.ndarray
    index: np.ndarray
    task_index: np.ndarray
    ep_start: np.ndarray  # row of the first frame of each row's episode
    ep_end: np.ndarray  # row after the last frame of each row's episode
    images: dict[str, list[Any]] = field(default_factory=dict)  # embedded image features


def read_frames(meta: DatasetMeta, episodes: Sequence[int] | None = None) -> Frames:
    keep = {int(e) for e in (episodes if episodes is not None else meta.episodes)}
    unknown = keep - set(meta.episodes)
    if unknown:
        raise FormatError(f"episodes {sorted(unknown)} are not in the dataset (it has {len(meta.episodes)})")
    image_feats = [k for k in meta.camera_keys if meta.features[k]["dtype"] == "image"]
    cols = [STATE, ACTION, TIMESTAMP, FRAME_INDEX, EPISODE_INDEX, INDEX, TASK_INDEX, *image_feats]
    for key in (STATE, ACTION):
        if key not in meta.features:
            raise FormatError(f"{meta.root}: the dataset has no '{key}' feature")
    template = meta.info.get("data_path")
    files = sorted(
        {
            (int(r["data/chunk_index"]), int(r["data/file_index"]))
            for e, r in meta.episodes.items()
            if e in keep
        }
    )
    parts: dict[str, list[np.ndarray]] = {c: [] for c in cols if c not in image_feats}
    images: dict[str, list[Any]] = {k: [] for k in image_feats}
    sdim, adim = meta.shape(STATE)[0], meta.shape(ACTION)[0]
    for chunk, fidx in files:
        path = meta.root / template.format(chunk_index=chunk, file_index=fidx)
        table = pq.read_table(path, columns=cols)
        ep = table.column(EPISODE_INDEX).to_numpy()
        mask = np.isin(ep, np.fromiter(keep, dtype=np.int64))
        table = table.filter(pa.array(mask))
        parts[STATE].append(_vector_column(table.column(STATE), sdim))
        parts[ACTION].append(_vector_column(table.column(ACTION), adim))
        for c in (TIMESTAMP, FRAME_INDEX, EPISODE_INDEX, INDEX, TASK_INDEX):
            parts[c].append(table.column(c).to_numpy())
        for k in image_feats:
            images[k].extend(table.column(k).to_pylist())
    cat = {c: np.concatenate(v) if v else np.zeros(0) for c, v in parts.items()}
    order = np.argsort(cat[INDEX], kind="stable")
    cat = {c: v[order] for c, v in cat.items()}
    images = {k: [v[i] for i in order] for k, v in images.items()}
    n = len(cat[INDEX])
    ep = cat[EPISODE_INDEX].astype(np.int64)
    starts = np.zeros(n, dtype=np.int64)
    ends = np.zeros(n, dtype=np.int64)
    boundaries = np.flatnonzero(np.diff(ep)) + 1 if n else np.zeros(0, dtype=np.int64)
    bounds = [0, *boundaries.tolist(), n]
    seen: set[int] = set()
    for a, b in zip(bounds[:-1], bounds[1:]):
        e = int(ep[a])
        if e in seen:
            raise FormatError(f"episode {e}'s frames are not contiguous in the global index")
        seen.add(e)
        fi = cat[FRAME_INDEX][a:b]
        if not np.array_equal(fi, np.arange(b - a)):
            raise FormatError(f"episode {e}: frame_index is not 0..{b - a - 1} in index order")
        length = int(meta.episodes[e].get("length", b - a))
        if length != b - a:
            raise FormatError(f"episode {e}: meta/episodes says {length} frames, the data has {b - a}")
        starts[a:b], ends[a:b] = a, b
    missing = keep - seen
    if missing:
        raise FormatError(f"episodes {sorted(missing)} have no frames in the data files")
    return Frames(
        state=cat[STATE].astype(np.float32),
        action=cat[ACTION].astype(np.float32),
        timestamp=cat[TIMESTAMP].astype(np.float64),
        frame_index=cat[FRAME_INDEX].astype(np.int64),
        episode_index=ep,
        index=cat[INDEX].astype(np.int64),
        task_index=cat[TASK_INDEX].astype(np.int64),
        ep_start=starts,
        ep_end=ends,
        images=images,
    )


class LeRobotV3Dataset:
    """Map-style dataset (usable with ``torch.utils.data.DataLoader``) of SmolVLA training samples.

    ``camera_map``: dataset image key -> output key (e.g. ``observation.images.top`` ->
    ``observation.images.camera1``); cameras mapped to ``None`` are not decoded. Unmapped cameras keep
    their key.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | DatasetMeta,
        chunk_size: int,
        episodes: Sequence[int] | None = None,
        camera_map: Mapping[str, str | None] | None = None,
        tolerance_s: float = TOLERANCE_S,
        frame_cache_mb: float = 256.0,
    ):
        self.meta = root if isinstance(root, DatasetMeta) else DatasetMeta.load(root)
        self.chunk_size = int(chunk_size)
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        self.episodes = sorted(int(e) for e in (episodes if episodes is not None else self.meta.episodes))
        self.frames = read_frames(self.meta, self.episodes)
        camera_map = dict(camera_map or {})
        self.cameras: dict[str, str] = {}
        for key in self.meta.camera_keys:
            out = camera_map.get(key, key)
            if out is not None:
                self.cameras[key] = out
        self.decoder = FrameDecoder(cache_mb=frame_cache_mb, tolerance_s=tolerance_s)
        fps = self.meta.fps
        # lerobot's delta indices for delta_timestamps [k / fps]: round(k / fps * fps) = k
        self.delta = np.array([round(k / fps * fps) for k in range(self.chunk_size)], dtype=np.int64)
        self._from_ts: dict[tuple[str, int], float] = {}
        self._files: dict[tuple[str, int], str] = {}
        for key in self.cameras:
            if self.meta.features[key]["dtype"] != "video":
                continue
            for e in self.episodes:
                row = self.meta.episodes[e]
                self._from_ts[(key, e)] = float(row[f"videos/{key}/from_timestamp"])
                self._files[(key, e)] = str(self.meta.video_file(key, e))

    def __len__(self) -> int:
        return len(self.frames.index)

    def image(self, key: str, row: int) -> np.ndarray:
        f = self.frames
        if self.meta.features[key]["dtype"] == "image":
            return decode_image_bytes(f.images[key][row])
        e = int(f.episode_index[row])
        t = self._from_ts[(key, e)] + float(f.timestamp[row])
        return self.decoder.frame(self._files[(key, e)], t)

    def action_rows(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        f = self.frames
        q = row + self.delta
        pad = (q < f.ep_start[row]) | (q >= f.ep_end[row])
        return np.clip(q, f.ep_start[row], f.ep_end[row] - 1), pad

    def __getitem__(self, row: int) -> dict[str, Any]:
        import torch

        f = self.frames
        row = int(row)
        rows, pad = self.action_rows(row)
        sample: dict[str, Any] = {
            STATE: torch.from_numpy(f.state[row].copy()),
            ACTION: torch.from_numpy(f.action[rows]),
            "action_is_pad": torch.from_numpy(pad),
            "task": self.meta.tasks[int(f.task_index[row])],
            INDEX: int(f.index[row]),
            EPISODE_INDEX: int(f.episode_index[row]),
            FRAME_INDEX: int(f.frame_index[row]),
            TIMESTAMP: float(f.timestamp[row]),
        }
        for key, out in self.cameras.items():
            sample[out] = torch.from_numpy(np.ascontiguousarray(self.image(key, row)))
        return sample


def split_episodes(
    episodes: Sequence[int], val_episodes: Sequence[int] | None = None, val_fraction: float = 0.1
) -> tuple[list[int], list[int]]:
    """(train, validation) episode lists: the explicit ``val_episodes``, or the last ``val_fraction`` of the
    episodes (at least one when there are two or more; none with a single episode)."""
    eps = sorted(int(e) for e in episodes)
    if val_episodes is not None:
        val = sorted({int(e) for e in val_episodes})
        unknown = set(val) - set(eps)
        if unknown:
            raise ValueError(f"validation episodes {sorted(unknown)} are not in the dataset")
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")
        n_val = int(round(len(eps) * val_fraction))
        if val_fraction > 0 and n_val == 0 and len(eps) >= 2:
            n_val = 1
        val = eps[len(eps) - n_val :] if n_val else []
    train = [e for e in eps if e not in set(val)]
    if not train:
        raise ValueError("no training episodes left after holding out the validation episodes")
    return train, val
