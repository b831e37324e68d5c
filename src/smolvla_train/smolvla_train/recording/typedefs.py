"""Message definitions and type hashes of ROS 2 message types, for MCAP schemas and rosbag2 metadata.

A bag must carry each type's full definition (the ``ros2msg`` text with its dependencies, as ``ros2 bag
record`` writes it) and its RIHS01 type hash. The definitions come from the ``.msg`` files installed in the
ament prefixes (``<prefix>/share/<pkg>/msg/<Type>.msg``), so project types such as
``smolvla_msgs/msg/QueueStatus`` are covered; types not installed fall back to rosbags' built-in Kilted
store. The hash is the one rosidl generated (``<Type>.json`` next to the ``.msg``) when present, else the one
rosbags computes from the definition (the same algorithm).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

PRIMITIVES = {
    "bool",
    "byte",
    "char",
    "float32",
    "float64",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "string",
    "wstring",
}
_FIELD = re.compile(r"^\s*([A-Za-z_][\w/]*)(?:<=\d+)?(?:\[[^\]]*\])?\s+[A-Za-z_]\w*")


@dataclass(frozen=True)
class TypeInfo:
    """What a bag needs of one message type."""

    msgtype: str  # "pkg/msg/Name"
    msgdef: str  # ros2msg text with dependencies
    rihs01: str  # "RIHS01_<hex>"


def normalize(msgtype: str) -> str:
    """``pkg/Name`` or ``pkg/msg/Name`` -> ``pkg/msg/Name``."""
    parts = msgtype.strip("/").split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3:
        return "/".join(parts)
    raise ValueError(f"not a message type name: {msgtype!r}")


def ament_prefixes() -> list[Path]:
    return [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]


class TypeLibrary:
    """Resolves message types to :class:`TypeInfo` (cached)."""

    def __init__(self, prefixes: list[Path] | None = None) -> None:
        self.prefixes = ament_prefixes() if prefixes is None else list(prefixes)
        self.store = get_typestore(Stores.ROS2_KILTED)
        self._cache: dict[str, TypeInfo] = {}
        self._loaded: set[str] = set()

    def _find(self, msgtype: str, suffix: str) -> Path | None:
        pkg, kind, name = msgtype.split("/")
        for prefix in self.prefixes:
            path = prefix / "share" / pkg / kind / f"{name}{suffix}"
            if path.is_file():
                return path
        return None

    def _load(self, msgtype: str) -> None:
        """Register ``msgtype`` and its dependencies from installed .msg files (installed beats built-in)."""
        if msgtype in self._loaded:
            return
        self._loaded.add(msgtype)
        path = self._find(msgtype, ".msg")
        if path is None:
            if msgtype not in self.store.fielddefs:
                raise KeyError(f"message type {msgtype} is not installed (no share/.../{msgtype}.msg)")
            return
        text = path.read_text()
        pkg = msgtype.split("/")[0]
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            m = _FIELD.match(line)
            if m is None or "=" in line:  # not a field, or a constant
                continue
            ftype = m.group(1)
            if ftype in PRIMITIVES:
                continue
            if ftype == "Header":
                dep = "std_msgs/msg/Header"
            elif "/" in ftype:
                dep = normalize(ftype)
            else:
                dep = f"{pkg}/msg/{ftype}"
            self._load(dep)
        self.store.register(get_types_from_msg(text, msgtype))

    def info(self, msgtype: str) -> TypeInfo:
        msgtype = normalize(msgtype)
        cached = self._cache.get(msgtype)
        if cached is not None:
            return cached
        self._load(msgtype)
        msgdef, _ = self.store.generate_msgdef(msgtype, ros_version=2)
        rihs01 = ""
        json_path = self._find(msgtype, ".json")
        if json_path is not None:
            try:
                hashes = json.loads(json_path.read_text()).get("type_hashes", [])
                rihs01 = next((h["hash_string"] for h in hashes if h.get("type_name") == msgtype), "")
            except (OSError, ValueError, KeyError, TypeError):
                rihs01 = ""
        if not rihs01:
            rihs01 = self.store.hash_rihs01(msgtype)
        info = TypeInfo(msgtype, msgdef, rihs01)
        self._cache[msgtype] = info
        return info
