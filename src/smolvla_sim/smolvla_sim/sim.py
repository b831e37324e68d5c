"""The simulator core (plain Python, no rclpy): a gym-like MuJoCo arm with cameras and a pick-and-place task.

``ArmSim.reset(seed)`` randomises the scene from the seed and returns an observation; ``step(action)`` applies
joint position targets (radians, contract joint order) for one control period (``physics_rate /
control_rate`` physics steps) and returns the next observation; ``render(camera)`` returns an HxWx3 uint8
image.
Everything is deterministic: the same seed and the same commands give the same trajectory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from smolvla_sim import tasks
from smolvla_sim.model import JOINT_NAMES, build_model, robot_limits

CAMERAS = ("top", "wrist")

#: A "ready" pose: gripper 16 cm above the table in front of the base, half open.
HOME_POSE = np.array([0.0, -1.2, 0.6, 1.4, 0.0, 0.25])


@dataclass
class SimConfig:
    """Simulator settings (all rates in Hz, sizes in pixels)."""

    robot: str = "so101"
    task: str = "pick_place"
    physics_rate: float = 500.0
    control_rate: float = 30.0
    image_width: int = 512
    image_height: int = 512
    cameras: tuple[str, ...] = CAMERAS
    #: Include rendered images in the observations returned by reset/step (off: physics only, much faster).
    render_observations: bool = False
    #: Random perturbation of the start pose (radians, uniform +-) on top of HOME_POSE.
    start_pose_noise: float = 0.08
    home_pose: tuple[float, ...] = field(default_factory=lambda: tuple(HOME_POSE))

    def validate(self) -> None:
        if self.robot not in ("so101", "so100"):
            raise ValueError(f"robot must be so101 or so100, got '{self.robot}'")
        if self.task not in tasks.TASKS:
            raise ValueError(f"unknown task '{self.task}' (known: {', '.join(tasks.TASKS)})")
        if self.physics_rate < 500.0:
            raise ValueError("physics_rate must be >= 500 Hz")
        if not 0.0 < self.control_rate <= self.physics_rate:
            raise ValueError("control_rate must be in (0, physics_rate]")
        if self.image_width < 8 or self.image_height < 8 or max(self.image_width, self.image_height) > 4096:
            raise ValueError("image size must be within 8..4096 pixels")
        for cam in self.cameras:
            if cam not in CAMERAS:
                raise ValueError(f"unknown camera '{cam}' (known: {', '.join(CAMERAS)})")


class ArmSim:
    """SO-101/SO-100 arm, table, cube and tray in MuJoCo, with offscreen cameras."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.config.validate()
        size = max(640, self.config.image_width, self.config.image_height)
        self.model = build_model(self.config.robot, self.config.physics_rate, size, self.config.task)
        self.data = mujoco.MjData(self.model)
        self.joint_names = list(JOINT_NAMES)
        self.limits = robot_limits(self.config.robot)
        self.lower = np.array([self.limits[n][0] for n in self.joint_names])
        self.upper = np.array([self.limits[n][1] for n in self.joint_names])
        m = self.model
        self._qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in self.joint_names])
        self._vadr = np.array([m.jnt_dofadr[m.joint(n).id] for n in self.joint_names])
        self._act = np.array([m.actuator(n).id for n in self.joint_names])
        self.substeps = max(1, round(self.config.physics_rate / self.config.control_rate))
        self.task = tasks.make_task(self.config.task, self)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._scene_opt = mujoco.MjvOption()
        self.seed: int | None = None
        self.episode = 0
        self.control_steps = 0

    # ----------------------------------------------------------------------------------------------- episode
    def reset(self, seed: int | None = None) -> dict[str, Any]:
        """Start a new episode; the scene (object poses, start pose) is drawn from ``seed``."""
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**31))
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        mujoco.mj_resetData(self.model, self.data)
        start = np.asarray(self.config.home_pose, dtype=float)
        noise = self.config.start_pose_noise
        start = start + rng.uniform(-noise, noise, size=start.shape) * np.array([1, 1, 1, 1, 1, 0])
        start = np.clip(start, self.lower, self.upper)
        self.data.qpos[self._qadr] = start
        self.data.ctrl[self._act] = start
        self.task.reset(rng)
        mujoco.mj_forward(self.model, self.data)
        # Let the arm settle under gravity and the objects come to rest before the first observation.
        for _ in range(int(0.2 * self.config.physics_rate)):
            mujoco.mj_step(self.model, self.data)
        self.episode += 1
        self.control_steps = 0
        return self.observe()

    def step(self, action: np.ndarray | list[float]) -> dict[str, Any]:
        """Apply joint position targets (radians, contract order) for one control period; return the obs."""
        self.set_targets(action)
        self.step_physics(self.substeps)
        self.control_steps += 1
        return self.observe()

    def set_targets(self, action: np.ndarray | list[float]) -> None:
        a = np.asarray(action, dtype=float).reshape(-1)
        if a.shape[0] != len(self.joint_names):
            raise ValueError(f"action has {a.shape[0]} values, expected {len(self.joint_names)}")
        if not np.all(np.isfinite(a)):
            raise ValueError("action contains NaN or inf")
        self.data.ctrl[self._act] = np.clip(a, self.lower, self.upper)

    def step_physics(self, n: int = 1) -> None:
        for _ in range(n):
            mujoco.mj_step(self.model, self.data)

    # ----------------------------------------------------------------------------------------------- state
    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def dt(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qadr].copy()

    @property
    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._vadr].copy()

    @property
    def joint_efforts(self) -> np.ndarray:
        """Actuator torques (N m), the simulated equivalent of the servos' present load."""
        return self.data.actuator_force[self._act].copy()

    @property
    def targets(self) -> np.ndarray:
        return self.data.ctrl[self._act].copy()

    def task_success(self) -> bool:
        return self.task.success()

    def object_poses(self) -> dict[str, np.ndarray]:
        """Privileged state: name -> (x, y, z, qw, qx, qy, qz) of the task's objects (arm base frame)."""
        return self.task.object_poses()

    def observe(self) -> dict[str, Any]:
        obs: dict[str, Any] = {
            "time": self.time,
            "joint_positions": self.joint_positions,
            "joint_velocities": self.joint_velocities,
            "joint_efforts": self.joint_efforts,
        }
        if self.config.render_observations:
            obs["images"] = {cam: self.render(cam) for cam in self.config.cameras}
        return obs

    # ------------------------------------------------------------------------------------------- rendering
    def _renderer(self, width: int, height: int) -> mujoco.Renderer:
        key = (width, height)
        renderer = self._renderers.get(key)
        if renderer is None:
            os.environ.setdefault("MUJOCO_GL", "egl")
            renderer = mujoco.Renderer(self.model, height=height, width=width)
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
            self._renderers[key] = renderer
        return renderer

    def render(self, camera: str = "top", width: int | None = None, height: int | None = None) -> np.ndarray:
        """Render ``camera`` to an HxWx3 uint8 RGB array (a new array, safe to keep)."""
        if camera not in CAMERAS:
            raise ValueError(f"unknown camera '{camera}' (known: {', '.join(CAMERAS)})")
        w = int(width or self.config.image_width)
        h = int(height or self.config.image_height)
        renderer = self._renderer(w, h)
        renderer.update_scene(self.data, camera=camera, scene_option=self._scene_opt)
        return renderer.render().copy()

    def camera_intrinsics(
        self, camera: str, width: int | None = None, height: int | None = None
    ) -> np.ndarray:
        """3x3 pinhole matrix K of ``camera`` at this image size (square pixels, centred principal point)."""
        w = int(width or self.config.image_width)
        h = int(height or self.config.image_height)
        fovy = np.deg2rad(self.model.cam(camera).fovy[0])
        f = 0.5 * h / np.tan(0.5 * fovy)
        return np.array([[f, 0.0, 0.5 * w], [0.0, f, 0.5 * h], [0.0, 0.0, 1.0]])

    def camera_pose(self, camera: str) -> tuple[np.ndarray, np.ndarray]:
        """World position and 3x3 rotation (columns: camera x, y, z; MuJoCo cameras look along -z)."""
        cam = self.data.cam(camera)
        return cam.xpos.copy(), cam.xmat.reshape(3, 3).copy()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    def __enter__(self) -> ArmSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
