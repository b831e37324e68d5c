"""Regression (issue 15): ``lerobot2bag`` stamped the images ``<cam>_camera``, a frame nobody publishes; the
images of a converted bag now carry ``<cam>_camera_optical_frame`` like sim_node and camera_node, a frame of
the URDF the bag carries on /robot_description (so rviz can place them when the bag is replayed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from smolvla_train.bagio import open_bag
from smolvla_train.lerobot2bag import export

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "lerobot_v30_tiny"  # written by lerobot 0.6.1


def test_lerobot2bag_images_were_stamped_camera_not_the_optical_frame(tmp_path: Path) -> None:
    bags = export(FIXTURE, tmp_path / "bags", episodes=[0], progress=False)
    with open_bag(bags[0]) as bag:
        _, _, raw = next(iter(bag.messages(["/robot_description"])))
        links = {
            link.get("name")
            for link in ET.fromstring(bag.deserialize("/robot_description", raw).data).iter("link")
        }
        for cam in ("top", "wrist"):
            for topic in (f"/cameras/{cam}/image_raw", f"/cameras/{cam}/camera_info"):
                frames = {bag.deserialize(topic, raw).header.frame_id for _, _, raw in bag.messages([topic])}
                assert frames == {f"{cam}_camera_optical_frame"}, topic
            assert f"{cam}_camera_optical_frame" in links


def test_lerobot2bag_camera_keys_that_are_no_name_parts_give_valid_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Camera names with characters a frame name cannot have (e.g. ``observation.images.wrist-cam``)."""
    from smolvla_train import lerobot_format

    names = {"observation.images.top": "top.left", "observation.images.wrist": "wrist-cam"}
    keys = {v: k for k, v in names.items()}
    monkeypatch.setattr(lerobot_format, "camera_of", lambda key: names[key])
    monkeypatch.setattr(lerobot_format, "image_key", lambda cam: keys[cam])
    bags = export(FIXTURE, tmp_path / "bags", episodes=[0], progress=False)
    with open_bag(bags[0]) as bag:
        for cam, frame in (
            ("top.left", "top_left_camera_optical_frame"),
            ("wrist-cam", "wrist_cam_camera_optical_frame"),
        ):
            topic = f"/cameras/{cam}/image_raw"
            assert {bag.deserialize(topic, raw).header.frame_id for _, _, raw in bag.messages([topic])} == {
                frame
            }
