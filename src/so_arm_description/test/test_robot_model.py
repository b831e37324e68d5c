"""build_urdf / limits_from_urdf / limits_from_calibration: the calibrated limits survive the URDF round trip,
the rest of the description is untouched, and bad input is a named error."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from so_arm_description import robot_model
from so_arm_description.joints import JOINT_NAMES
from so_arm_description.robot_spec import ROBOTS, get_robot_spec


@pytest.mark.parametrize("robot", sorted(ROBOTS))
def test_default_urdf_has_the_description_limits(robot: str) -> None:
    text = robot_model.build_urdf(robot, None)
    assert robot_model.limits_from_urdf(text) == get_robot_spec(robot).limits
    assert robot_model.robot_from_urdf(text) == robot
    assert list(robot_model.limits_from_urdf(text)) == list(JOINT_NAMES)


@pytest.mark.parametrize("robot", sorted(ROBOTS))
def test_calibrated_limits_round_trip(robot: str) -> None:
    limits = {name: (-0.1 - i / 10, 0.2 + i / 7) for i, name in enumerate(JOINT_NAMES)}
    text = robot_model.build_urdf(robot, limits, cameras={})
    assert robot_model.limits_from_urdf(text) == limits  # repr() keeps every bit
    # nothing else changed (without the cameras build_urdf adds): same joints, origins and links as the file
    ours = ET.fromstring(text)
    ref = ET.parse(robot_model.urdf_path(robot)).getroot()
    assert [j.get("name") for j in ours.iter("joint")] == [j.get("name") for j in ref.iter("joint")]
    for a, b in zip(ours.iter("origin"), ref.iter("origin")):
        assert a.attrib == b.attrib
    assert len(list(ours.iter("link"))) == len(list(ref.iter("link")))


def test_partial_limits_keep_the_others() -> None:
    text = robot_model.build_urdf("so101", {"gripper": (-0.5, 0.5)})
    limits = robot_model.limits_from_urdf(text)
    assert limits["gripper"] == (-0.5, 0.5)
    assert limits["shoulder_pan"] == get_robot_spec("so101").limits["shoulder_pan"]


@pytest.mark.parametrize(
    "limits, match",
    [
        ({"elbow": (-1.0, 1.0)}, "no joint 'elbow'"),
        ({"gripper": (1.0, -1.0)}, "gripper"),
        ({"gripper": (math.nan, 1.0)}, "gripper"),
        ({"gripper": "wide"}, "gripper"),
    ],
)
def test_bad_limits_are_named(limits: dict, match: str) -> None:
    with pytest.raises(robot_model.RobotModelError, match=match):
        robot_model.build_urdf("so101", limits)


def test_bad_descriptions_are_named() -> None:
    with pytest.raises(robot_model.RobotModelError, match="not valid XML"):
        robot_model.limits_from_urdf("<robot")
    with pytest.raises(robot_model.RobotModelError, match="expected <robot>"):
        robot_model.limits_from_urdf("<sdf/>")
    with pytest.raises(robot_model.RobotModelError, match="unknown robot"):
        robot_model.robot_from_urdf('<robot name="ur5"/>')
    assert robot_model.robot_from_urdf('<robot name="so101_new_calib"/>', default="so100") == "so100"
    assert robot_model.robot_from_urdf('<robot name="SO-101"/>', default="so100") == "so101"
    with pytest.raises(ValueError, match="unknown robot"):
        robot_model.build_urdf("ur5")


def test_limits_from_calibration_hand_computed() -> None:
    cal = {
        "gripper": {"id": 6, "range_min": 2030, "range_max": 3470},  # width 1440 ticks
        "wrist_roll": {"id": 5, "range_min": 0, "range_max": 4095},  # a full turn: +-pi
        "seam": {"id": 7, "range_min": 4000, "range_max": 100},  # crosses 0/4095: width 196
    }
    limits = robot_model.limits_from_calibration(cal)
    assert limits["gripper"] == pytest.approx((-720 * 2 * math.pi / 4095, 720 * 2 * math.pi / 4095))
    assert limits["wrist_roll"] == pytest.approx((-math.pi, math.pi))
    assert limits["seam"] == pytest.approx((-98 * 2 * math.pi / 4095, 98 * 2 * math.pi / 4095))
    with pytest.raises(robot_model.RobotModelError, match="zero-width"):
        robot_model.limits_from_calibration({"g": {"range_min": 5, "range_max": 5}})
    with pytest.raises(robot_model.RobotModelError, match="'g'"):
        robot_model.limits_from_calibration({"g": {"range_min": 5}})


def test_print_urdf_cli(tmp_path, capsys) -> None:
    import json

    cal = tmp_path / "arm.json"
    cal.write_text(json.dumps({"gripper": {"id": 6, "range_min": 2030, "range_max": 3470}}))
    out = tmp_path / "arm.urdf"
    assert robot_model.main(["--robot", "so100", "--calibration", str(cal), "-o", str(out)]) == 0
    limits = robot_model.limits_from_urdf(out.read_text())
    assert limits["gripper"] == pytest.approx(
        robot_model.limits_from_calibration(json.loads(cal.read_text()))["gripper"]
    )
    assert robot_model.robot_from_urdf(out.read_text()) == "so100"
    assert robot_model.main(["--robot", "ur5"]) == 1
    assert "unknown robot" in capsys.readouterr().err
