"""The ``smolvla`` backend: :class:`smolvla_policy.model.policy.SmolVLAPolicy` as a PolicyBackend.

- cameras: observation camera name -> the checkpoint's image feature key, from ``camera_map`` or, when it is
  empty, by name (``top`` matches ``observation.images.top``) and then by order;
- joints: the request's joints are reordered to the checkpoint's joint order (the SO-10x joints unless the
  option ``joint_names`` says otherwise) and converted to checkpoint units with ``JointUnits``
  (``joint_units`` overrides per joint); the predicted chunk is converted back to radians in the request's
  order. lerobot's units: arm joints in degrees, the gripper 0..100 % of the arm's joint limits as given by
  ``set_robot_model`` (the policy server passes the ``/robot_description`` of the driver -- the calibrated
  range_min..range_max, exactly as lerobot normalises -- or of the simulator).

Options: checkpoint, tokenizer, device (cpu | cuda | mps | auto), dtype, num_steps, camera_map, joint_units,
joint_names, num_threads (torch intra-op threads; 0 = torch's default), warmup_image_size, robot (so101 |
so100: its description's limits until the arm's arrive).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from smolvla_policy.backend import BadRequest, ChunkRequest, StepCallback
from smolvla_policy.server.backends import RobotModel, make_joint_units
from so_arm_description.robot_spec import JOINT_NAMES


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def map_cameras(
    feature_keys: Sequence[str], cameras: Sequence[str], camera_map: Mapping[str, str]
) -> dict[str, str]:
    """feature key -> observation camera; raises BadRequest naming the first feature without a camera."""
    out: dict[str, str] = {}
    if camera_map:
        for cam, key in camera_map.items():
            if key in feature_keys and cam in cameras:
                out[key] = cam
    else:
        used: set[str] = set()
        for key in feature_keys:
            short = key.rsplit(".", 1)[-1]
            for cam in cameras:
                if cam not in used and cam in (key, short):
                    out[key] = cam
                    used.add(cam)
                    break
        rest = [c for c in cameras if c not in used]
        for key in feature_keys:
            if key not in out and rest:
                out[key] = rest.pop(0)
    missing = [k for k in feature_keys if k not in out]
    if missing:
        how = f"camera_map {dict(camera_map)}" if camera_map else "matching by name, then by order"
        raise BadRequest(
            f"missing camera for the checkpoint's image feature '{missing[0]}' "
            f"(observation cameras: {', '.join(cameras) or 'none'}; {how})"
        )
    return out


class SmolVLABackend:
    #: Applies real-time chunking (``ChunkRequest.rtc``).
    supports_rtc = True

    def __init__(
        self,
        policy: Any,
        joint_names: Sequence[str],
        units: Any,
        camera_map: Mapping[str, str] | None = None,
        warmup_image_size: int = 512,
        unit_overrides: Mapping[str, str] | None = None,
        robot_model: RobotModel | None = None,
    ) -> None:
        self.policy = policy
        self.joint_names = list(joint_names)
        self.units = units
        self.unit_overrides = dict(unit_overrides or {})
        self.robot_model = robot_model
        self.camera_map = dict(camera_map or {})
        self.warmup_image_size = int(warmup_image_size)
        if int(policy.state_dim) < len(self.joint_names) or int(policy.action_dim) < len(self.joint_names):
            raise ValueError(
                f"checkpoint has state_dim {policy.state_dim} / action_dim {policy.action_dim}, "
                f"fewer than the {len(self.joint_names)} joints {self.joint_names}"
            )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SmolVLABackend:
        import torch

        from smolvla_policy.model.policy import SmolVLAPolicy

        threads = int(options.get("num_threads") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        policy = SmolVLAPolicy.from_pretrained(
            str(options["checkpoint"]),
            tokenizer=options.get("tokenizer") or None,
            device=resolve_device(str(options.get("device") or "auto")),
            dtype=str(options.get("dtype") or "float32"),
        )
        if options.get("num_steps"):
            policy.num_steps = int(options["num_steps"])
        names = list(options.get("joint_names") or JOINT_NAMES[: int(policy.action_dim)])
        overrides = dict(options.get("joint_units") or {})
        model = RobotModel.defaults(str(options.get("robot") or "so101"))
        return cls(
            policy,
            names,
            make_joint_units(names, overrides, model.limits),
            options.get("camera_map") or {},
            int(options.get("warmup_image_size") or 512),
            unit_overrides=overrides,
            robot_model=model,
        )

    def set_robot_model(self, model: RobotModel) -> None:
        """The arm's joint limits: the gripper's 0..100 % maps onto them from now on."""
        self.units = make_joint_units(self.joint_names, self.unit_overrides, model.limits)
        self.robot_model = model

    @property
    def chunk_size(self) -> int:
        return int(self.policy.chunk_size)

    @property
    def num_steps(self) -> int:
        return int(self.policy.num_steps)

    @num_steps.setter
    def num_steps(self, value: int) -> None:
        self.policy.num_steps = int(value)

    @property
    def image_input_size(self) -> tuple[int, int] | None:
        """(width, height) the model resizes-with-pad every camera to (None: any size); reported to clients
        in the PredictChunk result so they can send compact observations."""
        size = getattr(getattr(self.policy, "config", None), "resize_imgs_with_padding", None)
        return (int(size[0]), int(size[1])) if size else None

    @property
    def camera_keys(self) -> list[str]:
        return list(self.policy.camera_keys)

    def _state(self, request: ChunkRequest, units: Any = None) -> tuple[np.ndarray, list[int]]:
        names = list(request.joint_names)
        if sorted(names) != sorted(self.joint_names):
            missing = [n for n in self.joint_names if n not in names]
            extra = [n for n in names if n not in self.joint_names]
            detail = "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unknown {', '.join(extra)}" if extra else "",
                )
                if part
            )
            expected = ", ".join(self.joint_names)
            raise BadRequest(
                f"observation joints do not match the checkpoint's joints ({expected}): {detail}"
            )
        order = [names.index(n) for n in self.joint_names]
        rad = np.asarray(request.positions, dtype=np.float64)[order]
        state = np.asarray((units or self.units).to_model(rad), dtype=np.float32)
        if state.shape[0] < int(self.policy.state_dim):  # pad extra state dims (not joints) with zeros
            state = np.concatenate([state, np.zeros(int(self.policy.state_dim) - state.shape[0], np.float32)])
        return state, order

    def check(self, request: ChunkRequest) -> None:
        """Raise BadRequest when the request's joints or cameras do not fit the checkpoint (cheap; called by
        the server on arrival, so such a goal is aborted at once instead of taking its turn)."""
        self._state(request)
        map_cameras(self.camera_keys, list(request.images), self.camera_map)

    def predict(self, request: ChunkRequest, step_callback: StepCallback | None = None) -> np.ndarray:
        units = self.units  # one mapping per chunk, even if the robot model changes meanwhile
        state, order = self._state(request, units)
        cams = map_cameras(self.camera_keys, list(request.images), self.camera_map)
        images = {key: request.images[cam] for key, cam in cams.items()}
        actions = self.policy.predict_chunk(
            images, state, request.task, seed=request.seed, step_callback=step_callback, **self._rtc(request)
        )
        actions = np.asarray(actions, dtype=np.float64)[:, : len(self.joint_names)]
        rad = np.asarray(units.to_ros(actions), dtype=np.float64)
        out = np.empty_like(rad)
        out[:, order] = rad  # back to the request's joint order
        return out

    def _rtc(self, request: ChunkRequest) -> dict[str, Any]:
        """predict_chunk's RTC arguments: the prefix reordered to the checkpoint's joints, in its units."""
        rtc = request.rtc
        if rtc is None:
            return {}
        from smolvla_policy.model.rtc import RTCConfig

        names = list(request.joint_names)
        order = [names.index(n) for n in self.joint_names]
        prefix = np.asarray(self.units.to_model(np.asarray(rtc.prefix, dtype=np.float64)[:, order]))
        try:
            config = RTCConfig(
                enabled=True,
                prefix_attention_schedule=rtc.prefix_attention_schedule,
                max_guidance_weight=rtc.max_guidance_weight,
                execution_horizon=rtc.execution_horizon,
            )
        except ValueError as exc:
            raise BadRequest(f"RTC settings: {exc}") from None
        return {
            "prev_chunk": prefix.astype(np.float32),
            "inference_delay": int(rtc.inference_delay),
            "rtc_config": config,
        }

    def warmup(self) -> None:
        s = self.warmup_image_size
        request = ChunkRequest(
            images={key: np.zeros((s, s, 3), np.uint8) for key in self.camera_keys},
            joint_names=list(self.joint_names),
            positions=np.zeros(len(self.joint_names)),
            task="warm up",
            seed=0,
        )
        self.predict(request)
