"""Integration tests: the policy_server executable in its own process with a tiny SmolVLA checkpoint, driven
through real rclpy action calls (shared-memory DDS, own domain id; see conftest.py).

One server process serves the whole module (loading torch and the model takes a few seconds); tests that need
other parameters change them through the parameter services, as an operator would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ros_harness import NodeProcess, wait_for
from smolvla_policy.server.testing import PolicyClient, camera_images, make_observation, status_name
from so_arm_description.robot_spec import JOINT_NAMES

pytestmark = pytest.mark.slow

ACTION = "/smolvla/predict_chunk"
SEED = 7
NUM_STEPS = 4
FPS = 15.0
MAX_PIXELS = 100 * 100


def images(seed: int = 0, size: int = 64) -> dict[str, np.ndarray]:
    return camera_images(("top", "wrist"), size, size, seed=seed)


def good_observation(**kw: Any) -> Any:
    kw.setdefault("positions", [0.1, -0.3, 0.4, 0.2, -0.1, 0.5])
    return make_observation(kw.pop("images", None) or images(), **kw)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    testing = pytest.importorskip("smolvla_policy.model.testing")
    return testing.make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt"), seed=0)


@pytest.fixture(scope="module")
def server(checkpoint: Path) -> Any:
    from ros_harness import REPO_ROOT

    proc = NodeProcess(
        "smolvla_policy",
        "policy_server",
        params_file=REPO_ROOT / "config" / "policy_server.yaml",
        parameters={
            "checkpoint": str(checkpoint),
            "device": "cpu",
            "num_steps": NUM_STEPS,
            "seed": SEED,
            "fps": FPS,
            "max_image_pixels": MAX_PIXELS,
            "backend_options": '{"num_threads": 1}',  # ros_harness quotes it for -p
        },
    )
    try:
        assert proc.wait_for_output("ready", timeout=120.0), proc.output()
        yield proc
    finally:
        code = proc.stop()
        assert code in (0, 1, -2), proc.output()  # SIGINT: a clean exit


@pytest.fixture(scope="module")
def client(server: Any) -> Any:
    c = PolicyClient(ACTION)
    c.wait_for_server(60.0)
    yield c
    c.close()


def reference_chunk(checkpoint: Path, obs_images: dict, positions: list, task: str) -> np.ndarray:
    """The same prediction made in this process with the model API, converted to radians by hand."""
    import torch

    from smolvla_policy.model.policy import SmolVLAPolicy

    torch.set_num_threads(1)
    policy = SmolVLAPolicy.from_pretrained(str(checkpoint), device="cpu", dtype="float32")
    policy.num_steps = NUM_STEPS
    feats = {"observation.images.top": obs_images["top"], "observation.images.wrist": obs_images["wrist"]}
    deg = np.degrees(np.asarray(positions[:5]))
    lo, hi = -0.17453, 1.74533  # SO-101 gripper range -> 0..100
    state = np.concatenate([deg, [(positions[5] - lo) / (hi - lo) * 100.0]])
    out = policy.predict_chunk(feats, state, task, seed=SEED).astype(np.float64)
    grip = np.clip(out[:, 5:], 0.0, 100.0)  # lerobot clamps RANGE_0_100 to 0..100 before writing it
    return np.concatenate([np.radians(out[:, :5]), (grip / 100.0) * (hi - lo) + lo], axis=1)


def test_good_goal_yields_a_chunk_in_request_order_and_radians(
    client: PolicyClient, checkpoint: Path
) -> None:
    order = [3, 0, 5, 1, 4, 2]  # the request's joint order differs from the checkpoint's
    q = [0.1, -0.3, 0.4, 0.2, -0.1, 0.5]
    names = [JOINT_NAMES[i] for i in order]
    obs = make_observation(
        images(),
        joint_names=names,
        positions=[q[i] for i in order],
        timestep=123,
        stamp=(42, 5000),
        task="stack the cubes",
    )
    n_markers = len(client.markers)
    status, result = client.result(client.send(obs))
    assert status_name(status) == "succeeded" and result.error == ""
    chunk = result.chunk
    traj = chunk.trajectory
    assert list(traj.joint_names) == names
    assert len(traj.points) == 50 and all(len(p.positions) == 6 for p in traj.points)
    assert chunk.start_timestep == 123 and chunk.period == pytest.approx(1 / FPS)
    assert (chunk.header.stamp.sec, chunk.header.stamp.nanosec) == (42, 5000)
    t = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in traj.points]
    assert np.allclose(t, np.arange(50) / FPS, atol=1e-8)
    assert chunk.inference_ms > 0
    got = np.array([p.positions for p in traj.points])
    expected = reference_chunk(checkpoint, images(), q, "stack the cubes")[:, order]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # Published as well, and as an rviz gripper path when the arm's kinematics are available.
    assert wait_for(lambda: any(c.start_timestep == 123 for c in client.chunks), 10.0)
    try:
        import so_arm_description.kinematics  # noqa: F401
    except ImportError:
        return
    assert wait_for(lambda: len(client.markers) > n_markers, 10.0)
    line = client.markers[-1].markers[0]
    assert line.header.frame_id == "base_link" and len(line.points) == 50


def test_same_observation_and_seed_give_the_same_chunk(client: PolicyClient) -> None:
    chunks = []
    for _ in range(2):
        status, result = client.result(client.send(good_observation(timestep=5)))
        assert status_name(status) == "succeeded"
        chunks.append(np.array([p.positions for p in result.chunk.trajectory.points]))
    np.testing.assert_array_equal(chunks[0], chunks[1])
    # bgr8 images are accepted and mean the same picture
    status, result = client.result(client.send(good_observation(timestep=5, encoding="bgr8")))
    assert status_name(status) == "succeeded"
    np.testing.assert_array_equal(chunks[0], [p.positions for p in result.chunk.trajectory.points])
    status, result = client.result(client.send(good_observation(timestep=5, images=images(seed=1))))
    assert not np.allclose(chunks[0], [p.positions for p in result.chunk.trajectory.points])
    client.set_parameters(seed=8)
    try:
        status, result = client.result(client.send(good_observation(timestep=5)))
        assert not np.allclose(chunks[0], [p.positions for p in result.chunk.trajectory.points])
    finally:
        client.set_parameters(seed=SEED)


def test_feedback_arrives_num_steps_times(client: PolicyClient) -> None:
    ref = client.send(good_observation())
    # rclpy's ActionClient drops feedback that arrives after it has received the result: ask for the result
    # only once the feedback is in.
    assert wait_for(lambda: len(ref.feedback) >= NUM_STEPS, 60.0)
    status, _ = client.result(ref)
    assert status_name(status) == "succeeded"
    assert [(f.step, f.num_steps) for f in ref.feedback] == [(s, NUM_STEPS) for s in range(1, NUM_STEPS + 1)]
    client.set_parameters(num_steps=2)  # applied to the loaded model, no reload
    try:
        ref = client.send(good_observation())
        assert wait_for(lambda: len(ref.feedback) >= 2, 60.0)
        status, _ = client.result(ref)
        assert status_name(status) == "succeeded" and [f.step for f in ref.feedback] == [1, 2]
    finally:
        client.set_parameters(num_steps=NUM_STEPS)


def _bad_inputs() -> list[tuple[str, Any, str]]:
    nan = [0.0, float("nan"), 0.0, 0.0, 0.0, 0.0]
    renamed = ["shoulder_pan", "shoulder_lift", "elbow", "wrist_flex", "wrist_roll", "gripper"]
    big = camera_images(("top", "wrist"), 128, 128)
    return [
        (
            "missing camera",
            make_observation(camera_images(("top",), 64, 64)),
            "missing camera for the checkpoint's image feature 'observation.images.wrist'",
        ),
        (
            "wrong encoding",
            make_observation({"top": np.zeros((8, 8, 4), np.uint8)}, encoding="rgba8"),
            "encoding 'rgba8' is not accepted",
        ),
        ("empty joint names", make_observation(images(), joint_names=[], positions=[]), "no joint names"),
        (
            "mismatched joint names",
            make_observation(images(), joint_names=renamed),
            "do not match the checkpoint's joints",
        ),
        ("NaN state", make_observation(images(), positions=nan), "'shoulder_lift' is not finite"),
        (
            "empty task",
            make_observation(images(), task=""),
            "task is empty and the server has no default_task",
        ),
        ("oversized image", make_observation(big), f"more than max_image_pixels = {MAX_PIXELS}"),
    ]


@pytest.mark.parametrize("case", [c[0] for c in _bad_inputs()])
def test_bad_input_is_aborted_with_its_error_then_a_good_goal_is_served(
    client: PolicyClient, case: str
) -> None:
    _, obs, error = next(c for c in _bad_inputs() if c[0] == case)
    status, result = client.result(client.send(obs))
    assert status_name(status) == "aborted" and error in result.error, result.error
    status, result = client.result(client.send(good_observation()))
    assert status_name(status) == "succeeded" and len(result.chunk.trajectory.points) == 50


def test_preemption_and_cancel(client: PolicyClient) -> None:
    """A running goal is never preempted; a newer goal preempts the waiting one, a bad goal does not; cancel
    stops a running goal at its next step and a waiting one at once."""
    client.set_parameters(latency_ms=600_000.0)  # each step then waits 150 s unless cancelled
    try:
        running = client.send(good_observation(timestep=1))
        assert wait_for(lambda: len(running.feedback) >= 1, 60.0)  # it is running now
        waiting = client.send(good_observation(timestep=2))
        newer = client.send(good_observation(timestep=3))
        status, result = client.result(waiting, timeout=120.0)
        assert status_name(status) == "aborted" and "preempted" in result.error
        bad = client.send(make_observation(camera_images(("top",), 64, 64), timestep=4))
        status, result = client.result(bad, timeout=120.0)
        assert status_name(status) == "aborted" and "missing camera" in result.error

        assert client.cancel(running).return_code == 0
        status, result = client.result(running, timeout=120.0)
        assert status_name(status) == "canceled" and result.error == "cancelled"
        assert len(running.feedback) < NUM_STEPS  # stopped at the next step

        assert wait_for(lambda: len(newer.feedback) >= 1, 60.0)  # the bad goal did not preempt it: it runs
        pending = client.send(good_observation(timestep=5))
        assert client.cancel(pending).return_code == 0
        status, result = client.result(pending, timeout=120.0)
        assert status_name(status) == "canceled" and pending.feedback == []
        assert client.cancel(newer).return_code == 0
        status, result = client.result(newer, timeout=120.0)
        assert status_name(status) == "canceled"
    finally:
        client.set_parameters(latency_ms=0.0)
        client.cancel_outstanding()  # a failure above must not leave a 150 s step running into the next test
    status, _ = client.result(client.send(good_observation(timestep=6)))
    assert status_name(status) == "succeeded"


def test_default_task_and_reload_on_parameter_change(client: PolicyClient) -> None:
    client.set_parameters(default_task="pick up the cube")
    status, result = client.result(client.send(good_observation(task="")))
    assert status_name(status) == "succeeded"
    client.set_parameters(backend="scripted", backend_options='{"mode": "hold", "chunk_size": 5}')
    try:
        q = [0.1, -0.3, 0.4, 0.2, -0.1, 0.5]
        status, result = client.result(client.send(good_observation(positions=q)))  # answered once reloaded
        assert status_name(status) == "succeeded"
        np.testing.assert_allclose([p.positions for p in result.chunk.trajectory.points], [q] * 5)
    finally:
        client.set_parameters(backend="smolvla", backend_options='{"num_threads": 1}', default_task="")
    status, result = client.result(client.send(good_observation()))
    assert status_name(status) == "succeeded" and len(result.chunk.trajectory.points) == 50
