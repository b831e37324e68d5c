"""config/smolvla.rviz names only topics and frames that the sim and the real graph publish.

rviz2 is not on PyPI, so the file is checked against the running graphs instead (real rclpy/DDS):
launch/sim_demo.launch.py (MuJoCo) and launch/real_arm.launch.py (``port:=emulated``: the real driver on the
emulated servo bus, camera nodes on a video file). For each display: its topic exists with the message type
the display class reads, a durability the publishers can serve (a transient-local subscription, the robot
model's, gets nothing from volatile publishers), and the frames: the fixed frame is a link of the URDF on
/robot_description and the frame of every chunk marker; the camera images carry the same optical frames in
both graphs, frames of that URDF; a Camera display's camera_info is published.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
RVIZ = REPO / "config" / "smolvla.rviz"
#: rviz display class -> the message type it subscribes to
DISPLAY_TYPES = {
    "rviz_default_plugins/RobotModel": "std_msgs/msg/String",
    "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
    "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
    "rviz_default_plugins/Camera": "sensor_msgs/msg/Image",  # and <topic dir>/camera_info
}


def rviz_subscriptions() -> tuple[str, list[tuple[str, str, str]]]:
    """(fixed frame, [(display name, topic, durability)]) of the config."""
    data = yaml.safe_load(RVIZ.read_text())
    manager = data["Visualization Manager"]
    subs = []
    for d in manager["Displays"]:
        topic = d.get("Topic") or d.get("Description Topic")
        if d.get("Enabled") and topic:
            assert d["Class"] in DISPLAY_TYPES, f"display {d['Name']}: unknown class {d['Class']}"
            subs.append((d["Name"], topic["Value"], topic.get("Durability Policy", "Volatile")))
    return manager["Global Options"]["Fixed Frame"], subs


def test_the_config_parses_and_names_what_the_contract_defines() -> None:
    fixed, subs = rviz_subscriptions()
    assert fixed == "base_link"
    topics = {t for _, t, _ in subs}
    assert topics == {
        "/robot_description",
        "/smolvla/chunk_markers",
        "/cameras/top/image_raw",
        "/cameras/wrist/image_raw",
    }


def _graph_args(name: str, tmp_path: Path) -> tuple[str, dict[str, str]]:
    if name == "sim":
        return "sim_demo.launch.py", {
            "backend": "smolvla_sim.expert_backend:make_backend",
            "image_size": "64",
        }
    sys.path.insert(0, str(REPO / "src" / "so_arm_driver" / "test"))
    from test_camera import write_video

    video = write_video(tmp_path / "clip.avi")
    return "real_arm.launch.py", {
        "port": "emulated",
        "top_camera": str(video),
        "wrist_camera": str(video),
        "camera_fps": "10",
        "backend": "scripted",
    }


def _start(mini_launch: Any, plan: Any) -> list[Any]:
    """Start the graph; a driver that could not configure the emulated servos (a status packet lost on a
    loaded machine: 'configuration failed ... no status packet') is given up to two more starts."""
    for attempt in range(3):
        procs = mini_launch.start_nodes(plan)
        driver = [p for p in procs if p.executable == "so_arm_driver"]
        if not driver:
            return procs
        deadline = time.monotonic() + 60
        while driver[0].alive() and "connected to" not in driver[0].output() and time.monotonic() < deadline:
            time.sleep(0.5)
        if driver[0].alive() or "no status packet" not in driver[0].output() or attempt == 2:
            return procs
        mini_launch.stop_all(procs, send_sigint=True)
    return procs


@pytest.mark.slow
@pytest.mark.parametrize("graph", ["sim", "real"])
def test_every_topic_and_frame_of_the_rviz_config_is_published(
    graph: str, tmp_path: Path, ros_context
) -> None:  # type: ignore[no-untyped-def]
    rclpy = pytest.importorskip("rclpy")
    import xml.etree.ElementTree as ET

    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    from visualization_msgs.msg import MarkerArray

    import mini_launch

    fixed, subs = rviz_subscriptions()
    launch_file, arguments = _graph_args(graph, tmp_path)
    plan = mini_launch.describe(REPO / "launch" / launch_file, arguments)
    procs = _start(mini_launch, plan)
    node = rclpy.create_node("rviz_check", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    got: dict[str, Any] = {}
    latched = QoSProfile(
        depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
    )
    node.create_subscription(String, "/robot_description", lambda m: got.update(urdf=m.data), latched)
    node.create_subscription(MarkerArray, "/smolvla/chunk_markers", lambda m: got.update(markers=m), 5)
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    for cam in ("top", "wrist"):
        node.create_subscription(
            Image, f"/cameras/{cam}/image_raw", lambda m, c=cam: got.update({c: m.header.frame_id}),
            qos_profile_sensor_data,
        )  # fmt: skip

    def spin_until(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            if pred():
                return True
        return False

    try:
        topics: dict[str, list[str]] = {}

        def all_topics() -> bool:
            topics.update(dict(node.get_topic_names_and_types()))
            return all(t in topics for _, t, _ in subs)

        assert spin_until(all_topics, 120), (
            f"{graph}: missing {[t for _, t, _ in subs if t not in topics]}",
            [p.output()[-1500:] for p in procs if not p.alive()],
        )
        data = yaml.safe_load(RVIZ.read_text())["Visualization Manager"]["Displays"]
        classes = {d["Name"]: d["Class"] for d in data}
        for name, topic, durability in subs:
            # a subscriber alone makes a topic appear: wait for its publishers
            assert spin_until(lambda t=topic: node.get_publishers_info_by_topic(t), 120), (graph, topic)
            assert DISPLAY_TYPES[classes[name]] in topics[topic], (graph, name, topic, topics[topic])
            if durability == "Transient Local":
                pubs = node.get_publishers_info_by_topic(topic)
                assert all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in pubs)
        assert spin_until(lambda: "urdf" in got and "markers" in got, 180), (graph, sorted(got))
        links = {link.get("name") for link in ET.fromstring(got["urdf"]).iter("link")}
        assert fixed in links, (graph, fixed, links)
        frames = {m.header.frame_id for m in got["markers"].markers}
        assert frames == {fixed}, (graph, frames)
        # the camera frames are the same in sim and real: <name>_camera_optical_frame (REP 103 optical frame)
        assert spin_until(lambda: "top" in got and "wrist" in got, 60), (graph, sorted(got))
        assert (got["top"], got["wrist"]) == ("top_camera_optical_frame", "wrist_camera_optical_frame"), graph
        # ... and are frames of the URDF (robot_state_publisher publishes their TF: the Camera display)
        assert {got["top"], got["wrist"]} <= links, (graph, sorted(links))
        for name, topic, _ in subs:
            if classes[name] == "rviz_default_plugins/Camera":
                info = topic.rsplit("/", 1)[0] + "/camera_info"

                def info_published(info: str = info) -> bool:
                    types = dict(node.get_topic_names_and_types()).get(info, [])
                    return "sensor_msgs/msg/CameraInfo" in types

                assert spin_until(info_published, 60), (graph, info)
    finally:
        executor.shutdown()
        node.destroy_node()
        mini_launch.stop_all(procs, send_sigint=True)
