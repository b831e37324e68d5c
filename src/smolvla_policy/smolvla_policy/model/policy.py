"""High-level SmolVLA inference API used by the policy server and the parity test."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backend import BadRequest
from .configuration import SmolVLAConfig, VLMConfig
from .modeling import SmolVLAModel, Timings, pad_vector
from .processor import Normalizer, preprocess_image, tokenize
from .rtc import RTCConfig, RTCGuidance

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
#: CPU-only faster mode: float32 model whose Linear layers run as dynamically quantised int8 (see
#: :meth:`SmolVLAPolicy.quantize_dynamic_int8`).
INT8_DYNAMIC = "int8_dynamic"
INT8_PARTS = ("vision", "connector")  # default: half the deviation of quantising everything, most of the gain
INT8_ALL_PARTS = ("vision", "connector", "text", "expert")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype must be float32 or bfloat16, got {dtype}")
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError as exc:
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}") from exc


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device; ``"auto"`` = cuda, else mps, else cpu (as the policy server); a bad name is a
    ValueError naming the choices."""
    if isinstance(device, str) and device.strip().lower() == "auto":
        mps = getattr(torch.backends, "mps", None)
        device = (
            "cuda"
            if torch.cuda.is_available()
            else "mps"
            if mps is not None and mps.is_available()
            else "cpu"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: use cpu, cuda, cuda:N, mps or auto") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' requested but MPS is not available")
    return dev


def _release_freed_memory() -> None:
    """Give heap pages freed by load-time conversions back to the OS (glibc ``malloc_trim``; else no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class SmolVLAPolicy(nn.Module):
    """SmolVLA with its processors. ``state_dict()`` names equal lerobot's ``model.safetensors``."""

    def __init__(
        self,
        config: SmolVLAConfig,
        vlm_config: VLMConfig | None = None,
        tokenizer: Any = None,
        normalizer: Normalizer | None = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = "float32",
    ):
        super().__init__()
        self.config = config
        self.vlm_config = vlm_config or VLMConfig.smolvlm2_500m()
        self.tokenizer = tokenizer
        self.normalizer = normalizer or Normalizer.from_config(config)
        self.timings = Timings()
        self.source: str | None = None
        self._num_steps = config.num_steps
        #: Real-time chunking settings used when ``predict_chunk`` gets a ``prev_chunk``; off by default.
        self.rtc_config = RTCConfig()
        self._image_token_ids_from_tokenizer()
        if str(device) == "meta":
            with torch.device("meta"):
                self.model = SmolVLAModel(config, self.vlm_config)
        else:
            self.model = SmolVLAModel(config, self.vlm_config)
            if dtype is not None:
                self.finalize(device=device, dtype=dtype)

    def _image_token_ids_from_tokenizer(self) -> None:
        """SmolVLM's <fake_token_around_image> / <global-img> ids come from its tokenizer (as lerobot)."""
        tok = self.tokenizer
        if tok is None or not hasattr(tok, "convert_tokens_to_ids"):
            return
        ids = [tok.convert_tokens_to_ids(t) for t in ("<fake_token_around_image>", "<global-img>")]
        unk = getattr(tok, "unk_token_id", None)
        if all(isinstance(i, int) and i != unk for i in ids):
            self.vlm_config.fake_image_token_id, self.vlm_config.global_image_token_id = ids

    # ---- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike[str],
        tokenizer: Any = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
        vlm_config: VLMConfig | None = None,
    ) -> SmolVLAPolicy:
        from .checkpoint import load_policy

        return load_policy(
            path_or_hub_id, tokenizer=tokenizer, device=device, dtype=dtype, vlm_config=vlm_config
        )

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Any:
        from .checkpoint import save_policy

        return save_policy(self, directory)

    def finalize(
        self, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32"
    ) -> SmolVLAPolicy:
        """Move to ``device``; float32 everywhere, or the VLM + expert in bfloat16 (projections stay fp32)."""
        quantize = isinstance(dtype, str) and dtype.lower() == INT8_DYNAMIC
        self.device = resolve_device(device)
        self.dtype = torch.float32 if quantize else resolve_dtype(dtype)
        self.quantized: tuple[str, ...] = ()
        self.to(self.device)
        self.to(torch.float32)
        if self.dtype != torch.float32:
            self.model.set_compute_dtype(self.dtype)
        self.eval()
        self.model.vlm_with_expert.vlm.requires_grad_(False)
        if self.device.type == "cpu":
            self.model.use_column_major_small_gemms()
            _release_freed_memory()
        if quantize:
            self.quantize_dynamic_int8()
        return self

    def quantize_dynamic_int8(self, parts: tuple[str, ...] = INT8_PARTS) -> SmolVLAPolicy:
        """Faster CPU inference: Linear layers of ``parts`` (vision, connector, text, expert) run with int8
        weights and dynamically quantised activations (PyTorch dynamic quantisation, fp32 accumulation).
        Projections, norms, RoPE, attention and the Euler loop stay fp32. Inference only; not saveable."""
        import warnings

        from torch.ao.quantization import quantize_dynamic

        if self.device.type != "cpu" or self.dtype != torch.float32:
            raise ValueError("int8 dynamic quantisation needs a float32 policy on the CPU")
        backbone = self.model.vlm_with_expert.vlm.model
        modules = {
            "vision": backbone.vision_model.encoder,
            "connector": backbone.connector,
            "text": backbone.text_model.layers,
            "expert": self.model.vlm_with_expert.lm_expert.layers,
        }
        unknown = set(parts) - set(modules)
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}; choose from {sorted(modules)}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for part in parts:
                quantize_dynamic(modules[part], {nn.Linear}, dtype=torch.qint8, inplace=True)
        self.quantized = tuple(sorted(set(self.quantized) | set(parts)))
        return self

    # ---- properties ----------------------------------------------------------------------------------------
    @property
    def camera_keys(self) -> list[str]:
        return self.config.image_features

    @property
    def required_camera_keys(self) -> list[str]:
        return [k for k in self.camera_keys if ".empty_camera_" not in k]

    @property
    def state_dim(self) -> int:
        return self.config.state_dim

    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    @property
    def chunk_size(self) -> int:
        return self.config.chunk_size

    @property
    def num_steps(self) -> int:
        return self._num_steps

    @num_steps.setter
    def num_steps(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError("num_steps must be >= 1")
        self._num_steps = int(value)

    # ---- inputs --------------------------------------------------------------------------------------------
    def _images(self, images: dict[str, np.ndarray]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        present = [k for k in self.camera_keys if k in images]
        missing = [k for k in self.camera_keys if k not in images]
        if not present:
            raise BadRequest(f"no camera image given; the checkpoint expects {self.required_camera_keys}")
        if len(missing) > self.config.empty_cameras:
            allowed = self.config.empty_cameras
            real = [k for k in missing if ".empty_camera_" not in k] or missing
            raise BadRequest(
                f"missing camera image(s): {', '.join(real)} (checkpoint cameras: {self.camera_keys}; "
                f"empty_cameras allows {allowed} missing)"
            )
        tensors = []
        for key in present:
            img = images[key]
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
                raise BadRequest(f"camera {key}: expected a uint8 HxWx3 RGB array, got {desc}")
            if img.shape[0] < 1 or img.shape[1] < 1:
                raise BadRequest(f"camera {key}: empty image {img.shape}")
            tensors.append(preprocess_image(img, self.config))
        masks = [torch.ones(1, dtype=torch.bool) for _ in present]
        for _ in missing[: self.config.empty_cameras]:
            tensors.append(torch.full_like(tensors[0], -1.0))
            masks.append(torch.zeros(1, dtype=torch.bool))
        return torch.cat(tensors, dim=0), masks

    def _state(self, state: np.ndarray) -> torch.Tensor:
        arr = np.asarray(state, dtype=np.float32).reshape(-1)
        if arr.shape[0] != self.state_dim:
            raise BadRequest(f"state has {arr.shape[0]} values, the checkpoint expects {self.state_dim}")
        if not np.all(np.isfinite(arr)):
            raise BadRequest("state contains NaN or infinite values")
        t = torch.from_numpy(arr)[None]
        key = self.config.state_key
        if key is not None:
            t = self.normalizer.normalize(key, t)
        return pad_vector(t, self.config.max_state_dim)

    def _noise(self, noise: Any, seed: int | None) -> torch.Tensor:
        shape = (1, self.chunk_size, self.config.max_action_dim)
        if noise is not None:
            t = torch.as_tensor(np.asarray(noise), dtype=torch.float32)
            if t.ndim == 2:
                t = t[None]
            if tuple(t.shape) != shape:
                raise BadRequest(f"noise must have shape {shape[1:]} (or {shape}), got {tuple(t.shape)}")
            return t
        gen = torch.Generator(device="cpu")
        if seed is not None:
            gen.manual_seed(int(seed))
        else:
            gen.seed()
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    def _rtc_guidance(
        self,
        prev_chunk: Any,
        inference_delay: int | None,
        execution_horizon: int | None,
        rtc_config: RTCConfig | None,
    ) -> RTCGuidance | None:
        cfg = self.rtc_config if rtc_config is None else rtc_config
        if not cfg.enabled or prev_chunk is None:
            return None
        arr = np.asarray(prev_chunk, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] < 1 or not 1 <= arr.shape[1] <= self.action_dim:
            raise BadRequest(
                f"RTC prefix must have shape (T >= 1, <= {self.action_dim}), got {tuple(arr.shape)}"
            )
        if not np.all(np.isfinite(arr)):
            raise BadRequest("RTC prefix contains NaN or infinite values")
        if inference_delay is None or int(inference_delay) < 0:
            raise BadRequest(f"RTC needs an inference delay >= 0 (got {inference_delay})")
        if execution_horizon is not None and int(execution_horizon) < 1:
            raise BadRequest(f"RTC execution horizon must be >= 1 (got {execution_horizon})")
        prefix = torch.from_numpy(arr)[None]
        if arr.shape[1] == self.action_dim:
            prefix = self.normalizer.normalize(self.config.action_key, prefix)
        else:  # fewer columns than actions: normalise the columns given (zero-padded, then cut)
            full = pad_vector(prefix, self.action_dim)
            prefix = self.normalizer.normalize(self.config.action_key, full)[:, :, : arr.shape[1]]
        return RTCGuidance(
            prefix[0],
            int(inference_delay),
            cfg,
            chunk_size=self.chunk_size,
            action_dim=self.config.max_action_dim,
            execution_horizon=execution_horizon,
        )

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    # ---- inference -----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_chunk(
        self,
        images: dict[str, np.ndarray],
        state: np.ndarray,
        task: str,
        *,
        noise: Any = None,
        seed: int | None = None,
        num_steps: int | None = None,
        step_callback: Any = None,
        prev_chunk: Any = None,
        inference_delay: int | None = None,
        execution_horizon: int | None = None,
        rtc_config: RTCConfig | None = None,
    ) -> np.ndarray:
        """One action chunk (chunk_size, action_dim) float32 in the checkpoint's units.

        ``step_callback(step, num_steps)`` runs after each Euler step; returning False raises
        :class:`smolvla_policy.backend.InferenceCancelled`.

        Real-time chunking (:mod:`.rtc`, lerobot's semantics) applies when ``rtc_config`` (default
        ``self.rtc_config``) is enabled and ``prev_chunk`` is given: ``prev_chunk`` (T, <= action_dim) are the
        previous chunk's actions still to be executed from this observation's tick on, in the checkpoint's
        units (normalised here like the actions); ``inference_delay`` is the number of them that will have
        been executed when this chunk arrives; ``execution_horizon`` overrides the config's.
        """
        if self.tokenizer is None:
            raise RuntimeError("this policy has no tokenizer; pass tokenizer=... to from_pretrained")
        if not isinstance(task, str):
            raise BadRequest(f"task must be a string, got {type(task).__name__}")
        steps = self.num_steps if num_steps is None else int(num_steps)
        if steps < 1:
            raise BadRequest("num_steps must be >= 1")
        t0 = time.perf_counter()
        pixels, img_masks = self._images(images)
        state_t = self._state(state)
        noise_t = self._noise(noise, seed)
        tokens, lang_mask = tokenize(self.tokenizer, task, self.config)
        guidance = self._rtc_guidance(prev_chunk, inference_delay, execution_horizon, rtc_config)
        dev = self.device
        pixels, state_t, noise_t = pixels.to(dev), state_t.to(dev), noise_t.to(dev)
        tokens, lang_mask = tokens.to(dev), lang_mask.to(dev)
        img_masks = [m.to(dev) for m in img_masks]
        t1 = time.perf_counter()
        model = self.model
        img_embs_all = model.embed_images(pixels)
        self._sync()
        t2 = time.perf_counter()
        img_embs = [img_embs_all[i : i + 1] for i in range(img_embs_all.shape[0])]
        prefix, pad, att = model.embed_prefix(img_embs, img_masks, tokens, lang_mask, state_t)
        cache = model.run_prefix(prefix, pad, att)
        self._sync()
        t3 = time.perf_counter()
        if guidance is not None:
            guidance.to(dev)
        x0 = model.sample_actions(cache, noise_t, steps, step_callback, guidance=guidance)
        self._sync()
        t4 = time.perf_counter()
        actions = x0[:, :, : self.action_dim].to("cpu", torch.float32)
        actions = self.normalizer.unnormalize(self.config.action_key, actions)
        t5 = time.perf_counter()
        self.timings = Timings(
            vision_ms=(t2 - t1) * 1e3,
            prefix_ms=(t3 - t2) * 1e3,
            denoise_ms=(t4 - t3) * 1e3,
            preprocess_ms=((t1 - t0) + (t5 - t4)) * 1e3,
        )
        return actions[0].numpy().astype(np.float32, copy=False)
