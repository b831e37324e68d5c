"""A policy server runs without the Feetech SDK, MuJoCo and so_arm_driver (issue 10, defect 4).

What this proves, and what not: the ROS wheels cannot be installed into a second virtualenv here (no network
for a fresh venv, and ``--system-site-packages`` does not apply to a venv's own wheels), so the policy_server
executable runs from the project's environment with a ``sitecustomize`` on PYTHONPATH whose import hook makes
``import scservo_sdk`` / ``serial`` (feetech-servo-sdk and its pyserial), ``import mujoco`` and ``import
so_arm_driver`` (and their submodules) raise ModuleNotFoundError, as on a machine where they are not
installed, and records every attempt. The server loads the real SmolVLA backend with a tiny checkpoint, takes
the arm's limits from a ``/robot_description`` published by this test (as a remote driver would), serves a
chunk and its rviz markers (forward kinematics from so_arm_description), and no blocked module was even
asked for. Distribution metadata (``importlib.metadata``) still lists the blocked packages; nothing in the
server reads it. The static side (package.xml dependencies of smolvla_policy, their imports) is checked by
tools/test/test_package_dependencies.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ros_harness
from ros_harness import NodeProcess, wait_for

pytestmark = pytest.mark.slow
BLOCKED = ("scservo_sdk", "serial", "mujoco", "so_arm_driver")

SITECUSTOMIZE = textwrap.dedent(
    f"""
    # Written by test_policy_server_without_hardware_packages.py: these packages are "not installed".
    import importlib.abc
    import os
    import sys

    BLOCKED = {BLOCKED!r}
    LOG = os.environ.get("SMOLVLA_BLOCKED_IMPORT_LOG")


    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                if LOG:
                    with open(LOG, "a") as f:
                        f.write(name + "\\n")
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
            return None


    sys.meta_path.insert(0, NotInstalled())
    if os.environ.get("SMOLVLA_SHIM_ACTIVE_LOG"):  # proof that the hook runs in the server's process
        with open(os.environ["SMOLVLA_SHIM_ACTIVE_LOG"], "a") as f:
            f.write(" ".join(sys.argv) + "\\n")
    """
)


@pytest.fixture
def shim_env(tmp_path: Path) -> dict[str, str]:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = ros_harness.ros_environment()
    env["PYTHONPATH"] = f"{shim}:{env.get('PYTHONPATH', '')}"
    env["SMOLVLA_BLOCKED_IMPORT_LOG"] = str(tmp_path / "blocked.log")
    env["SMOLVLA_SHIM_ACTIVE_LOG"] = str(tmp_path / "active.log")
    return env


def test_the_shim_makes_the_hardware_packages_missing(shim_env: dict[str, str]) -> None:
    for module in BLOCKED:
        installed = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
        assert installed.returncode == 0, f"{module} should be installed in the project's environment"
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], env=shim_env, capture_output=True)
        assert proc.returncode != 0 and b"ModuleNotFoundError" in proc.stderr, module


def test_policy_server_without_hardware_packages(shim_env: dict[str, str], tmp_path: Path) -> None:
    testing = pytest.importorskip("smolvla_policy.model.testing")
    from smolvla_policy.server.testing import PolicyClient, camera_images, make_observation

    checkpoint = testing.make_tiny_checkpoint(tmp_path / "ckpt", seed=0)
    server = NodeProcess(
        "smolvla_policy",
        "policy_server",
        parameters={
            "checkpoint": str(checkpoint),
            "device": "cpu",
            "num_steps": 2,
            "backend_options": '{"num_threads": 1}',
            "robot": "so101",
            "publish_markers": True,
        },
        env=shim_env,
    )
    client = None
    try:
        assert server.wait_for_output("ready", timeout=180.0), server.output()
        client = PolicyClient()
        assert client.action.wait_for_server(timeout_sec=30.0)

        # the arm's description, as a driver on another machine publishes it: an SO-100, calibrated gripper
        from std_msgs.msg import String

        from smolvla_common import robot_description
        from so_arm_description.robot_model import build_urdf

        half = 720 * 2 * math.pi / 4095
        pub = client.node.create_publisher(String, robot_description.TOPIC, robot_description.qos())
        pub.publish(String(data=build_urdf("so100", {"gripper": (-half, half)})))
        assert wait_for(lambda: "joint limits of the so100 from /robot_description" in server.output(), 30)
        assert f"gripper 0..100 = {-half:.5f}..{half:.5f} rad" in server.output()

        obs = make_observation(
            camera_images(("top", "wrist"), 64, 64), positions=[0.1, -0.2, 0.3, 0.1, 0, 0.2]
        )
        status, result = client.result(client.send(obs))
        assert status == 4, (result.error, server.output()[-3000:])  # SUCCEEDED
        chunk = np.asarray(result.chunk.trajectory.points[0].positions)
        assert chunk.shape == (6,) and np.all(np.isfinite(chunk))
        grip = [p.positions[5] for p in result.chunk.trajectory.points]
        assert min(grip) >= -half - 1e-9 and max(grip) <= half + 1e-9  # 0..100 % of the calibrated range
        assert wait_for(lambda: len(client.markers) > 0, 30), server.output()[-3000:]
    finally:
        if client is not None:
            client.close()
        output = server.output()
        server.stop()
    active = Path(shim_env["SMOLVLA_SHIM_ACTIVE_LOG"]).read_text()
    assert "policy_server" in active, active  # the import hook was installed in the server process
    log = Path(shim_env["SMOLVLA_BLOCKED_IMPORT_LOG"])
    assert not log.exists() or not log.read_text().strip(), f"the server asked for: {log.read_text()}"
    assert "blocked by the test" not in output
