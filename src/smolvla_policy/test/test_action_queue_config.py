"""config/action_queue.yaml lists every parameter of the action_queue node with its declared default, and the
defaults form a valid queue configuration (no ROS graph needed)."""

from __future__ import annotations

import pytest
import yaml

from ros_harness import REPO_ROOT
from smolvla_policy.queue import QueueConfig

pytest.importorskip("rclpy")
from smolvla_policy.nodes.action_queue import CORE_PARAMS, PARAMETERS  # noqa: E402


def test_yaml_defaults_equal_declared_defaults() -> None:
    data = yaml.safe_load((REPO_ROOT / "config" / "action_queue.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, (default, desc) in PARAMETERS.items():
        assert desc.description, name
        value = params[name]
        if isinstance(default, float):
            assert value == pytest.approx(default), name
        else:
            assert value == default, name


def test_declared_defaults_are_a_valid_config() -> None:
    kw = {n: PARAMETERS[n][0] for n in CORE_PARAMS}
    cfg = QueueConfig(
        **kw,  # type: ignore[arg-type]
        lower_limits=tuple(PARAMETERS["joint_lower_limits"][0]),  # type: ignore[arg-type]
        upper_limits=tuple(PARAMETERS["joint_upper_limits"][0]),  # type: ignore[arg-type]
    )
    cfg.validate(len(PARAMETERS["joint_names"][0]))  # type: ignore[arg-type]
