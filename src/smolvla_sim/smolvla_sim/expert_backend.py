"""The scripted expert as a policy backend: ``smolvla_sim.expert_backend:make_backend`` (no rclpy).

It works from the observation only, like a learned policy: the cube and the tray are located by colour in the
``top`` camera image and back-projected onto the table with the known camera pose and intrinsics of the
simulated scene; the expert then plans the pick-and-place from the current joint positions. The plan is
indexed by the request's ``timestep`` (control ticks at ``fps``), so overlapping or late requests get the
right slice. A new plan is made when none is running (first request, the plan finished, or the timestep went
backwards) and the cube is seen outside the tray; otherwise the backend holds the last target (or the current
positions).

Options (all optional): ``chunk_size`` (50), ``fps`` (30), ``robot`` (so101), ``camera`` (top), ``task``
(``auto``: ``sort`` when the instruction mentions the green cube, else ``pick_place``).
"""

from __future__ import annotations

import logging
from typing import Any

import mujoco
import numpy as np

from smolvla_sim.expert import PickPlacePlanner
from smolvla_sim.model import JOINT_NAMES, TRAY_INNER_HALF, build_model
from smolvla_sim.perception import TASK_COLOURS, CameraModel, SceneEstimate, estimate_task

try:  # the interface lives in smolvla_policy; keep this module importable without it
    from smolvla_policy.backend import BadRequest, ChunkRequest, InferenceCancelled, StepCallback
except ImportError:  # pragma: no cover
    ChunkRequest = Any  # type: ignore[misc,assignment]
    StepCallback = Any  # type: ignore[misc,assignment]

    class BadRequest(ValueError):  # type: ignore[no-redef]
        pass

    class InferenceCancelled(RuntimeError):  # type: ignore[no-redef]
        pass


log = logging.getLogger(__name__)


class ExpertBackend:
    """PolicyBackend that runs the scripted pick-and-place from images and joint positions."""

    num_steps = 1

    def __init__(
        self,
        chunk_size: int = 50,
        fps: float = 30.0,
        robot: str = "so101",
        camera: str = "top",
        task: str = "auto",
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self.chunk_size = int(chunk_size)
        self.fps = float(fps)
        self.camera_name = camera
        if task != "auto" and task not in TASK_COLOURS:
            raise ValueError(f"task must be auto or one of {sorted(TASK_COLOURS)}, got '{task}'")
        self.task = task
        model = build_model(robot)
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        cam = data.cam(camera)
        self.camera = CameraModel(
            cam.xpos.copy(), cam.xmat.reshape(3, 3).copy(), float(model.cam(camera).fovy[0])
        )
        self.planner = PickPlacePlanner(model, list(JOINT_NAMES), rate=self.fps)
        self.plan: np.ndarray | None = None
        self.plan_start = 0
        self.last_timestep: int | None = None
        self.last_estimate: list[SceneEstimate] | None = None
        self.plans_made = 0
        self._warned = False

    def warmup(self) -> None:
        self.planner.kin.fk(np.zeros(len(JOINT_NAMES)))

    # ------------------------------------------------------------------------------------------------ helpers
    def _order(self, names: list[str]) -> np.ndarray:
        try:
            return np.array([list(names).index(n) for n in JOINT_NAMES])
        except ValueError as exc:
            raise BadRequest(
                f"request joint names {list(names)} do not contain all of {list(JOINT_NAMES)}"
            ) from exc

    def _plan_running(self, t: int) -> bool:
        return self.plan is not None and self.plan_start <= t < self.plan_start + len(self.plan)

    def _maybe_plan(self, request: ChunkRequest, q: np.ndarray) -> None:
        image = request.images.get(self.camera_name)
        if image is None:
            raise BadRequest(f"camera '{self.camera_name}' missing (got {sorted(request.images)})")
        task = self.task
        if task == "auto":  # the instruction names the colours: two cubes -> sorting
            task = "sort" if "green" in (request.task or "").lower() else "pick_place"
        estimates = estimate_task(np.asarray(image), self.camera, task)
        self.last_estimate = estimates
        if estimates is None:
            if not self._warned:  # once per occlusion, not at every request
                log.warning(
                    "expert backend: a cube or tray of '%s' is not visible in '%s'", task, self.camera_name
                )
            self._warned = True
            return
        self._warned = False
        todo = [
            (e.cube_position, e.cube_yaw, e.tray_position)
            for e in estimates
            if not np.all(np.abs(e.cube_position[:2] - e.tray_position[:2]) < TRAY_INNER_HALF)
        ]
        if not todo:
            return
        self.planner.home = q.copy()
        self.plan = self.planner.plan_sequence(q, todo)
        self.plan_start = int(request.timestep)
        self.plans_made += 1

    # ------------------------------------------------------------------------------------------------ API
    def predict(self, request: ChunkRequest, step_callback: StepCallback | None = None) -> np.ndarray:
        order = self._order(request.joint_names)
        positions = np.asarray(request.positions, dtype=float)
        if positions.shape[0] != len(request.joint_names) or not np.all(np.isfinite(positions)):
            raise BadRequest("joint positions must be finite and parallel to joint_names")
        q = positions[order]
        t = int(request.timestep)
        restarted = self.last_timestep is not None and t < self.last_timestep
        self.last_timestep = t
        if restarted or not self._plan_running(t):
            self._maybe_plan(request, q)
        if self.plan is not None and t >= self.plan_start:
            idx = np.clip(np.arange(t, t + self.chunk_size) - self.plan_start, 0, len(self.plan) - 1)
            chunk = self.plan[idx]
        else:
            chunk = np.repeat(q[None], self.chunk_size, axis=0)
        if step_callback is not None and step_callback(1, self.num_steps) is False:
            raise InferenceCancelled("cancelled")
        out = np.empty((self.chunk_size, len(request.joint_names)))
        out[:, order] = chunk
        # joints the expert does not know (none for the SO-10x) keep their current position
        others = np.setdiff1d(np.arange(len(request.joint_names)), order)
        out[:, others] = positions[others]
        return out


def make_backend(options: dict | None = None) -> ExpertBackend:
    """Plug-in factory for the policy server (``backend: smolvla_sim.expert_backend:make_backend``)."""
    opts = dict(options or {})
    known = {"chunk_size", "fps", "robot", "camera", "task"}
    unknown = set(opts) - known
    if unknown:
        raise ValueError(f"unknown expert backend options {sorted(unknown)} (known: {sorted(known)})")
    return ExpertBackend(
        chunk_size=int(opts.get("chunk_size", 50)),
        fps=float(opts.get("fps", 30.0)),
        robot=str(opts.get("robot", "so101")),
        camera=str(opts.get("camera", "top")),
        task=str(opts.get("task", "auto")),
    )
