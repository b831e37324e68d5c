"""Genuine rosbag2 output (``/work/shared/testdata/rosbag2``, written by rosbag2 itself) opens: topics, types
and message counts agree with each bag's metadata.yaml and every message is read. None of them has the
graph contract's topics, so bag2lerobot names the missing ones, exits non-zero and writes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from smolvla_train.bag2lerobot import EXIT_MISSING_TOPICS, main
from smolvla_train.bagio import open_bag

TESTDATA = Path(os.environ.get("SMOLVLA_ROSBAG2_TESTDATA", "/work/shared/testdata/rosbag2"))
BAGS = sorted(p.parent for p in TESTDATA.glob("*/*/metadata.yaml")) if TESTDATA.exists() else []

pytestmark = pytest.mark.skipif(not BAGS, reason=f"no rosbag2 test data under {TESTDATA}")


@pytest.mark.parametrize("bag", BAGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_genuine_bag_opens_and_reads_completely(bag: Path) -> None:
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    expected = {
        t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], t["message_count"])
        for t in meta["topics_with_message_count"]
    }
    with open_bag(bag) as b:
        assert {n: (t.msgtype, t.count) for n, t in b.topics.items()} == expected
        read: dict[str, int] = {}
        for topic, _, raw in b.messages(list(b.topics)):
            read[topic] = read.get(topic, 0) + 1
            assert len(raw) >= 4
        assert sum(read.values()) == meta["message_count"]
        if "/topic" in b.topics and b.topics["/topic"].msgtype == "std_msgs/msg/String":
            _, _, raw = next(iter(b.messages(["/topic"])))
            assert "Hello" in b.deserialize("/topic", raw).data  # the talker demo's chatter


@pytest.mark.parametrize("bag", BAGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_missing_mapped_topics_are_named_and_nothing_is_written(bag: Path, tmp_path: Path, capsys) -> None:
    code = main([str(bag), "-o", str(tmp_path / "ds"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == EXIT_MISSING_TOPICS
    assert "/joint_states" in err and "/joint_commands" in err and "cameras" in err
    assert "nothing written" in err
    assert list(tmp_path.iterdir()) == []
