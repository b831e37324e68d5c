"""Loss and gradient parity with lerobot 0.6.1's SmolVLA training forward (issue 13).

``fixtures/lerobot_training/`` was recorded by ``tools/lerobot_reference/make_training_fixture.py`` in the
lerobot reference venv: lerobot's preprocessor + ``SmolVLAPolicy.forward(batch, noise, time)`` on the
committed tiny lerobot checkpoint, a batch of 3 with padded action steps, then ``loss.backward()``. Here the
same checkpoint is loaded with this project's strict loader, the same raw batch goes through the loss the
trainer uses (``flow_matching_loss`` via ``smolvla_train.trainer.LossModule``) and the trainable set of
``set_trainable(policy, "expert")`` (lerobot's default).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from smolvla_policy.model import SmolVLAPolicy
from smolvla_train.trainer import LossModule, set_trainable

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixtures" / "lerobot_training"
CKPT = HERE.parents[1] / "smolvla_policy" / "test" / "fixtures" / "lerobot_reference" / "tiny"
REL_TOL = 1e-5


@pytest.fixture(scope="module")
def result() -> dict:
    torch.set_num_threads(1)
    with np.load(FIXTURE / "case.npz", allow_pickle=False) as f:
        case = {k: f[k] for k in f.files}
    policy = SmolVLAPolicy.from_pretrained(CKPT, device="cpu", dtype="float32")
    policy.train()
    named = set_trainable(policy, "expert")
    batch = {
        "observation.images.top": torch.from_numpy(case["image_top"]).permute(0, 3, 1, 2).float() / 255,
        "observation.images.wrist": torch.from_numpy(case["image_wrist"]).permute(0, 3, 1, 2).float() / 255,
        "observation.state": torch.from_numpy(case["state"]),
        "action": torch.from_numpy(case["action"]),
        "action_is_pad": torch.from_numpy(case["action_is_pad"]),
        "task": [str(t) for t in case["task"]],
    }
    loss = LossModule(policy)(batch, torch.from_numpy(case["noise"]), torch.from_numpy(case["time"]))
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in named if p.grad is not None}
    return {"case": case, "loss": float(loss.detach()), "grads": grads, "names": [n for n, _ in named]}


def test_batch_covers_padding_and_three_samples(result: dict) -> None:
    case = result["case"]
    assert case["action_is_pad"].any() and not case["action_is_pad"].all()
    assert case["image_wrist"].shape[1:3] != case["image_top"].shape[1:3]  # resize-with-pad pads one camera


def test_loss_equals_lerobot(result: dict) -> None:
    ref = float(result["case"]["loss"])
    rel = abs(result["loss"] - ref) / abs(ref)
    print(f"loss ours {result['loss']:.9f} lerobot {ref:.9f} rel diff {rel:.2e}")
    assert rel <= REL_TOL


def test_trainable_set_equals_lerobots(result: dict) -> None:
    ref = load_file(str(FIXTURE / "grads.safetensors"))
    assert sorted(result["names"]) == sorted(ref)


def test_expert_gradients_equal_lerobot(result: dict) -> None:
    ref = load_file(str(FIXTURE / "grads.safetensors"))
    worst = ("", 0.0)
    for name, g_ref in ref.items():
        g = result["grads"][name]
        rel = float((g - g_ref).norm() / g_ref.norm().clamp_min(1e-30))
        if rel > worst[1]:
            worst = (name, rel)
    total = float(
        torch.sqrt(sum(((result["grads"][n] - g) ** 2).sum() for n, g in ref.items()))
        / torch.sqrt(sum((g**2).sum() for g in ref.values()))
    )
    print(f"gradients: all tensors rel diff {total:.2e}; worst tensor {worst[0]} {worst[1]:.2e}")
    assert total <= REL_TOL
    assert worst[1] <= REL_TOL, worst
