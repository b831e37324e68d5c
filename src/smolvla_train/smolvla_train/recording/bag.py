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


def update_custom_data(bag_dir: str | os.PathLike, values: dict[str, str]) -> None:
    """Set ``custom_data`` entries in the ``metadata.yaml`` of a finished bag (written to a temporary file,
    fsynced and renamed over it: a reader sees the old or the new file, never a half-written one)."""
    import yaml

    path = Path(bag_dir) / "metadata.yaml"
    doc = yaml.safe_load(path.read_text())
    info = doc["rosbag2_bagfile_information"]
    custom = dict(info.get("custom_data") or {})
    custom.update({k: str(v) for k, v in values.items()})
    info["custom_data"] = custom
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc, default_flow_style=False, sort_keys=False))
    _fsync_file(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


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
def _qos_list(text: str) -> list[Qos]:
    from rosbags.rosbag2.metadata import parse_qos

    try:
        return parse_qos(text) if text else []
    except Exception:  # noqa: BLE001 (unreadable profiles: the topic is still recovered)
        return []


def _rihs01(msgtype: str, stored: str) -> str:
    if stored:
        return stored
    from smolvla_train.recording.typedefs import TypeLibrary

    try:
        return TypeLibrary().info(msgtype).rihs01
    except Exception:  # noqa: BLE001 (type not installed here: unknown hash)
        return "RIHS01_" + "0" * 64


def _read_partial_mcap(path: Path) -> tuple[list[TopicSpec], list[tuple[str, int, bytes]]]:
    """Every complete record of a partial MCAP file (``mcap``'s stream reader, up to a truncated one)."""
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    records: list[Message] = []
    with open(path, "rb") as f:
        reader = StreamReader(f, skip_magic=False)
        try:
            for record in reader.records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message):
                    records.append(record)
        except Exception:  # noqa: BLE001 (a truncated record ends the readable part)
            pass
    specs: list[TopicSpec] = []
    topic_of: dict[int, str] = {}
    for cid, ch in sorted(channels.items()):
        schema = schemas.get(ch.schema_id)
        if schema is None:
            continue
        rihs01 = _rihs01(schema.name, ch.metadata.get("topic_type_hash", ""))
        qos = _qos_list(ch.metadata.get("offered_qos_profiles", ""))
        specs.append(TopicSpec(ch.topic, schema.name, schema.data.decode(), rihs01, qos))
        topic_of[cid] = ch.topic
    messages = [(topic_of[m.channel_id], m.log_time, m.data) for m in records if m.channel_id in topic_of]
    return specs, messages


def _read_partial_sqlite3(path: Path) -> tuple[list[TopicSpec], list[tuple[str, int, bytes]]]:
    """Every committed row of a partial sqlite3 bag (the recorder commits at every flush; SQLite rolls the
    transaction a crash interrupted back when the file is opened, so what is read is consistent)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{path}", uri=True)
    try:
        definitions = {
            row[0]: row[1]
            for row in conn.execute("SELECT topic_type, encoded_message_definition FROM message_definitions")
        }
        specs: list[TopicSpec] = []
        topic_of: dict[int, str] = {}
        for tid, topic, msgtype, qos_text, rihs01 in conn.execute(
            "SELECT id, name, type, offered_qos_profiles, type_description_hash FROM topics ORDER BY id"
        ):
            msgdef = definitions.get(msgtype, "")
            if not msgdef:
                from smolvla_train.recording.typedefs import TypeLibrary

                try:
                    msgdef = TypeLibrary().info(msgtype).msgdef
                except Exception:  # noqa: BLE001 (no definition anywhere: the topic cannot be written)
                    continue
            specs.append(TopicSpec(topic, msgtype, msgdef, _rihs01(msgtype, rihs01), _qos_list(qos_text)))
            topic_of[tid] = topic
        messages = [
            (topic_of[tid], int(t), bytes(data))
            for tid, t, data in conn.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id")
            if tid in topic_of
        ]
    finally:
        conn.close()
    return specs, messages


def recover_partial(partial_dir: str | os.PathLike, *, version: int = 9) -> tuple[Path, int]:
    """Turn the partial bag (MCAP or sqlite3) of a crashed recording into a finished bag next to it.

    MCAP: every complete record of ``<name>.partial/<name>_0/<name>_0.mcap`` (``mcap``'s stream reader, up to
    the first truncated one); sqlite3: every committed row of ``<name>_0.db3``. They are written to a new bag
    ``<out_dir>/<name>`` of the same storage (so ``metadata.yaml`` and, for sqlite3, the index are written
    anew: what ``ros2 bag reindex`` would do) with the ``custom_data`` of the report plus
    ``smolvla.outcome: partial``. Returns (bag path, messages recovered); the partial directory is removed
    afterwards.
    """
    partial = Path(partial_dir)
    if not partial.name.endswith(PARTIAL_SUFFIX):
        raise BagError(f"{partial} is not a partial recording ({PARTIAL_SUFFIX} directory)")
    name = partial.name[: -len(PARTIAL_SUFFIX)]
    report = read_report(partial)
    mcap_path = partial / f"{name}_0" / f"{name}_0.mcap"
    db3_path = partial / f"{name}_0" / f"{name}_0.db3"
    if mcap_path.is_file():
        storage, (specs, messages) = "mcap", _read_partial_mcap(mcap_path)
    elif db3_path.is_file():
        storage, (specs, messages) = "sqlite3", _read_partial_sqlite3(db3_path)
    else:
        raise BagError(f"{partial}: no bag file to recover ({mcap_path.name} or {db3_path.name})")
    tmp_out = partial.parent / f".{name}.recovering"
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir()
    try:
        bag = EpisodeBag(tmp_out, name, storage=storage, version=version, report=report)
        for spec in specs:
            bag.add_topic(spec)
        n = 0
        for topic, log_time, data in sorted(messages, key=lambda m: m[1]):
            bag.write(topic, log_time, data)
            n += 1
        custom = {k: str(v) for k, v in report.get("custom_data", {}).items()}
        custom["smolvla.outcome"] = "partial"
        if messages and "smolvla.end_ns" in custom:
            custom["smolvla.end_ns"] = str(max(m[1] for m in messages))
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
        description="Turn the partial recordings (<name>.partial/, MCAP or sqlite3) that a crashed "
        "episode_recorder left in a directory into finished bags (custom_data smolvla.outcome: partial).",
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
