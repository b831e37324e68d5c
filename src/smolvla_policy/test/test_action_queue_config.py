"""config/action_queue.yaml lists every parameter of the action_queue node with its declared default (checked
with every node's file by smolvla_common/test/test_config_files.py), and the defaults form a valid queue
configuration (no ROS graph needed)."""

from __future__ import annotations

import pytest
import yaml

from ros_harness import REPO_ROOT

pytest.importorskip("rclpy")
from smolvla_policy.nodes.action_queue import PARAMETERS, _queue_config  # noqa: E402


def test_yaml_defaults_equal_declared_defaults() -> None:
    data = yaml.safe_load((REPO_ROOT / "config" / "action_queue.yaml").read_text())
    assert PARAMETERS.check_yaml(data) == []
    assert all(p.description for p in PARAMETERS)


def test_declared_defaults_are_a_valid_config() -> None:
    cfg = _queue_config(PARAMETERS.defaults())
    assert cfg.fps == 30.0 and len(cfg.lower_limits or ()) == len(PARAMETERS["joint_names"].default)
