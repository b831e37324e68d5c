"""The mapping YAML: the printed default loads back to the defaults; bad values are refused with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from smolvla_train.mapping import ACTION_MAX_AGE, Mapping, MappingError, default_yaml, load_mapping


def test_printed_default_mapping_loads_back_to_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(default_yaml())
    m, d = load_mapping(tmp_path / "m.yaml"), Mapping()
    assert (m.fps, m.fps_given, m.stamp, m.max_age, m.joint_names) == (
        d.fps,
        False,
        d.stamp,
        d.max_age,
        d.joint_names,
    )
    assert m.state == d.state and m.action == d.action and m.action.max_age == ACTION_MAX_AGE
    assert m.cameras is None and m.episodes == "auto" and m.task_topic is None


def test_camera_auto_detection_prefers_raw_over_compressed() -> None:
    topics = {
        "/cameras/top/image_raw": "sensor_msgs/msg/Image",
        "/cameras/top/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
        "/cameras/wrist/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
        "/cameras/top/camera_info": "sensor_msgs/msg/CameraInfo",
    }
    cams = Mapping().resolve_cameras(topics)
    assert {c: s.topic for c, s in cams.items()} == {
        "top": "/cameras/top/image_raw",
        "wrist": "/cameras/wrist/image_raw/compressed",
    }


@pytest.mark.parametrize(
    "data,words",
    [
        ({"fps": 0}, "fps"),
        ({"stamp": "wall"}, "stamp"),
        ({"max_age": -1}, "max_age"),
        ({"episodes": "never"}, "episodes"),
        ({"joint_names": ["a", "a"]}, "joint_names"),
        ({"state": {"topic": "/x", "rate": 3}}, "unknown keys"),
        ({"cameras": ["top"]}, "cameras"),
        ({"typo_key": 1}, "unknown mapping keys"),
    ],
)
def test_bad_mappings_are_refused_with_a_reason(data: dict, words: str) -> None:
    with pytest.raises(MappingError, match=words):
        load_mapping(data=data)
