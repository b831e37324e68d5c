"""QoS of recorded topics: the publishers' offered profiles (for the bag) and the subscription's (adapted).

Like ``ros2 bag record``: subscribe reliable only if every publisher offers reliable (a reliable reader does
not match a best-effort writer), transient-local only if every publisher offers it (so latched topics such
as ``/robot_description`` are received at all). Profiles are duck-typed rclpy ``QoSProfile`` objects.
"""

from __future__ import annotations

from typing import Any

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

_INFINITE_NS = 0x7FFFFFFFFFFFFFFF


def _time(duration: Any) -> QosTime:
    ns = int(getattr(duration, "nanoseconds", 0) or 0)
    if ns <= 0 or ns >= _INFINITE_NS:
        # rosbag2 writes "infinite" durations as the RMW's infinite value in sec/nsec
        return QosTime(2147483647, 4294967295) if ns >= _INFINITE_NS else QosTime(0, 0)
    return QosTime(ns // 1_000_000_000, ns % 1_000_000_000)


def _enum(enum_cls: Any, value: Any, default: Any) -> Any:
    name = getattr(value, "name", str(value)).upper()
    return enum_cls.__members__.get(name, default)


def offered_qos(profile: Any) -> Qos:
    """rclpy ``QoSProfile`` (of a publisher endpoint) -> rosbags ``Qos`` for the bag's metadata."""
    return Qos(
        history=_enum(QosHistory, profile.history, QosHistory.UNKNOWN),
        depth=int(profile.depth),
        reliability=_enum(QosReliability, profile.reliability, QosReliability.UNKNOWN),
        durability=_enum(QosDurability, profile.durability, QosDurability.UNKNOWN),
        deadline=_time(profile.deadline),
        lifespan=_time(profile.lifespan),
        liveliness=_enum(QosLiveliness, profile.liveliness, QosLiveliness.UNKNOWN),
        liveliness_lease_duration=_time(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


def subscription_qos(publisher_profiles: list[Any], depth: int) -> tuple[Any, bool]:
    """The subscription profile for these publishers and whether the topic is latched (transient local)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliable = bool(publisher_profiles) and all(
        p.reliability == ReliabilityPolicy.RELIABLE for p in publisher_profiles
    )
    latched = bool(publisher_profiles) and all(
        p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publisher_profiles
    )
    profile = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )
    return profile, latched
