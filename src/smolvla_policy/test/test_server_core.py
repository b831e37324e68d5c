"""Fast tests of the policy server's plain-Python core: parameters, conversion, scheduler, backends,
builders."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from smolvla_policy.backend import BadRequest, ChunkRequest, InferenceCancelled, PolicyBackend
from smolvla_policy.server.backends import ReplayBackend, ScriptedBackend, make_backend
from smolvla_policy.server.builders import build_action_chunk, build_chunk_markers, chunk_to_arm_order
from smolvla_policy.server.config import PARAMETERS, ServerConfig, parse_pairs, validate_parameter
from smolvla_policy.server.conversion import RequestLimits, observation_to_request
from smolvla_policy.server.scheduler import (
    ABORTED,
    CANCELLED,
    PREEMPTED_ERROR,
    SUCCEEDED,
    GoalScheduler,
    Job,
)
from smolvla_policy.server.smolvla_backend import map_cameras
from smolvla_policy.server.testing import camera_images, make_observation
from so_arm_description.robot_spec import JOINT_NAMES, SO101_LIMITS

# ------------------------------------------------------------------------------------------------ parameters


def test_defaults_are_valid_and_match_the_yaml():
    import yaml

    from ros_harness import REPO_ROOT

    cfg = ServerConfig.from_values({})
    assert cfg.backend == "smolvla" and cfg.fps == 30.0 and cfg.camera_map == {}
    text = (REPO_ROOT / "config" / "policy_server.yaml").read_text()
    values = yaml.safe_load(text)["policy_server"]["ros__parameters"]
    assert set(values) == {p.name for p in PARAMETERS}
    for spec in PARAMETERS:
        assert values[spec.name] == spec.default, spec.name
        assert validate_parameter(spec.name, spec.default) is None
        assert spec.description


@pytest.mark.parametrize(
    "name,value,reason",
    [
        ("backend", "torch", "backend must be one of"),
        ("backend", "pkg.mod:", "backend must be one of"),
        ("backend_options", "{nope", "not valid JSON"),
        ("backend_options", "[1]", "JSON object"),
        ("device", "tpu", "device must be one of"),
        ("dtype", "float16", "dtype must be one of"),
        ("fps", 0.0, "fps must be >= 0.1"),
        ("num_steps", -1, "num_steps must be >= 0"),
        ("seed", -2, "seed must be >= -1"),
        ("robot", "ur5", "robot must be one of"),
        ("camera_map", ["top"], "not of the form"),
        ("camera_map", ["a=x", "a=y"], "given twice"),
        ("joint_units", ["gripper=percent"], "is not one of"),
        ("checkpoint", " ", "must not be empty"),
    ],
)
def test_invalid_parameters_are_rejected_with_a_reason(name, value, reason):
    assert reason in (validate_parameter(name, value) or "")


def test_valid_parameter_values():
    for name, value in [
        ("backend", "my_pkg.plugins:make"),
        ("device", "cuda:1"),
        ("camera_map", ["top=a", ""]),
        ("joint_units", ["gripper=radians"]),
        ("backend_options", '{"mode": "hold"}'),
    ]:
        assert validate_parameter(name, value) is None, name
    assert parse_pairs(["top = observation.images.top"], "x") == {"top": "observation.images.top"}


def test_backend_options_override_server_options():
    cfg = ServerConfig.from_values(
        {"backend_options": json.dumps({"fps": 10.0, "mode": "sinusoid"}), "seed": 3}
    )
    opts = cfg.factory_options()
    assert (
        opts["fps"] == 10.0 and opts["mode"] == "sinusoid" and opts["seed"] == 3 and opts["num_steps"] is None
    )
    plugin = ServerConfig.from_values({"backend": "pkg.mod:make", "backend_options": '{"robot": "so100"}'})
    assert plugin.factory_options() == {"robot": "so100"}  # plug-ins get their own options only


# ------------------------------------------------------------------------------------------------ conversion


def test_good_observation_converts():
    images = camera_images(("top", "wrist"), 48, 64)
    obs = make_observation(images, positions=np.linspace(-0.5, 0.5, 6), timestep=17, stamp=(5, 250_000_000))
    req = observation_to_request(obs, RequestLimits(seed=4))
    assert req.joint_names == list(JOINT_NAMES) and req.timestep == 17 and req.seed == 4
    assert np.allclose(req.positions, np.linspace(-0.5, 0.5, 6))
    assert list(req.images) == ["top", "wrist"]
    np.testing.assert_array_equal(req.images["top"], images["top"])
    assert req.extras["stamp"] == (5, 250_000_000)


def test_bgr8_and_mono8_become_rgb():
    images = camera_images(("top",), 8, 8)
    bgr = observation_to_request(make_observation(images, encoding="bgr8"), RequestLimits())
    np.testing.assert_array_equal(bgr.images["top"], images["top"])
    mono = observation_to_request(make_observation(images, encoding="mono8"), RequestLimits())
    assert mono.images["top"].shape == (8, 8, 3)
    np.testing.assert_array_equal(mono.images["top"][..., 2], images["top"][..., 0])


def _bad(obs, limits=None, now_s=None):
    with pytest.raises(BadRequest) as info:
        observation_to_request(obs, limits or RequestLimits(), now_s)
    return str(info.value)


def test_each_bad_input_says_what_is_wrong():
    assert "encoding 'rgba8' is not accepted" in _bad(
        make_observation({"top": np.zeros((4, 4, 4), np.uint8)}, encoding="rgba8")
    )
    assert "no joint names" in _bad(make_observation(joint_names=[], positions=[]))
    obs = make_observation()
    obs.state.position = [0.0] * 5
    assert "6 joint names but 5 positions" in _bad(obs)
    assert "twice" in _bad(make_observation(joint_names=["a", "a"], positions=[0, 0]))
    assert "'elbow_flex' is not finite" in _bad(make_observation(positions=[0, 0, np.nan, 0, 0, 0]))
    assert "task is empty" in _bad(make_observation(task="  "))
    assert (
        observation_to_request(make_observation(task=""), RequestLimits(default_task="wave")).task == "wave"
    )
    assert "more than max_image_pixels = 100" in _bad(make_observation(), RequestLimits(max_image_pixels=100))
    obs = make_observation()
    obs.images = obs.images[:1]
    assert "2 camera names but 1 images" in _bad(obs)
    obs = make_observation()
    obs.images[0].data = obs.images[0].data[:10]
    assert "camera 'top'" in _bad(obs)


def test_old_observations_are_rejected_only_when_the_age_check_is_on():
    obs = make_observation(stamp=(100, 0))
    assert "10.000 s old" in _bad(obs, RequestLimits(max_observation_age=1.0), now_s=110.0)
    observation_to_request(obs, RequestLimits(max_observation_age=20.0), now_s=110.0)
    observation_to_request(obs, RequestLimits(max_observation_age=0.0), now_s=1e9)


# -------------------------------------------------------------------------------------------------- backends


def _request(timestep=0, names=JOINT_NAMES, positions=None):
    pos = np.zeros(len(names)) if positions is None else np.asarray(positions, float)
    return ChunkRequest(images={}, joint_names=list(names), positions=pos, task="t", timestep=timestep)


def test_scripted_backend_modes():
    steps = []
    hold = ScriptedBackend(mode="hold", chunk_size=5, num_steps=3)
    assert isinstance(hold, PolicyBackend)
    q = np.array([0.1, -0.2, 0.3, 0.0, 0.5, 0.2])
    out = hold.predict(_request(positions=q), lambda s, n: steps.append((s, n)))
    assert out.shape == (5, 6) and np.allclose(out, q) and steps == [(1, 3), (2, 3), (3, 3)]

    target = ScriptedBackend(
        mode="target", chunk_size=60, target={"shoulder_pan": 1.0}, max_velocity=1.5, fps=30
    )
    out = target.predict(_request())
    assert np.allclose(np.diff(out[:, 0])[:19], 0.05) and out[-1, 0] == pytest.approx(1.0)
    assert np.allclose(out[:, 1:], 0.0)

    sine = ScriptedBackend(mode="sinusoid", amplitude=5.0, period_s=1.0)
    out = sine.predict(_request(timestep=3))
    for j, name in enumerate(JOINT_NAMES):  # clamped to the joint limits
        assert SO101_LIMITS[name][0] <= out[:, j].min() and out[:, j].max() <= SO101_LIMITS[name][1]
    with pytest.raises(ValueError, match="mode must be"):
        ScriptedBackend(mode="dance")


def test_backends_honour_cancel_at_the_next_step():
    seen = []
    with pytest.raises(InferenceCancelled):
        ScriptedBackend(num_steps=10).predict(_request(), lambda s, n: seen.append(s) or s < 4)
    assert seen == [1, 2, 3, 4]


def test_replay_from_npy_advances_with_the_timestep(tmp_path):
    actions = np.arange(20 * 6, dtype=float).reshape(20, 6) / 100
    np.save(tmp_path / "a.npy", actions)
    backend = make_backend("replay", {"path": str(tmp_path / "a.npy"), "chunk_size": 4, "num_steps": 2})
    out = backend.predict(_request(timestep=3))
    np.testing.assert_allclose(out, actions[3:7])
    np.testing.assert_allclose(backend.predict(_request(timestep=18))[-1], actions[-1])  # holds the last one
    rev = list(reversed(JOINT_NAMES))
    np.testing.assert_allclose(backend.predict(_request(timestep=0, names=rev)), actions[0:4, ::-1])
    with pytest.raises(BadRequest, match="no joint 'finger'"):
        backend.predict(_request(names=["finger"]))
    looped = ReplayBackend(actions, JOINT_NAMES, chunk_size=4, loop=True)
    np.testing.assert_allclose(looped.predict(_request(timestep=19))[1], actions[0])


def write_lerobot_dataset(root, episodes):
    """A minimal LeRobot v3 data layout: meta/info.json and data/chunk-000/file-000.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "meta").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    names = [f"{n}.pos" for n in JOINT_NAMES]
    info = {
        "codebase_version": "v3.0",
        "fps": 30,
        "features": {"action": {"dtype": "float32", "shape": [6], "names": names}},
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    rows = {"action": [], "episode_index": [], "frame_index": []}
    for ep, acts in episodes.items():
        for i, a in reversed(list(enumerate(acts))):  # stored out of order on purpose
            rows["action"].append([float(x) for x in a])
            rows["episode_index"].append(ep)
            rows["frame_index"].append(i)
    table = pa.table(
        {
            "action": pa.array(rows["action"], pa.list_(pa.float32(), 6)),
            "episode_index": pa.array(rows["episode_index"], pa.int64()),
            "frame_index": pa.array(rows["frame_index"], pa.int64()),
        }
    )
    pq.write_table(table, root / "data" / "chunk-000" / "file-000.parquet")


def test_replay_from_a_lerobot_dataset_episode(tmp_path):
    ep0 = np.full((10, 6), 0.1)
    ep1 = np.arange(12 * 6, dtype=np.float32).reshape(12, 6) / 100
    write_lerobot_dataset(tmp_path / "ds", {0: ep0, 1: ep1})
    backend = make_backend(
        "replay", {"path": str(tmp_path / "ds"), "episode": 1, "units": "radians", "chunk_size": 5}
    )
    np.testing.assert_allclose(backend.predict(_request(timestep=2)), ep1[2:7], rtol=1e-6)
    with pytest.raises(ValueError, match="no frames of episode 7"):
        make_backend("replay", {"path": str(tmp_path / "ds"), "episode": 7})


def test_replay_converts_lerobot_units_to_radians(tmp_path):
    rad = np.array([0.1, -0.2, 0.3, -0.4, 0.5])
    lerobot = np.concatenate([np.degrees(rad), [50.0]])  # gripper: 50 % of its range
    write_lerobot_dataset(tmp_path / "ds", {3: np.tile(lerobot, (4, 1))})
    backend = make_backend("replay", {"path": str(tmp_path / "ds"), "chunk_size": 2})
    lo, hi = SO101_LIMITS["gripper"]
    np.testing.assert_allclose(backend.predict(_request())[0], [*rad, (lo + hi) / 2], atol=1e-6)
    in_radians = make_backend(
        "replay", {"path": str(tmp_path / "ds"), "joint_units": {"gripper": "radians"}, "chunk_size": 2}
    )
    assert in_radians.predict(_request())[0, 5] == pytest.approx(hi)  # 50 rad, clamped to the gripper's limit


def test_plugin_backend_by_module_and_factory():
    backend = make_backend("smolvla_policy.server.backends:ScriptedBackend.from_options", {"mode": "target"})
    assert isinstance(backend, ScriptedBackend) and backend.mode == "target"
    with pytest.raises(TypeError, match="not a PolicyBackend"):
        make_backend("numpy:array", {})
    with pytest.raises(ValueError, match="has no 'nope'"):
        make_backend("smolvla_policy.server.backends:nope", {})


def test_camera_mapping():
    keys = ["observation.images.top", "observation.images.wrist"]
    assert map_cameras(keys, ["wrist", "top"], {}) == {keys[0]: "top", keys[1]: "wrist"}
    assert map_cameras(["OBS_IMAGE_1", "OBS_IMAGE_2"], ["a", "b"], {}) == {
        "OBS_IMAGE_1": "a",
        "OBS_IMAGE_2": "b",
    }
    assert map_cameras(keys, ["front", "hand"], {"front": keys[0], "hand": keys[1]}) == {
        keys[0]: "front",
        keys[1]: "hand",
    }
    with pytest.raises(
        BadRequest, match="missing camera for the checkpoint's image feature 'observation.images.wrist'"
    ):
        map_cameras(keys, ["top"], {})
    with pytest.raises(BadRequest, match="'observation.images.top'"):
        map_cameras(keys, ["top", "wrist"], {"front": keys[0], "wrist": keys[1]})


# ------------------------------------------------------------------------------------------------- scheduler


class GatedBackend:
    """A real backend whose steps wait for a gate: lets the tests hold a job 'running' without timing."""

    chunk_size = 3

    def __init__(self, num_steps=4):
        self.num_steps = num_steps
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls = []

    def predict(self, request, step_callback=None):
        self.calls.append(request.timestep)
        self.started.set()
        for step in range(1, self.num_steps + 1):
            self.gate.wait(10)
            if step_callback and step_callback(step, self.num_steps) is False:
                raise InferenceCancelled("cancelled")
        return np.full((self.chunk_size, len(request.joint_names)), float(request.timestep))

    def warmup(self):
        pass


@pytest.fixture
def scheduler():
    s = GoalScheduler()
    yield s
    s.shutdown()


def test_goals_wait_for_the_backend_then_run(scheduler):
    job = Job(1, _request(timestep=5))
    scheduler.submit(job)
    assert job.wait(0.05) is None and job.state == "pending"
    backend = GatedBackend()
    backend.gate.set()
    scheduler.set_backend(backend)
    out = job.wait(10)
    assert out.status == SUCCEEDED and out.chunk.shape == (3, 6) and out.steps == 4 and out.inference_ms > 0


def test_newest_pending_goal_preempts_the_older_pending_one(scheduler):
    backend = GatedBackend()
    scheduler.set_backend(backend)
    running, old, new = Job("a", _request(1)), Job("b", _request(2)), Job("c", _request(3))
    scheduler.submit(running)
    assert backend.started.wait(10)
    assert scheduler.submit(old) is None
    assert scheduler.submit(new) is old
    assert old.outcome.status == ABORTED and old.outcome.error == PREEMPTED_ERROR
    assert not running.done  # a running goal is never preempted
    backend.gate.set()
    assert running.wait(10).status == SUCCEEDED and new.wait(10).status == SUCCEEDED
    assert backend.calls == [1, 3]


def test_cancel_running_at_next_step_and_pending_at_once(scheduler):
    backend = GatedBackend(num_steps=5)
    scheduler.set_backend(backend)
    feedback = []
    running = Job("a", _request(1), on_step=lambda s, n: feedback.append(s))
    pending = Job("b", _request(2))
    scheduler.submit(running)
    assert backend.started.wait(10)
    scheduler.submit(pending)
    assert scheduler.cancel(pending) and pending.outcome.status == CANCELLED
    assert scheduler.cancel(running)
    backend.gate.set()
    out = running.wait(10)
    assert out.status == CANCELLED and feedback == [] and out.steps == 1
    assert not scheduler.cancel(running)  # already finished
    after = Job("c", _request(3))
    scheduler.submit(after)
    assert after.wait(10).status == SUCCEEDED


def test_failed_backend_and_bad_chunks_abort_without_stopping_the_worker(scheduler):
    scheduler.set_failed("no such checkpoint")
    job = Job(1, _request())
    scheduler.submit(job)
    assert "no such checkpoint" in job.wait(10).error

    class Broken(GatedBackend):
        def predict(self, request, step_callback=None):
            if request.timestep == 1:
                raise RuntimeError("boom")
            if request.timestep == 2:
                raise BadRequest("bad joints")
            return np.full((2, 5), np.nan)

    scheduler.set_backend(Broken())
    outs = []
    for t in (1, 2, 3):
        j = Job(t, _request(t))
        scheduler.submit(j)
        outs.append(j.wait(10))
    assert [o.status for o in outs] == [ABORTED] * 3
    assert "RuntimeError: boom" in outs[0].error and outs[1].error == "bad joints"
    assert "expected (T, 6)" in outs[2].error
    ok = GatedBackend()
    ok.gate.set()
    scheduler.set_backend(ok)
    j = Job(4, _request(4))
    scheduler.submit(j)
    assert j.wait(10).status == SUCCEEDED


def test_artificial_latency_is_cancellable():
    sched = GoalScheduler(latency_s=600.0)
    try:
        sched.set_backend(ScriptedBackend(num_steps=2))
        job = Job(1, _request())
        sched.submit(job)
        assert job.wait(0.1) is None
        sched.cancel(job)
        assert job.wait(10).status == CANCELLED
    finally:
        sched.shutdown()


def test_shutdown_finishes_waiting_goals():
    sched = GoalScheduler()
    job = Job(1, _request())
    sched.submit(job)
    sched.shutdown()
    assert job.outcome.status == ABORTED and "shutting down" in job.outcome.error


# -------------------------------------------------------------------------------------------------- builders


def test_action_chunk_message():
    chunk = np.arange(12, dtype=float).reshape(4, 3) / 10
    msg = build_action_chunk(
        chunk,
        ["c", "a", "b"],
        stamp=(7, 5),
        frame_id="base_link",
        start_timestep=42,
        fps=30.0,
        inference_ms=12.5,
    )
    assert msg.header.stamp.sec == 7 and msg.header.stamp.nanosec == 5 and msg.start_timestep == 42
    assert msg.period == pytest.approx(1 / 30) and msg.inference_ms == pytest.approx(12.5)
    assert list(msg.trajectory.joint_names) == ["c", "a", "b"] and len(msg.trajectory.points) == 4
    p3 = msg.trajectory.points[3]
    assert list(p3.positions) == pytest.approx([0.9, 1.0, 1.1])
    assert p3.time_from_start.sec == 0 and p3.time_from_start.nanosec == 100_000_000
    t = [pt.time_from_start.sec + pt.time_from_start.nanosec * 1e-9 for pt in msg.trajectory.points]
    assert np.allclose(t, np.arange(4) / 30, atol=1e-9)


def test_markers_follow_the_forward_kinematics():
    def fk(q, robot="so101"):  # a stand-in chain: x = shoulder_pan, y = elbow_flex, z = robot id
        return np.stack([q[:, 0], q[:, 2], np.full(len(q), 1.0 if robot == "so100" else 0.0)], axis=1)

    names = list(reversed(JOINT_NAMES))
    chunk = np.zeros((5, 6))
    chunk[:, names.index("shoulder_pan")] = np.arange(5)
    chunk[:, names.index("elbow_flex")] = 2.0
    arr = build_chunk_markers(chunk, names, fk, frame_id="base", stamp=(1, 2), robot="so100")
    line, spheres = arr.markers
    assert line.type == line.LINE_STRIP and spheres.type == spheres.SPHERE_LIST and line.id != spheres.id
    assert line.header.frame_id == "base" and len(spheres.colors) == 5
    assert [(p.x, p.y, p.z) for p in line.points] == [(float(i), 2.0, 1.0) for i in range(5)]
    assert chunk_to_arm_order(chunk[:, :5], names[:5]) is None
    assert build_chunk_markers(chunk[:, :5], names[:5], fk, frame_id="b", stamp=(0, 0)) is None


def test_markers_with_the_arm_kinematics():
    kin = pytest.importorskip("so_arm_description.kinematics")
    arr = build_chunk_markers(
        np.zeros((3, 6)), JOINT_NAMES, kin.forward_kinematics, frame_id="base_link", stamp=(0, 0)
    )
    xyz = np.array([(p.x, p.y, p.z) for p in arr.markers[0].points])
    assert xyz.shape == (3, 3) and np.allclose(xyz, xyz[0]) and np.linalg.norm(xyz[0]) > 0.1
