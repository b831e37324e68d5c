"""Record lerobot 0.6.1's SmolVLA training loss and gradients on a fixed batch (REFERENCE venv only).

    env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u PYTHONPATH HF_HUB_OFFLINE=1 \
        /tmp/lerobot_ref_venv/bin/python tools/lerobot_reference/make_training_fixture.py

Uses the committed tiny lerobot checkpoint ``src/smolvla_policy/test/fixtures/lerobot_reference/tiny`` (two
cameras, task padded to 48 tokens). A batch of 3 samples (raw units; camera images 64x64 and 48x64, so
resize-with-pad pads, as float [0, 1]; tasks as strings; ``action_is_pad`` with padded steps), a fixed noise
and fixed flow-matching times go through lerobot's own preprocessor and
``SmolVLAPolicy.forward(batch, noise, time)`` in training mode; the loss and the gradient of every trainable
tensor (lerobot's default set: action expert + projections) are written to
``src/smolvla_train/test/fixtures/lerobot_training/``:

* ``case.npz``: images (uint8; the inputs were ``/255``), state, action, action_is_pad, tasks, noise, time,
  lerobot's token ids, ``loss``;
* ``grads.safetensors``: name -> gradient (float32), names as in ``model.safetensors``;
* ``versions.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
CKPT = REPO / "src/smolvla_policy/test/fixtures/lerobot_reference/tiny"
OUT = REPO / "src/smolvla_train/test/fixtures/lerobot_training"
TASKS = ["pick up the red cube", "place the cube in the bowl", "pick up the red cube"]
STATE_MEAN = np.array([12.5, -30.0, 45.0, 8.0, -4.0, 20.0], dtype=np.float32)
STATE_STD = np.array([25.0, 18.0, 30.0, 12.0, 40.0, 15.0], dtype=np.float32)


def make_batch(seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    b = len(TASKS)
    out = {
        "image_top": rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8),
        "image_wrist": rng.integers(0, 256, (b, 48, 64, 3), dtype=np.uint8),
        "state": (STATE_MEAN + STATE_STD * rng.standard_normal((b, 6))).astype(np.float32),
        "action": (STATE_MEAN + STATE_STD * rng.standard_normal((b, 50, 6))).astype(np.float32),
        "noise": rng.standard_normal((b, 50, 32)).astype(np.float32),
        "time": np.array([0.93, 0.41, 0.07], dtype=np.float32),
    }
    pad = np.zeros((b, 50), dtype=bool)
    pad[0, 31:] = True
    pad[2, 45:] = True
    out["action_is_pad"] = pad
    out["task"] = np.array(TASKS)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    import lerobot
    import transformers
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.processor import PolicyProcessorPipeline
    from safetensors.torch import save_file

    torch.manual_seed(0)
    cwd = os.getcwd()
    os.chdir(CKPT)  # vlm_model_name "vlm" is relative to the checkpoint
    try:
        policy = SmolVLAPolicy.from_pretrained(str(CKPT))
        pre = PolicyProcessorPipeline.from_pretrained(str(CKPT), "policy_preprocessor.json")
    finally:
        os.chdir(cwd)
    data = make_batch()
    batch = {
        "observation.images.top": torch.from_numpy(data["image_top"]).permute(0, 3, 1, 2).float() / 255,
        "observation.images.wrist": torch.from_numpy(data["image_wrist"]).permute(0, 3, 1, 2).float() / 255,
        "observation.state": torch.from_numpy(data["state"]),
        "action": torch.from_numpy(data["action"]),
        "action_is_pad": torch.from_numpy(data["action_is_pad"]),
        "task": list(TASKS),
    }
    proc = pre(batch)
    policy.train()
    loss, _ = policy.forward(proc, noise=torch.from_numpy(data["noise"]), time=torch.from_numpy(data["time"]))
    loss.backward()
    grads = {
        name: p.grad.detach().float().contiguous()
        for name, p in policy.named_parameters()
        if p.requires_grad and p.grad is not None
    }
    no_grad = [n for n, p in policy.named_parameters() if p.requires_grad and p.grad is None]
    args.out.mkdir(parents=True, exist_ok=True)
    data["token_ids"] = proc["observation.language.tokens"].numpy()
    data["loss"] = np.array(float(loss), dtype=np.float64)
    np.savez_compressed(args.out / "case.npz", **data)
    save_file(grads, str(args.out / "grads.safetensors"))
    versions = {
        "lerobot": lerobot.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    versions["trainable_without_grad"] = no_grad
    (args.out / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
    n = sum(g.numel() for g in grads.values())
    print(f"loss {float(loss):.8f}; {len(grads)} gradient tensors ({n} values) -> {args.out}")


if __name__ == "__main__":
    main()
