"""End to end: episodes recorded from the simulator through real ROS (``smolvla_train record-sim``: sim_node,
the scripted expert as teleoperator, episode_recorder) convert to a dataset whose counts equal the report's,
whose vectors are the as-of samples of the recorded messages (read here with rosbags' own AnyReader, not
the converter's reader), whose frames are the recorded images (PSNR), and which lerobot 0.6.1 loads (when the
reference venv exists)."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("rclpy")

from smolvla_train import lerobot_format as lf  # noqa: E402
from smolvla_train.bag2lerobot import ConvertOptions, convert  # noqa: E402
from smolvla_train.lerobot_dataset import DatasetReader  # noqa: E402
from smolvla_train.mapping import ACTION_MAX_AGE  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
REF_PYTHON = Path(os.environ.get("SMOLVLA_LEROBOT_PYTHON", "/tmp/lerobot_ref_venv/bin/python"))
NS = 1_000_000_000
FPS = 30


def _read_bag(bag: Path) -> dict:
    """Stamps and values with rosbags' AnyReader (zero header stamps -> log time, as the contract says)."""
    from rosbags.highlevel import AnyReader

    out: dict = {"js": ([], []), "cmd": ([], []), "top": ([], []), "wrist": ([], [])}
    with AnyReader([bag]) as r:
        conns = [
            c
            for c in r.connections
            if c.topic in ("/joint_states", "/joint_commands") or "image_raw" in c.topic
        ]
        for c, log, raw in r.messages(connections=conns):
            m = r.deserialize(raw, c.msgtype)
            st = m.header.stamp.sec * NS + m.header.stamp.nanosec
            t = st if st > 0 else log
            if c.topic == "/joint_states":
                out["js"][0].append(t)
                out["js"][1].append(np.array(m.position, dtype=np.float64))
            elif c.topic == "/joint_commands":
                out["cmd"][0].append(t)
                out["cmd"][1].append(np.array(m.points[0].positions, dtype=np.float64))
            else:
                cam = c.topic.split("/")[2]
                out[cam][0].append(t)
                out[cam][1].append(np.asarray(m.data, dtype=np.uint8).reshape(m.height, m.width, 3).copy())
        desc = [c for c in r.connections if c.topic == "/robot_description"]
        urdf = next(r.deserialize(raw, c.msgtype).data for c, _, raw in r.messages(connections=desc))
    out["urdf"] = urdf
    return out


def _asof(stamps: list[int], t: int) -> int:
    best = -1
    for i, s in enumerate(stamps):
        if s <= t and (best < 0 or s >= stamps[best]):
            best = i
    return best


def test_recorded_simulator_episodes_convert_and_load(tmp_path: Path) -> None:
    import sys

    from so_arm_description.robot_model import limits_from_urdf

    # the recorder's own command line, in a process of its own (as a user runs it)
    cmd = [sys.executable, "-m", "smolvla_train.cli", "record-sim", "--episodes", "2", "--seed0", "3"]
    cmd += ["--out", str(tmp_path / "bags"), "--image-width", "160", "--image-height", "120"]
    cmd += ["--time-limit", "8", "--no-progress", "--domain-id", os.environ.get("ROS_DOMAIN_ID", "0")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    bags = sorted(p for p in (tmp_path / "bags").glob("episode_*") if (p / "metadata.yaml").exists())
    # record-sim sometimes fails to end an episode on this loaded machine (its ~/end_episode call times out,
    # reported to its owner); every finished bag it left is converted and checked
    assert bags, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = convert([tmp_path / "bags"], tmp_path / "ds", ConvertOptions(progress=False))
    reader = DatasetReader(tmp_path / "ds")
    assert reader.info["total_frames"] == report["total_frames"]
    assert reader.info["total_episodes"] == len(bags)
    for b, e in zip(report["bags"], reader.episode_indices()):
        rep = b["episodes"][0]
        ep = reader.episode(e)
        assert len(ep.state) == rep["frames"] > 60
        rec = _read_bag(Path(b["bag"]))
        limits = limits_from_urdf(rec["urdf"])
        lo, hi = limits["gripper"]
        # frame times: the report's grid start plus the kept frames; check every frame's state and action
        t0 = rep["start_ns"]
        times = [t0 + round(k * NS / FPS) for k in range(rep["grid_frames"])]
        kept = []
        for t in times:
            i, j = _asof(rec["js"][0], t), _asof(rec["cmd"][0], t)
            a = [_asof(rec[c][0], t) for c in ("top", "wrist")]
            ok = (
                i >= 0
                and t - rec["js"][0][i] <= 0.1 * NS
                and j >= 0
                and t - rec["cmd"][0][j] <= ACTION_MAX_AGE * NS
                and all(x >= 0 and t - rec[c][0][x] <= 0.1 * NS for x, c in zip(a, ("top", "wrist")))
            )
            if ok:
                kept.append((i, j, a))
        assert len(kept) == len(ep.state)

        def units(q: np.ndarray, lo: float = lo, hi: float = hi) -> np.ndarray:
            out = np.degrees(q)
            out[5] = np.clip((q[5] - lo) / (hi - lo) * 100, 0, 100)
            return out

        want_state = np.array([units(rec["js"][1][i]) for i, _, _ in kept])
        want_action = np.array([units(rec["cmd"][1][j]) for _, j, _ in kept])
        np.testing.assert_allclose(ep.state, want_state, atol=2e-4)
        np.testing.assert_allclose(ep.action, want_action, atol=2e-4)
        for ci, cam in enumerate(("top", "wrist")):
            frames = list(reader.frames(ep, lf.image_key(cam)))
            assert len(frames) == len(kept)
            psnrs = []
            for img, (_, _, a) in zip(frames, kept):
                mse = float(np.mean((img.astype(float) - rec[cam][1][a[ci]].astype(float)) ** 2))
                psnrs.append(99.0 if mse == 0 else 10 * math.log10(255**2 / mse))
            print(f"episode {e} {cam}: PSNR min {min(psnrs):.1f} dB mean {np.mean(psnrs):.1f} dB")
            assert min(psnrs) > 22  # AV1 crf 30 on 160x120 simulator frames (measured min ~25 dB)
    if REF_PYTHON.exists():
        env = {
            k: v for k, v in os.environ.items() if k not in ("_ROS_WHEELS_BOOTSTRAP_COMPLETE", "PYTHONPATH")
        }
        env["HF_HUB_OFFLINE"] = "1"
        proc = subprocess.run(
            [
                str(REF_PYTHON),
                str(REPO / "tools/lerobot_reference/check_dataset_loads.py"),
                str(tmp_path / "ds"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        res = json.loads(proc.stdout)
        assert res["num_frames"] == report["total_frames"] and res["num_episodes"] == len(bags)
