"""Tasks of the simulator: randomised start states from a seed and success detection (no rclpy).

``pick_place``: a red 2.5 cm cube and an open blue tray lie on the table in front of the arm, on opposite
sides of its centre line (which side is drawn from the seed), at random distances; the cube has a random yaw.
Success: the cube rests inside the tray (centre within the inner walls, below the rim) and is released.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from smolvla_sim.model import CUBE_HALF, TRAY_HEIGHT, TRAY_INNER_HALF

if TYPE_CHECKING:
    from smolvla_sim.sim import ArmSim

DEFAULT_TASK_TEXT = {"pick_place": "Pick up the red cube and place it in the blue box."}
TASKS = tuple(DEFAULT_TASK_TEXT)


class PickPlaceTask:
    """Pick the cube and place it in the tray."""

    name = "pick_place"
    text = DEFAULT_TASK_TEXT["pick_place"]
    # Polar placement ranges around the arm base (metres, radians).
    cube_radius = (0.17, 0.27)
    cube_azimuth = (0.25, 0.7)
    tray_radius = (0.19, 0.26)
    tray_azimuth = (0.4, 0.8)

    def __init__(self, sim: ArmSim) -> None:
        self.sim = sim
        m = sim.model
        self._cube_qadr = m.jnt_qposadr[m.joint("cube").id]
        self._cube_body = m.body("cube").id
        self._tray_body = m.body("tray").id
        self._gripper_geoms = {m.geom(n).id for n in ("fixed_jaw", "moving_pad", "jaw_strut", "palm")}
        self._cube_geom = m.geom("cube").id

    def reset(self, rng: np.random.Generator) -> None:
        side = 1.0 if rng.random() < 0.5 else -1.0
        cr, ca = rng.uniform(*self.cube_radius), side * rng.uniform(*self.cube_azimuth)
        tr, ta = rng.uniform(*self.tray_radius), -side * rng.uniform(*self.tray_azimuth)
        yaw = rng.uniform(-np.pi / 4, np.pi / 4)
        m, d = self.sim.model, self.sim.data
        m.body_pos[self._tray_body] = [tr * np.cos(ta), tr * np.sin(ta), 0.0]
        q = self._cube_qadr
        d.qpos[q : q + 3] = [cr * np.cos(ca), cr * np.sin(ca), CUBE_HALF + 0.0005]
        d.qpos[q + 3 : q + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]

    def cube_position(self) -> np.ndarray:
        return self.sim.data.xpos[self._cube_body].copy()

    def tray_position(self) -> np.ndarray:
        return self.sim.model.body_pos[self._tray_body].copy()

    def cube_yaw(self) -> float:
        w, x, y, z = self.sim.data.xquat[self._cube_body]
        return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    def object_poses(self) -> dict[str, np.ndarray]:
        d = self.sim.data
        tray = np.concatenate([self.tray_position(), [1.0, 0.0, 0.0, 0.0]])
        return {"cube": np.concatenate([d.xpos[self._cube_body], d.xquat[self._cube_body]]), "tray": tray}

    def cube_in_gripper_contact(self) -> bool:
        d = self.sim.data
        for i in range(d.ncon):
            g1, g2 = d.contact[i].geom1, d.contact[i].geom2
            if (g1 == self._cube_geom and g2 in self._gripper_geoms) or (
                g2 == self._cube_geom and g1 in self._gripper_geoms
            ):
                return True
        return False

    def success(self) -> bool:
        cube, tray = self.cube_position(), self.tray_position()
        inside = bool(np.all(np.abs(cube[:2] - tray[:2]) < TRAY_INNER_HALF))
        below_rim = cube[2] < TRAY_HEIGHT
        return inside and below_rim and not self.cube_in_gripper_contact()


def make_task(name: str, sim: ArmSim) -> PickPlaceTask:
    if name == "pick_place":
        return PickPlaceTask(sim)
    raise ValueError(f"unknown task '{name}' (known: {', '.join(TASKS)})")


__all__ = ["TASKS", "DEFAULT_TASK_TEXT", "PickPlaceTask", "make_task"]
