"""Load a checkpoint with lerobot 0.6.1 and predict one chunk (REFERENCE venv only).

    env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u PYTHONPATH HF_HUB_OFFLINE=1 \
        /tmp/lerobot_ref_venv/bin/python tools/lerobot_reference/lerobot_predict.py CKPT_DIR IN.npz OUT.npz

Loads ``CKPT_DIR`` exactly as a lerobot user would: ``SmolVLAPolicy.from_pretrained(CKPT_DIR)`` and
``make_pre_post_processors(policy.config, pretrained_path=CKPT_DIR)`` (with the checkpoint as the working
directory, since a self-contained checkpoint names its VLM directory relatively: ``vlm_model_name = "vlm"``).
``IN.npz`` holds ``camera_keys`` (str array), ``image_<i>`` (uint8 HxWx3 per camera), ``state`` [S],
``task`` (str) and ``noise`` [1, chunk, 32]; ``OUT.npz`` gets ``chunk`` [chunk, A] (checkpoint units, after
lerobot's postprocessor) and ``missing_keys`` / ``unexpected_keys`` of lerobot's (non-strict) weight loading.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    ckpt, inp, out = (Path(a).resolve() for a in sys.argv[1:])
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from safetensors.torch import load_file

    with np.load(inp, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    cwd = os.getcwd()
    os.chdir(ckpt)
    try:
        policy = SmolVLAPolicy.from_pretrained(str(ckpt))
        policy.eval()
        pre, post = make_pre_post_processors(policy.config, pretrained_path=str(ckpt))
    finally:
        os.chdir(cwd)
    # lerobot loads with strict=False: report what it would have silently skipped
    saved = set(load_file(str(ckpt / "model.safetensors")))
    expected = set(policy.state_dict())
    batch = {
        "observation.state": torch.from_numpy(data["state"].astype(np.float32)),
        "task": str(data["task"]),
    }
    for i, key in enumerate(str(k) for k in data["camera_keys"]):
        batch[key] = torch.from_numpy(data[f"image_{i}"]).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        actions = policy.predict_action_chunk(pre(batch), noise=torch.from_numpy(data["noise"]))
        chunk = post(actions)
    np.savez(
        out,
        chunk=chunk.float().numpy()[0],
        missing_keys=np.array(sorted(expected - saved)),
        unexpected_keys=np.array(sorted(saved - expected)),
    )
    print(f"lerobot predicted a {tuple(chunk.shape[1:])} chunk from {ckpt}")


if __name__ == "__main__":
    main()
