"""launch/description.launch.py (robot_state_publisher for system-ROS users): its arguments and the nodes its
OpaqueFunction creates, with stand-ins for the launch API (``launch`` / ``launch_ros`` are not PyPI wheels, so
robot_state_publisher itself was not run here). The URDF handed to robot_state_publisher is the one
``so_arm_description.robot_model`` builds from the calibration file."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from so_arm_description.robot_model import limits_from_calibration, limits_from_urdf, robot_from_urdf

LAUNCH = Path(__file__).resolve().parents[1] / "launch" / "description.launch.py"


class _Entity:
    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: dict[str, str]) -> str:
        return context[self.name]


@pytest.fixture
def launch_file(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    modules = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.conditions": types.ModuleType("launch.conditions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
    }
    modules["launch"].LaunchDescription = _Entity  # type: ignore[attr-defined]
    modules["launch.actions"].DeclareLaunchArgument = _Entity  # type: ignore[attr-defined]
    modules["launch.actions"].OpaqueFunction = _Entity  # type: ignore[attr-defined]
    modules["launch.conditions"].IfCondition = _Entity  # type: ignore[attr-defined]
    modules["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration  # type: ignore[attr-defined]
    modules["launch_ros.actions"].Node = _Entity  # type: ignore[attr-defined]
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("description_launch", LAUNCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _opaque(description: _Entity) -> _Entity:
    (entities,) = description.args
    return next(e for e in entities if "function" in e.kwargs)


def test_arguments(launch_file: types.ModuleType) -> None:
    (entities,) = launch_file.generate_launch_description().args
    args = {e.args[0]: e.kwargs["default_value"] for e in entities if e.args}
    assert args == {
        "robot": "so101",
        "calibration_file": "",
        "top_camera_pose": "",
        "wrist_camera_pose": "",
        "standalone": "false",
        "gui": "true",
    }


def test_calibrated_description_for_robot_state_publisher(
    launch_file: types.ModuleType, tmp_path: Path
) -> None:
    cal = {"gripper": {"id": 6, "drive_mode": 0, "homing_offset": 0, "range_min": 2030, "range_max": 3470}}
    path = tmp_path / "follower.json"
    path.write_text(json.dumps(cal))
    function = _opaque(launch_file.generate_launch_description()).kwargs["function"]
    context = {
        "robot": "so100",
        "calibration_file": str(path),
        "top_camera_pose": "",
        "wrist_camera_pose": "",
        "standalone": "false",
        "gui": "true",
    }
    (rsp,) = function(context)
    assert rsp.kwargs["package"] == "robot_state_publisher"
    urdf = rsp.kwargs["parameters"][0]["robot_description"]
    assert robot_from_urdf(urdf) == "so100"
    assert limits_from_urdf(urdf)["gripper"] == pytest.approx(limits_from_calibration(cal)["gripper"])
    # the driver/simulator own /robot_description: robot_state_publisher's copy goes elsewhere
    assert rsp.kwargs["remappings"] == [("robot_description", "robot_state_publisher/robot_description")]

    standalone = function({**context, "calibration_file": "", "standalone": "true"})
    assert [n.kwargs["package"] for n in standalone] == ["robot_state_publisher", "joint_state_publisher_gui"]
    assert standalone[0].kwargs["remappings"] == []


def test_top_camera_pose_argument_reaches_robot_state_publisher(launch_file: types.ModuleType) -> None:
    """A real arm's overhead camera is where the user mounted it: the launch argument moves its frame."""
    function = _opaque(launch_file.generate_launch_description()).kwargs["function"]
    context = {
        "robot": "so101",
        "calibration_file": "",
        "top_camera_pose": "0.3, -0.1, 0.5, 0, 1.2, 0.1",
        "wrist_camera_pose": "",
        "standalone": "false",
        "gui": "true",
    }
    (rsp,) = function(context)
    root = ET.fromstring(rsp.kwargs["parameters"][0]["robot_description"])
    joints = {j.get("name"): j for j in root.iter("joint")}
    origin = joints["top_camera_joint"].find("origin")
    assert [float(v) for v in origin.get("xyz").split()] == [0.3, -0.1, 0.5]
    assert [float(v) for v in origin.get("rpy").split()] == [0.0, 1.2, 0.1]
    assert joints["wrist_camera_joint"].find("parent").get("link") == "gripper_link"
    with pytest.raises(ValueError, match="6 finite numbers"):
        function({**context, "top_camera_pose": "0.3 0 0.5"})
