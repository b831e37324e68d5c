"""Tasks of the simulator: randomised start states from a seed and success detection (no rclpy).

``pick_place``: a red 2.5 cm cube and an open blue tray lie on the table in front of the arm, on opposite
sides of its centre line (which side is drawn from the seed), at random distances; the cube has a random yaw.
Success: the cube rests inside the tray (centre within the inner walls, below the rim) and is released.

``sort``: a red and a green cube, a blue and a purple tray at random non-overlapping places in front of the
arm; success when the red cube is in the blue tray and the green cube in the purple tray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from smolvla_sim.model import CUBE_HALF, TASK_OBJECTS, TRAY_HEIGHT, TRAY_INNER_HALF

if TYPE_CHECKING:
    from smolvla_sim.sim import ArmSim

DEFAULT_TASK_TEXT = {
    "pick_place": "Pick up the red cube and place it in the blue box.",
    "sort": "Put the red cube in the blue box and the green cube in the purple box.",
}
TASKS = tuple(DEFAULT_TASK_TEXT)


class CubeTrayTask:
    """Cubes to be put into their trays; ``pairs`` lists (cube, tray) body names."""

    name = "pick_place"

    def __init__(self, sim: ArmSim) -> None:
        self.sim = sim
        self.text = DEFAULT_TASK_TEXT[self.name]
        m = sim.model
        self.pairs = [(cube, tray) for cube, _, tray, _, _ in TASK_OBJECTS[self.name]]
        self._qadr = {c: m.jnt_qposadr[m.joint(c).id] for c, _ in self.pairs}
        self._body = {n: m.body(n).id for pair in self.pairs for n in pair}
        self._gripper_geoms = {m.geom(n).id for n in ("fixed_jaw", "moving_pad", "jaw_strut", "palm")}
        self._cube_geoms = {m.geom(c).id for c, _ in self.pairs}

    # -- placement -----------------------------------------------------------------------------------------
    def _place(self, cube: str, tray: str, cube_xy, tray_xy, yaw: float) -> None:  # type: ignore[no-untyped-def]
        m, d = self.sim.model, self.sim.data
        m.body_pos[self._body[tray]] = [tray_xy[0], tray_xy[1], 0.0]
        q = self._qadr[cube]
        d.qpos[q : q + 3] = [cube_xy[0], cube_xy[1], CUBE_HALF + 0.0005]
        d.qpos[q + 3 : q + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]

    def reset(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    # -- state ---------------------------------------------------------------------------------------------
    def cube_position(self, cube: str = "cube") -> np.ndarray:
        return self.sim.data.xpos[self._body[cube]].copy()

    def tray_position(self, tray: str = "tray") -> np.ndarray:
        return self.sim.model.body_pos[self._body[tray]].copy()

    def cube_yaw(self, cube: str = "cube") -> float:
        w, x, y, z = self.sim.data.xquat[self._body[cube]]
        return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    def object_poses(self) -> dict[str, np.ndarray]:
        """name -> (x, y, z, qw, qx, qy, qz), in the order cube, tray[, cube_b, tray_b]."""
        d = self.sim.data
        out = {}
        for cube, tray in self.pairs:
            out[cube] = np.concatenate([d.xpos[self._body[cube]], d.xquat[self._body[cube]]])
            out[tray] = np.concatenate([self.tray_position(tray), [1.0, 0.0, 0.0, 0.0]])
        return out

    def cube_in_gripper_contact(self) -> bool:
        d = self.sim.data
        for i in range(d.ncon):
            g1, g2 = d.contact[i].geom1, d.contact[i].geom2
            if (g1 in self._cube_geoms and g2 in self._gripper_geoms) or (
                g2 in self._cube_geoms and g1 in self._gripper_geoms
            ):
                return True
        return False

    def in_tray(self, cube: str, tray: str) -> bool:
        c, t = self.cube_position(cube), self.tray_position(tray)
        return bool(np.all(np.abs(c[:2] - t[:2]) < TRAY_INNER_HALF)) and c[2] < TRAY_HEIGHT

    def success(self) -> bool:
        return all(self.in_tray(c, t) for c, t in self.pairs) and not self.cube_in_gripper_contact()


class PickPlaceTask(CubeTrayTask):
    """Pick the cube and place it in the tray."""

    name = "pick_place"
    # Polar placement ranges around the arm base (metres, radians).
    cube_radius = (0.17, 0.27)
    cube_azimuth = (0.25, 0.7)
    tray_radius = (0.19, 0.26)
    tray_azimuth = (0.4, 0.8)

    def reset(self, rng: np.random.Generator) -> None:
        side = 1.0 if rng.random() < 0.5 else -1.0
        cr, ca = rng.uniform(*self.cube_radius), side * rng.uniform(*self.cube_azimuth)
        tr, ta = rng.uniform(*self.tray_radius), -side * rng.uniform(*self.tray_azimuth)
        yaw = rng.uniform(-np.pi / 4, np.pi / 4)
        self._place(
            "cube", "tray", (cr * np.cos(ca), cr * np.sin(ca)), (tr * np.cos(ta), tr * np.sin(ta)), yaw
        )


class SortTask(CubeTrayTask):
    """Two cubes, two trays: each cube into the tray of its colour pair."""

    name = "sort"
    tray_radius = (0.2, 0.26)
    tray_azimuth = (0.6, 1.0)
    cube_radius = (0.14, 0.28)
    cube_azimuth = (0.0, 0.65)
    cube_gap = 0.09  # minimum distance between the cubes' centres
    tray_gap = (
        0.125  # minimum distance (max norm) of a cube's centre from a tray's centre: room for the open jaw
    )

    def _sample(self, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
        side = 1.0 if rng.random() < 0.5 else -1.0
        trays = []
        for sign in (side, -side):  # one tray on each side of the centre line
            r, a = rng.uniform(*self.tray_radius), sign * rng.uniform(*self.tray_azimuth)
            trays.append(np.array([r * np.cos(a), r * np.sin(a)]))
        cubes = []
        for _ in range(2):
            r, a = rng.uniform(*self.cube_radius), rng.choice([-1.0, 1.0]) * rng.uniform(*self.cube_azimuth)
            cubes.append(np.array([r * np.cos(a), r * np.sin(a)]))
        return trays, cubes

    def _valid(self, trays: list[np.ndarray], cubes: list[np.ndarray]) -> bool:
        far = all(np.max(np.abs(c - t)) > self.tray_gap for c in cubes for t in trays)
        visible = all(abs(c[1]) > 0.045 for c in cubes)  # not under the ready pose's gripper (top camera)
        return far and visible and np.linalg.norm(cubes[0] - cubes[1]) > self.cube_gap

    def reset(self, rng: np.random.Generator) -> None:
        for _ in range(1000):
            trays, cubes = self._sample(rng)
            if self._valid(trays, cubes):
                break
        for (cube, tray), c_xy, t_xy in zip(self.pairs, cubes, trays):
            self._place(cube, tray, c_xy, t_xy, rng.uniform(-np.pi / 4, np.pi / 4))


def make_task(name: str, sim: ArmSim) -> CubeTrayTask:
    if name == "pick_place":
        return PickPlaceTask(sim)
    if name == "sort":
        return SortTask(sim)
    raise ValueError(f"unknown task '{name}' (known: {', '.join(TASKS)})")


__all__ = ["TASKS", "DEFAULT_TASK_TEXT", "CubeTrayTask", "PickPlaceTask", "SortTask", "make_task"]
