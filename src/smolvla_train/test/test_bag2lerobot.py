"""bag2lerobot on real rosbag2 bags written from simulator frames (sim_bag_fixture.py).

The expected dataset is computed here independently of the converter: the frame grid by hand from the
published stamps, as-of sampling with a plain loop, lerobot units with the formulas of LEROBOT_FORMATS.md
(degrees = rad * 180 / pi; gripper = (rad - lower) / (upper - lower) * 100), and the decoded video frames are
compared with the published images by content (PSNR).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fixture helper (importlib mode)
from sim_bag_fixture import NS, write_sim_bag  # noqa: E402

from smolvla_train import lerobot_format as lf  # noqa: E402
from smolvla_train.bag2lerobot import (  # noqa: E402
    EXIT_MISSING_TOPICS,
    ConvertOptions,
    MissingTopicsError,
    convert,
    main,
)
from smolvla_train.lerobot_dataset import DatasetReader  # noqa: E402
from smolvla_train.mapping import load_mapping  # noqa: E402

FPS = 30
MAX_AGE = 0.1


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def expected_frames(pub, start_ns: int, end_ns: int) -> dict[str, list]:
    """Hand-made reference: grid from the published stamps, as-of by a plain loop, drops by max_age."""
    streams = {"state": pub.joint_t, "action": pub.cmd_t, **pub.image_t}
    t0 = max([start_ns] + [t[0] for t in streams.values()])
    t1 = min([end_ns] + [t[-1] for t in streams.values()])
    out: dict[str, list] = {"t": [], "state": [], "action": [], **{c: [] for c in pub.image_t}}
    dropped = 0
    k = 0
    while True:
        t = t0 + round(k * NS / FPS)
        if t > t1:
            break
        k += 1
        picks = {}
        for name, stamps in streams.items():
            best = None
            for i, s in enumerate(stamps):
                if s <= t:
                    best = i
            if best is None or t - stamps[best] > MAX_AGE * NS:
                picks = None
                break
            picks[name] = best
        if picks is None:
            dropped += 1
            continue
        out["t"].append(t)
        out["state"].append(pub.joint_q[picks["state"]])
        out["action"].append(pub.cmd_q[picks["action"]])
        for c in pub.image_t:
            out[c].append(picks[c])
    out["dropped"] = dropped
    return out


def lerobot_units(rad: np.ndarray, limits: dict) -> np.ndarray:
    lo, hi = limits["gripper"]
    out = np.degrees(rad)
    out[..., 5] = np.clip((rad[..., 5] - lo) / (hi - lo) * 100.0, 0, 100)
    return out


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("simbag")
    pub = write_sim_bag(root / "episode_0000", seconds=2.0, camera_gap=(0.8, 1.1), marker=True)
    return root / "episode_0000", pub


@pytest.fixture(scope="module")
def converted(sim_bag, tmp_path_factory: pytest.TempPathFactory):
    bag, pub = sim_bag
    out = tmp_path_factory.mktemp("ds") / "dataset"
    report = convert([bag], out, ConvertOptions(progress=False))
    return out, report, pub


def test_sim_bag_frame_counts_equal_report(converted) -> None:
    out, report, pub = converted
    exp = expected_frames(pub, pub.start_ns, pub.end_ns)
    ep = report["bags"][0]["episodes"][0]
    assert ep["frames"] == len(exp["t"]) > 40
    assert ep["dropped_frames"] == exp["dropped"] == 7  # the wrist camera gap 0.8..1.1 s
    assert ep["features"]["observation.images.wrist"]["drops"] == 7
    assert ep["features"]["observation.images.top"]["drops"] == 0
    assert ep["window"] == "recorder events"
    info = json.loads((out / lf.INFO_PATH).read_text())
    assert info["total_frames"] == report["total_frames"] == ep["frames"]
    assert info["total_episodes"] == 1 and info["codebase_version"] == "v3.0" and info["fps"] == FPS
    data = pq.read_table(out / lf.data_path(0, 0)).to_pandas()
    assert len(data) == ep["frames"]
    assert list(data["frame_index"]) == list(range(len(data)))
    assert list(data["index"]) == list(range(len(data)))
    np.testing.assert_allclose(data["timestamp"], np.arange(len(data)) / FPS, atol=1e-6)
    # the sync report JSON is part of the dataset
    saved = json.loads((out / "meta/smolvla_sync_report.json").read_text())
    assert saved["runs"][0]["total_frames"] == report["total_frames"]


def test_sim_bag_values_are_the_as_of_samples_in_lerobot_units(converted) -> None:
    out, _, pub = converted
    exp = expected_frames(pub, pub.start_ns, pub.end_ns)
    reader = DatasetReader(out)
    ep = reader.episode(0)
    np.testing.assert_allclose(ep.state, lerobot_units(np.array(exp["state"]), pub.limits), atol=2e-4)
    np.testing.assert_allclose(ep.action, lerobot_units(np.array(exp["action"]), pub.limits), atol=2e-4)
    assert ep.task == pub.task
    units = json.loads((out / lf.INFO_PATH).read_text())[lf.UNITS_KEY]
    assert units["kind"] == "lerobot" and "robot_description" in units["limits_source"]


def test_sim_bag_video_frames_match_published_images(converted) -> None:
    out, _, pub = converted
    exp = expected_frames(pub, pub.start_ns, pub.end_ns)
    reader = DatasetReader(out)
    ep = reader.episode(0)
    for cam in ("top", "wrist"):
        frames = list(reader.frames(ep, lf.image_key(cam)))
        assert len(frames) == len(exp["t"])
        scores = []
        for k, img in enumerate(frames):
            want = exp[cam][k]
            p = [psnr(img, ref) for ref in pub.images[cam]]
            scores.append(p[want])
            # by content: the published image at the sampled time is the best match of all published images
            assert int(np.argmax(p)) == want, (cam, k, want, int(np.argmax(p)))
        print(
            f"{cam}: PSNR min {min(scores):.1f} dB, mean {np.mean(scores):.1f} dB over {len(scores)} frames"
        )
        assert min(scores) > 25.0  # AV1 crf 30 (lerobot default), yuv420p, 64x48 with a sharp marker


def test_stats_json_has_quantiles(converted) -> None:
    out, _, _ = converted
    stats = json.loads((out / lf.STATS_PATH).read_text())
    data = pq.read_table(out / lf.data_path(0, 0)).to_pandas()
    state = np.stack(data["observation.state"].to_numpy())
    s = stats["observation.state"]
    for q, v in (("q01", 0.01), ("q50", 0.5), ("q99", 0.99)):
        np.testing.assert_allclose(s[q], np.quantile(state.astype(np.float64), v, axis=0), rtol=1e-6)
    np.testing.assert_allclose(s["mean"], state.mean(axis=0), rtol=1e-5)
    img = stats["observation.images.top"]
    assert np.array(img["mean"]).shape == (3, 1, 1) and set(lf.STAT_NAMES) <= set(img)


@pytest.mark.parametrize("storage,compression", [("sqlite3", False), ("mcap", True), ("sqlite3", True)])
def test_other_storages_convert_the_same(tmp_path: Path, storage: str, compression: bool) -> None:
    bag = tmp_path / "bag"
    pub = write_sim_bag(bag, seconds=1.0, storage=storage, compression=compression, seed=7)
    report = convert([bag], tmp_path / "ds", ConvertOptions(progress=False))
    exp = expected_frames(pub, pub.start_ns, pub.end_ns)
    assert report["total_frames"] == len(exp["t"])
    ep = DatasetReader(tmp_path / "ds").episode(0)
    np.testing.assert_allclose(ep.state, lerobot_units(np.array(exp["state"]), pub.limits), atol=2e-4)


def test_units_radians_keeps_ros_units_and_says_so(sim_bag, tmp_path: Path) -> None:
    bag, pub = sim_bag
    convert([bag], tmp_path / "ds", ConvertOptions(units="radians", progress=False, codec="h264"))
    info = json.loads((tmp_path / "ds" / lf.INFO_PATH).read_text())
    assert info[lf.UNITS_KEY]["kind"] == "radians"
    assert info["features"]["observation.images.top"]["info"]["video.codec"] == "h264"
    exp = expected_frames(pub, pub.start_ns, pub.end_ns)
    ep = DatasetReader(tmp_path / "ds").episode(0)
    np.testing.assert_allclose(ep.state, np.array(exp["state"]), atol=1e-6)


def test_calibration_file_sets_the_gripper_range(sim_bag, tmp_path: Path) -> None:
    bag, pub = sim_bag
    cal = {
        name: {"id": i + 1, "drive_mode": 0, "homing_offset": 0, "range_min": 1000, "range_max": 3000}
        for i, name in enumerate(("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"))
    }
    cal["gripper"] = {"id": 6, "drive_mode": 0, "homing_offset": 0, "range_min": 2000, "range_max": 3200}
    (tmp_path / "cal.json").write_text(json.dumps(cal))
    convert([bag], tmp_path / "ds", ConvertOptions(calibration=tmp_path / "cal.json", progress=False))
    half = 600 * 2 * math.pi / 4095  # (range_max - range_min) / 2 ticks in radians (lerobot's 4095)
    exp = expected_frames(pub, pub.start_ns, pub.end_ns)
    ep = DatasetReader(tmp_path / "ds").episode(0)
    grip = np.clip((np.array(exp["state"])[:, 5] + half) / (2 * half) * 100, 0, 100)
    np.testing.assert_allclose(ep.state[:, 5], grip, atol=2e-4)


def test_append_adds_episodes_without_touching_existing_files(sim_bag, tmp_path: Path) -> None:
    bag, _ = sim_bag
    other = tmp_path / "other"
    pub2 = write_sim_bag(other, seconds=1.0, seed=11, events=False, task="stack the cubes")
    out = tmp_path / "ds"
    r1 = convert([bag], out, ConvertOptions(progress=False))
    before = {
        p: (p.stat().st_ino, p.read_bytes()) for p in out.rglob("*") if p.is_file() and "meta/" not in str(p)
    }
    r2 = convert([other], out, ConvertOptions(progress=False, append=True))
    for p, (_, content) in before.items():
        assert p.read_bytes() == content  # data and video files of episode 0 are unchanged
    reader = DatasetReader(out)
    assert reader.episode_indices() == [0, 1]
    assert reader.info["total_frames"] == r1["total_frames"] + r2["total_frames"]
    assert reader.info["total_tasks"] == 2
    ep1 = reader.episode(1)
    assert ep1.task == "stack the cubes" and ep1.video[lf.image_key("top")][0].name == "file-001.mp4"
    exp = expected_frames(pub2, pub2.start_ns, pub2.end_ns)
    np.testing.assert_allclose(ep1.state, lerobot_units(np.array(exp["state"]), pub2.limits), atol=2e-4)
    data = pq.read_table(out / lf.data_path(0, 1)).to_pandas()
    assert data["index"].iloc[0] == r1["total_frames"]
    assert len(json.loads((out / "meta/smolvla_sync_report.json").read_text())["runs"]) == 2


def test_failed_append_leaves_the_dataset_as_it_was(sim_bag, tmp_path: Path) -> None:
    bag, _ = sim_bag
    out = tmp_path / "ds"
    convert([bag], out, ConvertOptions(progress=False))
    snapshot = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(Exception, match="fps"):
        opts = ConvertOptions(progress=False, append=True, mapping=load_mapping(data={"fps": 15}))
        convert([bag], out, opts)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temporary directory left behind


def test_missing_topics_are_named_and_nothing_is_written(sim_bag, tmp_path: Path, capsys) -> None:
    bag, _ = sim_bag
    mapping = tmp_path / "map.yaml"
    mapping.write_text("action: {topic: /leader/joint_states}\ncameras:\n  side: /cameras/side/image_raw\n")
    code = main([str(bag), "-o", str(tmp_path / "ds"), "--mapping", str(mapping), "--no-progress"])
    err = capsys.readouterr().err
    assert code == EXIT_MISSING_TOPICS
    assert "/leader/joint_states" in err and "/cameras/side/image_raw" in err
    assert not (tmp_path / "ds").exists() and sorted(os.listdir(tmp_path)) == ["map.yaml"]


def test_existing_output_is_refused_without_append_or_overwrite(sim_bag, tmp_path: Path) -> None:
    bag, _ = sim_bag
    (tmp_path / "ds").mkdir()
    code = main([str(bag), "-o", str(tmp_path / "ds"), "--no-progress", "-q"])
    assert code != 0 and list((tmp_path / "ds").iterdir()) == []


def test_directory_of_episode_bags_gives_one_episode_per_bag(tmp_path: Path) -> None:
    pubs = [
        write_sim_bag(tmp_path / "bags" / f"ep_{i}", seconds=0.8, seed=i, task=f"task {i}") for i in range(2)
    ]
    (tmp_path / "bags" / "ep_2.partial").mkdir()  # an unfinished recording is not a bag
    report = convert([tmp_path / "bags"], tmp_path / "ds", ConvertOptions(progress=False))
    reader = DatasetReader(tmp_path / "ds")
    assert [reader.episode(i).task for i in range(2)] == ["task 0", "task 1"]
    assert report["total_frames"] == sum(len(expected_frames(p, p.start_ns, p.end_ns)["t"]) for p in pubs)


def test_missing_topic_in_one_bag_of_many_writes_nothing(tmp_path: Path) -> None:
    write_sim_bag(tmp_path / "bags" / "a", seconds=0.5)
    write_sim_bag(tmp_path / "bags" / "b", seconds=0.5, cameras=("top",))
    with pytest.raises(MissingTopicsError, match="different camera sets|wrist"):
        convert([tmp_path / "bags"], tmp_path / "ds", ConvertOptions(progress=False))
    assert not (tmp_path / "ds").exists()


def test_indexed_reading_gives_the_same_messages_per_topic(sim_bag) -> None:
    """quick_messages (MCAP message indexes, header bytes only for images) = the full stream, per topic."""
    from smolvla_train.bagio import HEAD_BYTES, open_bag

    bag, _ = sim_bag
    with open_bag(bag) as b:
        topics = sorted(b.topics)
        cams = [t for t in topics if "image_raw" in t]
        full = [(t, ts, bytes(raw)) for t, ts, raw in b.messages(topics)]
        quick = [(t, ts, bytes(raw)) for t, ts, raw in b.quick_messages(topics, head_only=cams)]
    for topic in topics:
        a = [(ts, raw[:HEAD_BYTES] if topic in cams else raw) for t, ts, raw in full if t == topic]
        q = [(ts, raw) for t, ts, raw in quick if t == topic]
        assert a == q and a, topic


@pytest.mark.parametrize(
    "image_format,min_psnr", [("bgr8", 25.0), ("mono8", 25.0), ("jpeg", 24.0), ("png", 25.0)]
)
def test_image_encodings_and_compressed_images(tmp_path: Path, image_format: str, min_psnr: float) -> None:
    bag = tmp_path / "bag"
    pub = write_sim_bag(bag, seconds=0.8, image_format=image_format, marker=True)
    report = convert([bag], tmp_path / "ds", ConvertOptions(progress=False))
    exp = expected_frames(pub, pub.start_ns, pub.end_ns)
    assert report["total_frames"] == len(exp["t"])
    reader = DatasetReader(tmp_path / "ds")
    ep = reader.episode(0)
    for cam in ("top", "wrist"):
        frames = list(reader.frames(ep, lf.image_key(cam)))
        assert len(frames) == len(exp["t"])
        for k, img in enumerate(frames):
            p = [psnr(img, ref) for ref in pub.images[cam]]
            assert int(np.argmax(p)) == exp[cam][k] and p[exp[cam][k]] > min_psnr, (cam, k)


def test_interrupted_conversion_leaves_nothing(sim_bag, tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C in the middle of the video pass: no dataset, no temporary directory."""
    import smolvla_train.bag2lerobot as b2l

    bag, _ = sim_bag
    calls = {"n": 0}
    real = b2l.decode_image

    def interrupt_later(msg, msgtype):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return real(msg, msgtype)

    monkeypatch.setattr(b2l, "decode_image", interrupt_later)
    with pytest.raises(KeyboardInterrupt):
        convert([bag], tmp_path / "ds", ConvertOptions(progress=False))
    assert list(tmp_path.iterdir()) == []


def test_video_files_roll_over_at_the_size_limit(sim_bag, tmp_path: Path, monkeypatch) -> None:
    """A new mp4 starts at an episode boundary once the current one is over video_files_size_in_mb."""
    import smolvla_train.lerobot_format as lf_mod

    bag, pub = sim_bag
    other = tmp_path / "other"
    write_sim_bag(other, seconds=1.0, seed=4, events=False)
    monkeypatch.setattr(lf_mod, "VIDEO_FILES_SIZE_IN_MB", 1e-6)
    convert([bag, other], tmp_path / "ds", ConvertOptions(progress=False))
    reader = DatasetReader(tmp_path / "ds")
    e0, e1 = reader.episode(0), reader.episode(1)
    key = lf.image_key("top")
    assert e0.video[key][0].name == "file-000.mp4" and e1.video[key][0].name == "file-001.mp4"
    assert e1.video[key][1] == 0.0  # the second episode starts its own file
    assert len(list(reader.frames(e1, key))) == len(e1.state)
    exp = expected_frames(pub, pub.start_ns, pub.end_ns)
    frames = list(reader.frames(e0, key))
    assert int(np.argmax([psnr(frames[-1], ref) for ref in pub.images["top"]])) == exp["top"][-1]


def test_a_second_writer_of_the_same_dataset_is_refused(sim_bag, tmp_path: Path) -> None:
    from smolvla_train.lerobot_dataset import DatasetError, DatasetSpec, DatasetWriter

    bag, _ = sim_bag
    first = DatasetWriter(tmp_path / "ds", DatasetSpec(fps=30, joint_names=("a",), cameras={}))
    try:
        with pytest.raises(DatasetError, match="another conversion"):
            convert([bag], tmp_path / "ds", ConvertOptions(progress=False))
    finally:
        first.abort()
    convert([bag], tmp_path / "ds", ConvertOptions(progress=False))  # free again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
