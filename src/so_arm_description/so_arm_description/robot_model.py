"""The robot model as text: the URDF of an arm with its (calibrated) joint limits, and the way back.

The driver and the simulator publish ``build_urdf(robot, limits)`` on ``/robot_description`` (std_msgs/String,
reliable + transient local, depth 1, as robot_state_publisher does); every other consumer (action queue,
policy server, rviz, recorded bags, the dataset converter) reads the limits back with
:func:`limits_from_urdf`, so one set of numbers -- the arm's calibration -- reaches all of them.

Calibrated limits come from a lerobot calibration file (:func:`limits_from_calibration`): joint zero at the
middle of ``range_min..range_max``, the half-width either side in radians at lerobot's 360 / 4095 degrees per
tick (so_arm_driver.calibration uses the same scale for every position it reads and writes).

``build_urdf`` also adds the cameras' links and optical frames (:mod:`so_arm_description.cameras`: the wrist
camera on ``gripper_link``, the overhead camera on ``base_link``), so robot_state_publisher gives rviz the
frames of the images' ``header.frame_id``.

No ROS import; the URDF files are found in the source tree or in ``share/so_arm_description/urdf``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from so_arm_description.cameras import (
    OPTICAL_RPY,
    CameraMount,
    camera_link,
    default_mounts,
    mounts_with,
    optical_frame,
)
from so_arm_description.joints import JOINT_NAMES
from so_arm_description.kinematics import axis_angle_matrices, rpy_matrix
from so_arm_description.robot_spec import get_robot_spec

#: STS3215 encoder steps per turn, and lerobot's divisor for degrees (``resolution - 1``).
ENCODER_RESOLUTION = 4096
LEROBOT_TICKS_PER_TURN = ENCODER_RESOLUTION - 1
RAD_PER_TICK = 2.0 * math.pi / LEROBOT_TICKS_PER_TURN

PACKAGE = "so_arm_description"


class RobotModelError(ValueError):
    """A URDF or a set of limits that cannot be used (names the joint and the problem)."""


def urdf_path(robot: str) -> Path:
    """Path of ``robot``'s URDF file (source tree first, then the installed share directory)."""
    name = get_robot_spec(robot).urdf
    candidates = [Path(__file__).resolve().parent.parent / "urdf" / name]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / "urdf" / name)
    except Exception:  # noqa: BLE001 - ament_index_python missing or the package not installed
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"URDF '{name}' not found (looked in: {', '.join(str(p) for p in candidates)})")


def default_limits(robot: str) -> dict[str, tuple[float, float]]:
    """The description's (uncalibrated) joint limits of ``robot`` in radians, joint order."""
    return dict(get_robot_spec(robot).limits)


def check_limits(limits: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """``limits`` as floats; RobotModelError naming the joint when a pair is not finite with lower < upper."""
    out: dict[str, tuple[float, float]] = {}
    for name, pair in limits.items():
        try:
            lo, hi = (float(v) for v in pair)
        except (TypeError, ValueError) as exc:
            raise RobotModelError(f"joint '{name}': limits {pair!r} are not a (lower, upper) pair") from exc
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise RobotModelError(f"joint '{name}': limits {lo}..{hi} need finite lower < upper")
        out[name] = (lo, hi)
    return out


def build_urdf(
    robot: str,
    limits: Mapping[str, tuple[float, float]] | None = None,
    cameras: Mapping[str, CameraMount] | None = None,
) -> str:
    """URDF text of ``robot`` ("so101" | "so100"); its joints' ``<limit lower upper>`` are ``limits`` (rad).

    ``limits`` may name any subset of the joints (the others keep the description's values); None keeps them
    all. An unknown joint or an invalid pair is a RobotModelError.

    ``cameras`` adds ``<name>_camera_link`` and ``<name>_camera_optical_frame`` of each camera
    (:mod:`so_arm_description.cameras`); None adds the suite's cameras (``default_mounts``), ``{}`` none.
    """
    spec = get_robot_spec(robot)
    wanted = check_limits(limits or {})
    unknown = [n for n in wanted if n not in JOINT_NAMES]
    if unknown:
        raise RobotModelError(f"no joint '{unknown[0]}' in {spec.name} (joints: {', '.join(JOINT_NAMES)})")
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    root = ET.fromstring(urdf_path(spec.name).read_text(), parser=parser)
    seen = set()
    for joint in root.iter("joint"):
        name = joint.get("name")
        limit = joint.find("limit")
        if name in wanted and limit is not None:
            lo, hi = wanted[name]
            limit.set("lower", repr(lo))
            limit.set("upper", repr(hi))
            seen.add(name)
    missing = [n for n in wanted if n not in seen]
    if missing:
        raise RobotModelError(f"the {spec.name} URDF has no limited joint '{missing[0]}'")
    links = {link.get("name") for link in root.iter("link")}
    first_new = len(root)
    for name, mount in (default_mounts(spec.name) if cameras is None else cameras).items():
        if mount.parent not in links:
            raise RobotModelError(f"camera '{name}': no link '{mount.parent}' in the {spec.name} URDF")
        _add_camera(root, name, mount)
    _indent(root, first_new)
    source = "calibrated" if wanted else "description defaults"
    root.insert(0, ET.Comment(f" joint limits: {source} (so_arm_description.robot_model.build_urdf) "))
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _fixed_joint(
    root: ET.Element, name: str, parent: str, child: str, xyz: tuple[float, ...], rpy: tuple[float, ...]
) -> None:
    ET.SubElement(root, "link", name=child)
    joint = ET.SubElement(root, "joint", name=name, type="fixed")
    ET.SubElement(joint, "parent", link=parent)
    ET.SubElement(joint, "child", link=child)
    ET.SubElement(
        joint, "origin", xyz=" ".join(map(repr, map(float, xyz))), rpy=" ".join(map(repr, map(float, rpy)))
    )


def _indent(root: ET.Element, first: int) -> None:
    """Indent the top-level elements from index ``first`` on like the description files (two spaces)."""
    if first >= len(root):
        return
    root[first - 1].tail = "\n\n  " if first else None
    for element in root[first:]:
        element.tail = "\n  "
        if len(element):
            element.text = "\n    "
            for child in element:
                child.tail = "\n    "
            element[-1].tail = "\n  "
    root[-1].tail = "\n"


def _add_camera(root: ET.Element, name: str, mount: CameraMount) -> None:
    """``<name>_camera_link`` on ``mount.parent`` and its ``<name>_camera_optical_frame`` (REP 103)."""
    try:
        link, optical = camera_link(name), optical_frame(name)
    except ValueError as exc:
        raise RobotModelError(str(exc)) from None
    values = (*mount.xyz, *mount.rpy)
    if len(values) != 6 or not all(math.isfinite(float(v)) for v in values):
        raise RobotModelError(f"camera '{name}': pose {values} needs 6 finite numbers")
    root.append(ET.Comment(f" {name} camera (so_arm_description.cameras) "))
    _fixed_joint(root, f"{name}_camera_joint", mount.parent, link, mount.xyz, mount.rpy)
    _fixed_joint(root, f"{name}_camera_optical_joint", link, optical, (0.0, 0.0, 0.0), OPTICAL_RPY)


def _parse(urdf_text: str) -> ET.Element:
    try:
        root = ET.fromstring(urdf_text)
    except ET.ParseError as exc:
        raise RobotModelError(f"robot description is not valid XML: {exc}") from exc
    if root.tag != "robot":
        raise RobotModelError(f"robot description's root element is <{root.tag}>, expected <robot>")
    return root


def limits_from_urdf(urdf_text: str) -> dict[str, tuple[float, float]]:
    """Joint -> (lower, upper) radians of each revolute/prismatic joint with a ``<limit>``, document order."""
    limits: dict[str, tuple[float, float]] = {}
    for joint in _parse(urdf_text).iter("joint"):
        limit = joint.find("limit")
        if joint.get("type") not in ("revolute", "prismatic") or limit is None:
            continue
        name = joint.get("name") or ""
        try:
            limits[name] = (float(limit.get("lower", "nan")), float(limit.get("upper", "nan")))
        except ValueError as exc:
            raise RobotModelError(f"joint '{name}': limit is not a number ({exc})") from exc
    return check_limits(limits)


def urdf_frames(urdf_text: str, positions: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """Pose (4x4) of every link in the URDF's root link, as robot_state_publisher computes the TF tree:
    fixed joints from their ``<origin>``, revolute/continuous joints turned about ``<axis>`` and prismatic
    ones moved along it by ``positions[name]`` (0 when missing). For pip installs, where
    robot_state_publisher and tf2 are not available, and to read the camera frames of a
    ``/robot_description``."""
    root = _parse(urdf_text)
    positions = positions or {}
    children = {j.find("child").get("link") for j in root.iter("joint") if j.find("child") is not None}
    roots = [link.get("name") for link in root.iter("link") if link.get("name") not in children]
    if len(roots) != 1:
        raise RobotModelError(f"robot description needs one root link, has {roots}")
    poses: dict[str, np.ndarray] = {roots[0]: np.eye(4)}
    pending = list(root.iter("joint"))
    while pending:
        ready = [j for j in pending if j.find("parent") is not None and j.find("parent").get("link") in poses]
        if not ready:
            raise RobotModelError(f"joint '{pending[0].get('name')}' is not connected to '{roots[0]}'")
        for joint in ready:
            pending.remove(joint)
            origin = joint.find("origin")
            try:
                xyz = [
                    float(v) for v in (origin.get("xyz", "0 0 0") if origin is not None else "0 0 0").split()
                ]
                rpy = [
                    float(v) for v in (origin.get("rpy", "0 0 0") if origin is not None else "0 0 0").split()
                ]
                axis_el = joint.find("axis")
                axis = np.array(
                    [float(v) for v in (axis_el.get("xyz") if axis_el is not None else "1 0 0").split()]
                )
            except ValueError as exc:
                raise RobotModelError(f"joint '{joint.get('name')}': {exc}") from exc
            pose = np.eye(4)
            pose[:3, :3] = rpy_matrix(rpy)
            pose[:3, 3] = xyz
            value = float(positions.get(joint.get("name") or "", 0.0))
            motion = np.eye(4)
            if joint.get("type") in ("revolute", "continuous"):
                motion[:3, :3] = axis_angle_matrices(axis, np.array([value]))[0]
            elif joint.get("type") == "prismatic":
                motion[:3, 3] = axis / np.linalg.norm(axis) * value
            poses[joint.find("child").get("link")] = poses[joint.find("parent").get("link")] @ pose @ motion
    return poses


def camera_mounts_from_urdf(urdf_text: str) -> dict[str, CameraMount]:
    """The cameras of a URDF (e.g. a ``/robot_description``): each fixed joint whose child is a
    ``<name>_camera_link``, as ``{name: CameraMount(parent, xyz, rpy)}`` (what ``build_urdf`` wrote)."""
    mounts: dict[str, CameraMount] = {}
    suffix = camera_link("x")[1:]  # "_camera_link"
    for joint in _parse(urdf_text).iter("joint"):
        child, parent = joint.find("child"), joint.find("parent")
        if joint.get("type") != "fixed" or child is None or parent is None:
            continue
        link = child.get("link") or ""
        if not link.endswith(suffix) or len(link) == len(suffix):
            continue
        origin = joint.find("origin")
        try:
            xyz = tuple(
                float(v) for v in (origin.get("xyz", "0 0 0") if origin is not None else "0 0 0").split()
            )
            rpy = tuple(
                float(v) for v in (origin.get("rpy", "0 0 0") if origin is not None else "0 0 0").split()
            )
        except ValueError as exc:
            raise RobotModelError(f"joint '{joint.get('name')}': {exc}") from exc
        if len(xyz) != 3 or len(rpy) != 3:
            raise RobotModelError(f"joint '{joint.get('name')}': origin needs 3 xyz and 3 rpy values")
        mounts[link[: -len(suffix)]] = CameraMount(parent.get("link") or "", xyz, rpy)  # type: ignore[arg-type]
    return mounts


def robot_from_urdf(urdf_text: str, default: str | None = None) -> str:
    """The robot key ("so101" | "so100") of a URDF's ``<robot name>``; for another name ``default`` if given
    (e.g. a user's own "so101_new_calib" description), else RobotModelError."""
    name = _parse(urdf_text).get("name") or ""
    try:
        return get_robot_spec(name).name
    except ValueError as exc:
        if default is not None:
            return get_robot_spec(default).name
        raise RobotModelError(str(exc)) from None


def limits_from_calibration(calibration: Mapping[str, Mapping[str, int]]) -> dict[str, tuple[float, float]]:
    """Calibrated joint limits (radians) from a lerobot calibration (the JSON object: motor -> {range_min,
    range_max, ...}): +- half the recorded range about its middle, at 2 pi / 4095 rad per tick. A range that
    crosses the 0/4095 seam (range_min > range_max) is measured across it."""
    limits: dict[str, tuple[float, float]] = {}
    for name, entry in calibration.items():
        try:
            lo, hi = int(entry["range_min"]), int(entry["range_max"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RobotModelError(f"calibration entry '{name}' has no valid range_min/range_max") from exc
        width = (hi - lo) % ENCODER_RESOLUTION if lo > hi else hi - lo
        if width <= 0:
            raise RobotModelError(f"calibration entry '{name}': zero-width range {lo}..{hi}")
        half = width / 2.0 * RAD_PER_TICK
        limits[name] = (-half, half)
    return limits


def description_from_files(
    robot: str,
    calibration_file: str | Path | None = None,
    cameras: Mapping[str, CameraMount] | None = None,
) -> str:
    """``build_urdf(robot, limits, cameras)`` with the limits of a lerobot calibration file (its SO-10x
    joints), or the description's defaults without one (used by launch/description.launch.py and
    ``print_urdf``)."""
    limits = None
    if calibration_file:
        path = Path(calibration_file).expanduser()
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RobotModelError(f"cannot read calibration file {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise RobotModelError(f"calibration file {path}: expected a JSON object keyed by motor name")
        limits = {k: v for k, v in limits_from_calibration(data).items() if k in JOINT_NAMES}
    return build_urdf(robot, limits, cameras)


def main(argv: list[str] | None = None) -> int:
    """``print_urdf``: write the URDF of a robot, with the limits of a lerobot calibration file if given."""
    parser = argparse.ArgumentParser(
        prog="print_urdf", description="Print the URDF of an SO-10x arm (optionally with calibrated limits)."
    )
    parser.add_argument("--robot", default="so101", help="so101 | so100 (default so101)")
    parser.add_argument("--calibration", type=Path, help="lerobot calibration JSON file of the arm")
    parser.add_argument(
        "--top-camera-pose",
        default="",
        help="overhead camera in base_link: 'x y z roll pitch yaw' (m, rad; default: the simulator's)",
    )
    parser.add_argument(
        "--wrist-camera-pose",
        default="",
        help="wrist camera in gripper_link: 'x y z roll pitch yaw' (m, rad; default: the simulator's)",
    )
    parser.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    args = parser.parse_args(argv)
    try:
        cameras = mounts_with(args.robot, args.top_camera_pose, args.wrist_camera_pose)
        text = description_from_files(args.robot, args.calibration, cameras)
    except (OSError, ValueError) as exc:  # RobotModelError and unknown robots are ValueErrors
        print(f"print_urdf: {exc}", file=sys.stderr)
        return 1
    if args.output is not None:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
