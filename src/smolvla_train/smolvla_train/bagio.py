"""Read rosbag2 bags (MCAP or sqlite3; split, zstd-compressed chunks; bare .mcap/.db3 files) without rclpy.

``open_bag(path)`` returns a :class:`Bag` with the topic list, the ``custom_data`` of ``metadata.yaml`` and
``messages(topics)``, which yields ``(topic, log_time_ns, raw_cdr)``; ``deserialize`` turns raw CDR into a
message object (rosbags' typestore for ROS 2 Kilted, extended with the bag's own definitions when needed).

* A bag directory (``metadata.yaml`` + files, split bags included) is read file by file: MCAP through the
  ``mcap`` library with chunk CRC checks (rosbags' reader does not check them; ``ros2 bag record`` writes
  them) and zstd/lz4 chunk decompression, sqlite3 through ``sqlite3``; file-compressed bags
  (``compression_mode: file``) through ``rosbags.rosbag2.Reader``. Bare ``.mcap`` / ``.db3`` files work too.
  Definitions the typestore cannot parse (e.g. service event types of newer rosbag2) do not stop the bag
  from opening; only a mapped topic that cannot be decoded is an error. Messages come in file order
  (rosbag2 writes in receive order); the converter sorts by stamp itself.
* Damage (truncated MCAP, corrupt chunk, corrupt sqlite page) raises :class:`BagError` naming the file and
  what is wrong. With ``salvage=True`` each file is read record by record up to the damage and the messages
  before it are kept (``Bag.notes`` says what was lost).
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class BagError(RuntimeError):
    """A bag that cannot be read (missing, not a rosbag2 bag, damaged, undecodable topic)."""


@dataclass
class TopicInfo:
    name: str
    msgtype: str
    count: int
    msgdef: str | None = None
    encoding: str = "ros2msg"


#: Bytes of a message enough for its std_msgs/Header stamp (CDR encapsulation + sec + nanosec).
HEAD_BYTES = 16
SALVAGE_HINT = "rerun with --salvage to keep the messages before the damage"


def header_stamp_ns(raw: bytes | memoryview) -> int:
    """Header stamp of a CDR message whose first field is std_msgs/Header (Image, JointState, ...)."""
    if len(raw) < 12:
        raise BagError("message too short for a std_msgs/Header")
    little = raw[1] & 1
    sec, nsec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    return sec * 1_000_000_000 + nsec


def describe_damage(exc: BaseException) -> str:
    """A reader exception as a sentence about the file."""
    name = type(exc).__name__
    text = str(exc).strip()
    if name == "EndOfFile" or "end magic" in text.lower():
        what = "the file ends unexpectedly (truncated)"
    elif name == "InvalidMagic":
        what = "bad MCAP magic (truncated or not an MCAP file)"
    elif name == "CRCValidationError":
        what = "chunk CRC mismatch (corrupt chunk)"
    elif "zstd" in name.lower() or "lz4" in name.lower() or "decompress" in text.lower():
        what = "chunk decompression failed (corrupt chunk)"
    elif name in ("DatabaseError", "CorruptError") or "malformed" in text.lower():
        what = "corrupt sqlite3 database"
    else:
        what = "unreadable data"
    return f"{what} [{name}: {text}]" if text else f"{what} [{name}]"


_TYPESTORE = None


def typestore() -> Any:
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_KILTED)
    return _TYPESTORE


class Bag:
    """Common interface; see module docstring."""

    path: Path
    storage: str
    topics: dict[str, TopicInfo]
    custom_data: dict[str, str]
    start_ns: int
    end_ns: int

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.custom_data = {}
        self.topics = {}
        self.start_ns = self.end_ns = 0

    def messages(self, topics: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
        raise NotImplementedError

    def quick_messages(
        self, topics: Sequence[str], head_only: Sequence[str] = ()
    ) -> Iterator[tuple[str, int, bytes]]:
        """Like ``messages`` (same order per topic), but a reader may skip what is not asked for: for
        ``head_only`` topics only the first ``HEAD_BYTES`` of each message are guaranteed. Uncompressed MCAP
        files with a summary read just these bytes through the message indexes (no chunk CRC check: the
        converter's second pass reads every chunk again with CRCs)."""
        yield from self.messages(topics)

    def close(self) -> None:
        pass

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def message_count(self) -> int:
        return sum(t.count for t in self.topics.values())

    def deserialize(self, topic: str, raw: bytes | memoryview) -> Any:
        info = self.topics[topic]
        ts = typestore()
        if info.msgtype not in ts.types:
            self._register(info)
        try:
            return ts.deserialize_cdr(raw, info.msgtype)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a bad message
            raise BagError(f"{self.path}: cannot decode a {info.msgtype} message on {topic}: {exc}") from exc

    def _register(self, info: TopicInfo) -> None:
        from rosbags.typesys import get_types_from_idl, get_types_from_msg

        if not info.msgdef:
            raise BagError(
                f"{self.path}: type {info.msgtype} of {info.name} is unknown and the bag has no definition"
            )
        try:
            if info.encoding == "ros2idl":
                types = get_types_from_idl(info.msgdef)
            else:
                types = {}
                parts = info.msgdef.split("=" * 80 + "\n")
                types.update(get_types_from_msg(parts[0], info.msgtype))
                for part in parts[1:]:
                    head, _, body = part.partition("\n")
                    if head.startswith("MSG: "):
                        name = head[5:].strip()
                        if "/msg/" not in name:
                            name = name.replace("/", "/msg/", 1)
                        types.update(get_types_from_msg(body, name))
            typestore().register(types)
        except Exception as exc:  # noqa: BLE001
            raise BagError(f"{self.path}: cannot parse the definition of {info.msgtype}: {exc}") from exc


def _read_metadata(directory: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load((directory / "metadata.yaml").read_text())
        return data["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise BagError(f"{directory}: unreadable metadata.yaml: {exc}") from exc


class _RosbagsBag(Bag):
    """A rosbag2 directory through rosbags' Reader (normal, undamaged path)."""

    def __init__(self, path: Path):
        super().__init__()
        from rosbags.rosbag2 import Reader

        self.path = path
        meta = _read_metadata(path)
        self.custom_data = {str(k): str(v) for k, v in (meta.get("custom_data") or {}).items()}
        self.storage = str(meta.get("storage_identifier", ""))
        try:
            self._reader = Reader(path)
            self._reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types for damage
            raise BagError(f"{path}: cannot open bag: {describe_damage(exc)}; {SALVAGE_HINT}") from exc
        self._conns: dict[str, list[Any]] = {}
        for c in self._reader.connections:
            self._conns.setdefault(c.topic, []).append(c)
            fmt = getattr(c.msgdef, "format", None)
            enc = "ros2idl" if fmt is not None and "IDL" in str(fmt).upper() else "ros2msg"
            data = getattr(c.msgdef, "data", None)
            prev = self.topics.get(c.topic)
            count = (prev.count if prev else 0) + int(c.msgcount)
            self.topics[c.topic] = TopicInfo(c.topic, c.msgtype, count, data or None, enc)
        self.start_ns = int(self._reader.start_time) if self._reader.message_count else 0
        self.end_ns = int(self._reader.end_time) if self._reader.message_count else 0

    def messages(self, topics: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
        conns = [c for t in topics for c in self._conns.get(t, [])]
        if not conns:
            return
        try:
            for conn, t, raw in self._reader.messages(connections=conns):
                yield conn.topic, int(t), raw
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BagError(f"{self.path}: damaged bag: {describe_damage(exc)}; {SALVAGE_HINT}") from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._reader.close()


class _McapFile(Bag):
    """One MCAP file through the ``mcap`` library (bare files, and record-by-record salvage)."""

    def __init__(self, path: Path, salvage: bool = False):
        super().__init__()
        from mcap.reader import make_reader

        self.path, self.storage, self.salvage = path, "mcap", salvage
        self._channels: dict[int, tuple[str, str]] = {}
        self._summary: Any = None
        if not salvage:
            try:
                with open(path, "rb") as f:
                    summary = make_reader(f).get_summary()
            except Exception as exc:  # noqa: BLE001
                raise BagError(f"{path}: damaged MCAP file: {describe_damage(exc)}; {SALVAGE_HINT}") from exc
            if summary is None:
                raise BagError(f"{path}: MCAP file has no summary section (truncated?); {SALVAGE_HINT}")
            self._summary = summary
            counts = summary.statistics.channel_message_counts if summary.statistics else {}
            for cid, ch in summary.channels.items():
                sch = summary.schemas.get(ch.schema_id)
                self._add_channel(cid, ch.topic, sch, counts.get(cid, 0))
            if summary.statistics:
                self.start_ns = summary.statistics.message_start_time
                self.end_ns = summary.statistics.message_end_time
        else:
            # one scan to learn topics and counts (up to the damage)
            counts: dict[int, int] = {}
            first = last = None
            for rec in self._records():
                from mcap.records import Message

                if isinstance(rec, Message):
                    counts[rec.channel_id] = counts.get(rec.channel_id, 0) + 1
                    first = rec.log_time if first is None else min(first, rec.log_time)
                    last = rec.log_time if last is None else max(last, rec.log_time)
            for info in self.topics.values():
                info.count = sum(
                    n for cid, n in counts.items() if self._channels.get(cid, ("",))[0] == info.name
                )
            self.start_ns, self.end_ns = first or 0, last or 0

    def _add_channel(self, cid: int, topic: str, schema: Any, count: int) -> None:
        msgtype = schema.name if schema is not None else ""
        msgdef = schema.data.decode(errors="replace") if schema is not None else None
        enc = schema.encoding if schema is not None else "ros2msg"
        self._channels[cid] = (topic, msgtype)
        prev = self.topics.get(topic)
        self.topics[topic] = TopicInfo(topic, msgtype, (prev.count if prev else 0) + count, msgdef, enc)

    def _records(self) -> Iterator[Any]:
        """Records up to the end or (salvage) the first damage; schemas/channels registered on the way."""
        from mcap.records import Channel, Chunk, Schema
        from mcap.stream_reader import StreamReader, breakup_chunk

        schemas: dict[int, Any] = {}
        with open(self.path, "rb") as f:
            # chunks are broken up here so that each chunk's CRC is checked (when the writer stored one)
            # without the running CRC over the whole file that validate_crcs=True would add
            it = iter(StreamReader(f, emit_chunks=True).records)
            pending: list[Any] = []
            while True:
                try:
                    if not pending:
                        rec = next(it)
                        if isinstance(rec, Chunk):
                            pending = breakup_chunk(rec, validate_crc=True)
                            pending.reverse()
                            continue
                    else:
                        rec = pending.pop()
                except StopIteration:
                    return
                except Exception as exc:  # noqa: BLE001 - truncation, bad CRC, bad compression, ...
                    what = f"damaged near byte {f.tell()}: {describe_damage(exc)}"
                    note = f"{self.path.name}: {what}"
                    if not self.salvage:
                        raise BagError(f"{self.path}: {what}; {SALVAGE_HINT}") from exc
                    if note not in self.notes:
                        self.notes.append(note + "; messages after it are lost")
                    return
                if isinstance(rec, Schema):
                    schemas[rec.id] = rec
                elif isinstance(rec, Channel) and rec.id not in self._channels:
                    self._add_channel(rec.id, rec.topic, schemas.get(rec.schema_id), 0)
                yield rec

    def messages(self, topics: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
        from mcap.records import Message

        wanted = set(topics)
        for rec in self._records():
            if isinstance(rec, Message):
                topic = self._channels.get(rec.channel_id, ("",))[0]
                if topic in wanted:
                    yield topic, int(rec.log_time), rec.data

    def quick_messages(
        self, topics: Sequence[str], head_only: Sequence[str] = ()
    ) -> Iterator[tuple[str, int, bytes]]:
        summ = self._summary
        if summ is None or not summ.chunk_indexes or any(c.compression for c in summ.chunk_indexes):
            yield from self.messages(topics)
            return
        wanted = {cid: t for cid, (t, _) in self._channels.items() if t in set(topics)}
        head = set(head_only)
        try:
            with open(self.path, "rb") as f:
                for ci in sorted(summ.chunk_indexes, key=lambda c: c.chunk_start_offset):
                    entries: list[tuple[int, int, int]] = []  # (offset in chunk records, log time, channel)
                    for cid, off in ci.message_index_offsets.items():
                        if cid not in wanted:
                            continue
                        f.seek(off)
                        op, _length, chan, nbytes = struct.unpack("<BQHI", f.read(15))
                        if op != 0x07 or chan != cid:
                            raise BagError(f"message index of channel {cid} not at byte {off}")
                        raw = f.read(nbytes)
                        entries.extend((o, t, cid) for t, o in struct.iter_unpack("<QQ", raw))
                    if not entries:
                        continue
                    f.seek(ci.chunk_start_offset + 1 + 8 + 8 + 8 + 8 + 4)
                    (comp_len,) = struct.unpack("<I", f.read(4))
                    records = ci.chunk_start_offset + 1 + 8 + 8 + 8 + 8 + 4 + 4 + comp_len + 8
                    for o, t, cid in sorted(entries):
                        f.seek(records + o)
                        op, length = struct.unpack("<BQ", f.read(9))
                        if op != 0x05:
                            raise BagError(f"no message record at chunk offset {o}")
                        f.seek(2 + 4 + 8 + 8, 1)
                        size = length - 22
                        topic = wanted[cid]
                        data = f.read(min(size, HEAD_BYTES) if topic in head else size)
                        yield topic, t, data
        except (OSError, struct.error, BagError) as exc:
            raise BagError(f"{self.path}: damaged MCAP file: {describe_damage(exc)}; {SALVAGE_HINT}") from exc


class _SqliteFile(Bag):
    """One rosbag2 sqlite3 file through ``sqlite3`` (bare files, and row-by-row salvage)."""

    def __init__(self, path: Path, salvage: bool = False):
        super().__init__()
        self.path, self.storage, self.salvage = path, "sqlite3", salvage
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
            rows = self._db.execute("SELECT id, name, type FROM topics").fetchall()
        except sqlite3.Error as exc:
            raise BagError(
                f"{path}: not a readable rosbag2 sqlite3 file: {describe_damage(exc)}; {SALVAGE_HINT}"
            ) from exc
        self._ids = {int(i): str(n) for i, n, _ in rows}
        defs: dict[str, tuple[str, str]] = {}
        try:
            for name, enc, text in self._db.execute(
                "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"
            ):
                defs[str(name)] = (str(enc), str(text))
        except sqlite3.Error:
            pass
        counts: dict[int, int] = {}
        if not salvage:
            try:
                for tid, n in self._db.execute("SELECT topic_id, COUNT(*) FROM messages GROUP BY topic_id"):
                    counts[int(tid)] = int(n)
                lo, hi = self._db.execute("SELECT MIN(timestamp), MAX(timestamp) FROM messages").fetchone()
                self.start_ns, self.end_ns = int(lo or 0), int(hi or 0)
            except sqlite3.Error as exc:
                raise BagError(
                    f"{path}: damaged sqlite3 bag: {describe_damage(exc)}; {SALVAGE_HINT}"
                ) from exc
        else:
            times = []
            for tid, t, _ in self._rows():
                counts[tid] = counts.get(tid, 0) + 1
                times.append(t)
            self.start_ns, self.end_ns = (min(times), max(times)) if times else (0, 0)
        for i, n, ty in rows:
            enc, text = defs.get(str(ty), ("ros2msg", None))
            self.topics[str(n)] = TopicInfo(str(n), str(ty), counts.get(int(i), 0), text, enc or "ros2msg")

    def _rows(self, topic_ids: set[int] | None = None) -> Iterator[tuple[int, int, bytes]]:
        last = -1
        while True:
            try:
                batch = self._db.execute(
                    "SELECT id, topic_id, timestamp, data FROM messages WHERE id > ? ORDER BY id LIMIT 256",
                    (last,),
                ).fetchall()
            except sqlite3.Error as exc:
                note = f"{self.path.name}: damaged after message row {last}: {describe_damage(exc)}"
                if not self.salvage:
                    raise BagError(f"{self.path}: {note}; {SALVAGE_HINT}") from exc
                if note + "; messages after it are lost" not in self.notes:
                    self.notes.append(note + "; messages after it are lost")
                return
            if not batch:
                return
            for rid, tid, t, data in batch:
                last = int(rid)
                if topic_ids is None or int(tid) in topic_ids:
                    yield int(tid), int(t), bytes(data)

    def messages(self, topics: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
        ids = {i for i, n in self._ids.items() if n in set(topics)}
        if not self.salvage:
            try:
                q = (
                    "SELECT topic_id, timestamp, data FROM messages WHERE topic_id IN (%s) ORDER BY timestamp"
                    % (",".join("?" * len(ids)) or "NULL")
                )
                for tid, t, data in self._db.execute(q, tuple(ids)):
                    yield self._ids[int(tid)], int(t), bytes(data)
            except sqlite3.Error as exc:
                raise BagError(
                    f"{self.path}: damaged sqlite3 bag: {describe_damage(exc)}; {SALVAGE_HINT}"
                ) from exc
            return
        for tid, t, data in self._rows(ids):
            yield self._ids[tid], t, data

    def close(self) -> None:
        self._db.close()


class _FilesBag(Bag):
    """A bag directory read file by file (MCAP through ``mcap`` with CRC checks, sqlite3 through ``sqlite3``);
    with ``salvage`` each file is read up to its damage."""

    def __init__(self, path: Path, salvage: bool = False):
        super().__init__()
        self.path = path
        meta = _read_metadata(path)
        self.custom_data = {str(k): str(v) for k, v in (meta.get("custom_data") or {}).items()}
        self.storage = str(meta.get("storage_identifier", ""))
        self._message_zstd = meta.get("compression_mode") == "message"
        if self._message_zstd and meta.get("compression_format") != "zstd":
            raise BagError(f"{path}: unsupported message compression {meta.get('compression_format')!r}")
        self.files: list[Bag] = []
        try:
            for rel in meta.get("relative_file_paths") or []:
                p = path / rel
                if not p.exists():
                    if not salvage:
                        raise BagError(f"{path}: bag file {rel} listed in metadata.yaml is missing")
                    self.notes.append(f"{rel}: missing")
                    continue
                self.files.append(_open_file(p, salvage))
        except BaseException:
            self.close()
            raise
        for f in self.files:
            self.notes.extend(f.notes)
            for name, info in f.topics.items():
                prev = self.topics.get(name)
                count = (prev.count if prev else 0) + info.count
                self.topics[name] = TopicInfo(name, info.msgtype, count, info.msgdef, info.encoding)
        starts = [f.start_ns for f in self.files if f.end_ns]
        self.start_ns = min(starts) if starts else 0
        self.end_ns = max((f.end_ns for f in self.files), default=0)

    def messages(self, topics: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
        for f in self.files:
            if self._message_zstd:
                import zstandard

                dec = zstandard.ZstdDecompressor()
                for topic, t, raw in f.messages(topics):
                    try:
                        yield topic, t, dec.decompressobj().decompress(raw)
                    except zstandard.ZstdError as exc:
                        raise BagError(f"{f.path}: {topic}: {describe_damage(exc)}") from exc
            else:
                yield from f.messages(topics)
            for n in f.notes:
                if n not in self.notes:
                    self.notes.append(n)

    def quick_messages(
        self, topics: Sequence[str], head_only: Sequence[str] = ()
    ) -> Iterator[tuple[str, int, bytes]]:
        if self._message_zstd:
            yield from self.messages(topics)
            return
        for f in self.files:
            yield from f.quick_messages(topics, head_only)

    def close(self) -> None:
        for f in self.files:
            f.close()


def _open_file(path: Path, salvage: bool) -> Bag:
    if path.suffix == ".mcap":
        return _McapFile(path, salvage)
    if path.suffix == ".db3":
        return _SqliteFile(path, salvage)
    raise BagError(f"{path}: not a bag file (.mcap or .db3)")


def is_bag(path: str | Path) -> bool:
    p = Path(path)
    return (p.is_dir() and (p / "metadata.yaml").exists()) or (p.is_file() and p.suffix in (".mcap", ".db3"))


def find_bags(path: str | Path) -> list[Path]:
    """A bag (directory or file), or a directory whose sub-directories are bags (sorted by name)."""
    p = Path(path)
    if not p.exists():
        raise BagError(f"{p}: no such file or directory")
    if is_bag(p):
        return [p]
    if p.is_dir():
        bags = sorted(c for c in p.iterdir() if is_bag(c) and not c.name.endswith((".partial", ".tmp")))
        if bags:
            return bags
    raise BagError(f"{p}: not a rosbag2 bag (no metadata.yaml, .mcap or .db3) nor a directory of bags")


def open_bag(path: str | Path, salvage: bool = False) -> Bag:
    p = Path(path)
    if not p.exists():
        raise BagError(f"{p}: no such file or directory")
    if p.is_file():
        return _open_file(p, salvage)
    if not (p / "metadata.yaml").exists():
        raise BagError(f"{p}: no metadata.yaml (not a rosbag2 bag directory)")
    meta = _read_metadata(p)
    if meta.get("compression_mode") == "file":  # whole files compressed: rosbags decompresses them
        if salvage:
            raise BagError(f"{p}: --salvage does not support file-compressed bags")
        return _RosbagsBag(p)
    return _FilesBag(p, salvage)
