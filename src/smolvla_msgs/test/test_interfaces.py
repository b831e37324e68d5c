"""smolvla_msgs: the contract fields exist and survive serialization and rosbag2 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from smolvla_common.image_conversion import image_to_numpy, numpy_to_image
from smolvla_msgs.action import PredictChunk
from smolvla_msgs.msg import ActionChunk, Observation, QueueStatus
from so_arm_description.robot_spec import JOINT_NAMES

MSG_DIR = Path(__file__).resolve().parent.parent / "msg"


def make_observation(n_cams: int = 2, size: tuple[int, int] = (48, 64)) -> Observation:
    rng = np.random.default_rng(0)
    obs = Observation()
    obs.header.stamp.sec, obs.header.stamp.nanosec = 12, 345
    obs.header.frame_id = "base_link"
    obs.timestep = 1234
    obs.task = "pick up the red cube and put it in the box"
    obs.camera_names = [f"cam{i}" for i in range(n_cams)]
    obs.images = [numpy_to_image(rng.integers(0, 256, (*size, 3), dtype=np.uint8)) for _ in range(n_cams)]
    obs.state = JointState(name=list(JOINT_NAMES), position=[0.1 * i for i in range(6)])
    return obs


def make_chunk(n: int = 50, period: float = 1 / 30) -> ActionChunk:
    chunk = ActionChunk()
    chunk.header.frame_id = "base_link"
    chunk.start_timestep = 1234
    chunk.period = period
    chunk.inference_ms = 12.5
    chunk.trajectory = JointTrajectory(joint_names=list(JOINT_NAMES))
    for i in range(n):
        t = i * period
        chunk.trajectory.points.append(
            JointTrajectoryPoint(
                positions=[0.01 * i + j for j in range(6)],
                time_from_start=Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9))),
            )
        )
    return chunk


def assert_observation_equal(a: Observation, b: Observation) -> None:
    assert (a.timestep, a.task, list(a.camera_names)) == (b.timestep, b.task, list(b.camera_names))
    assert a.header.frame_id == b.header.frame_id and a.header.stamp.nanosec == b.header.stamp.nanosec
    for ia, ib in zip(a.images, b.images, strict=True):
        np.testing.assert_array_equal(image_to_numpy(ia), image_to_numpy(ib))
    assert list(a.state.name) == list(b.state.name)
    np.testing.assert_allclose(a.state.position, b.state.position)


def assert_chunk_equal(a: ActionChunk, b: ActionChunk) -> None:
    assert (a.start_timestep, a.period, a.inference_ms) == (b.start_timestep, b.period, b.inference_ms)
    assert list(a.trajectory.joint_names) == list(b.trajectory.joint_names)
    assert len(a.trajectory.points) == len(b.trajectory.points)
    for pa, pb in zip(a.trajectory.points, b.trajectory.points, strict=True):
        np.testing.assert_allclose(pa.positions, pb.positions)
        assert (pa.time_from_start.sec, pa.time_from_start.nanosec) == (
            pb.time_from_start.sec,
            pb.time_from_start.nanosec,
        )


def test_contract_fields_exist() -> None:
    obs_fields = Observation.get_fields_and_field_types()
    for name in ("header", "timestep", "task", "camera_names", "images", "state"):
        assert name in obs_fields
    assert obs_fields["images"] == "sequence<sensor_msgs/Image>"
    chunk_fields = ActionChunk.get_fields_and_field_types()
    for name in ("header", "start_timestep", "period", "trajectory", "inference_ms"):
        assert name in chunk_fields
    status_fields = QueueStatus.get_fields_and_field_types()
    for name in [
        "header",
        "queue_size",
        "chunk_size",
        "threshold",
        "tick",
        "idle_ticks",
        "observations_sent",
        "observations_filtered",
        "chunks_received",
        "actions_dropped_late",
        "last_latency_ms",
    ]:
        assert name in status_fields
    assert "observation" in PredictChunk.Goal.get_fields_and_field_types()
    assert {"chunk", "error"} <= set(PredictChunk.Result.get_fields_and_field_types())
    assert {"step", "num_steps"} <= set(PredictChunk.Feedback.get_fields_and_field_types())


def test_observation_and_chunk_roundtrip_rclpy_serialization() -> None:
    obs = make_observation()
    assert_observation_equal(obs, deserialize_message(serialize_message(obs), Observation))
    chunk = make_chunk()
    assert_chunk_equal(chunk, deserialize_message(serialize_message(chunk), ActionChunk))


def record_raw(context: object, messages: dict[str, object]) -> dict[str, bytes]:
    """Publish each message on its topic and capture the wire payload with a raw subscription, as
    ``ros2 bag record`` does (rclpy's serialize_message can pad some messages, ENVIRONMENT.md §5.4)."""
    import rclpy
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile

    qos = QoSProfile(depth=5, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    node = rclpy.create_node("bag_recorder_test", context=context)
    got: dict[str, bytes] = {}
    pubs = []
    try:
        for topic, msg in messages.items():
            node.create_subscription(
                type(msg), topic, lambda raw, t=topic: got.setdefault(t, raw), qos, raw=True
            )
            pubs.append((node.create_publisher(type(msg), topic, qos), msg))
        for pub, msg in pubs:
            pub.publish(msg)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        for _ in range(200):
            executor.spin_once(timeout_sec=0.05)
            if len(got) == len(messages):
                break
        executor.shutdown()
    finally:
        node.destroy_node()
    assert set(got) == set(messages), f"recorded only {sorted(got)}"
    return got


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_observation_and_chunk_roundtrip_rosbag2(tmp_path: Path, storage: str, ros_context: object) -> None:
    """Recorded from the wire, written with rosbags to a rosbag2 file, read back by rosbags and by rclpy."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name in ("Observation", "ActionChunk"):
        types.update(get_types_from_msg((MSG_DIR / f"{name}.msg").read_text(), f"smolvla_msgs/msg/{name}"))
    store.register(types)

    obs, chunk = make_observation(), make_chunk()
    raw = record_raw(ros_context, {"/smolvla/observation": obs, "/smolvla/predicted_chunk": chunk})
    bag = tmp_path / f"bag_{storage}"
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(bag, version=9, storage_plugin=plugin) as writer:
        c_obs = writer.add_connection("/smolvla/observation", "smolvla_msgs/msg/Observation", typestore=store)
        c_chunk = writer.add_connection(
            "/smolvla/predicted_chunk", "smolvla_msgs/msg/ActionChunk", typestore=store
        )
        writer.write(c_obs, 1_000, raw["/smolvla/observation"])
        writer.write(c_chunk, 2_000, raw["/smolvla/predicted_chunk"])

    with Reader(bag) as reader:
        got = {c.topic: bytes(data) for c, _t, data in reader.messages()}
    assert set(got) == {"/smolvla/observation", "/smolvla/predicted_chunk"}
    assert_observation_equal(obs, deserialize_message(got["/smolvla/observation"], Observation))
    assert_chunk_equal(chunk, deserialize_message(got["/smolvla/predicted_chunk"], ActionChunk))
    # rosbags decodes them too, with the same content
    decoded = store.deserialize_cdr(got["/smolvla/predicted_chunk"], "smolvla_msgs/msg/ActionChunk")
    assert decoded.start_timestep == chunk.start_timestep and len(decoded.trajectory.points) == 50
    np.testing.assert_allclose(decoded.trajectory.points[7].positions, chunk.trajectory.points[7].positions)
    decoded_obs = store.deserialize_cdr(got["/smolvla/observation"], "smolvla_msgs/msg/Observation")
    assert decoded_obs.task == obs.task and decoded_obs.images[1].width == 64
