"""``smolvla_train view`` on a real rosbag2 bag and a LeRobot v3.0 dataset written by lerobot 0.6.1, read back
from the .rrd it writes through Rerun's own reader.

References: the values the bag fixture published (joint positions, images); the dataset's parquet rows read
with pandas and converted by hand (lerobot degrees -> radians for the arm joints).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("rerun")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers (importlib mode)
from sim_bag_fixture import write_sim_bag  # noqa: E402
from train_testing import DATASET  # noqa: E402
from viewer_testing import read_rrd  # noqa: E402

from smolvla_train.cli import main as cli  # noqa: E402


def _joint_series(data: dict, joint: str) -> np.ndarray:
    return np.array([r["Scalars:scalars"][0] for r in data[f"/joints/{joint}"]])


def test_view_bag_shows_every_joint_state_and_image(tmp_path: Path) -> None:
    bag = tmp_path / "episode_000000"
    pub = write_sim_bag(bag, seconds=1.0, width=32, height=24)
    out = tmp_path / "bag.rrd"
    assert (
        cli(["view", str(bag), "--save", str(out), "--no-serve", "--no-progress", "--jpeg-quality", "0"]) == 0
    )
    data = read_rrd(out)
    q = np.array(pub.joint_q)
    for joint in ["shoulder_pan", "elbow_flex", "gripper"]:
        col = {"shoulder_pan": 0, "elbow_flex": 2, "gripper": 5}[joint]
        assert np.allclose(_joint_series(data, joint), q[:, col], atol=1e-6), joint
    assert len(data["/world/arm"]) == len(pub.joint_q)
    for cam in ("top", "wrist"):
        rows = data[f"/cameras/{cam}"]
        assert len(rows) == len(pub.images[cam])
        first = np.frombuffer(bytes(rows[0]["Image:buffer"][0]), dtype=np.uint8).reshape(24, 32, 3)
        assert np.array_equal(first, pub.images[cam][0])
    # the time line: seconds since the bag's start, from the log times (read here with rosbags itself)
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == "/joint_states"]
        log_ns = [t for _, t, _ in reader.messages(connections=conns)]
        start = reader.start_time
    shown = [pd.Timedelta(r["time"]).total_seconds() for r in data["/world/arm"]]
    assert np.allclose(shown, (np.array(log_ns) - start) / 1e9, atol=1e-6)
    assert len(data["/action/shoulder_pan"]) == len(pub.cmd_q)


def test_view_dataset_written_by_lerobot(tmp_path: Path) -> None:
    out = tmp_path / "ds.rrd"
    assert (
        cli(["view", str(DATASET), "--episodes", "1", "--save", str(out), "--no-serve", "--no-progress"]) == 0
    )
    data = read_rrd(out)
    frames = pd.concat(pd.read_parquet(f) for f in sorted(DATASET.glob("data/*/*.parquet")))
    ep = frames[frames["episode_index"] == 1].sort_values("frame_index")
    state = np.stack(ep["observation.state"].to_numpy()).astype(np.float64)
    for j, joint in enumerate(["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"]):
        assert np.allclose(_joint_series(data, joint), np.radians(state[:, j]), atol=1e-5), joint
    assert len(data["/cameras/top"]) == len(ep) and len(data["/cameras/wrist"]) == len(ep)
    assert len(data["/world/chunk"]) == 1  # the episode's whole gripper path
    assert len(data["/world/chunk"][0]["LineStrips3D:strips"][0]) == len(ep)


def test_view_refuses_what_it_cannot_show(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(["view", str(tmp_path), "--save", str(tmp_path / "x.rrd"), "--no-serve"]) == 2
    assert "not a rosbag2 bag" in capsys.readouterr().err
    assert not (tmp_path / "x.rrd").exists()
    out = tmp_path / "y.rrd"
    args = ["view", str(DATASET), "--episodes", "99", "--save", str(out), "--no-serve", "--no-progress"]
    assert cli(args) == 2
    assert "no episode(s) [99]" in capsys.readouterr().err
    assert not out.exists()  # nothing that looks complete
