"""Serve a Rerun recording to a web browser on this machine only (127.0.0.1), with no internet access needed.

The ``rerun`` executable of the ``rerun-sdk`` wheel (its web viewer is compiled into it) runs as a child
process: ``rerun --serve-web --bind 127.0.0.1 --port GRPC --web-viewer-port WEB``. The recording stream
connects to its gRPC proxy; a browser opens :func:`viewer_url`. Both sockets listen on 127.0.0.1 only
(the SDK's own ``serve_grpc``/``serve_web_viewer`` would listen on every interface). Rerun's anonymous usage
statistics are switched off for that child: it gets a private configuration directory in which
``rerun analytics disable`` was run first, so nothing is sent anywhere and the user's own Rerun settings are
untouched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
DEFAULT_GRPC_PORT = 9876
DEFAULT_WEB_PORT = 9090


class ViewerServerError(RuntimeError):
    pass


def rerun_executable() -> str:
    """The ``rerun`` binary of the installed ``rerun-sdk`` wheel (``rerun_cli/rerun``; the ``rerun`` script
    in the venv's bin/ is a Python wrapper whose child would outlive a terminated wrapper)."""
    try:
        import rerun_cli

        binary = Path(rerun_cli.__file__).with_name("rerun")
        if binary.is_file():
            return str(binary)
    except ImportError:
        pass
    raise ViewerServerError(
        "the rerun executable was not found (pip install rerun-sdk, see requirements.txt)"
    )


def _die_with_parent() -> None:
    """Child process: SIGTERM when the parent dies (Linux prctl PR_SET_PDEATHSIG), so a killed node leaves
    no server behind."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def grpc_url(grpc_port: int) -> str:
    return f"rerun+http://{HOST}:{grpc_port}/proxy"


def viewer_url(web_port: int, grpc_port: int) -> str:
    """The address to open in a browser: the web viewer, connected to the gRPC proxy."""
    return f"http://{HOST}:{web_port}/?url={urllib.parse.quote(grpc_url(grpc_port), safe='')}"


@dataclass
class ViewerServer:
    """A running ``rerun --serve-web`` child bound to 127.0.0.1. ``close()`` stops it."""

    process: subprocess.Popen
    grpc_port: int
    web_port: int
    config_dir: Path

    @property
    def url(self) -> str:
        return viewer_url(self.web_port, self.grpc_port)

    @property
    def grpc_url(self) -> str:
        return grpc_url(self.grpc_port)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.config_dir, ignore_errors=True)

    def __enter__(self) -> ViewerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def private_env(config_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(config_dir / "config")
    env["XDG_DATA_HOME"] = str(config_dir / "data")
    env["XDG_CACHE_HOME"] = str(config_dir / "cache")
    return env


def start_server(
    grpc_port: int = DEFAULT_GRPC_PORT,
    web_port: int = DEFAULT_WEB_PORT,
    memory_limit: str = "1GiB",
    timeout: float = 30.0,
    log: Any = None,
) -> ViewerServer:
    """Start ``rerun --serve-web`` on 127.0.0.1 (port 0 = a free port) and wait until both ports accept."""
    exe = rerun_executable()
    grpc_port = grpc_port or free_port()
    web_port = web_port or free_port()
    for port in (grpc_port, web_port):
        if _port_open(port):
            raise ViewerServerError(f"port {port} on {HOST} is in use (choose another or 0 for a free one)")
    config_dir = Path(tempfile.mkdtemp(prefix="smolvla_rerun_"))
    env = private_env(config_dir)
    subprocess.run(
        [exe, "analytics", "disable"],
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cmd = [
        exe,
        "--serve-web",
        "--bind",
        HOST,
        "--port",
        str(grpc_port),
        "--web-viewer-port",
        str(web_port),
        "--server-memory-limit",
        memory_limit,
        "--hide-welcome-screen",
    ]
    out = log if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        cmd, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )
    server = ViewerServer(proc, grpc_port, web_port, config_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.close()
            raise ViewerServerError(f"rerun exited with code {proc.returncode} ({' '.join(cmd)})")
        if _port_open(grpc_port) and _port_open(web_port):
            return server
        time.sleep(0.1)
    server.close()
    raise ViewerServerError(
        f"rerun did not open ports {grpc_port}/{web_port} on {HOST} within {timeout:g} s (is the loopback "
        "interface up? in a private network namespace: ip link set lo up)"
    )


def new_recording(
    application_id: str,
    cameras: list[str],
    server: ViewerServer | None = None,
    save: str | Path | None = None,
) -> Any:
    """A recording stream sending to ``server`` and/or writing ``save`` (.rrd), with the default layout."""
    import rerun as rr

    from smolvla_train.viewer.core import blueprint

    rec = rr.RecordingStream(application_id)
    sinks: list[Any] = []
    if server is not None:
        sinks.append(rr.GrpcSink(server.grpc_url))
    if save:
        sinks.append(rr.FileSink(str(save)))
    if sinks:
        rec.set_sinks(*sinks, default_blueprint=blueprint(cameras))
    return rec
