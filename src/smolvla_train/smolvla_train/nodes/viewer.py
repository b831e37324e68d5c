"""``viewer`` node: the live loop in Rerun's web viewer, served on this machine (127.0.0.1) only.

Subscribes to ``/joint_states`` (the arm in 3D from forward kinematics), ``/cameras/<name>/image_raw`` and
``camera_info`` (the camera's frustum at its optical frame in the 3D view),
``/smolvla/predicted_chunk`` (gripper path, inference time), ``/smolvla/queue_ahead`` (the fused queue ahead,
when the action queue publishes it), ``/smolvla/queue_status`` (g, latency, idle ticks, queue size),
``/joint_commands`` and ``/robot_description`` (which arm), and logs them with
:class:`smolvla_train.viewer.core.ViewerLog`. Open the address it prints (``http://127.0.0.1:9090/?url=...``).

The node never slows the control loop down: it is a separate process, every subscription keeps only the
newest message (depth 1-2, best effort for images), camera images are logged at most ``image_rate`` times a
second (JPEG-compressed), and a message that cannot be shown is counted and skipped.

    ros2 run smolvla_train viewer                      # or: scripts/run.sh --viewer
    ros2 run smolvla_train viewer --ros-args -p save:=/tmp/loop.rrd -p serve:=false
"""

from __future__ import annotations

import sys
import time
from typing import Any

from smolvla_common.node_main import run_node
from smolvla_common.parameters import Param, ParameterError, ParameterTable

PARAMETERS = ParameterTable(
    "viewer",
    [
        Param(
            "cameras",
            ["top", "wrist"],
            "Camera names shown (/cameras/<name>/image_raw).",
            "string_array",
            read_only=True,
        ),
        Param(
            "robot",
            "so101",
            "Arm model until /robot_description says otherwise.",
            "string",
            choices=("so101", "so100"),
        ),
        Param(
            "image_rate", 10.0, "Most camera images logged per second and camera [Hz].", "double", 0.1, 60.0
        ),
        Param("jpeg_quality", 80, "JPEG quality of logged images (0 = raw RGB).", "int", 0, 100),
        Param("serve", True, "Serve the web viewer on 127.0.0.1.", "bool", read_only=True),
        Param(
            "web_port",
            9090,
            "HTTP port of the web viewer (0 = a free port).",
            "int",
            0,
            65535,
            read_only=True,
        ),
        Param(
            "grpc_port",
            9876,
            "Port of Rerun's gRPC proxy (0 = a free port).",
            "int",
            0,
            65535,
            read_only=True,
        ),
        Param(
            "memory_limit",
            "1GiB",
            "Data the server keeps for late browsers; the oldest is dropped beyond it (e.g. 512MiB, 2GiB).",
            "string",
            read_only=True,
        ),
        Param(
            "save", "", "Also write the recording to this .rrd file ('' = no file).", "string", read_only=True
        ),
    ],
)


class ViewerStartupError(RuntimeError):
    pass


def _make_node() -> Any:
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from trajectory_msgs.msg import JointTrajectory

    from smolvla_common import robot_description
    from smolvla_common.node_parameters import NodeParameters
    from smolvla_msgs.msg import ActionChunk, QueueStatus
    from smolvla_train.viewer.core import ViewerLog
    from smolvla_train.viewer.serve import ViewerServerError, new_recording, start_server

    class ViewerNode(Node):
        def __init__(self) -> None:
            super().__init__("viewer")
            self.params = NodeParameters(self, PARAMETERS, on_change=self._apply)
            p = self.params
            self.server = None
            if p["serve"]:
                try:
                    self.server = start_server(
                        grpc_port=p["grpc_port"], web_port=p["web_port"], memory_limit=p["memory_limit"]
                    )
                except ViewerServerError as exc:
                    raise ViewerStartupError(str(exc)) from exc
            cameras = list(p["cameras"])
            self.rec = new_recording("smolvla_viewer", cameras, server=self.server, save=p["save"] or None)
            self.log = ViewerLog(self.rec, robot=p["robot"], jpeg_quality=p["jpeg_quality"])
            self._image_period = 1.0 / p["image_rate"]
            self._last_image: dict[str, float] = {}
            self._t0: float | None = None
            latest = QoSProfile(depth=2)
            self.create_subscription(JointState, "/joint_states", self._wrap(self.log.joint_state), latest)
            for cam in cameras:
                self.create_subscription(
                    Image,
                    f"/cameras/{cam}/image_raw",
                    lambda m, c=cam: self._on_image(c, m),
                    qos_profile_sensor_data,
                )
                self.create_subscription(
                    CameraInfo,
                    f"/cameras/{cam}/camera_info",
                    self._wrap(lambda m, c=cam: self.log.camera_info(c, m)),
                    qos_profile_sensor_data,
                )
            self.create_subscription(
                ActionChunk, "/smolvla/predicted_chunk", self._wrap(self.log.action_chunk), 5
            )
            self.create_subscription(
                JointTrajectory, "/smolvla/queue_ahead", self._wrap(self.log.queue_ahead), latest
            )
            self.create_subscription(
                QueueStatus, "/smolvla/queue_status", self._wrap(self.log.queue_status), latest
            )
            self.create_subscription(JointTrajectory, "/joint_commands", self._wrap(self.log.command), latest)
            robot_description.subscribe(self, self.log.robot_description)
            where = f"open {self.server.url}" if self.server else "not served"
            self.get_logger().info(
                f"viewer: {where}{'; saving to ' + p['save'] if p['save'] else ''} (cameras {cameras})"
            )

        def _now(self) -> float:
            """Seconds since the first message (ROS time: simulated time on /clock with use_sim_time)."""
            t = self.get_clock().now().nanoseconds * 1e-9
            if self._t0 is None or t < self._t0:  # first message, or the simulated clock was reset
                self._t0 = t
            return t - self._t0

        def _wrap(self, fn: Any) -> Any:
            def callback(msg: Any) -> None:
                try:
                    self.log.set_time(self._now())
                    fn(msg)
                except Exception as exc:  # noqa: BLE001 (a node never dies on bad input)
                    self.get_logger().warning(
                        f"could not show a {type(msg).__name__}: {exc!r}", throttle_duration_sec=5.0
                    )

            return callback

        def _on_image(self, camera: str, msg: Any) -> None:
            now = time.monotonic()
            if now - self._last_image.get(camera, -1e9) < self._image_period:
                return
            self._last_image[camera] = now
            self._wrap(lambda m: self.log.camera_image(camera, m))(msg)

        def _apply(self, changes: dict[str, Any]) -> None:
            if "image_rate" in changes:
                self._image_period = 1.0 / float(changes["image_rate"])
            if "jpeg_quality" in changes:
                self.log.jpeg_quality = int(changes["jpeg_quality"])
            if "robot" in changes:
                self.log.robot = str(changes["robot"])

        def shutdown(self) -> None:
            try:
                self.rec.flush()
                self.rec.disconnect()
            finally:
                if self.server is not None:
                    self.server.close()

    return ViewerNode()


def main(args: list[str] | None = None) -> int:
    return run_node("viewer", _make_node, args=args, startup_errors=(ViewerStartupError, ParameterError))


if __name__ == "__main__":
    sys.exit(main())
