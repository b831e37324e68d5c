"""PredictChunk goal (an smolvla_msgs/Observation) -> :class:`ChunkRequest`, with every check a goal can fail.

Plain Python (no rclpy): the message is duck-typed. Each failure raises :class:`BadRequest` whose message says
what is wrong; the server aborts the goal with that message and keeps serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from smolvla_common.image_conversion import POLICY_ENCODINGS, ImageConversionError, image_to_rgb8
from smolvla_policy.backend import BadRequest, ChunkRequest


@dataclass(frozen=True)
class RequestLimits:
    default_task: str = ""
    max_image_pixels: int = 4194304
    max_observation_age: float = 0.0  # seconds; 0 = off
    seed: int | None = None


def stamp_to_seconds(stamp: Any) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def observation_to_request(obs: Any, limits: RequestLimits, now_s: float | None = None) -> ChunkRequest:
    """Validate and convert one Observation; raises BadRequest with the reason."""
    # Joint state.
    names = [str(n) for n in obs.state.name]
    positions = np.asarray(obs.state.position, dtype=np.float64)
    if not names:
        raise BadRequest("observation state has no joint names")
    if positions.shape != (len(names),):
        raise BadRequest(f"observation state has {len(names)} joint names but {positions.size} positions")
    if any(not n for n in names):
        raise BadRequest("observation state has an empty joint name")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise BadRequest(f"observation state names joint '{dup}' twice")
    bad = ~np.isfinite(positions)
    if bad.any():
        i = int(np.argmax(bad))
        raise BadRequest(f"observation state position of joint '{names[i]}' is not finite ({positions[i]})")

    # Task.
    task = str(obs.task).strip() or limits.default_task.strip()
    if not task:
        raise BadRequest("observation task is empty and the server has no default_task")

    # Age.
    stamp = obs.header.stamp
    if limits.max_observation_age > 0 and now_s is not None:
        age = now_s - stamp_to_seconds(stamp)
        if age > limits.max_observation_age:
            raise BadRequest(
                f"observation is {age:.3f} s old (max_observation_age = {limits.max_observation_age:g} s); "
                "check the clocks (use_sim_time?)"
            )

    # Cameras.
    cam_names = [str(c) for c in obs.camera_names]
    compressed = list(getattr(obs, "compressed_images", None) or [])
    if compressed and len(obs.images):
        raise BadRequest("observation has both images and compressed_images (send one or the other)")
    if len(cam_names) != len(obs.images) and not compressed:
        raise BadRequest(f"observation has {len(cam_names)} camera names but {len(obs.images)} images")
    if compressed and len(cam_names) != len(compressed):
        raise BadRequest(
            f"observation has {len(cam_names)} camera names but {len(compressed)} compressed images"
        )
    if any(not c for c in cam_names):
        raise BadRequest("observation has an empty camera name")
    if len(set(cam_names)) != len(cam_names):
        dup = next(c for c in cam_names if cam_names.count(c) > 1)
        raise BadRequest(f"observation names camera '{dup}' twice")
    images: dict[str, np.ndarray] = {}
    if compressed:
        images = _compressed_images(cam_names, compressed, limits)
    for cam, msg in zip(cam_names, obs.images):
        pixels = int(msg.width) * int(msg.height)
        if pixels > limits.max_image_pixels:
            raise BadRequest(
                f"camera '{cam}': image {msg.width}x{msg.height} has {pixels} pixels, more than "
                f"max_image_pixels = {limits.max_image_pixels}"
            )
        if msg.encoding not in POLICY_ENCODINGS:
            raise BadRequest(
                f"camera '{cam}': image encoding '{msg.encoding}' is not accepted "
                f"(accepted: {', '.join(POLICY_ENCODINGS)})"
            )
        try:
            images[cam] = image_to_rgb8(msg)
        except ImageConversionError as exc:
            raise BadRequest(f"camera '{cam}': {exc}") from None

    return ChunkRequest(
        images=images,
        joint_names=names,
        positions=positions,
        task=task,
        timestep=int(obs.timestep),
        seed=limits.seed,
        extras={"stamp": (int(stamp.sec), int(stamp.nanosec)), "frame_id": str(obs.header.frame_id)},
    )


def _compressed_images(cam_names: list[str], msgs: list[Any], limits: RequestLimits) -> dict[str, np.ndarray]:
    """CompressedImage (JPEG/PNG) per camera -> rgb8 arrays; the pixel limit is checked from the header."""
    from smolvla_policy.compact_observation import (
        CompactObservationError,
        compressed_size,
        decode_compressed,
    )

    images: dict[str, np.ndarray] = {}
    for cam, msg in zip(cam_names, msgs):
        size = compressed_size(msg.data)
        if size is not None and size[0] * size[1] > limits.max_image_pixels:
            raise BadRequest(
                f"camera '{cam}': compressed image {size[0]}x{size[1]} has {size[0] * size[1]} pixels, more "
                f"than max_image_pixels = {limits.max_image_pixels}"
            )
        try:
            img = decode_compressed(msg.format, msg.data)
        except CompactObservationError as exc:
            raise BadRequest(f"camera '{cam}': {exc}") from None
        if img.shape[0] * img.shape[1] > limits.max_image_pixels:
            raise BadRequest(f"camera '{cam}': compressed image has more than max_image_pixels pixels")
        images[cam] = img
    return images


def check_chunk(chunk: Any, request: ChunkRequest) -> np.ndarray:
    """Validate a backend's output: (T, len(joint_names)) finite floats; raises BadRequest otherwise."""
    arr = np.asarray(chunk, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != len(request.joint_names) or arr.shape[0] < 1:
        raise BadRequest(
            f"backend returned a chunk of shape {arr.shape}, expected (T, {len(request.joint_names)})"
        )
    if not np.isfinite(arr).all():
        raise BadRequest("backend returned a chunk with non-finite values")
    return arr
