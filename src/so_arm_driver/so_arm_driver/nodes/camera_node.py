"""camera_node: publishes one camera as /cameras/<name>/image_raw (rgb8) + /cameras/<name>/camera_info.

Thin adapter over :mod:`so_arm_driver.camera` (capture, reconnect, pacing, dropped-frame accounting):
parameters (see config/camera_node.yaml), publishers, and a /diagnostics status. A missing or failing device
is reported (log + /diagnostics ERROR) and retried; the node keeps running.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image

from smolvla_common.image_conversion import numpy_to_image
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
_LIVE = {"fps", "loop", "reconnect_period", "max_reconnect_period"}


@dataclass(frozen=True)
class _Param:
    default: object
    description: str
    kind: str  # "str", "int", "float", "bool"; "float" also accepts integers, "source" accepts both
    read_only: bool = True
    bounds: tuple[float, float] | None = None

    def descriptor(self) -> ParameterDescriptor:
        bounds = f" [{self.bounds[0]:g} .. {self.bounds[1]:g}]" if self.bounds else ""
        d = ParameterDescriptor(description=self.description + bounds, read_only=self.read_only)
        if self.kind in ("float", "source"):
            d.dynamic_typing = True  # "-p fps:=15" (an integer) or "-p source:=0" must work
            if self.bounds and self.kind == "float":
                d.floating_point_range = [
                    FloatingPointRange(from_value=self.bounds[0], to_value=self.bounds[1])
                ]
        else:
            d.type = {
                "str": ParameterType.PARAMETER_STRING,
                "int": ParameterType.PARAMETER_INTEGER,
                "bool": ParameterType.PARAMETER_BOOL,
            }[self.kind]
            if self.bounds:
                d.integer_range = [
                    IntegerRange(from_value=int(self.bounds[0]), to_value=int(self.bounds[1]), step=1)
                ]
        return d


PARAMETERS: dict[str, _Param] = {
    "name": _Param("front", "camera name: topics /cameras/<name>/image_raw and camera_info", "str"),
    "source": _Param("0", "device index, /dev/videoN, stream URL or video file path", "source"),
    "fps": _Param(30.0, "publish rate [Hz]", "float", False, (0.1, 240.0)),
    "width": _Param(640, "image width [px], 0 = source size", "int", True, (0, 8192)),
    "height": _Param(480, "image height [px], 0 = source size", "int", True, (0, 8192)),
    "loop": _Param(True, "restart video files at their end", "bool", False),
    "frame_id": _Param("", "header frame_id ('' = <name>_camera_optical_frame)", "str"),
    "camera_info": _Param("", "ROS camera calibration YAML ('' = pinhole from horizontal_fov)", "str"),
    "horizontal_fov": _Param(69.0, "pinhole horizontal field of view [deg]", "float", True, (1.0, 179.0)),
    "reconnect_period": _Param(
        1.0, "first reconnect delay [s], doubles per failure", "float", False, (0.01, 60.0)
    ),
    "max_reconnect_period": _Param(10.0, "longest reconnect delay [s]", "float", False, (0.01, 600.0)),
    "fourcc": _Param("MJPG", "FOURCC requested from devices ('' = driver default)", "str"),
    "diagnostics_period": _Param(1.0, "period of the /diagnostics status [s]", "float", True, (0.05, 60.0)),
}


def _check(name: str, value: object) -> str | None:
    """Type and range check of one parameter value; returns a reason on rejection."""
    spec = PARAMETERS.get(name)
    if spec is None:
        return None
    if spec.kind == "source":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return f"{name} must be a device index or a string"
        if isinstance(value, int) and value < 0:
            return f"{name}: device index must be >= 0"
        if isinstance(value, str) and not value.strip():
            return f"{name} must not be empty"
        return None
    if spec.kind == "float" and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    ):
        return f"{name} must be a number, got {value!r}"
    if spec.bounds and not spec.bounds[0] <= value <= spec.bounds[1]:  # type: ignore[operator]
        return f"{name} must be in [{spec.bounds[0]:g}, {spec.bounds[1]:g}], got {value}"
    return None


class CameraNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("camera_node", **kwargs)
        self._closing = False
        self.add_on_set_parameters_callback(self._validate)
        for pname, spec in PARAMETERS.items():
            self.declare_parameter(pname, spec.default, spec.descriptor())
        self.add_post_set_parameters_callback(self._apply)
        p = {pname: self.get_parameter(pname).value for pname in PARAMETERS}
        for pname, spec in PARAMETERS.items():
            if spec.kind == "float":
                p[pname] = float(p[pname])
        p["source"] = str(p["source"])

        self.camera_name: str = p["name"]
        self.frame_id: str = p["frame_id"] or f"{self.camera_name}_camera_optical_frame"
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
        )
        self._diag_lock = threading.Lock()
        self._last_diag = (0, 0)  # frames, dropped at the previous diagnostics
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
    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        values = {p.name: p.value for p in params}
        current = {
            n: self.get_parameter(n).value
            for n in ("width", "height", "reconnect_period", "max_reconnect_period")
            if self.has_parameter(n)
        }
        merged = {**current, **values}
        for pname, value in values.items():
            reason = _check(pname, value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if "name" in values and not _NAME_RE.match(str(values["name"])):
            return SetParametersResult(
                successful=False, reason=f"name '{values['name']}' must match [A-Za-z][A-Za-z0-9_]*"
            )
        if (
            "frame_id" in values
            and values["frame_id"]
            and not _NAME_RE.match(str(values["frame_id"]).lstrip("/"))
        ):
            return SetParametersResult(
                successful=False, reason=f"frame_id '{values['frame_id']}' is not valid"
            )
        if "fourcc" in values and values["fourcc"] and len(str(values["fourcc"])) != 4:
            return SetParametersResult(successful=False, reason="fourcc must have 4 characters or be empty")
        if {"width", "height"} <= set(merged) and (merged["width"] == 0) != (merged["height"] == 0):
            return SetParametersResult(
                successful=False, reason="width and height must both be > 0, or both 0 (source size)"
            )
        if {"reconnect_period", "max_reconnect_period"} <= set(merged) and (
            merged["max_reconnect_period"] < merged["reconnect_period"]
        ):
            return SetParametersResult(
                successful=False, reason="max_reconnect_period must be >= reconnect_period"
            )
        return SetParametersResult(successful=True)

    def _apply(self, params: list[Parameter]) -> None:
        changes = {
            p.name: (float(p.value) if p.name != "loop" else p.value) for p in params if p.name in _LIVE
        }
        if changes and hasattr(self, "stream"):
            self.stream.update(**changes)
            self.get_logger().info(f"applied {changes}")

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
        new_frames, new_dropped = stats.frames - frames0, stats.dropped - dropped0
        if new_dropped > 0:
            self.get_logger().warning(
                f"camera '{self.camera_name}': dropped {new_dropped} frame(s) in the last {elapsed:.1f} s "
                f"({stats.dropped} in total)"
            )
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: camera {self.camera_name}"
        status.hardware_id = str(self.stream.target)
        if stats.state is CameraState.STREAMING:
            status.level = (
                DiagnosticStatus.WARN if (new_dropped > 0 or self._calibration_error) else DiagnosticStatus.OK
            )
            status.message = (
                f"streaming; dropped {new_dropped} frame(s) in the last period"
                if new_dropped
                else (self._calibration_error or "streaming")
            )
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
            "source_size": ""
            if stats.source_size is None
            else f"{stats.source_size[0]}x{stats.source_size[1]}",
        }
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = now.to_msg()
        msg.status = [status]
        self._diag_pub.publish(msg)

    def destroy_node(self) -> None:
        self._closing = True  # the context may already be shut down: no more logging or publishing
        if hasattr(self, "stream"):
            self.stream.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    from rclpy._rclpy_pybind11 import RCLError

    try:  # OpenCV's own open/read warnings are replaced by the node's reports (log + /diagnostics)
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):
        pass
    rclpy.init(args=args)
    node: CameraNode | None = None
    code = 0
    try:
        node = CameraNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError as exc:
        if rclpy.ok():
            print(f"camera_node: {exc}")
            code = 1
    except (ParameterException, ValueError) as exc:  # configuration errors (rejected parameters) end here
        print(f"camera_node: {type(exc).__name__}: {exc}")
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
