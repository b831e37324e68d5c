"""The action queue's core (plain Python, no rclpy): Algorithm 1 of the SmolVLA paper as a clock-free state
machine, aggregation functions, the similarity filter, the threshold logic (incl. the automatic threshold) and
latency statistics. The ROS node is :mod:`smolvla_policy.nodes.action_queue`.
"""

from .aggregate import AGGREGATE_NAMES, blend_weights, make_aggregate
from .analysis import Prediction, predict
from .core import ActionQueueCore, ChunkOutcome, Counters, ObservationRequest, QueueConfig, TickResult
from .similarity import is_similar, joint_distance, needs_processing
from .stats import LatencyStats
from .threshold import auto_threshold, min_threshold, request_due, ticks_of_latency

__all__ = [
    "AGGREGATE_NAMES",
    "ActionQueueCore",
    "ChunkOutcome",
    "Counters",
    "LatencyStats",
    "ObservationRequest",
    "Prediction",
    "QueueConfig",
    "TickResult",
    "auto_threshold",
    "blend_weights",
    "is_similar",
    "joint_distance",
    "make_aggregate",
    "min_threshold",
    "needs_processing",
    "predict",
    "request_due",
    "ticks_of_latency",
]
