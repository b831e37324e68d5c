"""Policy backends without a model (``scripted``, ``replay``) and the backend factory (plain Python).

Both model-free backends report ``num_steps`` step callbacks per chunk (so feedback and cancel behave as with
the model) and return joint positions in radians in the request's joint order. Artificial latency is added by
the scheduler (parameter ``latency_ms``), not here.

The arm's joint limits reach every backend as a :class:`RobotModel` through ``set_robot_model`` (the policy
server reads them from ``/robot_description``, i.e. the driver's calibration or the simulator's arm; until one
arrives, the description defaults of the ``robot`` option): ``scripted`` and ``replay`` clamp to them, and the
lerobot unit mapping (``replay`` in lerobot units, ``smolvla``) maps the gripper's 0..100 onto them.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smolvla_policy.backend import BadRequest, ChunkRequest, InferenceCancelled, PolicyBackend, StepCallback
from so_arm_description.robot_model import default_limits, limits_from_urdf, robot_from_urdf
from so_arm_description.robot_spec import JOINT_NAMES
from so_arm_description.units import JointUnits

DEFAULT_CHUNK_SIZE = 50
DEFAULT_NUM_STEPS = 10


def report_steps(step_callback: StepCallback | None, num_steps: int) -> None:
    """Call the step callback ``num_steps`` times; raise InferenceCancelled when it returns False."""
    for step in range(1, num_steps + 1):
        if step_callback is not None and step_callback(step, num_steps) is False:
            raise InferenceCancelled(f"cancelled at step {step}/{num_steps}")


def per_joint(value: Any, names: Sequence[str], default: float, what: str) -> np.ndarray:
    """Per-joint values for ``names`` from a scalar, a dict joint -> value or a list in JOINT_NAMES order."""
    if value is None:
        return np.full(len(names), float(default))
    if isinstance(value, (int, float)):
        return np.full(len(names), float(value))
    if isinstance(value, Mapping):
        return np.array([float(value.get(n, default)) for n in names])
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != len(JOINT_NAMES):
            raise ValueError(f"{what}: a list must have {len(JOINT_NAMES)} values ({', '.join(JOINT_NAMES)})")
        table = dict(zip(JOINT_NAMES, (float(v) for v in value)))
        return np.array([table.get(n, float(default)) for n in names])
    raise ValueError(f"{what}: expected a number, a list or a joint -> value object, got {value!r}")


@dataclass(frozen=True)
class RobotModel:
    """The arm a backend serves: ``robot`` (so101 | so100), joint limits (rad), where they came from, and
    whether they are the arm's own (``/robot_description``: calibrated or simulated) or defaults."""

    robot: str
    limits: dict[str, tuple[float, float]]
    source: str
    from_arm: bool = False

    @classmethod
    def defaults(cls, robot: str = "so101") -> RobotModel:
        """The description's (uncalibrated) limits of ``robot``, until the arm's own arrive."""
        return cls(robot, default_limits(robot), f"{robot} description defaults")

    @classmethod
    def from_urdf(
        cls, urdf_text: str, source: str = "/robot_description", default_robot: str | None = None
    ) -> RobotModel:
        """From a URDF (RobotModelError, a ValueError, naming the problem); a description whose robot name is
        not so100/so101 counts as ``default_robot`` (its limits are used all the same)."""
        robot = robot_from_urdf(urdf_text, default_robot)
        return cls(robot, limits_from_urdf(urdf_text), source, from_arm=True)


def clamp_to_limits(
    chunk: np.ndarray, names: Sequence[str], limits: Mapping[str, tuple[float, float]]
) -> np.ndarray:
    for j, name in enumerate(names):
        if name in limits:
            lo, hi = limits[name]
            chunk[:, j] = np.clip(chunk[:, j], lo, hi)
    return chunk


class ScriptedBackend:
    """A simple planner: ``hold`` the observed pose, a ``sinusoid`` around ``center``, or move to ``target``.

    Options: mode (hold | sinusoid | target), chunk_size, num_steps, fps, center, amplitude, period_s, target,
    max_velocity (rad/s). Per-joint options take a number, a list (JOINT_NAMES order) or an object.
    """

    MODES = ("hold", "sinusoid", "target")

    def __init__(
        self,
        mode: str = "hold",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        num_steps: int = DEFAULT_NUM_STEPS,
        fps: float = 30.0,
        center: Any = None,
        amplitude: Any = 0.2,
        period_s: float = 4.0,
        target: Any = None,
        max_velocity: float = 0.5,
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"scripted backend: mode must be one of {', '.join(self.MODES)} (got '{mode}')")
        if chunk_size < 1 or num_steps < 1 or fps <= 0 or period_s <= 0 or max_velocity <= 0:
            raise ValueError(
                "scripted backend: chunk_size, num_steps, fps, period_s, max_velocity must be > 0"
            )
        self.mode, self.chunk_size, self.num_steps, self.fps = (
            mode,
            int(chunk_size),
            int(num_steps),
            float(fps),
        )
        self.center, self.amplitude, self.period_s = center, amplitude, float(period_s)
        self.target, self.max_velocity = target, float(max_velocity)
        for opt, what in ((center, "center"), (amplitude, "amplitude"), (target, "target")):
            per_joint(opt, JOINT_NAMES, 0.0, what)  # validate now, not on the first goal
        self.robot_model = RobotModel.defaults()

    def set_robot_model(self, model: RobotModel) -> None:
        """The arm's joint limits (chunks are clamped to them)."""
        self.robot_model = model

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ScriptedBackend:
        keys = ("mode", "chunk_size", "center", "amplitude", "period_s", "target", "max_velocity")
        kwargs = {k: options[k] for k in keys if options.get(k) is not None}
        kwargs["num_steps"] = int(options.get("num_steps") or DEFAULT_NUM_STEPS)
        kwargs["fps"] = float(options.get("fps") or 30.0)
        backend = cls(**kwargs)
        backend.set_robot_model(RobotModel.defaults(str(options.get("robot") or "so101")))
        return backend

    def predict(self, request: ChunkRequest, step_callback: StepCallback | None = None) -> np.ndarray:
        report_steps(step_callback, self.num_steps)
        names = request.joint_names
        fps = float(request.extras.get("fps", self.fps))
        n = self.chunk_size
        q0 = np.asarray(request.positions, dtype=np.float64)
        if self.mode == "hold":
            chunk = np.repeat(q0[None, :], n, axis=0)
        elif self.mode == "sinusoid":
            t = (request.timestep + np.arange(n)) / fps
            center = per_joint(self.center, names, 0.0, "center")
            amp = per_joint(self.amplitude, names, 0.0, "amplitude")
            chunk = center[None, :] + amp[None, :] * np.sin(2 * math.pi * t[:, None] / self.period_s)
        else:
            target = per_joint(self.target, names, 0.0, "target")
            reach = self.max_velocity * np.arange(1, n + 1)[:, None] / fps
            chunk = q0[None, :] + np.clip(target - q0, -reach, reach)
        return clamp_to_limits(chunk, names, self.robot_model.limits)

    def warmup(self) -> None:
        return None


class ReplayBackend:
    """Chunks cut from recorded actions, advancing with the observation's timestep.

    Options: path (a LeRobot v3 dataset directory, or a .npy / .npz file), episode (dataset episode index,
    default the first), key (.npz array, default 'action'), joint_names (columns of a .npy/.npz array, default
    the SO-10x joints), units (radians | lerobot: lerobot's degrees with gripper 0..100; default lerobot for a
    dataset, radians for arrays), joint_units (per joint, as the server parameter), chunk_size, num_steps,
    offset (subtracted from the timestep), loop (wrap around instead of holding the last action), robot
    (so101 | so100: limits until the arm's arrive).

    Actions in lerobot units are kept as recorded and converted with the current robot model's limits (the
    gripper's 0..100 % is a fraction of the arm's calibrated range); every chunk is clamped to those limits.
    """

    def __init__(
        self,
        actions: np.ndarray,
        joint_names: Sequence[str],
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        num_steps: int = DEFAULT_NUM_STEPS,
        offset: int = 0,
        loop: bool = False,
        units: str = "radians",
        joint_units: Mapping[str, str] | None = None,
    ) -> None:
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] != len(joint_names):
            raise ValueError(
                f"replay backend: actions of shape {actions.shape} do not match {len(joint_names)} joints"
            )
        if chunk_size < 1 or num_steps < 1:
            raise ValueError("replay backend: chunk_size and num_steps must be >= 1")
        if units not in ("radians", "lerobot"):
            raise ValueError(f"replay backend: units must be 'radians' or 'lerobot' (got '{units}')")
        self.recorded, self.joint_names = actions, list(joint_names)
        self.units, self.joint_units = units, dict(joint_units or {})
        if units == "lerobot":
            unknown = [j for j in self.joint_units if j not in self.joint_names]
            if unknown:
                raise ValueError(
                    f"joint_units names joint '{unknown[0]}', not one of {', '.join(self.joint_names)}"
                )
        self.chunk_size, self.num_steps, self.offset, self.loop = (
            int(chunk_size),
            int(num_steps),
            int(offset),
            loop,
        )
        self.set_robot_model(RobotModel.defaults())

    def set_robot_model(self, model: RobotModel) -> None:
        """The arm's joint limits: the lerobot unit mapping and the clamp follow them."""
        if self.units == "lerobot":
            units = make_joint_units(self.joint_names, self.joint_units, model.limits)
            actions = np.asarray(units.to_ros(self.recorded), dtype=np.float64)
        else:
            actions = self.recorded.copy()
        self.actions = clamp_to_limits(actions, self.joint_names, model.limits)
        self.robot_model = model

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ReplayBackend:
        path = options.get("path")
        if not path:
            raise ValueError(
                "replay backend: option 'path' (dataset directory or .npy/.npz file) is required"
            )
        path = Path(str(path)).expanduser()
        if path.is_dir():
            actions, names = load_dataset_actions(path, options.get("episode"))
            units = options.get("units") or "lerobot"
        elif path.suffix in (".npy", ".npz"):
            actions, names = load_array_actions(path, options.get("key"), options.get("joint_names"))
            units = options.get("units") or "radians"
        else:
            raise ValueError(f"replay backend: '{path}' is neither a dataset directory nor a .npy/.npz file")
        backend = cls(
            actions,
            names,
            chunk_size=int(options.get("chunk_size") or DEFAULT_CHUNK_SIZE),
            num_steps=int(options.get("num_steps") or DEFAULT_NUM_STEPS),
            offset=int(options.get("offset") or 0),
            loop=bool(options.get("loop", False)),
            units=str(units),
            joint_units=options.get("joint_units") or {},
        )
        backend.set_robot_model(RobotModel.defaults(str(options.get("robot") or "so101")))
        return backend

    def predict(self, request: ChunkRequest, step_callback: StepCallback | None = None) -> np.ndarray:
        missing = [n for n in request.joint_names if n not in self.joint_names]
        if missing:
            raise BadRequest(
                f"replay data has no joint '{missing[0]}' (it has: {', '.join(self.joint_names)})"
            )
        report_steps(step_callback, self.num_steps)
        total = self.actions.shape[0]
        idx = max(0, int(request.timestep) - self.offset) + np.arange(self.chunk_size)
        idx = idx % total if self.loop else np.minimum(idx, total - 1)
        cols = [self.joint_names.index(n) for n in request.joint_names]
        return self.actions[np.ix_(idx, cols)]

    def warmup(self) -> None:
        return None


def _strip_suffix(name: str) -> str:
    return name[: -len(".pos")] if name.endswith(".pos") else name


def load_dataset_actions(root: Path, episode: Any = None) -> tuple[np.ndarray, list[str]]:
    """The ``action`` column of one episode of a LeRobot v3 dataset, in frame order, and its joint names."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    info_path = root / "meta" / "info.json"
    if not info_path.exists():
        raise ValueError(f"replay backend: '{root}' has no meta/info.json (not a LeRobot v3 dataset)")
    info = json.loads(info_path.read_text())
    feature = info.get("features", {}).get("action")
    if not feature:
        raise ValueError(f"replay backend: dataset '{root}' has no 'action' feature")
    names = feature.get("names") or list(JOINT_NAMES)
    if isinstance(names, Mapping):  # older layouts: {"motors": [...]}
        names = next(iter(names.values()))
    names = [_strip_suffix(str(n)) for n in names]
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    if not files:
        raise ValueError(f"replay backend: dataset '{root}' has no data/chunk-*/file-*.parquet")
    wanted = None if episode is None else int(episode)
    rows: list[np.ndarray] = []
    frames: list[np.ndarray] = []
    for f in files:
        table = pq.read_table(f, columns=["action", "episode_index", "frame_index"])
        if wanted is None:
            wanted = int(pc.min(table["episode_index"]).as_py())
        table = table.filter(pc.equal(table["episode_index"], wanted))
        if table.num_rows:
            rows.append(np.asarray(table["action"].to_pylist(), dtype=np.float64))
            frames.append(np.asarray(table["frame_index"].to_pylist()))
    if not rows:
        raise ValueError(f"replay backend: dataset '{root}' has no frames of episode {wanted}")
    actions, order = np.concatenate(rows), np.argsort(np.concatenate(frames), kind="stable")
    return actions[order], names


def load_array_actions(path: Path, key: Any = None, joint_names: Any = None) -> tuple[np.ndarray, list[str]]:
    data = np.load(path)
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            k = key or ("action" if "action" in data.files else data.files[0])
            if k not in data.files:
                raise ValueError(
                    f"replay backend: '{path}' has no array '{k}' (has: {', '.join(data.files)})"
                )
            actions = np.asarray(data[k])
    else:
        actions = np.asarray(data)
    names = list(joint_names) if joint_names else list(JOINT_NAMES)
    return actions, names


def lerobot_to_radians(
    actions: np.ndarray,
    names: Sequence[str],
    joint_units: Mapping[str, str],
    limits: Mapping[str, tuple[float, float]],
) -> np.ndarray:
    """Checkpoint/dataset units (lerobot SO-10x: degrees, gripper 0..100 of ``limits``) -> ROS radians."""
    return np.asarray(make_joint_units(names, joint_units, limits).to_ros(actions), dtype=np.float64)


def make_joint_units(
    names: Sequence[str],
    joint_units: Mapping[str, str] | None,
    limits: Mapping[str, tuple[float, float]],
) -> JointUnits:
    """``JointUnits`` for ``names``: lerobot's SO-10x convention (degrees, the gripper 0..100 % of its limits
    in ``limits``, i.e. the arm's calibrated range) with the per-joint overrides of the ``joint_units``
    parameter (joint -> degrees | radians | range_0_100)."""
    try:
        return JointUnits.lerobot(limits, list(names), overrides=joint_units)
    except ValueError as exc:
        raise ValueError(str(exc).replace("unit override", "joint_units")) from None


def make_backend(name: str, options: Mapping[str, Any]) -> PolicyBackend:
    """Create the backend ``name`` (smolvla | replay | scripted | 'package.module:factory')."""
    if name == "scripted":
        return ScriptedBackend.from_options(options)
    if name == "replay":
        return ReplayBackend.from_options(options)
    if name == "smolvla":
        from smolvla_policy.server.smolvla_backend import SmolVLABackend

        return SmolVLABackend.from_options(options)
    module_name, sep, attr = name.partition(":")
    if not sep:
        raise ValueError(f"unknown backend '{name}'")
    factory: Any = importlib.import_module(module_name)
    for part in attr.split("."):  # 'module:function' or 'module:Class.classmethod'
        factory = getattr(factory, part, None)
    if factory is None or not callable(factory):
        raise ValueError(f"backend plug-in: module '{module_name}' has no '{attr}'")
    backend = factory(dict(options))
    if not isinstance(backend, PolicyBackend):
        raise TypeError(f"backend plug-in '{name}' returned {type(backend).__name__}, not a PolicyBackend")
    return backend
