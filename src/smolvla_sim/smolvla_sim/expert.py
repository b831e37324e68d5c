"""Scripted pick-and-place expert (no rclpy): damped-least-squares IK on ``mj_jacSite``, minimum-jerk
segments.

The planner turns object poses (cube position and yaw, tray position) and the arm's current joint positions
into a time series of joint position targets at the control rate: approach above the cube with the gripper
open and pointing down, descend, close, lift, carry along an arc around the base, lower into the tray,
release, retreat and return home. Targets include a static gravity feed-forward (``qfrc_bias / kp``), the same
trick a real servo user does by hand, so that the P-controlled joints land where the IK asked.

`ScriptedExpert` plans from the simulator's true state; the policy backend (``expert_backend``) plans from
poses estimated in the top camera image.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from smolvla_sim.model import CUBE_HALF, SERVO_KP, TRAY_HEIGHT

ARM_JOINTS = 5  # pan, lift, elbow, wrist flex, wrist roll (the gripper is commanded directly)
GRIPPER_OPEN = 1.0
GRIPPER_CLOSED = -0.15


def min_jerk(s: np.ndarray | float) -> np.ndarray | float:
    """Minimum-jerk profile 10 s^3 - 15 s^4 + 6 s^5 on [0, 1]."""
    s = np.clip(s, 0.0, 1.0)
    return s**3 * (10.0 - 15.0 * s + 6.0 * s * s)


def wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


def down_rotation(yaw: float) -> np.ndarray:
    """Gripper-frame orientation with the fingers pointing down and the jaws opening along ``yaw``."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class Kinematics:
    """Forward/inverse kinematics of the TCP site on a private MjData of the scene model."""

    def __init__(self, model: mujoco.MjModel, joint_names: list[str]) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.site = model.site("tcp").id
        self.qadr = np.array([model.jnt_qposadr[model.joint(n).id] for n in joint_names])
        self.vadr = np.array([model.jnt_dofadr[model.joint(n).id] for n in joint_names])
        self.lower = np.array([model.jnt_range[model.joint(n).id][0] for n in joint_names])
        self.upper = np.array([model.jnt_range[model.joint(n).id][1] for n in joint_names])
        self.kp = np.array([model.actuator(n).gainprm[0] for n in joint_names]) if model.nu else SERVO_KP
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._damp_eye = np.eye(6)

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def ik(
        self,
        pos: np.ndarray,
        rot: np.ndarray,
        q0: np.ndarray,
        iters: int = 150,
        tol: float = 2e-4,
        rot_weight: float = 0.15,
        damping: float = 0.02,
    ) -> tuple[np.ndarray, float]:
        """Damped least squares on the 5 arm joints; returns (q, residual position error in metres)."""
        q = np.array(q0, dtype=float)
        idx = self.vadr[:ARM_JOINTS]
        err_p = np.inf
        for _ in range(iters):
            p, r = self.fk(q)
            mujoco.mj_comPos(self.model, self.data)
            err_p = pos - p
            skew = rot @ r.T
            err_r = 0.5 * np.array(
                [skew[2, 1] - skew[1, 2], skew[0, 2] - skew[2, 0], skew[1, 0] - skew[0, 1]]
            )
            if np.linalg.norm(err_p) < tol and np.linalg.norm(err_r) < 20 * tol:
                break
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site)
            jac = np.empty((6, len(idx)))
            jac[:3] = self._jacp[:, idx]
            jac[3:] = rot_weight * self._jacr[:, idx]
            e = np.concatenate([err_p, rot_weight * err_r])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + self._damp_eye * damping**2, e)
            step = np.linalg.norm(dq)
            if step < 1e-5:
                break
            if step > 0.3:
                dq *= 0.3 / step
            q[:ARM_JOINTS] = np.clip(q[:ARM_JOINTS] + dq, self.lower[:ARM_JOINTS], self.upper[:ARM_JOINTS])
        return q, float(np.linalg.norm(err_p))

    def gravity_feedforward(self, q: np.ndarray) -> np.ndarray:
        """Target offsets that cancel the static gravity sag of position servos at pose ``q``."""
        self.data.qpos[self.qadr] = q
        self.data.qvel[:] = 0.0
        mujoco.mj_forward(self.model, self.data)
        out = self.data.qfrc_bias[self.vadr] / self.kp
        out[ARM_JOINTS:] = 0.0
        return out


@dataclass
class PlanTiming:
    """Segment durations (seconds)."""

    approach: float = 1.8
    descend: float = 1.0
    close: float = 0.5
    settle: float = 0.3
    lift: float = 0.9
    carry: float = 1.6
    lower: float = 0.6
    release: float = 0.4
    retreat: float = 0.6
    home: float = 1.5
    hold: float = 0.5


class PickPlacePlanner:
    """Plans joint-target trajectories for pick-and-place from object poses."""

    approach_height = 0.08
    carry_height = 0.13
    grasp_depth = 0.002  # grasp slightly below the cube's centre

    def __init__(self, model: mujoco.MjModel, joint_names: list[str], rate: float = 30.0, home=None) -> None:
        self.kin = Kinematics(model, joint_names)
        self.rate = float(rate)
        self.timing = PlanTiming()
        self.home = None if home is None else np.asarray(home, dtype=float)

    # --------------------------------------------------------------------------------------------- helpers
    def _n(self, seconds: float) -> int:
        return max(1, round(seconds * self.rate))

    def _solve(self, pos: np.ndarray, yaw: float, seed: np.ndarray) -> np.ndarray:
        q, err = self.kin.ik(pos, down_rotation(yaw), seed)
        if err > 5e-3:  # retry from a canonical seed pointing at the target
            alt = seed.copy()
            alt[:ARM_JOINTS] = [np.arctan2(pos[1], pos[0]), 0.0, 0.3, 1.2, 0.0]
            q2, err2 = self.kin.ik(pos, down_rotation(yaw), alt, iters=300)
            if err2 < err:
                q, err = q2, err2
        return q

    def _cartesian(self, q0, p0, p1, yaw0, yaw1, gripper, seconds, polar=False) -> list[np.ndarray]:
        out, q = [], np.array(q0, dtype=float)
        n = self._n(seconds)
        for k in range(1, n + 1):
            s = float(min_jerk(k / n))
            if polar:
                r0, r1 = np.hypot(*p0[:2]), np.hypot(*p1[:2])
                a0, a1 = np.arctan2(p0[1], p0[0]), np.arctan2(p1[1], p1[0])
                r, a = r0 + s * (r1 - r0), a0 + s * wrap(a1 - a0)
                p = np.array([r * np.cos(a), r * np.sin(a), p0[2] + s * (p1[2] - p0[2])])
            else:
                p = p0 + s * (p1 - p0)
            q = self.kin.ik(p, down_rotation(yaw0 + s * (yaw1 - yaw0)), q, iters=40)[0]
            q[5] = gripper(s) if callable(gripper) else gripper
            out.append(q.copy())
        return out

    def _joint(self, q0, q1, seconds) -> list[np.ndarray]:
        n = self._n(seconds)
        return [q0 + float(min_jerk(k / n)) * (q1 - q0) for k in range(1, n + 1)]

    @staticmethod
    def grasp_yaw(cube_pos: np.ndarray, cube_yaw: float) -> float:
        """The face normal of the cube (yaw + k pi/2) closest to the radial direction from the base."""
        radial = np.arctan2(cube_pos[1], cube_pos[0])
        candidates = [cube_yaw + k * np.pi / 2 for k in range(-4, 5)]
        return min(candidates, key=lambda y: abs(y - radial))

    # --------------------------------------------------------------------------------------------- plan
    def _pick_place(
        self,
        q_start: np.ndarray,
        cube_pos: np.ndarray,
        cube_yaw: float,
        tray_pos: np.ndarray,
        from_pose: tuple[np.ndarray, float] | None = None,
    ) -> tuple[list[np.ndarray], np.ndarray, float]:
        """Joint targets (no feed-forward) for one pick-and-place; returns (targets, final TCP pos, yaw)."""
        t = self.timing
        cube_pos, tray_pos = np.asarray(cube_pos, float), np.asarray(tray_pos, float)
        yaw = self.grasp_yaw(cube_pos, cube_yaw)
        grasp = cube_pos.copy()
        grasp[2] = max(cube_pos[2], CUBE_HALF) - self.grasp_depth
        above = grasp + [0, 0, self.approach_height]
        lifted = grasp.copy()
        lifted[2] = self.carry_height
        place_yaw = yaw + wrap(np.arctan2(tray_pos[1], tray_pos[0]) - np.arctan2(grasp[1], grasp[0]))
        over_tray = np.array([tray_pos[0], tray_pos[1], self.carry_height])
        drop = np.array([tray_pos[0], tray_pos[1], TRAY_HEIGHT + CUBE_HALF + 0.012])

        if from_pose is None:  # from a joint configuration: joint-space approach
            seed = q_start.copy()
            seed[:ARM_JOINTS] = [np.arctan2(above[1], above[0]), -0.3, 0.6, 1.1, 0.0]
            q_above = self._solve(above, yaw, seed)
            q_above[5] = GRIPPER_OPEN
            traj: list[np.ndarray] = self._joint(q_start, q_above, t.approach)
        else:  # from a Cartesian pose (after a previous placement): arc at carry height, then down
            pos, from_yaw = from_pose
            start = np.array([pos[0], pos[1], self.carry_height])
            traj = self._cartesian(q_start, pos, start, from_yaw, from_yaw, GRIPPER_OPEN, t.retreat)
            traj += self._cartesian(traj[-1], start, above, from_yaw, yaw, GRIPPER_OPEN, t.carry, polar=True)
        traj += self._cartesian(traj[-1], above, grasp, yaw, yaw, GRIPPER_OPEN, t.descend)
        q = traj[-1].copy()
        n_close = self._n(t.close)
        for k in range(1, n_close + 1):
            q = q.copy()
            q[5] = GRIPPER_OPEN + float(min_jerk(k / n_close)) * (GRIPPER_CLOSED - GRIPPER_OPEN)
            traj.append(q)
        traj += [q.copy() for _ in range(self._n(t.settle))]
        traj += self._cartesian(q, grasp, lifted, yaw, yaw, GRIPPER_CLOSED, t.lift)
        traj += self._cartesian(
            traj[-1], lifted, over_tray, yaw, place_yaw, GRIPPER_CLOSED, t.carry, polar=True
        )
        traj += self._cartesian(traj[-1], over_tray, drop, place_yaw, place_yaw, GRIPPER_CLOSED, t.lower)
        q = traj[-1].copy()
        n_rel = self._n(t.release)
        for k in range(1, n_rel + 1):
            q = q.copy()
            q[5] = GRIPPER_CLOSED + float(min_jerk(k / n_rel)) * (GRIPPER_OPEN - GRIPPER_CLOSED)
            traj.append(q)
        up = drop + [0, 0, 0.06]
        traj += self._cartesian(q, drop, up, place_yaw, place_yaw, GRIPPER_OPEN, t.retreat)
        return traj, up, place_yaw

    def plan_sequence(
        self, q_start: np.ndarray, items: list[tuple[np.ndarray, float, np.ndarray]]
    ) -> np.ndarray:
        """Pick-and-place each (cube position, cube yaw, tray position) in turn, then return home.

        Returns a (T, 6) array of joint targets at ``rate`` Hz, starting one tick after ``q_start``."""
        q_start = np.asarray(q_start, dtype=float)
        home = q_start.copy() if self.home is None else self.home.copy()
        traj: list[np.ndarray] = []
        q, pose = q_start, None
        for cube_pos, cube_yaw, tray_pos in items:
            seg, up, yaw = self._pick_place(q, cube_pos, cube_yaw, tray_pos, pose)
            traj += seg
            q, pose = traj[-1], (up, yaw)
        traj += self._joint(q, home, self.timing.home)
        traj += [home.copy() for _ in range(self._n(self.timing.hold))]
        out = np.array(traj)
        for i in range(len(out)):
            out[i] += self.kin.gravity_feedforward(out[i])
        return np.clip(out, self.kin.lower, self.kin.upper)

    def plan(
        self, q_start: np.ndarray, cube_pos: np.ndarray, cube_yaw: float, tray_pos: np.ndarray
    ) -> np.ndarray:
        """One pick-and-place from ``q_start`` back to home: (T, 6) joint targets at ``rate`` Hz."""
        return self.plan_sequence(q_start, [(cube_pos, cube_yaw, tray_pos)])


class ScriptedExpert:
    """The expert on the simulator's true state: ``act()`` returns the next joint targets for ``sim.step``."""

    def __init__(self, sim, rate: float | None = None) -> None:
        self.sim = sim
        self.planner = PickPlacePlanner(
            sim.model, sim.joint_names, rate or sim.config.control_rate, home=sim.config.home_pose
        )
        self.plan: np.ndarray | None = None
        self.index = 0

    def reset(self) -> np.ndarray:
        """Plan from the current true state (call after ``sim.reset``); returns the plan."""
        task = self.sim.task
        items = [(task.cube_position(c), task.cube_yaw(c), task.tray_position(t)) for c, t in task.pairs]
        self.plan = self.planner.plan_sequence(self.sim.joint_positions, items)
        self.index = 0
        return self.plan

    @property
    def done(self) -> bool:
        return self.plan is not None and self.index >= len(self.plan)

    def act(self) -> np.ndarray:
        if self.plan is None:
            self.reset()
        assert self.plan is not None
        action = self.plan[min(self.index, len(self.plan) - 1)]
        self.index += 1
        return action


def run_expert_episode(sim, seed: int, settle_steps: int = 15) -> bool:
    """Reset ``sim`` with ``seed``, execute the expert's whole plan, return task success."""
    sim.reset(seed)
    expert = ScriptedExpert(sim)
    expert.reset()
    while not expert.done:
        sim.step(expert.act())
    for _ in range(settle_steps):
        sim.step(expert.plan[-1])
    return sim.task_success()
