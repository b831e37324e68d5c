"""Write and read LeRobot v3.0 datasets without lerobot (pyarrow + pandas + PyAV).

``DatasetWriter`` builds the whole dataset in a temporary sibling directory and renames it into place only in
``finish()``; a run that fails (or ``abort()``) leaves nothing behind, and appending never modifies a file of
the existing dataset (its files are hard-linked into the new tree, new episodes go to new data/video/episode
files, the meta files are written anew), then the trees are swapped. Plain Python, no rclpy.

``DatasetReader`` gives episodes back (vectors, task, decoded video frames) for ``lerobot2bag``, ``inspect``
and the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from smolvla_train import lerobot_format as lf
from smolvla_train import stats as st
from smolvla_train.video import VideoWriter, encoder_settings, read_frames


class DatasetError(RuntimeError):
    pass


@dataclass
class DatasetSpec:
    """What a new dataset holds."""

    fps: int
    joint_names: tuple[str, ...]
    cameras: dict[str, tuple[int, int]]  # camera -> (height, width)
    robot_type: str = "so101_follower"
    codec: str = "av1"
    crf: int | None = None
    gop: int | None = None
    preset: Any = None
    units: dict[str, Any] | None = None
    action_names: tuple[str, ...] | None = None
    encoder_threads: int = 0

    def features(self) -> dict[str, dict[str, Any]]:
        s = encoder_settings(self.codec, self.crf, self.gop, self.preset)
        feats: dict[str, dict[str, Any]] = {
            lf.STATE: lf.vector_feature(self.joint_names),
            lf.ACTION: lf.vector_feature(self.action_names or self.joint_names),
        }
        for cam, (h, w) in self.cameras.items():
            feats[lf.image_key(cam)] = lf.video_feature(
                h, w, self.fps, s["codec"], s["pix_fmt"], s["g"], s["crf"], s["preset"]
            )
        return feats


@dataclass
class _Episode:
    index: int
    task: str
    length: int
    from_ts: dict[str, float] = field(default_factory=dict)
    video_file: dict[str, tuple[int, int]] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    image_samples: dict[str, list[np.ndarray]] = field(default_factory=dict)
    sample_at: set[int] = field(default_factory=set)


def _max_file_number(root: Path, pattern: str) -> int:
    best = -1
    for p in root.glob(pattern):
        try:
            chunk = int(p.parent.name.split("-")[1])
            fnum = int(p.stem.split("-")[1])
        except (IndexError, ValueError):
            continue
        best = max(best, lf.file_number(chunk, fnum))
    return best


def _link_tree(src: Path, dst: Path, skip: set[str]) -> None:
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        if path.is_dir() or rel.as_posix() in skip:
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


class DatasetWriter:
    """Create (``append=False``) or extend (``append=True``) the dataset at ``root``.

    Per episode: ``begin_episode(task, length)``, ``add_image(camera, rgb)`` exactly ``length`` times per
    camera (in frame order), then ``end_episode(state, action)``. ``finish()`` commits; ``abort()`` discards.
    """

    def __init__(self, root: str | Path, spec: DatasetSpec, append: bool = False, overwrite: bool = False):
        self.root = Path(root).absolute()
        self.spec = spec
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.root)  # one writer per dataset at a time
        self.append = append and self.root.exists()
        if self.root.exists() and not self.append and not overwrite:
            _unlock(self._lock)
            raise DatasetError(
                f"{self.root} exists (use --append to add episodes or --overwrite to replace it)"
            )
        self.settings = encoder_settings(spec.codec, spec.crf, spec.gop, spec.preset)
        self.features = spec.features()
        self.tmp = self.root.parent / f".{self.root.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        self._existing_info: dict[str, Any] | None = None
        self._episodes: list[_Episode] = []
        self._rows: list[dict[str, np.ndarray]] = []
        self._tasks: dict[str, int] = {}
        self._current: _Episode | None = None
        self._videos: dict[str, VideoWriter] = {}
        self._next_video_file: dict[str, int] = {}
        self._first_episode = 0
        self._first_index = 0
        self._data_file = 0
        self._episodes_file = 0
        #: extra files (relative path -> bytes) written into the dataset with the commit
        self.extra_files: dict[str, bytes] = {}
        try:
            if self.append:
                self._prepare_append()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            _unlock(self._lock)
            raise

    # -- append ---------------------------------------------------------------------------------------
    def _prepare_append(self) -> None:
        info = lf.read_info(self.root)
        if int(info["fps"]) != int(self.spec.fps):
            raise DatasetError(f"cannot append: dataset fps {info['fps']} != {self.spec.fps}")
        old = {k: {kk: vv for kk, vv in v.items() if kk != "info"} for k, v in info["features"].items()}
        new = {k: {kk: vv for kk, vv in v.items() if kk != "info"} for k, v in self.features.items()}
        for k, v in new.items():
            if old.get(k) != v:
                raise DatasetError(f"cannot append: feature {k} differs ({old.get(k)} vs {v})")
        extra = set(old) - set(new) - set(lf.DEFAULT_FEATURES)
        if extra:
            raise DatasetError(
                f"cannot append: the dataset has features this run does not write: {sorted(extra)}"
            )
        # a dataset without smolvla_units was written (or last rewritten) by lerobot: lerobot's units
        old_units = (info.get(lf.UNITS_KEY) or {}).get("kind", "lerobot")
        new_units = (self.spec.units or {}).get("kind", "lerobot")
        if old_units != new_units:
            raise DatasetError(
                f"cannot append: the dataset is in {old_units} units, this run writes {new_units}"
            )
        # keep the existing video settings (codec etc.) in info.json
        for k in self.features:
            if "info" in info["features"].get(k, {}):
                self.features[k] = info["features"][k]
        self._existing_info = info
        skip = {lf.INFO_PATH, lf.STATS_PATH, lf.TASKS_PATH, "meta/smolvla_sync_report.json"}
        _link_tree(self.root, self.tmp, skip)
        tasks = pd.read_parquet(self.root / lf.TASKS_PATH)
        self._tasks = {str(t): int(i) for t, i in zip(tasks.index, tasks["task_index"])}
        self._first_episode = int(info["total_episodes"])
        self._first_index = int(info["total_frames"])
        self._data_file = _max_file_number(self.root, "data/chunk-*/file-*.parquet") + 1
        self._episodes_file = _max_file_number(self.root, "meta/episodes/chunk-*/file-*.parquet") + 1
        for k in lf.video_keys(info):
            self._next_video_file[k] = _max_file_number(self.root, f"videos/{k}/chunk-*/file-*.mp4") + 1

    # -- episodes -------------------------------------------------------------------------------------
    @property
    def episode_count(self) -> int:
        """Episodes written by this writer (not counting an existing dataset's)."""
        return len(self._episodes)

    @property
    def next_episode_index(self) -> int:
        """Index the next episode will get (continues an existing dataset's numbering)."""
        return self._first_episode + len(self._episodes)

    def frames_written(self, camera: str) -> int:
        """Frames of ``camera`` given to the open episode so far (0 without an open episode)."""
        return self._current.frames[lf.image_key(camera)] if self._current is not None else 0

    def begin_episode(self, task: str, length: int) -> int:
        if self._current is not None:
            raise DatasetError("begin_episode while an episode is open")
        if length <= 0:
            raise DatasetError("an episode needs at least one frame")
        ep = _Episode(self._first_episode + len(self._episodes), task, length)
        ep.sample_at = st.sample_indices(length)
        for cam, (h, w) in self.spec.cameras.items():
            key = lf.image_key(cam)
            vw = self._videos.get(key)
            if vw is not None and vw.bytes > lf.VIDEO_FILES_SIZE_IN_MB * 1024 * 1024:
                vw.close()
                vw = None
            if vw is None:
                num = self._next_video_file.get(key, 0)
                self._next_video_file[key] = num + 1
                c, f = lf.chunk_file(num)
                vw = VideoWriter(
                    self.tmp / lf.video_path(key, c, f),
                    w,
                    h,
                    self.spec.fps,
                    self.settings,
                    self.spec.encoder_threads,
                )
                vw.file = (c, f)  # type: ignore[attr-defined]
                self._videos[key] = vw
            ep.from_ts[key] = vw.frames / self.spec.fps
            ep.video_file[key] = vw.file  # type: ignore[attr-defined]
            ep.frames[key] = 0
            ep.image_samples[key] = []
        self._current = ep
        return ep.index

    def add_image(self, camera: str, image: np.ndarray) -> None:
        ep = self._current
        if ep is None:
            raise DatasetError("add_image outside an episode")
        key = lf.image_key(camera)
        n = ep.frames[key]
        if n >= ep.length:
            raise DatasetError(f"{key}: more than {ep.length} frames in episode {ep.index}")
        self._videos[key].write(image)
        if n in ep.sample_at:
            ep.image_samples[key].append(st.downsample(image).copy())
        ep.frames[key] = n + 1

    def end_episode(self, state: np.ndarray, action: np.ndarray) -> None:
        ep = self._current
        if ep is None:
            raise DatasetError("end_episode without begin_episode")
        state = np.asarray(state, dtype=np.float32)
        action = np.asarray(action, dtype=np.float32)
        n = ep.length
        if state.shape != (n, len(self.spec.joint_names)) or action.shape[0] != n:
            raise DatasetError(
                f"episode {ep.index}: state {state.shape} / action {action.shape}, expected {n} rows"
            )
        for key, k in ep.frames.items():
            if k != n:
                raise DatasetError(f"episode {ep.index}: {key} got {k} frames, expected {n}")
        if ep.task not in self._tasks:
            self._tasks[ep.task] = len(self._tasks)
        start = self._first_index + sum(e.length for e in self._episodes)
        fi = np.arange(n, dtype=np.int64)
        self._rows.append(
            {
                lf.STATE: state,
                lf.ACTION: action,
                lf.TIMESTAMP: (fi / self.spec.fps).astype(np.float32),
                lf.FRAME_INDEX: fi,
                lf.EPISODE_INDEX: np.full(n, ep.index, dtype=np.int64),
                lf.INDEX: start + fi,
                lf.TASK_INDEX: np.full(n, self._tasks[ep.task], dtype=np.int64),
            }
        )
        self._episodes.append(ep)
        self._current = None

    # -- commit ---------------------------------------------------------------------------------------
    def _episode_stats(self, ep: _Episode, rows: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        out = {k: st.vector_stats(v) for k, v in rows.items()}
        for key, samples in ep.image_samples.items():
            out[key] = st.image_stats(samples)
        return out

    def finish(self) -> Path:
        """Write data, meta and stats, then move the dataset into place. Returns the dataset root."""
        if self._current is not None:
            raise DatasetError("finish() with an open episode")
        if not self._episodes:
            raise DatasetError("no episodes to write")
        for vw in self._videos.values():
            vw.close()
        dc, df = lf.chunk_file(self._data_file)
        ec, ef = lf.chunk_file(self._episodes_file)
        # data parquet
        cols: dict[str, np.ndarray] = {k: np.concatenate([r[k] for r in self._rows]) for k in self._rows[0]}
        arrays, names = [], []
        for k, v in cols.items():
            if v.ndim == 2:
                arrays.append(
                    pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1), pa.float32()), v.shape[1])
                )
            else:
                arrays.append(pa.array(v))
            names.append(k)
        path = self.tmp / lf.data_path(dc, df)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_arrays(arrays, names=names), path, compression="snappy")
        # episodes parquet (+ per-episode stats)
        ep_rows = []
        ep_stats = []
        for ep, rows in zip(self._episodes, self._rows):
            s = self._episode_stats(ep, rows)
            ep_stats.append(s)
            row: dict[str, Any] = {
                "episode_index": ep.index,
                "tasks": [ep.task],
                "length": ep.length,
                "data/chunk_index": dc,
                "data/file_index": df,
                "dataset_from_index": int(rows[lf.INDEX][0]),
                "dataset_to_index": int(rows[lf.INDEX][-1]) + 1,
            }
            for key in ep.from_ts:
                row[f"videos/{key}/chunk_index"] = ep.video_file[key][0]
                row[f"videos/{key}/file_index"] = ep.video_file[key][1]
                row[f"videos/{key}/from_timestamp"] = ep.from_ts[key]
                row[f"videos/{key}/to_timestamp"] = ep.from_ts[key] + ep.length / self.spec.fps
            row["meta/episodes/chunk_index"] = ec
            row["meta/episodes/file_index"] = ef
            for feat, fs in s.items():
                for name in lf.STAT_NAMES:
                    row[f"stats/{feat}/{name}"] = np.asarray(fs[name]).tolist()
            ep_rows.append(row)
        path = self.tmp / lf.episodes_path(ec, ef)
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(ep_rows).to_parquet(path, index=False)
        # tasks
        tasks = pd.DataFrame(
            {"task_index": list(self._tasks.values())}, index=pd.Index(list(self._tasks.keys()), name="task")
        )
        tasks.to_parquet(self.tmp / lf.TASKS_PATH)
        # stats: vectors exact over all frames (old + new), images aggregated from per-episode stats
        all_stats = self._global_stats(cols, ep_stats)
        (self.tmp / lf.STATS_PATH).write_text(json.dumps(st.to_json(all_stats), indent=4))
        total_eps = self._first_episode + len(self._episodes)
        total_frames = self._first_index + len(cols[lf.INDEX])
        info = lf.make_info(
            self.spec.fps,
            self.features,
            self.spec.robot_type,
            total_eps,
            total_frames,
            len(self._tasks),
            self.spec.units,
        )
        if self._existing_info is not None:
            info["robot_type"] = self._existing_info.get("robot_type", info["robot_type"])
        (self.tmp / lf.INFO_PATH).write_text(json.dumps(info, indent=4))
        for rel, data in self.extra_files.items():
            target = self.tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)  # may be a hard link into the existing dataset
            target.write_bytes(data)
        try:
            self._commit()
        finally:
            _unlock(self._lock)
        return self.root

    def _global_stats(
        self, cols: dict[str, np.ndarray], ep_stats: list[dict[str, dict[str, np.ndarray]]]
    ) -> dict[str, dict[str, np.ndarray]]:
        old_cols: dict[str, list[np.ndarray]] = {k: [] for k in cols}
        old_img: dict[str, list[dict[str, np.ndarray]]] = {}
        if self._existing_info is not None:
            for p in sorted(self.root.glob("data/chunk-*/file-*.parquet")):
                t = pq.read_table(p)
                for k in cols:
                    v = t.column(k).to_numpy() if cols[k].ndim == 1 else np.stack(t.column(k).to_numpy(False))
                    old_cols[k].append(v)
            eps = read_episodes(self.root)
            for key in lf.video_keys(self._existing_info):
                prefix = f"stats/{key}/"
                if f"{prefix}mean" in eps.columns:
                    old_img[key] = [
                        {
                            n: np.asarray(_nested(r[prefix + n]))
                            for n in lf.STAT_NAMES
                            if prefix + n in eps.columns
                        }
                        for _, r in eps.iterrows()
                    ]
        out = {}
        for k, v in cols.items():
            out[k] = st.vector_stats(np.concatenate([*old_cols[k], v]) if old_cols[k] else v)
        for key in self.spec.cameras:
            k = lf.image_key(key)
            out[k] = st.aggregate(old_img.get(k, []) + [s[k] for s in ep_stats])
        return out

    def _commit(self) -> None:
        if self.append:
            old = self.root.parent / f".{self.root.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(self.root, old)
            try:
                os.rename(self.tmp, self.root)
            except BaseException:
                os.rename(old, self.root)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            if self.root.exists():  # --overwrite
                old = self.root.parent / f".{self.root.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(self.root, old)
                os.rename(self.tmp, self.root)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(self.tmp, self.root)

    def abort(self) -> None:
        for vw in self._videos.values():
            vw.abort()
        shutil.rmtree(self.tmp, ignore_errors=True)
        _unlock(self._lock)


def _lock(root: Path) -> Any:
    """An exclusive lock on ``.<name>.lock`` next to the dataset (DatasetError if another writer holds it)."""
    import fcntl

    path = root.parent / f".{root.name}.lock"
    fh = open(path, "a+")  # noqa: SIM115 - held until _unlock
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise DatasetError(f"another conversion is writing {root} (lock {path})") from None
    return (fh, path)


def _unlock(lock: Any) -> None:
    if lock is None:
        return
    fh, path = lock
    if not fh.closed:
        with contextlib.suppress(OSError):
            path.unlink()
        fh.close()


def _nested(v: Any) -> Any:
    """numpy object arrays of arrays (pandas' view of nested lists) -> nested Python lists."""
    if isinstance(v, np.ndarray) and v.dtype == object:
        return [_nested(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def read_episodes(root: str | Path) -> pd.DataFrame:
    files = sorted(Path(root).glob("meta/episodes/chunk-*/file-*.parquet"))
    if not files:
        raise lf.FormatError(f"{root}: no meta/episodes/*.parquet")
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return df.sort_values("episode_index").reset_index(drop=True)


@dataclass
class EpisodeData:
    index: int
    task: str
    state: np.ndarray  # (N, D) float32
    action: np.ndarray
    timestamp: np.ndarray
    video: dict[str, tuple[Path, float, float]]  # key -> (file, from_ts, to_ts)


class DatasetReader:
    """Read a LeRobot v3.0 dataset (written here or by lerobot)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.info = lf.read_info(self.root)
        self.fps = int(self.info["fps"])
        self.episodes = read_episodes(self.root)
        tasks = pd.read_parquet(self.root / lf.TASKS_PATH)
        self.tasks = {int(i): str(t) for t, i in zip(tasks.index, tasks["task_index"])}
        self.video_keys = lf.video_keys(self.info)
        self._data: dict[tuple[int, int], pd.DataFrame] = {}

    def stats(self) -> dict[str, Any]:
        p = self.root / lf.STATS_PATH
        return json.loads(p.read_text()) if p.exists() else {}

    def _data_file(self, chunk: int, file: int) -> pd.DataFrame:
        key = (chunk, file)
        if key not in self._data:
            path = self.root / self.info["data_path"].format(chunk_index=chunk, file_index=file)
            if not path.exists():
                raise lf.FormatError(f"missing data file {path}")
            self._data = {key: pq.read_table(path).to_pandas()}
        return self._data[key]

    def episode(self, episode_index: int) -> EpisodeData:
        rows = self.episodes[self.episodes["episode_index"] == episode_index]
        if rows.empty:
            raise lf.FormatError(f"no episode {episode_index}")
        r = rows.iloc[0]
        df = self._data_file(int(r["data/chunk_index"]), int(r["data/file_index"]))
        d = df[df["episode_index"] == episode_index].sort_values("frame_index")
        if len(d) != int(r["length"]):
            raise lf.FormatError(f"episode {episode_index}: {len(d)} data rows, meta says {int(r['length'])}")
        state = (
            np.stack(d[lf.STATE].to_numpy()).astype(np.float32) if lf.STATE in d else np.zeros((len(d), 0))
        )
        action = (
            np.stack(d[lf.ACTION].to_numpy()).astype(np.float32) if lf.ACTION in d else np.zeros((len(d), 0))
        )
        task_idx = int(d[lf.TASK_INDEX].iloc[0])
        video = {}
        for key in self.video_keys:
            path = self.root / self.info["video_path"].format(
                video_key=key,
                chunk_index=int(r[f"videos/{key}/chunk_index"]),
                file_index=int(r[f"videos/{key}/file_index"]),
            )
            video[key] = (
                path,
                float(r[f"videos/{key}/from_timestamp"]),
                float(r[f"videos/{key}/to_timestamp"]),
            )
        return EpisodeData(
            episode_index, self.tasks.get(task_idx, ""), state, action, d[lf.TIMESTAMP].to_numpy(), video
        )

    def episode_indices(self) -> list[int]:
        return [int(i) for i in self.episodes["episode_index"]]

    def frames(self, ep: EpisodeData, key: str) -> Iterator[np.ndarray]:
        """Decoded RGB frames of one episode's video, in frame order."""
        path, t0, t1 = ep.video[key]
        for _, img in read_frames(path, t0, t1, self.fps):
            yield img


def joint_names(info: dict[str, Any], feature: str = lf.STATE) -> Sequence[str]:
    names = info["features"][feature].get("names")
    if isinstance(names, dict):  # older style {"motors": [...]}
        names = next(iter(names.values()))
    return list(names or [])
