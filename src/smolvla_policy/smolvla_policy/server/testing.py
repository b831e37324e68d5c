"""Helpers to build PredictChunk goals in tests and benchmarks (no rclpy import; uses the message classes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from so_arm_driver.image_conversion import numpy_to_image
from so_arm_driver.robot_spec import JOINT_NAMES


def camera_images(
    names: Sequence[str] = ("top", "wrist"), height: int = 64, width: int = 64, seed: int = 0
) -> dict[str, np.ndarray]:
    """Deterministic random HxWx3 uint8 images, one per camera name."""
    rng = np.random.default_rng(seed)
    return {n: rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for n in names}


def make_observation(
    images: Mapping[str, np.ndarray] | None = None,
    *,
    joint_names: Sequence[str] = JOINT_NAMES,
    positions: Sequence[float] | None = None,
    task: str = "pick up the cube",
    timestep: int = 0,
    stamp: tuple[int, int] = (0, 0),
    frame_id: str = "base_link",
    encoding: str = "rgb8",
) -> Any:
    """An smolvla_msgs/Observation; HxWx3 RGB arrays are converted to ``encoding`` (rgb8 | bgr8 | mono8)."""
    from builtin_interfaces.msg import Time

    from smolvla_msgs.msg import Observation

    obs = Observation()
    obs.header.stamp = Time(sec=int(stamp[0]), nanosec=int(stamp[1]))
    obs.header.frame_id = frame_id
    obs.timestep = int(timestep)
    obs.task = task
    imgs = dict(images if images is not None else camera_images())
    msgs = []
    for arr in imgs.values():
        if encoding == "bgr8":
            msgs.append(numpy_to_image(np.ascontiguousarray(arr[..., ::-1]), "bgr8"))
        elif encoding == "mono8":
            msgs.append(numpy_to_image(arr[..., 0], "mono8"))
        else:
            msgs.append(numpy_to_image(arr, encoding))
    obs.camera_names = list(imgs)
    obs.images = msgs
    obs.state.header = obs.header
    obs.state.name = list(joint_names)
    pos = np.zeros(len(joint_names)) if positions is None else np.asarray(positions, dtype=np.float64)
    obs.state.position = [float(p) for p in pos]
    return obs
