"""A policy-server plug-in for the end-to-end unit test: the real :class:`SmolVLABackend` (camera mapping,
joint order, lerobot unit mapping, robot model) around a scripted "model" instead of the network.

The model answers every chunk with the lerobot-unit action written by the test into ``action_file`` (a JSON
list in joint order) and writes the lerobot-unit state it was given into ``state_file``, so the test sees
both unit conversions of the server process. Use as ``backend:=calibrated_arm_backend:make_backend`` with
this directory on PYTHONPATH; options: action_file, state_file, robot, chunk_size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from smolvla_policy.server.backends import RobotModel, make_joint_units
from smolvla_policy.server.smolvla_backend import SmolVLABackend
from so_arm_description.joints import JOINT_NAMES


class ScriptedModel:
    """The attributes and ``predict_chunk`` of SmolVLAPolicy that SmolVLABackend uses (no network)."""

    camera_keys: list[str] = []
    state_dim = action_dim = len(JOINT_NAMES)

    def __init__(self, action_file: str, state_file: str, chunk_size: int = 10) -> None:
        self.action_file, self.state_file = Path(action_file), Path(state_file)
        self.chunk_size, self.num_steps = int(chunk_size), 1

    def predict_chunk(self, images: Any, state: np.ndarray, task: str, **_: Any) -> np.ndarray:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([float(x) for x in state]))
        os.replace(tmp, self.state_file)  # the test never reads a half-written file
        action = np.asarray(json.loads(self.action_file.read_text()), dtype=np.float32)
        return np.tile(action, (self.chunk_size, 1))


def make_backend(options: Mapping[str, Any]) -> SmolVLABackend:
    model = ScriptedModel(options["action_file"], options["state_file"], int(options.get("chunk_size", 10)))
    robot = RobotModel.defaults(str(options.get("robot") or "so101"))
    units = make_joint_units(JOINT_NAMES, {}, robot.limits)
    return SmolVLABackend(model, JOINT_NAMES, units, robot_model=robot)
