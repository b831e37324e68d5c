"""Which bag topics make which LeRobot features (the ``--mapping`` YAML), defaults = the ROS graph contract.

Example (every key optional; these are the defaults)::

    # fps: 30                   # frame grid (unset: 30, or the bags' smolvla.fps from lerobot2bag)
    stamp: header               # header (message header stamps) | receive (bag log time)
    max_age: 0.1                # s, default as-of age limit of every feature (not the action's)
    joint_names: [shoulder_pan, shoulder_lift, elbow_flex, wrist_flex, wrist_roll, gripper]
    state:  {topic: /joint_states}          # sensor_msgs/JointState
    action: {topic: /joint_commands, max_age: 0.5}  # JointTrajectory, or a JointState (leader arm)
    cameras: auto               # every /cameras/<name>/image_raw[/compressed] in the bag; or e.g.
    #   top:   {topic: /cameras/top/image_raw, max_age: 0.1}
    #   wrist: {topic: /cameras/wrist/image_raw/compressed}
    task_topic: null            # a std_msgs/String topic carrying the task (the recorder's events win)
    episode_topic: /smolvla/episode         # recorder start/end events (JSON in std_msgs/String)
    robot_description: /robot_description   # URDF with the calibrated limits (gripper 0..100 %)
    episodes: auto              # auto (recorder events/metadata, else one per bag) | bag | gap
    gap: 1.0                    # s, split where the state stream pauses longer than this (episodes: gap)

Per feature ``max_age`` overrides the global one.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:  # contract A: the robot facts package
    from so_arm_description.joints import JOINT_NAMES
except ImportError:  # pragma: no cover - before so_arm_description is built
    JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")

#: Default as-of age limit of the action (s): a streamed command remains the target until the next one, and
#: commands with a zero header stamp are timed by their (jittery) receive time.
ACTION_MAX_AGE = 0.5
CAMERA_TOPIC = re.compile(r"^/cameras/(?P<name>[A-Za-z0-9_]+)/image_raw(?P<compressed>/compressed)?$")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
STATE_TYPES = ("sensor_msgs/msg/JointState",)
ACTION_TYPES = ("trajectory_msgs/msg/JointTrajectory", "sensor_msgs/msg/JointState")


class MappingError(ValueError):
    pass


@dataclass
class Stream:
    topic: str
    max_age: float | None = None


@dataclass
class Mapping:
    fps: int = 30
    stamp: str = "header"
    max_age: float = 0.1
    joint_names: tuple[str, ...] = tuple(JOINT_NAMES)
    state: Stream = field(default_factory=lambda: Stream("/joint_states"))
    #: a streamed command stays the arm's target until the next one: a longer default age than sensors
    action: Stream = field(default_factory=lambda: Stream("/joint_commands", ACTION_MAX_AGE))
    cameras: dict[str, Stream] | None = None  # None = auto
    task_topic: str | None = None
    episode_topic: str = "/smolvla/episode"
    robot_description: str = "/robot_description"
    episodes: str = "auto"
    gap: float = 1.0
    #: False while fps is the default (then a bag's ``smolvla.fps`` custom_data, e.g. from lerobot2bag, wins)
    fps_given: bool = False

    def validate(self) -> None:
        if not 1 <= self.fps <= 1000:
            raise MappingError(f"fps must be within 1..1000, got {self.fps}")
        if self.stamp not in ("header", "receive"):
            raise MappingError(f"stamp must be 'header' or 'receive', got {self.stamp!r}")
        if not 0 < self.max_age <= 60:
            raise MappingError(f"max_age must be within (0, 60] s, got {self.max_age}")
        if self.episodes not in ("auto", "bag", "gap"):
            raise MappingError(f"episodes must be auto, bag or gap, got {self.episodes!r}")
        if not 0 < self.gap <= 3600:
            raise MappingError(f"gap must be within (0, 3600] s, got {self.gap}")
        if len(set(self.joint_names)) != len(self.joint_names) or not self.joint_names:
            raise MappingError("joint_names must be a non-empty list of distinct names")
        for name, s in self.streams().items():
            if s.max_age is not None and not 0 < s.max_age <= 60:
                raise MappingError(f"{name}: max_age must be within (0, 60] s")

    def streams(self) -> dict[str, Stream]:
        out = {"observation.state": self.state, "action": self.action}
        for cam, s in (self.cameras or {}).items():
            out[f"observation.images.{cam}"] = s
        return out

    def age(self, s: Stream) -> float:
        return s.max_age if s.max_age is not None else self.max_age

    def resolve_cameras(self, topics: dict[str, str]) -> dict[str, Stream]:
        """Cameras of this mapping against a bag's ``topic -> type`` (auto: the contract's camera topics;
        raw preferred over compressed when both are present)."""
        if self.cameras is not None:
            return dict(self.cameras)
        found: dict[str, Stream] = {}
        for topic in sorted(topics):
            m = CAMERA_TOPIC.match(topic)
            if m and topics[topic] in IMAGE_TYPES:
                name = m.group("name")
                if name not in found or not m.group("compressed"):
                    found[name] = Stream(topic)
        return found


def _stream(value: Any, key: str, default_age: float | None = None) -> Stream:
    if isinstance(value, str):
        return Stream(value, default_age)
    if isinstance(value, dict) and "topic" in value:
        unknown = set(value) - {"topic", "max_age"}
        if unknown:
            raise MappingError(f"{key}: unknown keys {sorted(unknown)}")
        age = value.get("max_age", default_age)
        return Stream(str(value["topic"]), float(age) if age is not None else None)
    raise MappingError(f"{key}: expected a topic name or {{topic: ..., max_age: ...}}, got {value!r}")


def load_mapping(path: str | Path | None = None, data: dict[str, Any] | None = None) -> Mapping:
    """Mapping from a YAML file (or a dict); missing keys keep the defaults."""
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise MappingError(f"cannot read mapping {path}: {exc}") from exc
    data = dict(data or {})
    m = Mapping()
    known = set(Mapping.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise MappingError(f"unknown mapping keys: {sorted(unknown)} (known: {sorted(known)})")
    try:
        if "fps" in data:
            m.fps = int(data["fps"])
            m.fps_given = True
        for key in ("max_age", "gap"):
            if key in data:
                setattr(m, key, float(data[key]))
        for key in ("stamp", "episode_topic", "robot_description", "episodes"):
            if key in data:
                setattr(m, key, str(data[key]))
        if data.get("task_topic"):
            m.task_topic = str(data["task_topic"])
        if "joint_names" in data:
            m.joint_names = tuple(str(n) for n in data["joint_names"])
        if "state" in data:
            m.state = _stream(data["state"], "state")
        if "action" in data:
            m.action = _stream(data["action"], "action", ACTION_MAX_AGE)
        cams = data.get("cameras", "auto")
        if cams not in (None, "auto"):
            if not isinstance(cams, dict):
                raise MappingError("cameras: expected 'auto' or a mapping camera -> topic")
            m.cameras = {str(k): _stream(v, f"cameras.{k}") for k, v in cams.items()}
    except (TypeError, ValueError) as exc:
        if isinstance(exc, MappingError):
            raise
        raise MappingError(f"invalid mapping value: {exc}") from exc
    m.validate()
    return m


def default_yaml() -> str:
    """The default mapping as YAML text (``bag2lerobot --print-mapping``)."""
    text = __doc__.split("Example (every key optional; these are the defaults)::\n\n", 1)[1].split("\n\nPer")[
        0
    ]
    return textwrap.dedent(text) + "\n"
