"""The pip-install ``ros2`` stand-in (smolvla_train.ros2cli).

- fast: value parsing as ros2cli does it (YAML), the ``param get`` line, ``bag info`` against an independent
  reader (rosbags) of the same bag;
- slow (real rclpy/DDS, the simulated loop of launch/sim_demo.launch.py): the README's command lines run
  verbatim through the installed ``ros2`` shim: ``ros2 param set /action_queue chunk_threshold 0.5`` and the
  change of g shows in ``ros2 topic echo /smolvla/queue_status --once``; an invalid value is refused;
  ``ros2 service call /action_queue/stop std_srvs/srv/Trigger``; the fused queue ahead on
  ``/smolvla/queue_ahead`` (joint names, one point per control period); an episode recorded with the README's
  ``ros2 action send_goal ... --feedback``, ended with its ``end_episode`` call, and ``ros2 bag info`` of it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers (importlib mode)
from sim_bag_fixture import write_sim_bag  # noqa: E402

from smolvla_train import ros2cli  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"


def test_parameter_values_are_typed_like_ros2cli() -> None:
    pytest.importorskip("rcl_interfaces")
    from rcl_interfaces.msg import ParameterType as T

    cases = {
        "0.5": (T.PARAMETER_DOUBLE, 0.5),
        "30": (T.PARAMETER_INTEGER, 30),
        "true": (T.PARAMETER_BOOL, True),
        "blend": (T.PARAMETER_STRING, "blend"),
        "[top, wrist]": (T.PARAMETER_STRING_ARRAY, ["top", "wrist"]),
        "[1, 2.5]": (T.PARAMETER_DOUBLE_ARRAY, [1.0, 2.5]),
    }
    for text, (kind, value) in cases.items():
        pv = ros2cli.parameter_value(text)
        assert pv.type == kind and ros2cli.python_value(pv) == value, text
    assert ros2cli.format_get(ros2cli.parameter_value("0.5")) == "Double value is: 0.5"
    assert ros2cli.format_get(ros2cli.parameter_value("blend")) == "String value is: blend"


def test_topic_echo_yaml_of_a_message() -> None:
    pytest.importorskip("smolvla_msgs")
    from smolvla_msgs.msg import QueueStatus

    msg = QueueStatus(queue_size=12, threshold=0.5, running=True)
    data = yaml.safe_load(ros2cli.to_yaml(msg))
    assert list(data)[:3] == ["header", "queue_size", "chunk_size"]  # field order kept
    assert data["queue_size"] == 12 and data["threshold"] == 0.5 and data["running"] is True
    assert data["header"] == {"stamp": {"sec": 0, "nanosec": 0}, "frame_id": ""}


def test_bag_info_agrees_with_rosbags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rosbags.rosbag2 import Reader

    bag = tmp_path / "episode_000000"
    write_sim_bag(bag, seconds=1.0, width=16, height=12)
    assert ros2cli.main(["bag", "info", str(bag)]) == 0
    out = capsys.readouterr().out
    with Reader(bag) as reader:
        assert f"Messages:          {reader.message_count}" in out
        for c in reader.connections:
            count = sum(1 for _ in reader.messages(connections=[c]))
            assert f"Topic: {c.topic} | Type: {c.msgtype} | Count: {count} | Serialization Format: cdr" in out
        stamps = [t for _, t, _ in reader.messages()]
        assert f"Duration:          {(max(stamps) - min(stamps)) / 1e9:.9f}s" in out
    assert "Storage id:        mcap" in out
    assert ros2cli.main(["bag", "info", str(tmp_path / "nothing")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_install_shim_writes_ros2_and_smolvla_train(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}  # no ROS install's ros2 on this PATH
    code = subprocess.run(
        [sys.executable, "-m", "smolvla_train.ros2cli", "--install-shim", str(tmp_path)], env=env, check=False
    ).returncode
    assert code == 0
    for name in ("ros2", "smolvla_train"):
        help_ = subprocess.run([str(tmp_path / name), "--help"], env=env, capture_output=True, text=True)
        assert help_.returncode == 0 and "usage: " + name in help_.stdout, (name, help_.stderr)
    # a ros2 of a ROS install on the PATH is left alone
    ros = tmp_path / "ros" / "ros2"
    ros.parent.mkdir()
    ros.write_text("#!/bin/sh\necho real ros2cli\n")
    ros.chmod(0o755)
    other = tmp_path / "venv_bin"
    other.mkdir()
    env["PATH"] = f"{ros.parent}:{env['PATH']}"
    subprocess.run(
        [sys.executable, "-m", "smolvla_train.ros2cli", "--install-shim", str(other)], env=env, check=True
    )
    assert not (other / "ros2").exists() and (other / "smolvla_train").exists()


def readme_lines(prefix: str) -> list[str]:
    """Command lines of the README's code blocks that start with ``prefix`` (comments stripped)."""
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(prefix):
                lines.append(line)
    return lines


def readme_goal_line() -> str:
    """The README's ``ros2 action send_goal`` command (continued over two lines)."""
    text = README.read_text()
    start = text.index("ros2 action send_goal /episode_recorder/record")
    line = text[start:].split("\n")[0].rstrip("\\").strip() + " " + text[start:].split("\n")[1].strip()
    return line


@pytest.mark.slow
def test_readme_ros2_lines_run_verbatim_on_the_pip_install(tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    import mini_launch
    from ros_harness import NodeProcess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    installed = subprocess.run(
        [sys.executable, "-m", "smolvla_train.ros2cli", "--install-shim", str(bin_dir)], env=env, check=True
    )
    assert installed.returncode == 0 and (bin_dir / "ros2").exists() and (bin_dir / "smolvla_train").exists()
    # the README's `ros2 bag info` line looks for the episode recorded below (HOME is tmp_path)
    bag_line = readme_lines("ros2 bag info")[0]
    bag_path = Path(shlex.split(bag_line)[3].replace("~", str(tmp_path)))

    def run(line: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sh", "-c", line], env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path
        )

    plan = mini_launch.describe(
        REPO / "launch" / "sim_demo.launch.py",
        {"backend": "smolvla_sim.expert_backend:make_backend", "image_size": "64"},
    )
    procs = mini_launch.start_nodes(plan)
    try:
        echo_line = readme_lines("ros2 topic echo /smolvla/queue_status")[0]
        before = yaml.safe_load(run(echo_line).stdout.split("---")[0])
        assert before["threshold"] == pytest.approx(0.7)
        set_line = next(line for line in readme_lines("ros2 param set /action_queue chunk_threshold"))
        g = float(shlex.split(set_line)[-1])
        result = run(set_line)
        assert result.returncode == 0 and result.stdout.strip() == "Set parameter successful", result
        after = yaml.safe_load(run(echo_line).stdout.split("---")[0])
        assert after["threshold"] == pytest.approx(g)  # the change of g shows in the queue status
        get = run("ros2 param get /action_queue chunk_threshold")
        assert get.stdout.strip() == f"Double value is: {g}"
        refused = run("ros2 param set /action_queue chunk_threshold 1.5")
        assert refused.returncode == 1 and refused.stdout.startswith("Set parameter failed")
        for line in readme_lines("ros2 param set /action_queue aggregate_fn"):
            assert run(line).stdout.strip() == "Set parameter successful", line
        # the fused queue ahead (published by action_queue after each merged chunk; the viewer draws it)
        ahead = yaml.safe_load(run("ros2 topic echo /smolvla/queue_ahead --once").stdout.split("---")[0])
        names = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
        assert ahead["joint_names"] == names and 1 <= len(ahead["points"]) <= 50
        steps = [
            p["time_from_start"]["sec"] + 1e-9 * p["time_from_start"]["nanosec"] for p in ahead["points"]
        ]
        assert steps == pytest.approx([(i + 1) / 30.0 for i in range(len(steps))], abs=1e-9)
        # one episode recorded the README's way: send_goal (with feedback), then end it as a success
        out_dir = bag_path.parent
        recorder = NodeProcess(
            "smolvla_train", "episode_recorder", parameters={"out_dir": str(out_dir)}, env=env
        )
        try:
            # as a user would: the recorder has found the running graph's topics before the episode starts
            for topic in ("/joint_states", "/cameras/top/image_raw"):
                assert recorder.wait_for_output(f"subscribed {topic} ", timeout=60), recorder.output()
            goal_line = readme_goal_line()
            goal = subprocess.Popen(
                ["sh", "-c", goal_line], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            try:
                accepted = ""
                while "Goal accepted" not in accepted and goal.poll() is None:
                    accepted += goal.stdout.readline()  # type: ignore[union-attr]
                assert "Goal accepted with ID: " in accepted, accepted
                end = run(readme_lines("ros2 service call /episode_recorder/end_episode")[0])
                assert "response:\nstd_srvs.srv.SetBool_Response(success=True" in end.stdout, end
                rest, _ = goal.communicate(timeout=120)
            finally:
                if goal.poll() is None:
                    goal.kill()
            assert "Goal finished with status: SUCCEEDED" in rest, rest
            result = yaml.safe_load(rest.split("Result:\n", 1)[1].split("Goal finished")[0])
            assert result["outcome"] == "success" and result["error"] == ""
            assert Path(result["bag_path"]) == bag_path and bag_path.is_dir()
        finally:
            recorder.stop()
        info = run(bag_line)  # verbatim, on the episode just recorded
        assert info.returncode == 0, info.stderr
        assert "Topic: /joint_states | Type: sensor_msgs/msg/JointState" in info.stdout, info.stdout
        assert "Topic: /cameras/top/image_raw | Type: sensor_msgs/msg/Image" in info.stdout
        stop = run(readme_lines("ros2 service call /action_queue/stop")[0])
        assert "response:\nstd_srvs.srv.Trigger_Response(success=True" in stop.stdout, stop
        stopped = yaml.safe_load(run(echo_line).stdout.split("---")[0])
        assert stopped["running"] is False
    finally:
        mini_launch.stop_all(procs, send_sigint=True)
