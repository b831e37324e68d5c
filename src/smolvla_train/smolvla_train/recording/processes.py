"""Start installed ROS 2 executables as processes (``ros2 run`` without the CLI) with the project's DDS setup.

Used by ``smolvla_train record-sim``. The environment keeps the caller's shared-memory-only Fast DDS profile
and ``ROS_DOMAIN_ID`` when set (``source scripts/env.sh``); otherwise it points both profile variables at the
profile installed with the workspace's configuration (``share/smolvla_policy/config/fastdds_shm_only.xml``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
OVERRIDING_VARS = (
    "ROS_AUTOMATIC_DISCOVERY_RANGE",
    "ROS_STATIC_PEERS",
    "ROS_LOCALHOST_ONLY",
    "FASTDDS_BUILTIN_TRANSPORTS",
)


def ros_environment(domain_id: int | None = None) -> dict[str, str]:
    """This process's environment for ROS: the DDS profile (if none is set yet) and the domain id."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    env = dict(os.environ)
    if not all(env.get(v) for v in PROFILE_VARS):
        try:
            profile = Path(get_package_share_directory("smolvla_policy")) / "config" / "fastdds_shm_only.xml"
        except PackageNotFoundError:
            profile = None
        if profile is not None and profile.is_file():
            for var in PROFILE_VARS:
                env[var] = str(profile)
            for var in OVERRIDING_VARS:
                env.pop(var, None)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def apply_ros_environment(domain_id: int | None = None) -> dict[str, str]:
    """Apply :func:`ros_environment` to this process (before ``rclpy.init``)."""
    env = ros_environment(domain_id)
    for var in OVERRIDING_VARS:
        if var not in env:
            os.environ.pop(var, None)
    os.environ.update(env)
    return env


def executable(package: str, name: str) -> Path:
    from ament_index_python.packages import get_package_prefix

    path = Path(get_package_prefix(package)) / "lib" / package / name
    if not path.exists():
        raise FileNotFoundError(f"executable '{name}' of package '{package}' not found at {path}")
    return path


class RosProcess:
    """``<prefix>/lib/<package>/<name> --ros-args -p k:=v ...``, output in ``log_path``; stop() = SIGINT."""

    def __init__(
        self,
        package: str,
        name: str,
        parameters: Mapping[str, Any],
        log_path: str | os.PathLike,
        env: Mapping[str, str] | None = None,
    ) -> None:
        # every value as JSON, which rcl's YAML reader takes literally (strings stay strings)
        args = [f"{k}:={json.dumps(v)}" for k, v in parameters.items()]
        cmd = [str(executable(package, name)), "--ros-args"] + [x for a in args for x in ("-p", a)]
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "w")  # noqa: SIM115 (open for the process lifetime)
        self.proc = subprocess.Popen(
            cmd,
            env=dict(env or os.environ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    self.proc.send_signal(sig)
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._log.close()
        return self.proc.returncode
