"""Locate the cube and the tray in a camera image by colour and back-project them onto the table (no rclpy).

The camera model is MuJoCo's: a pinhole with vertical field of view ``fovy``, square pixels, principal point
at the image centre, looking along its -z axis with +y up. Pixels are back-projected onto a horizontal plane
of known height (the cube's top face, the tray's mid-height), which is exact for a top-down view and a good
approximation for a moderately tilted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from smolvla_sim.model import CUBE_HALF, TRAY_HEIGHT


@dataclass(frozen=True)
class CameraModel:
    """Pose (world position, 3x3 rotation with columns = camera axes) and intrinsics of a camera."""

    position: np.ndarray
    rotation: np.ndarray
    fovy_deg: float

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        f = 0.5 * height / np.tan(0.5 * np.deg2rad(self.fovy_deg))
        return np.array([[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]])

    def backproject(
        self, u: np.ndarray, v: np.ndarray, width: int, height: int, plane_z: float
    ) -> np.ndarray:
        """Pixel centres (u right, v down) -> (N, 3) world points on the plane z = ``plane_z``."""
        k = self.intrinsics(width, height)
        x = (np.asarray(u, float) + 0.5 - k[0, 2]) / k[0, 0]
        y = -(np.asarray(v, float) + 0.5 - k[1, 2]) / k[1, 1]  # image v goes down, camera y goes up
        rays = np.stack([x, y, -np.ones_like(x)], axis=-1) @ self.rotation.T
        t = (plane_z - self.position[2]) / rays[:, 2]
        return self.position + t[:, None] * rays

    def project(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        """(N, 3) world points -> (N, 2) pixel coordinates (u, v)."""
        k = self.intrinsics(width, height)
        pc = (np.atleast_2d(points) - self.position) @ self.rotation
        u = k[0, 0] * pc[:, 0] / -pc[:, 2] + k[0, 2] - 0.5
        v = -k[1, 1] * pc[:, 1] / -pc[:, 2] + k[1, 2] - 0.5
        return np.stack([u, v], axis=-1)


def _channels(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    img = image.astype(np.int16)
    return img[..., 0], img[..., 1], img[..., 2]


def red_mask(image: np.ndarray) -> np.ndarray:
    r, g, b = _channels(image)
    return (r > 90) & (r > 2 * g + 20) & (r > 2 * b + 20)


def green_mask(image: np.ndarray) -> np.ndarray:
    r, g, b = _channels(image)
    return (g > 90) & (g > 2 * r + 20) & (g > 2 * b + 20)


def blue_mask(image: np.ndarray) -> np.ndarray:
    r, g, b = _channels(image)
    return (b > 90) & (b > r + 80) & (b > g + 30)


def purple_mask(image: np.ndarray) -> np.ndarray:
    r, g, b = _channels(image)
    return (b > 120) & (r > 2 * g) & (b > r + 20) & (b < r + 80)


MASKS = {"red": red_mask, "green": green_mask, "blue": blue_mask, "purple": purple_mask}
#: (cube colour, tray colour) per task, in the order the expert handles them.
TASK_COLOURS = {"pick_place": [("red", "blue")], "sort": [("red", "blue"), ("green", "purple")]}


def _largest_component(mask: np.ndarray, min_pixels: int) -> np.ndarray | None:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] < min_pixels:
        return None
    return labels == best


@dataclass
class SceneEstimate:
    cube_position: np.ndarray  # (3,) world, cube centre
    cube_yaw: float  # radians, modulo pi/2
    tray_position: np.ndarray  # (3,) world, tray centre on the table
    cube_pixels: int
    tray_pixels: int


def _estimate_pair(
    image: np.ndarray, camera: CameraModel, cube_colour: str, tray_colour: str, min_pixels: int
) -> SceneEstimate | None:
    h, w = image.shape[:2]
    cube = _largest_component(MASKS[cube_colour](image), min_pixels)
    tray = _largest_component(MASKS[tray_colour](image), 4 * min_pixels)
    if cube is None or tray is None:
        return None
    cv_, cu = np.nonzero(cube)
    cube_pts = camera.backproject(cu, cv_, w, h, 2 * CUBE_HALF)
    centre = cube_pts.mean(axis=0)
    centre[2] = CUBE_HALF
    rect = cv2.minAreaRect(cube_pts[:, :2].astype(np.float32) * 1000.0)  # millimetres for cv2's precision
    yaw = float(np.deg2rad(rect[2]) % (np.pi / 2))
    if yaw > np.pi / 4:
        yaw -= np.pi / 2
    tv, tu = np.nonzero(tray)
    tray_pts = camera.backproject(tu, tv, w, h, 0.5 * TRAY_HEIGHT)
    tray_centre = 0.5 * (tray_pts.min(axis=0) + tray_pts.max(axis=0))
    tray_centre[2] = 0.0
    return SceneEstimate(centre, yaw, tray_centre, int(cube.sum()), int(tray.sum()))


def estimate_scene(image: np.ndarray, camera: CameraModel, min_pixels: int = 6) -> SceneEstimate | None:
    """Find the red cube and the blue tray in ``image``; None when either is not visible."""
    return _estimate_pair(image, camera, "red", "blue", min_pixels)


def estimate_task(
    image: np.ndarray, camera: CameraModel, task: str = "pick_place", min_pixels: int = 6
) -> list[SceneEstimate] | None:
    """Cube/tray estimates for every pair of ``task`` (see TASK_COLOURS); None when one is not visible."""
    out = []
    for cube_colour, tray_colour in TASK_COLOURS[task]:
        est = _estimate_pair(image, camera, cube_colour, tray_colour, min_pixels)
        if est is None:
            return None
        out.append(est)
    return out
