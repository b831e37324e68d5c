"""``smolvla_train inspect`` on a dataset made by lerobot, a simulator bag (with the sync dry run) and a
genuine rosbag2 bag without the mapped topics."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the fixture helper (importlib mode)
from sim_bag_fixture import write_sim_bag  # noqa: E402

from smolvla_train.inspect_cmd import main  # noqa: E402

TALKER = Path("/work/shared/testdata/rosbag2/sqlite3/talker")


def test_inspect_lerobot_dataset(capsys) -> None:
    assert main([str(HERE / "fixtures" / "lerobot_v30_tiny"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["total_episodes"] == 2 and s["total_frames"] == 15 and s["fps"] == 10
    assert s["tasks"] == ["pick the cube", "place the cube"]
    assert s["features"]["observation.images.wrist"]["video"].startswith("av1 96x64")
    assert [e["length"] for e in s["episodes"]] == [9, 6]
    assert main([str(HERE / "fixtures" / "lerobot_v30_tiny")]) == 0
    text = capsys.readouterr().out
    assert "2 episodes, 15 frames" in text and "observation.state" in text


def test_inspect_bag_with_sync_dry_run(tmp_path: Path, capsys) -> None:
    write_sim_bag(tmp_path / "bag", seconds=2.0, camera_gap=(0.8, 1.1))
    assert main([str(tmp_path / "bag"), "--sync", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["mapping"]["convertible"] and s["topics"]["/joint_states"]["count"] == 120
    assert [e["event"] for e in s["episode_events"]] == ["start", "end"]
    assert s["sync"][0]["dropped_frames"] == 7  # same as the conversion (test_bag2lerobot)
    assert list(tmp_path.iterdir()) == [tmp_path / "bag"]  # a dry run writes nothing


def test_inspect_bag_without_mapped_topics(capsys) -> None:
    if not TALKER.exists():
        return
    assert main([str(TALKER)]) == 0
    text = capsys.readouterr().out
    assert "convertible: NO" in text and "/joint_states" in text and "std_msgs/msg/String" in text


def test_inspect_refuses_other_paths(tmp_path: Path, capsys) -> None:
    (tmp_path / "x.txt").write_text("no")
    assert main([str(tmp_path / "x.txt")]) == 1
    assert "neither" in capsys.readouterr().err
