"""One episode = one rosbag2 bag, written under a temporary name and renamed when complete.

Layout (contract B in ``/work/coord/CONTRACTS.md`` / ``docs/recording.md``)::

    <out_dir>/<name>/metadata.yaml, <name>_0.mcap        finished bag (what ``ros2 bag record`` writes)
    <out_dir>/<name>.partial/recording.json             while recording / after a crash: the report
    <out_dir>/<name>.partial/<name>_0/<name>_0.mcap      the bag being written (no metadata.yaml yet)

The bag is written with the ``rosbags`` writer (rosbag2 format version 9: ``metadata.yaml`` with
``custom_data``, message definitions in the MCAP schemas, offered QoS profiles per topic). While recording,
the pending MCAP chunk is closed and flushed every ``flush()`` (the recorder calls it about once a second), so
a crash loses at most the last second: the partial ``.mcap`` has no summary section but its chunks (each with
its schema and channel records) are readable by ``mcap``'s stream reader, and :func:`recover_partial` turns it
into a finished bag (``smolvla.outcome: partial``). Only a finished bag has a ``metadata.yaml`` at the top of
its directory; readers list episodes with :func:`list_bags`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.interfaces import Qos
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin

PARTIAL_SUFFIX = ".partial"
REPORT_NAME = "recording.json"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
COMPRESSIONS = ("none", "zstd")


class BagError(RuntimeError):
    """A bag cannot be created, written or finished (the message says why)."""


@dataclass
class TopicSpec:
    """One topic of a bag."""

    name: str
    msgtype: str  # pkg/msg/Name
    msgdef: str
    rihs01: str
    qos: list[Qos] = field(default_factory=list)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class EpisodeBag:
    """A bag being written; ``finish()`` makes it ``<out_dir>/<name>``, ``discard()`` removes it."""

    def __init__(
        self,
        out_dir: str | os.PathLike,
        name: str,
        *,
        storage: str = "mcap",
        compression: str = "none",
        version: int = 9,
        report: dict | None = None,
    ) -> None:
        if storage not in STORAGES:
            raise BagError(f"storage must be one of {list(STORAGES)}, got {storage!r}")
        if compression not in COMPRESSIONS:
            raise BagError(f"compression must be one of {list(COMPRESSIONS)}, got {compression!r}")
        if not name or "/" in name or name.startswith(".") or name.endswith(PARTIAL_SUFFIX):
            raise BagError(f"invalid bag name {name!r}")
        self.out_dir = Path(out_dir).expanduser()
        self.name = name
        self.storage = storage
        self.final_path = self.out_dir / name
        self.staging = self.out_dir / f"{name}{PARTIAL_SUFFIX}"
        self.bag_path = self.staging / f"{name}_0"
        if self.final_path.exists():
            raise BagError(f"{self.final_path} exists already (not overwriting a recorded episode)")
        if self.staging.exists():
            raise BagError(f"{self.staging} exists (a partial recording; recover or remove it first)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir()
        self.report = dict(report or {})
        self.report.update(
            name=name,
            status="recording",
            storage=storage,
            pid=os.getpid(),
            started_wall=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        _write_json_atomic(self.staging / REPORT_NAME, self.report)
        self.writer = Writer(self.bag_path, version=version, storage_plugin=STORAGES[storage])  # type: ignore[arg-type]
        if compression == "zstd":
            # MCAP: zstd-compressed chunks (rosbag2's "storage" compression); sqlite3: per message
            mode = CompressionMode.STORAGE if storage == "mcap" else CompressionMode.MESSAGE
            self.writer.set_compression(mode, CompressionFormat.ZSTD)
        self.writer.open()
        self.connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.closed = False

    # -- writing -------------------------------------------------------------------------------------------
    def add_topic(self, spec: TopicSpec) -> None:
        if spec.name in self.connections:
            return
        self.connections[spec.name] = self.writer.add_connection(
            spec.name,
            spec.msgtype,
            msgdef=spec.msgdef,
            rihs01=spec.rihs01,
            offered_qos_profiles=list(spec.qos),
        )
        self.counts[spec.name] = 0

    def write(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        conn = self.connections.get(topic)
        if conn is None:
            raise BagError(f"topic {topic} was not added to the bag")
        self.writer.write(conn, int(timestamp_ns), data)  # type: ignore[arg-type]
        self.counts[topic] += 1

    def flush(self) -> None:
        """Make everything written so far readable after a crash (close the pending chunk, flush)."""
        storage = self.writer.storage
        if storage is None:
            return
        chunk = getattr(storage, "chunk", None)
        if chunk is not None and hasattr(storage, "close_chunk"):  # MCAP
            if chunk.bio.tell() and chunk.msgs:
                storage.close_chunk()
            bio = getattr(storage, "bio", None)
            if bio is not None:
                bio.flush()
        conn = getattr(storage, "conn", None)
        if conn is not None:  # sqlite3
            conn.commit()

    # -- ending --------------------------------------------------------------------------------------------
    def finish(self, custom_data: dict[str, str]) -> Path:
        """Close the bag (metadata.yaml with ``custom_data``), rename it to its final name; returns it."""
        if self.closed:
            raise BagError("bag already closed")
        for key, value in custom_data.items():
            self.writer.set_custom_data(key, str(value))
        self.writer.close()
        self.closed = True
        for path in self.bag_path.iterdir():  # on disk before the name says "complete" (power loss too)
            _fsync_file(path)
        if self.final_path.exists():
            raise BagError(f"{self.final_path} appeared while recording; the bag stays in {self.bag_path}")
        os.replace(self.bag_path, self.final_path)
        _fsync_dir(self.out_dir)
        with contextlib.suppress(OSError):
            (self.staging / REPORT_NAME).unlink()
            self.staging.rmdir()
        return self.final_path

    def discard(self) -> None:
        """Drop the bag being written (nothing of it remains)."""
        if not self.closed:
            with contextlib.suppress(Exception):
                self.writer.abort()
            self.closed = True
        shutil.rmtree(self.staging, ignore_errors=True)

    def mark_failed(self, reason: str) -> None:
        """Stop writing after an error: the partial bag and its report (with the reason) stay for recovery."""
        if not self.closed:
            with contextlib.suppress(Exception):
                self.flush()
            with contextlib.suppress(Exception):
                self.writer.abort()
            self.closed = True
        self.report.update(status="failed", error=reason)
        with contextlib.suppress(OSError):
            _write_json_atomic(self.staging / REPORT_NAME, self.report)


# -- finding bags --------------------------------------------------------------------------------------------
def is_finished_bag(path: Path) -> bool:
    return path.is_dir() and (path / "metadata.yaml").is_file() and not path.name.startswith(".")


def list_bags(out_dir: str | os.PathLike) -> list[Path]:
    """Finished episode bags in ``out_dir`` (sorted by name); partial and hidden directories are skipped."""
    root = Path(out_dir).expanduser()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if is_finished_bag(p) and not p.name.endswith(PARTIAL_SUFFIX))


def list_partials(out_dir: str | os.PathLike) -> list[Path]:
    root = Path(out_dir).expanduser()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith(PARTIAL_SUFFIX))


def read_report(partial_dir: Path) -> dict:
    try:
        return json.loads((partial_dir / REPORT_NAME).read_text())
    except (OSError, ValueError):
        return {}


# -- recovery ------------------------------------------------------------------------------------------------
def recover_partial(partial_dir: str | os.PathLike, *, version: int = 9) -> tuple[Path, int]:
    """Turn the partial MCAP bag of a crashed recording into a finished bag next to it.

    Reads every complete record of ``<name>.partial/<name>_0/<name>_0.mcap`` with ``mcap``'s stream reader
    (up to the first truncated one) and writes them to ``<out_dir>/<name>`` with the ``custom_data`` of the
    report plus ``smolvla.outcome: partial``. Returns (bag path, messages recovered); the partial directory
    is removed afterwards.
    """
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader
    from rosbags.rosbag2.metadata import parse_qos

    from smolvla_train.recording.typedefs import TypeLibrary

    partial = Path(partial_dir)
    if not partial.name.endswith(PARTIAL_SUFFIX):
        raise BagError(f"{partial} is not a partial recording ({PARTIAL_SUFFIX} directory)")
    name = partial.name[: -len(PARTIAL_SUFFIX)]
    report = read_report(partial)
    mcap_path = partial / f"{name}_0" / f"{name}_0.mcap"
    if not mcap_path.is_file():
        raise BagError(
            f"{partial}: no MCAP file to recover ({mcap_path.name}; sqlite3 bags: use ros2 bag reindex)"
        )
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    messages: list[Message] = []
    with open(mcap_path, "rb") as f:
        reader = StreamReader(f, skip_magic=False)
        try:
            for record in reader.records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message):
                    messages.append(record)
        except Exception:  # noqa: BLE001 (a truncated record ends the readable part)
            pass
    tmp_out = partial.parent / f".{name}.recovering"
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir()
    try:
        bag = EpisodeBag(tmp_out, name, storage="mcap", version=version, report=report)

        topic_of: dict[int, str] = {}
        for cid, ch in sorted(channels.items()):
            schema = schemas.get(ch.schema_id)
            if schema is None:
                continue
            qos_text = ch.metadata.get("offered_qos_profiles", "")
            try:
                qos = parse_qos(qos_text) if qos_text else []
            except Exception:  # noqa: BLE001
                qos = []
            rihs01 = ch.metadata.get("topic_type_hash", "")
            if not rihs01:
                try:
                    rihs01 = TypeLibrary().info(schema.name).rihs01
                except Exception:  # noqa: BLE001 (type not installed here: unknown hash)
                    rihs01 = "RIHS01_" + "0" * 64
            bag.add_topic(TopicSpec(ch.topic, schema.name, schema.data.decode(), rihs01, qos))
            topic_of[cid] = ch.topic
        n = 0
        for msg in sorted(messages, key=lambda m: m.log_time):
            topic = topic_of.get(msg.channel_id)
            if topic is not None:
                bag.write(topic, msg.log_time, msg.data)
                n += 1
        custom = {k: str(v) for k, v in report.get("custom_data", {}).items()}
        custom["smolvla.outcome"] = "partial"
        if messages and "smolvla.end_ns" in custom:
            custom["smolvla.end_ns"] = str(max(m.log_time for m in messages))
        bag.finish(custom)
        final = partial.parent / name
        if final.exists():
            raise BagError(f"{final} exists; the recovered bag stays in {tmp_out / name}")
        os.replace(tmp_out / name, final)
    finally:
        with contextlib.suppress(OSError):
            tmp_out.rmdir()
    shutil.rmtree(partial, ignore_errors=True)
    return final, n


def recover_main(argv: list[str] | None = None) -> int:
    """``smolvla_train recover-bags DIR``: finish the partial recordings a crash left in DIR."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="smolvla_train recover-bags",
        description="Turn the partial MCAP recordings (<name>.partial/) that a crashed episode_recorder left "
        "in a directory into finished bags (custom_data smolvla.outcome: partial).",
    )
    parser.add_argument("out_dir", help="directory of the episode bags")
    parser.add_argument(
        "--list", action="store_true", help="only list the partial recordings and their reports"
    )
    args = parser.parse_args(argv)
    partials = list_partials(args.out_dir)
    if not partials:
        print(f"no partial recordings in {args.out_dir}")
        return 0
    code = 0
    for partial in partials:
        report = read_report(partial)
        if args.list:
            print(f"{partial}: {json.dumps(report, sort_keys=True)}")
            continue
        try:
            bag, n = recover_partial(partial)
            print(f"{partial} -> {bag} ({n} messages)")
        except Exception as exc:  # noqa: BLE001 (report and go on with the others)
            print(f"{partial}: cannot recover: {exc}")
            code = 1
    return code
