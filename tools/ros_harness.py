"""Run ROS 2 processes of this project under its network isolation (no rclpy import at module level).

Used by the test suite (`conftest.py`), the benchmarks and the launch runner:

- :func:`ros_environment` returns an environment with the shared-memory-only Fast DDS profile set through both
  ``FASTDDS_DEFAULT_PROFILES_FILE`` and ``FASTRTPS_DEFAULT_PROFILES_FILE``, a ``ROS_DOMAIN_ID`` of its own,
  a ``ROS_LOG_DIR`` and ``HOME``; the variables that would override the profile are removed.
- :func:`find_executable` resolves ``<prefix>/lib/<pkg>/<exe>`` through the ament index (like ``ros2 run``).
- :class:`NodeProcess` starts an installed executable with ``--ros-args`` and stops it with SIGINT;
  :func:`log_tails` returns the last lines of the processes that ran since a time (a failed test's report).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DDS_PROFILE = REPO_ROOT / "config" / "fastdds_shm_only.xml"
PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
# Variables that replace the profile's transports or are ignored by Kilted; never combined with the profile.
OVERRIDING_VARS = (
    "ROS_AUTOMATIC_DISCOVERY_RANGE",
    "ROS_STATIC_PEERS",
    "ROS_LOCALHOST_ONLY",
    "FASTDDS_BUILTIN_TRANSPORTS",
)


def log_dir() -> str | None:
    """Where node logs go: ``$SMOLVLA_NODE_LOG_DIR`` (pytest points it into its own temporary tree, which
    it prunes), else the system temporary directory."""
    path = os.environ.get("SMOLVLA_NODE_LOG_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
    return path or None


def default_domain_id(worker: int = 0) -> int:
    """A domain id for this run (1..97): derived from the PID so parallel runs differ, plus the worker."""
    return 1 + ((os.getpid() // 7) % 24) * 4 + (worker % 4)


def ros_environment(
    domain_id: int | None = None,
    base: Mapping[str, str] | None = None,
    log_dir: str | os.PathLike | None = None,
) -> dict[str, str]:
    """Return a copy of ``base`` (default ``os.environ``) set up for isolated ROS 2 communication."""
    env = dict(os.environ if base is None else base)
    for var in PROFILE_VARS:
        env[var] = str(DDS_PROFILE)
    for var in OVERRIDING_VARS:
        env.pop(var, None)
    if domain_id is None:
        domain_id = (
            int(env["ROS_DOMAIN_ID"]) if env.get("ROS_DOMAIN_ID", "").isdigit() else default_domain_id()
        )
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("HOME", tempfile.gettempdir())
    env["ROS_LOG_DIR"] = str(log_dir) if log_dir else env.get("ROS_LOG_DIR") or str(REPO_ROOT / "log" / "ros")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def apply_ros_environment(domain_id: int | None = None) -> dict[str, str]:
    """Apply :func:`ros_environment` to this process (before ``rclpy.init``); returns the environment."""
    env = ros_environment(domain_id)
    for var in OVERRIDING_VARS:
        os.environ.pop(var, None)
    os.environ.update(env)
    Path(env["ROS_LOG_DIR"]).mkdir(parents=True, exist_ok=True)
    return env


def find_executable(package: str, executable: str) -> Path:
    """Return ``<prefix>/lib/<package>/<executable>`` of an installed package (like ``ros2 run``)."""
    from ament_index_python.packages import get_package_prefix

    path = Path(get_package_prefix(package)) / "lib" / package / executable
    if not path.exists():
        raise FileNotFoundError(f"executable '{executable}' of package '{package}' not found at {path}")
    return path


def ros_args(
    name: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    params_file: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    remappings: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
) -> list[str]:
    """Build a ``--ros-args`` argument list (``params_file`` may be one file or a list, applied in order)."""
    args = ["--ros-args"]
    if name:
        args += ["-r", f"__node:={name}"]
    files = [params_file] if isinstance(params_file, (str, os.PathLike)) else list(params_file or [])
    for f in files:
        args += ["--params-file", str(f)]
    for key, value in (parameters or {}).items():
        args += ["-p", f"{key}:={_param_literal(value)}"]
    items = remappings.items() if isinstance(remappings, Mapping) else (remappings or [])
    for src, dst in items:
        args += ["-r", f"{src}:={dst}"]
    return args


def _param_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_literal(v) for v in value) + "]"
    if isinstance(value, str):
        # rcl parses `-p name:=value` as YAML: quote strings that would otherwise change type or fail to parse
        # (e.g. '{"mode": "hold"}', 'true', '1.5', '').
        import yaml

        try:
            same = yaml.safe_load(value) == value
        except yaml.YAMLError:
            same = False
        return value if same and value else "'" + value.replace("'", "''") + "'"
    return repr(value)


#: Every NodeProcess of this interpreter, for :func:`log_tails` (a test run starts a few hundred).
_STARTED: list[NodeProcess] = []


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its SigCgt mask in /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def dump_stacks(settle_s: float = 1.0) -> int:
    """Ask every running NodeProcess that handles SIGUSR2 (the project's nodes: every thread's stack to its
    log, see smolvla_common.node_main) for its stacks; returns how many were asked."""
    asked = 0
    for proc in _STARTED:
        if proc.proc.poll() is None and catches(proc.proc.pid, signal.SIGUSR2):
            with contextlib.suppress(OSError):
                os.kill(proc.proc.pid, signal.SIGUSR2)
                asked += 1
    if asked:
        time.sleep(settle_s)
    return asked


def log_tails(since: float, lines: int = 30) -> str:
    """The last ``lines`` lines of every NodeProcess still running or whose log was written after ``since``
    (``time.time()``), each under a header with its executable, its PID and its exit code."""
    parts = []
    for proc in _STARTED:
        try:
            if proc.proc.poll() is not None and os.path.getmtime(proc.log_path) < since:
                continue
            text = Path(proc.log_path).read_text(errors="replace")
        except OSError:
            continue
        tail = "\n".join(text.splitlines()[-lines:])
        code = proc.proc.poll()
        state = "running" if code is None else f"exit code {code}"
        head = f"--- {proc.package}/{proc.executable} (pid {proc.proc.pid}, {state}) {proc.log_path}"
        parts.append(f"{head}\n{tail}")
    return "\n".join(parts)


class NodeProcess:
    """An installed executable run as a subprocess with ``--ros-args``; stopped with SIGINT."""

    def __init__(
        self,
        package: str,
        executable: str,
        *,
        name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        params_file: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        remappings: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike | None = None,
    ) -> None:
        self.package, self.executable = package, executable
        exe = find_executable(package, executable)
        self.cmd = [str(exe), *extra_args, *ros_args(name, parameters, params_file, remappings)]
        self.env = dict(env) if env is not None else ros_environment()
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix=f"{executable}-", suffix=".log", dir=log_dir())
            os.close(fd)
        self._log_file = open(log_path, "w+")  # noqa: SIM115 (open for the process lifetime)
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        _STARTED.append(self)

    @property
    def log_path(self) -> str:
        return self._log_file.name

    def output(self) -> str:
        self._log_file.flush()
        return Path(self._log_file.name).read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_output(self, text: str, timeout: float = 30.0) -> bool:
        return wait_for(lambda: text in self.output() or not self.alive(), timeout) and text in self.output()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL; returns the exit code."""
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
                try:
                    self.proc.send_signal(sig)
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._log_file.close()
        return self.proc.returncode

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def unshare_available() -> bool:
    """True when ``unshare -n`` works here (root or user namespaces)."""
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def python_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
