"""camera_node: publishes one camera as /cameras/<name>/image_raw (rgb8) + /cameras/<name>/camera_info.

Thin adapter over :mod:`so_arm_driver.camera` (capture, reconnect, pacing, dropped-frame accounting):
parameters (see config/camera_node.yaml), publishers, and a /diagnostics status. A missing or failing device
is reported (log + /diagnostics ERROR) and retried; the node keeps running.
"""

from __future__ import annotations

import re
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image

from smolvla_common.image_conversion import numpy_to_image
from smolvla_common.node_main import run_node
from smolvla_common.node_parameters import NodeParameters
from smolvla_common.parameters import Param, ParameterTable
from so_arm_description.cameras import optical_frame
from so_arm_driver.camera import (
    CameraConfig,
    CameraIntrinsics,
    CameraState,
    CameraStream,
    Frame,
    load_calibration,
    pinhole_intrinsics,
)

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# parameters that change the running stream without a restart
_LIVE = {"fps", "loop", "reconnect_period", "max_reconnect_period", "frozen_timeout"}


def _name(value: str) -> str | None:
    return None if _NAME_RE.match(value) else "must match [A-Za-z][A-Za-z0-9_]*"


def _source(value: str) -> str | None:
    if not value.strip():
        return "must not be empty"
    if value.startswith("-") and value[1:].isdigit():
        return "a device index must be >= 0"
    return None


def _cross_check(v: dict) -> str | None:  # type: ignore[type-arg]
    if (v["width"] == 0) != (v["height"] == 0):
        return "parameters width and height must both be > 0, or both 0 (source size)"
    if v["max_reconnect_period"] < v["reconnect_period"]:
        return "parameter 'max_reconnect_period' must be >= 'reconnect_period'"
    return None


#: Every parameter of camera_node, declared once (smolvla_common.parameters); config/camera_node.yaml is
#: checked against this table by a test. fps, loop and the reconnect periods change the running stream.
PARAMETERS = ParameterTable(
    "camera_node",
    [
        Param(
            "name",
            "front",
            "Camera name: topics /cameras/<name>/image_raw (rgb8) and /cameras/<name>/camera_info.",
            "string",
            read_only=True,
            check=_name,
        ),
        Param(
            "source",
            "0",
            "Device index ('0'), device path (/dev/video0), stream URL (rtsp://, http://) or a video file.",
            "string",
            read_only=True,
            accept_int=True,
            check=_source,
        ),
        Param(
            "fps",
            30.0,
            "Publish rate [Hz]; a device is asked for it, faster devices are decimated, files are paced.",
            "double",
            0.1,
            240.0,
        ),
        Param(
            "width",
            640,
            "Published image width [px]; 0 (with height 0) = the source's size.",
            "int",
            0,
            8192,
            read_only=True,
        ),
        Param(
            "height",
            480,
            "Published image height [px]; 0 (with width 0) = the source's size.",
            "int",
            0,
            8192,
            read_only=True,
        ),
        Param("loop", True, "Video files: start again at the first frame after the last one.", "bool"),
        Param(
            "frame_id",
            "",
            "frame_id of the image and camera_info headers ('' = <name>_camera_optical_frame).",
            "string",
            read_only=True,
            check=lambda v: None if not v or _NAME_RE.match(v.lstrip("/")) else "is not a valid frame id",
        ),
        Param(
            "camera_info",
            "",
            "ROS camera_calibration YAML; '' = a pinhole model from horizontal_fov.",
            "string",
            read_only=True,
        ),
        Param(
            "horizontal_fov",
            69.0,
            "Horizontal field of view [deg] of the pinhole model.",
            "double",
            1.0,
            179.0,
            read_only=True,
        ),
        Param(
            "reconnect_period",
            1.0,
            "First retry delay [s] after a device error or a missing device; doubles per failure.",
            "double",
            0.01,
            60.0,
        ),
        Param("max_reconnect_period", 10.0, "Longest reconnect delay [s].", "double", 0.01, 600.0),
        Param(
            "frozen_timeout",
            2.0,
            "Devices and streams: identical frames for this long [s] are reported as frozen (WARN); 0 = off.",
            "double",
            0.0,
            600.0,
        ),
        Param(
            "fourcc",
            "MJPG",
            "Devices: FOURCC to request ('MJPG' lets USB cameras deliver 640x480 at 30 fps; '' = driver "
            "default).",
            "string",
            read_only=True,
            check=lambda v: None if len(v) in (0, 4) else "must have 4 characters or be empty",
        ),
        Param(
            "diagnostics_period",
            1.0,
            "Period [s] of the /diagnostics status.",
            "double",
            0.05,
            60.0,
            read_only=True,
        ),
    ],
    check=_cross_check,
    source="so_arm_driver.nodes.camera_node:PARAMETERS",
)


class CameraNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("camera_node", **kwargs)
        self._closing = False
        # declared and validated (ParameterError names the parameter and the allowed values); run-time
        # changes are applied after validation by _apply
        self.params = NodeParameters(self, PARAMETERS, on_change=self._apply)
        p = dict(self.params.values)

        self.camera_name: str = p["name"]
        self.frame_id: str = p["frame_id"] or optical_frame(self.camera_name)  # the URDF's camera frame
        self._fov: float = p["horizontal_fov"]
        self._calibration: CameraIntrinsics | None = None
        self._calibration_error = ""
        if p["camera_info"]:
            try:
                self._calibration = load_calibration(p["camera_info"])
            except (OSError, ValueError) as exc:
                self._calibration_error = f"camera_info file unusable ({exc}); using a pinhole model"
                self.get_logger().error(self._calibration_error)
        self._info_cache: tuple[tuple[int, int], CameraInfo] | None = None

        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        base = f"/cameras/{self.camera_name}"
        self._image_pub = self.create_publisher(Image, f"{base}/image_raw", qos)
        self._info_pub = self.create_publisher(CameraInfo, f"{base}/camera_info", qos)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        config = CameraConfig(
            source=p["source"],
            fps=p["fps"],
            width=p["width"],
            height=p["height"],
            loop=p["loop"],
            reconnect_period=p["reconnect_period"],
            max_reconnect_period=p["max_reconnect_period"],
            fourcc=p["fourcc"],
            frozen_timeout=p["frozen_timeout"],
        )
        self._diag_lock = threading.Lock()
        self._last_diag = (0, 0)  # frames, dropped at the previous diagnostics
        self._last_bad = 0  # frames that could not be converted, at the previous diagnostics
        self._frozen_logged = False
        self._last_diag_time = self.get_clock().now()
        self.stream = CameraStream(
            config,
            on_frame=self._on_frame,
            on_status=self._on_status,
            clock_ns=lambda: self.get_clock().now().nanoseconds,
        )
        self._diag_timer = self.create_timer(p["diagnostics_period"], self._publish_diagnostics)
        self.get_logger().info(
            f"camera '{self.camera_name}': {self.stream.kind.value} '{self.stream.target}' -> "
            f"{base}/image_raw at {config.fps:g} Hz, {config.width}x{config.height}"
            + (" (source size)" if config.width == 0 else "")
        )
        self.stream.start()

    # -- parameters -----------------------------------------------------------------------------------------
    def _apply(self, changes: dict[str, object]) -> None:
        live = {name: value for name, value in changes.items() if name in _LIVE}
        if live and hasattr(self, "stream"):
            self.stream.update(**live)
            self.get_logger().info(f"applied {live}")

    # -- frames ---------------------------------------------------------------------------------------------
    def _camera_info(self, width: int, height: int, header) -> CameraInfo:
        if self._info_cache is None or self._info_cache[0] != (width, height):
            intr = (
                self._calibration.scaled(width, height)
                if self._calibration is not None
                else pinhole_intrinsics(width, height, self._fov)
            )
            info = CameraInfo()
            info.width, info.height = width, height
            info.distortion_model = intr.distortion_model
            info.d = [float(v) for v in intr.d]
            info.k = [float(v) for v in intr.k]
            info.r = [float(v) for v in intr.r]
            info.p = [float(v) for v in intr.p]
            self._info_cache = ((width, height), info)
        info = self._info_cache[1]
        info.header = header
        return info

    def _on_frame(self, frame: Frame) -> None:
        if self._closing:
            return
        msg = numpy_to_image(frame.image, "rgb8")
        msg.header.stamp = Time(nanoseconds=frame.stamp_ns).to_msg()
        msg.header.frame_id = self.frame_id
        self._image_pub.publish(msg)
        self._info_pub.publish(self._camera_info(msg.width, msg.height, msg.header))

    def _on_status(self, state: CameraState, message: str) -> None:
        if self._closing:
            return
        logger = self.get_logger()
        if state is CameraState.DISCONNECTED or state is CameraState.ENDED:
            logger.warning(f"camera '{self.camera_name}': {message}")
        else:
            logger.info(f"camera '{self.camera_name}': {message}")

    def _publish_diagnostics(self) -> None:
        stats = self.stream.stats()
        now = self.get_clock().now()
        with self._diag_lock:
            frames0, dropped0 = self._last_diag
            elapsed = max((now - self._last_diag_time).nanoseconds * 1e-9, 1e-9)
            self._last_diag, self._last_diag_time = (stats.frames, stats.dropped), now
            new_bad, self._last_bad = stats.bad_frames - self._last_bad, stats.bad_frames
        new_frames, new_dropped = stats.frames - frames0, stats.dropped - dropped0
        logger = self.get_logger()
        if new_dropped > 0:
            logger.warning(
                f"camera '{self.camera_name}': dropped {new_dropped} frame(s) in the last {elapsed:.1f} s "
                f"({stats.dropped} in total)"
            )
        if new_bad > 0:
            logger.warning(
                f"camera '{self.camera_name}': skipped {new_bad} frame(s) that cannot be converted in the "
                f"last {elapsed:.1f} s ({stats.bad_frame_reason})"
            )
        frozen = stats.frozen_s > 0 and stats.state is CameraState.STREAMING
        if frozen != self._frozen_logged:
            self._frozen_logged = frozen
            if frozen:
                logger.warning(
                    f"camera '{self.camera_name}': frames frozen, the source repeats one identical image "
                    f"({stats.frozen_s:.1f} s)"
                )
            else:
                logger.info(f"camera '{self.camera_name}': frames change again")
        age = (
            None
            if stats.last_frame_monotonic is None
            else max(0.0, time.monotonic() - stats.last_frame_monotonic)
        )
        stalled = age is not None and age > max(1.0, 5.0 / self.stream.config.fps)
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: camera {self.camera_name}"
        status.hardware_id = str(self.stream.target)
        if stats.state is CameraState.STREAMING:
            problems = []
            if stalled:
                problems.append(f"no frame for {age:.1f} s (device stalled?)")
            if frozen:
                problems.append(f"frames frozen: one identical image for {stats.frozen_s:.1f} s")
            if new_bad:
                problems.append(
                    f"skipped {new_bad} frame(s) that cannot be converted ({stats.bad_frame_reason})"
                )
            if new_dropped:
                problems.append(f"dropped {new_dropped} frame(s) in the last period")
            if self._calibration_error:
                problems.append(self._calibration_error)
            status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
            status.message = "streaming; " + "; ".join(problems) if problems else "streaming"
        elif stats.state is CameraState.ENDED:
            status.level, status.message = DiagnosticStatus.WARN, stats.message
        elif stats.state is CameraState.STARTING:
            status.level, status.message = DiagnosticStatus.OK, "starting"
        else:
            status.level, status.message = DiagnosticStatus.ERROR, stats.message or stats.state.value
        values = {
            "state": stats.state.value,
            "frames": stats.frames,
            "dropped_frames": stats.dropped,
            "dropped_last_period": new_dropped,
            "rate_hz": f"{new_frames / elapsed:.2f}",
            "target_fps": f"{self.stream.config.fps:g}",
            "read_errors": stats.read_errors,
            "open_failures": stats.open_failures,
            "reconnects": stats.reconnects,
            "loops": stats.loops,
            "bad_frames": stats.bad_frames,
            "frozen_s": f"{stats.frozen_s:.1f}",
            "last_frame_age_s": "" if age is None else f"{age:.2f}",
            "source_size": ""
            if stats.source_size is None
            else f"{stats.source_size[0]}x{stats.source_size[1]}",
        }
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = now.to_msg()
        msg.status = [status]
        self._diag_pub.publish(msg)

    def shutdown(self) -> None:
        """Stop the capture thread and join it, while the context is still valid (run_node calls this before
        destroying the node and shutting rclpy down: no publish can meet an invalid context)."""
        self._closing = True
        if hasattr(self, "stream"):
            self.stream.stop()

    def destroy_node(self) -> None:
        self.shutdown()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    try:  # OpenCV's own open/read warnings are replaced by the node's reports (log + /diagnostics)
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):
        pass
    # run_node: Ctrl-C/SIGTERM (also twice, as under ros2 launch) stop the spin with the context still valid,
    # then shutdown() joins the capture thread before rclpy shuts down (issue 18)
    return run_node("camera_node", CameraNode, args=args, startup_errors=(ParameterException, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())
