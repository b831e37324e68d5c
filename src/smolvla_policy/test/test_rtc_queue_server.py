"""Real-time chunking (issue 16) in the queue core and the server core (plain Python, no ROS).

* queue ``rtc`` mode: the request carries the queued actions from the capture tick on and the expected delay
  ``min(q, ceil(L_max / period))``; the arriving chunk is taken as it is from the actual delay on;
* server: goal fields -> RTCRequest (checks, server settings, disabled), parameters;
* smolvla backend: the prefix is reordered to the checkpoint's joints and converted to its units exactly like
  the state (checked against the model API called by hand).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from smolvla_policy.backend import BadRequest, ChunkRequest, RTCRequest
from smolvla_policy.queue import ActionQueueCore, QueueConfig, make_aggregate
from smolvla_policy.server.config import ServerConfig, validate_parameter
from smolvla_policy.server.rtc import RTC_SCHEDULES, RTCSettings, guided_prefix_length, rtc_from_goal

J = 3
DT = 1.0 / 30.0


def chunk_for(start: int, n: int, offset: float) -> np.ndarray:
    """Action for timestep t = t + offset in every joint (so a value says which chunk and tick it is)."""
    return np.repeat((np.arange(start, start + n, dtype=float) + offset)[:, None], J, axis=1)


def run_rtc(latency_ticks: float, ticks: int = 200, n: int = 20, g: float = 0.6, aggregate: str = "rtc"):
    """Discrete-time loop: chunk k (answering the k-th request) has values timestep + 1000 k."""
    core = ActionQueueCore(
        J,
        QueueConfig(fps=30.0, chunk_threshold=g, aggregate_fn=aggregate, max_step=0, similarity_epsilon=-1.0),
    )
    pending: list[tuple[float, int, int, int]] = []
    requests, commands, outcomes = [], [], []
    for t in range(ticks):
        now = t * DT
        for item in sorted(p for p in pending if p[0] <= now + 1e-9):
            pending.remove(item)
            _, rid, start, k = item
            outcomes.append(core.on_chunk(rid, start, chunk_for(start, n, 1000.0 * k), now))
        res = core.tick(now, np.zeros(J))
        if res.request is not None:
            requests.append((res.request, core.queue_size + int(res.executed)))
            pending.append(
                (now + latency_ticks * DT, res.request.request_id, res.request.timestep, len(requests))
            )
        commands.append((res.timestep, res.command[0] if res.command is not None else None, res.executed))
    return core, requests, commands, outcomes


def test_rtc_request_carries_the_queued_actions_from_the_capture_tick():
    core, requests, _, _ = run_rtc(latency_ticks=4.5)
    assert requests[0][0].rtc_prefix is None  # empty queue: nothing to guide with
    guided = [r for r, _ in requests[1:]]
    assert len(guided) >= 5
    for req in guided:
        prefix = req.rtc_prefix
        assert prefix is not None and prefix.shape[1] == J
        ticks = req.timestep + np.arange(len(prefix))
        offset = prefix[:, 0] - ticks  # the chunk each row came from: a multiple of 1000, same tick
        assert np.allclose(offset, np.round(offset / 1000.0) * 1000.0)
        # latency 4.5 ticks -> the chunk is merged after ceil(4.5) = 5 executed ticks (capture tick included)
        assert req.rtc_inference_delay == min(len(prefix), 5)


def test_rtc_takes_the_new_chunk_from_the_actual_delay_on_without_averaging():
    _, _, commands, outcomes = run_rtc(latency_ticks=4.5)
    assert all(o.accepted for o in outcomes)
    assert all(o.late == 5 for o in outcomes[1:])  # the delay the request announced
    steps = [c for _, c, executed in commands if executed]
    # every command is exactly "timestep + 1000 k" of one chunk k: no averaged value between two chunks
    for ts, cmd, executed in commands:
        if executed:
            k = round((cmd - ts) / 1000.0)
            assert cmd == pytest.approx(ts + 1000.0 * k)
    assert len(steps) > 100


def test_weighted_average_mode_averages_and_sends_no_prefix():
    _, requests, commands, _ = run_rtc(latency_ticks=4.5, aggregate="weighted_average")
    assert all(r.rtc_prefix is None for r, _ in requests)
    mixed = [cmd - ts for ts, cmd, ex in commands if ex and abs(((cmd - ts) / 1000.0) % 1.0) > 1e-6]
    assert mixed  # 0.3 old + 0.7 new leaves fractions of 1000


def test_rtc_inference_delay_uses_the_largest_latency_and_is_capped_by_the_queue():
    core = ActionQueueCore(J, QueueConfig(fps=10.0, aggregate_fn="rtc"))
    assert core.rtc_inference_delay(30) == 0  # no latency measured yet
    for lat in (0.12, 0.31, 0.2):
        core.latency.add(lat)
    assert core.rtc_inference_delay(30) == math.ceil(0.31 / 0.1)
    assert core.rtc_inference_delay(2) == 2
    core.latency.add(0.3)  # exactly three periods: ceil -> 3 (merged before the 4th tick)
    assert core.rtc_inference_delay(30) == 4  # 0.31 is still the largest in the window


def test_rtc_aggregate_equals_latest_only():
    old, new = np.ones((4, J)), np.full((4, J), 5.0)
    np.testing.assert_array_equal(make_aggregate("rtc")(old, new), new)


def test_queue_config_rtc_execution_horizon_is_validated():
    QueueConfig(rtc_execution_horizon=12).validate()
    with pytest.raises(ValueError, match="rtc_execution_horizon"):
        QueueConfig(rtc_execution_horizon=-1).validate()
    core = ActionQueueCore(J)
    with pytest.raises(ValueError, match="aggregate_fn"):
        core.update_config(aggregate_fn="rtcx")
    assert core.update_config(aggregate_fn="rtc").aggregate_fn == "rtc"


# ---- server -----------------------------------------------------------------------------------------------
def request(names=("a", "b", "c")) -> ChunkRequest:
    return ChunkRequest(images={}, joint_names=list(names), positions=np.zeros(len(names)), task="t")


def goal(prefix, delay=2, horizon=0):
    return SimpleNamespace(rtc_prefix=list(np.asarray(prefix, float).reshape(-1)), rtc_inference_delay=delay,
                           rtc_execution_horizon=horizon)  # fmt: skip


def test_rtc_from_goal_builds_the_request_with_the_server_settings():
    prefix = np.arange(12.0).reshape(4, 3)
    settings = RTCSettings(prefix_attention_schedule="exp", max_guidance_weight=3.0, execution_horizon=7)
    rtc = rtc_from_goal(goal(prefix), request(), settings)
    assert isinstance(rtc, RTCRequest)
    np.testing.assert_array_equal(rtc.prefix, prefix)
    assert (rtc.inference_delay, rtc.execution_horizon) == (2, 7)
    assert (rtc.prefix_attention_schedule, rtc.max_guidance_weight) == ("exp", 3.0)
    assert guided_prefix_length(rtc) == 4  # horizon 7 clipped to the 4 prefix actions
    assert rtc_from_goal(goal(prefix, horizon=3), request(), settings).execution_horizon == 3
    assert rtc_from_goal(goal([]), request(), settings) is None  # no prefix: no RTC
    assert rtc_from_goal(goal(prefix), request(), RTCSettings(enabled=False)) is None
    assert rtc_from_goal(SimpleNamespace(), request(), settings) is None  # an old goal without the fields
    assert guided_prefix_length(None) == 0


@pytest.mark.parametrize(
    ("prefix", "delay", "match"),
    [
        (np.zeros(7), 0, "multiple"),
        (np.full((2, 3), np.nan), 0, "non-finite"),
        (np.zeros((2, 3)), 3, "exceeds"),
    ],
)
def test_rtc_from_goal_rejects_bad_fields(prefix, delay, match):
    with pytest.raises(BadRequest, match=match):
        rtc_from_goal(goal(prefix, delay=delay), request(), RTCSettings())


def test_server_rtc_parameters_are_validated():
    assert validate_parameter("rtc_prefix_attention_schedule", "EXP") is None
    assert "one of" in validate_parameter("rtc_prefix_attention_schedule", "cosine")
    assert validate_parameter("rtc_max_guidance_weight", 0.0) is not None
    assert validate_parameter("rtc_execution_horizon", 0) is not None
    cfg = ServerConfig.from_values({"rtc_prefix_attention_schedule": "ONES", "rtc_execution_horizon": 5})
    assert cfg.rtc_settings() == RTCSettings(True, "ones", 10.0, 5)
    assert ServerConfig().rtc_settings() == RTCSettings()


def test_server_schedules_equal_the_model_schedules():
    from smolvla_policy.model.rtc import SCHEDULES

    assert RTC_SCHEDULES == SCHEDULES


# ---- smolvla backend --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    from smolvla_policy.model.testing import make_tiny_checkpoint
    from smolvla_policy.server.smolvla_backend import SmolVLABackend

    ckpt = make_tiny_checkpoint(tmp_path_factory.mktemp("rtc_tiny"), seed=3)
    b = SmolVLABackend.from_options({"checkpoint": str(ckpt), "device": "cpu", "num_steps": 4})
    assert b.supports_rtc
    return b


def test_smolvla_backend_applies_rtc_like_the_model_api(backend):
    from smolvla_policy.model.rtc import RTCConfig

    rng = np.random.default_rng(0)
    names = list(backend.joint_names)
    order = [3, 0, 5, 1, 4, 2]  # request order differs from the checkpoint's
    q = rng.uniform(-0.5, 0.5, 6)
    prefix_rad = q + 0.05 * np.cumsum(rng.normal(size=(30, 6)), axis=0)
    imgs = {"top": rng.integers(0, 255, (40, 40, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)}  # fmt: skip
    req = ChunkRequest(images=imgs, joint_names=[names[i] for i in order], positions=q[order], task="pick",
                       seed=5)  # fmt: skip
    req.rtc = RTCRequest(prefix_rad[:, order], inference_delay=3, execution_horizon=12,
                         prefix_attention_schedule="exp", max_guidance_weight=4.0)  # fmt: skip
    guided = backend.predict(req)
    req.rtc = None
    plain = backend.predict(req)
    # by hand with the model API: state and prefix in checkpoint order and units
    policy, units = backend.policy, backend.units
    feats = dict(zip(policy.camera_keys, (imgs["top"], imgs["wrist"])))
    cfg = RTCConfig(
        enabled=True, prefix_attention_schedule="exp", max_guidance_weight=4.0, execution_horizon=12
    )
    ref = policy.predict_chunk(feats, units.to_model(q).astype(np.float32), "pick", seed=5,
                               prev_chunk=units.to_model(prefix_rad).astype(np.float32), inference_delay=3,
                               rtc_config=cfg)  # fmt: skip
    ref_rad = units.to_ros(np.asarray(ref, np.float64))[:, order]
    np.testing.assert_allclose(guided, ref_rad, atol=1e-6)
    # guidance pulls the first actions towards the prefix
    head = slice(0, 3)
    assert (
        np.abs(guided[head] - prefix_rad[head][:, order]).mean()
        < np.abs(plain[head] - prefix_rad[head][:, order]).mean()
    )


def test_prefix_markers_show_the_previous_chunk_and_its_guiding_part_in_orange():
    from smolvla_policy.server.builders import build_chunk_markers, build_prefix_markers
    from so_arm_description.robot_spec import JOINT_NAMES

    def fk(q, robot="so101"):
        return np.stack([q[:, 0], q[:, 1], q[:, 2]], axis=1)

    prefix = np.arange(24.0).reshape(4, 6) / 10.0
    names = list(reversed(JOINT_NAMES))  # the request's order: columns are reordered for the kinematics
    markers = build_prefix_markers(prefix, names, fk, guided=2, frame_id="base_link", stamp=(1, 2),
                                   lifetime_s=1.5)  # fmt: skip
    assert [(m.ns, m.id, len(m.points)) for m in markers] == [
        ("smolvla_rtc_prefix", 0, 4),
        ("smolvla_rtc_prefix", 1, 2),
    ]
    first = markers[0].points[0]
    assert (first.x, first.y, first.z) == pytest.approx((0.5, 0.4, 0.3))  # shoulder_pan is the last column
    assert (markers[0].lifetime.sec, markers[0].lifetime.nanosec) == (1, 500000000)
    chunk_colour = build_chunk_markers(prefix, names, fk, frame_id="base_link", stamp=(1, 2)).markers[0].color
    assert (markers[0].color.r, markers[0].color.g) != (chunk_colour.r, chunk_colour.g)  # another colour
    assert build_prefix_markers(prefix[:, :5], names[:5], fk, guided=2, frame_id="b", stamp=(0, 0)) == []
