"""URDF descriptions (urdf/so100.urdf, urdf/so101.urdf): joint names and limits, a single tree rooted at
base_link, plausible inertials, installation into share/, and forward kinematics computed from the URDF's own
chain (a small parser below, independent of kinematics.py) equal to kinematics.forward_kinematics."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from so_arm_description import kinematics
from so_arm_description.robot_spec import JOINT_NAMES, ROBOTS, get_robot_spec

URDF_DIR = Path(__file__).resolve().parent.parent / "urdf"
ROBOT_NAMES = sorted(ROBOTS)


@dataclass
class Joint:
    name: str
    type: str
    parent: str
    child: str
    xyz: np.ndarray
    rpy: np.ndarray
    axis: np.ndarray
    lower: float | None
    upper: float | None


def _floats(text: str | None, default: str) -> np.ndarray:
    return np.array([float(v) for v in (text or default).split()])


def parse_urdf(path: Path) -> tuple[ET.Element, dict[str, ET.Element], dict[str, Joint]]:
    root = ET.parse(path).getroot()
    assert root.tag == "robot"
    links = {link.get("name"): link for link in root.findall("link")}
    joints: dict[str, Joint] = {}
    for el in root.findall("joint"):
        origin = el.find("origin")
        axis = el.find("axis")
        limit = el.find("limit")
        joints[el.get("name")] = Joint(
            name=el.get("name"),
            type=el.get("type"),
            parent=el.find("parent").get("link"),
            child=el.find("child").get("link"),
            xyz=_floats(origin.get("xyz") if origin is not None else None, "0 0 0"),
            rpy=_floats(origin.get("rpy") if origin is not None else None, "0 0 0"),
            axis=_floats(axis.get("xyz") if axis is not None else None, "1 0 0"),
            lower=float(limit.get("lower")) if limit is not None else None,
            upper=float(limit.get("upper")) if limit is not None else None,
        )
    return root, links, joints


def _rpy(rpy: np.ndarray) -> np.ndarray:
    r, p, y = rpy
    rx = np.array([[1, 0, 0], [0, np.cos(r), -np.sin(r)], [0, np.sin(r), np.cos(r)]])
    ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def urdf_link_poses(
    joints: dict[str, Joint], q: dict[str, float], root: str = "base_link"
) -> dict[str, np.ndarray]:
    """Poses of all links in ``root`` from the URDF joint tree at joint values ``q``."""
    poses = {root: np.eye(4)}
    pending = list(joints.values())
    while pending:
        progressed = False
        for joint in list(pending):
            if joint.parent not in poses:
                continue
            origin = np.eye(4)
            origin[:3, :3] = _rpy(joint.rpy)
            origin[:3, 3] = joint.xyz
            motion = np.eye(4)
            if joint.type in ("revolute", "continuous"):
                motion[:3, :3] = _axis_angle(joint.axis, q.get(joint.name, 0.0))
            poses[joint.child] = poses[joint.parent] @ origin @ motion
            pending.remove(joint)
            progressed = True
        assert progressed, f"joints not connected to {root}: {[j.name for j in pending]}"
    return poses


@pytest.fixture(params=ROBOT_NAMES)
def robot(request) -> str:
    return request.param


@pytest.fixture
def urdf(robot):
    return parse_urdf(URDF_DIR / get_robot_spec(robot).urdf)


def test_joint_names_types_and_limits(robot, urdf):
    _, _, joints = urdf
    movable = [j for j in joints.values() if j.type != "fixed"]
    assert [j.name for j in movable] == list(JOINT_NAMES)  # contract names, in contract order
    assert all(j.type == "revolute" for j in movable)
    limits = get_robot_spec(robot).limits
    for joint in movable:
        assert (joint.lower, joint.upper) == pytest.approx(limits[joint.name]), joint.name
        assert joint.lower < 0.0 < joint.upper  # zero = middle of the calibrated range lies inside the range
        assert np.linalg.norm(joint.axis) == pytest.approx(1.0)


def test_tree_rooted_at_base_link_with_tcp_leaf(robot, urdf):
    root, links, joints = urdf
    assert root.get("name") == robot
    children = [j.child for j in joints.values()]
    assert len(children) == len(set(children)), "a link has two parents"
    roots = set(links) - set(children)
    assert roots == {"base_link"}
    assert set(children) | {"base_link"} == set(links)
    tcp = joints["gripper_frame_joint"]
    assert (tcp.type, tcp.parent, tcp.child) == ("fixed", "gripper_link", "gripper_frame")
    assert not any(j.parent == "gripper_frame" for j in joints.values())
    # every link is reachable from base_link (no cycle, no orphan)
    assert set(urdf_link_poses(joints, {})) == set(links)


def test_inertials_are_plausible(robot, urdf):
    _, links, _ = urdf
    total = 0.0
    for name, link in links.items():
        inertial = link.find("inertial")
        if name == "gripper_frame":
            assert inertial is None and link.find("visual") is None
            continue
        assert inertial is not None, name
        mass = float(inertial.find("mass").get("value"))
        inertia = inertial.find("inertia")
        ixx, iyy, izz = (float(inertia.get(k)) for k in ("ixx", "iyy", "izz"))
        assert mass > 0 and min(ixx, iyy, izz) > 0, name
        assert ixx + iyy >= izz and iyy + izz >= ixx and izz + ixx >= iyy, name  # triangle inequality
        assert link.find("visual") is not None and link.find("collision") is not None, name
        assert link.find("visual/geometry/mesh") is None, "descriptions use primitives only"
        total += mass
    assert total == pytest.approx(get_robot_spec(robot).mass, abs=1e-3)


def test_urdf_chain_matches_kinematics_module(robot, urdf):
    _, _, joints = urdf
    rng = np.random.default_rng(4)
    limits = get_robot_spec(robot).limits
    for _ in range(25):
        q = {j: rng.uniform(*limits[j]) for j in JOINT_NAMES}
        poses = urdf_link_poses(joints, q)
        frames = kinematics.link_frames(np.array([q[j] for j in JOINT_NAMES]), robot)
        assert set(frames) == set(poses)
        for link, pose in poses.items():
            np.testing.assert_allclose(frames[link], pose, atol=1e-9, err_msg=link)
        tcp = kinematics.forward_kinematics(np.array([q[j] for j in JOINT_NAMES]), robot)[0]
        np.testing.assert_allclose(tcp, poses["gripper_frame"][:3, 3], atol=1e-9)


def test_so101_tcp_at_zero_from_urdf():
    _, _, joints = parse_urdf(URDF_DIR / "so101.urdf")
    tcp = urdf_link_poses(joints, {})["gripper_frame"][:3, 3]
    np.testing.assert_allclose(tcp, (0.391, 0.0, 0.227), atol=1.5e-3)


def test_urdfs_are_installed_into_share():
    ament = pytest.importorskip("ament_index_python.packages")
    try:
        share = Path(ament.get_package_share_directory("so_arm_description"))
    except ament.PackageNotFoundError:
        pytest.skip("so_arm_description is not installed (colcon build)")
    for name in ROBOT_NAMES:
        installed = share / "urdf" / get_robot_spec(name).urdf
        assert installed.is_file(), f"{installed} missing: rebuild so_arm_description"
        assert installed.read_text() == (URDF_DIR / installed.name).read_text()


def test_urdf_loads_in_mujoco_with_the_same_kinematics(robot):
    """An independent URDF consumer: MuJoCo's URDF importer (fixed links are fused into their parents)."""
    mujoco = pytest.importorskip("mujoco")
    model = mujoco.MjModel.from_xml_path(str(URDF_DIR / get_robot_spec(robot).urdf))
    data = mujoco.MjData(model)
    assert [model.joint(i).name for i in range(model.njnt)] == list(JOINT_NAMES)
    limits = get_robot_spec(robot).limits
    for name in JOINT_NAMES:
        np.testing.assert_allclose(model.jnt_range[model.joint(name).id], limits[name], atol=1e-9)
    rng = np.random.default_rng(5)
    for _ in range(10):
        q = np.array([rng.uniform(*limits[j]) for j in JOINT_NAMES])
        for i, name in enumerate(JOINT_NAMES):
            data.qpos[model.joint(name).qposadr[0]] = q[i]
        mujoco.mj_kinematics(model, data)
        frames = kinematics.link_frames(q, robot)
        for body in range(1, model.nbody):
            name = model.body(body).name
            np.testing.assert_allclose(data.xpos[body], frames[name][:3, 3], atol=1e-9, err_msg=name)
            np.testing.assert_allclose(data.xmat[body].reshape(3, 3), frames[name][:3, :3], atol=1e-9)
