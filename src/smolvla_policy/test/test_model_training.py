"""Flow-matching training loss and the trainable-parameter set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smolvla_policy.model import SmolVLAPolicy
from smolvla_policy.model.modeling import pad_vector
from smolvla_policy.model.testing import make_tiny_checkpoint
from smolvla_policy.model.training import flow_matching_loss, sample_time, trainable_parameters

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> SmolVLAPolicy:
    pol = SmolVLAPolicy.from_pretrained(make_tiny_checkpoint(tmp_path_factory.mktemp("t"), chunk_size=10))
    pol.train()
    return pol


def _batch(bsize: int = 2, chunk: int = 10, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {
        "observation.images.top": torch.rand(bsize, 3, 48, 64, generator=gen),
        "observation.images.wrist": torch.rand(bsize, 3, 32, 32, generator=gen),
        "observation.state": torch.randn(bsize, 6, generator=gen) * 10,
        "action": torch.randn(bsize, chunk, 6, generator=gen) * 10,
        "task": ["pick", "place the cube"],
    }


def test_trainable_parameters_freeze_the_vlm(policy: SmolVLAPolicy) -> None:
    params = trainable_parameters(policy)
    ids = {id(p) for p in params}
    vlm = policy.model.vlm_with_expert.vlm
    assert not any(p.requires_grad for p in vlm.parameters())
    assert not vlm.training
    assert all(id(p) in ids for p in policy.model.vlm_with_expert.lm_expert.parameters())
    assert id(policy.model.state_proj.weight) in ids and id(policy.model.action_out_proj.bias) in ids
    expected = sum(p.numel() for n, p in policy.named_parameters() if ".vlm." not in n)
    assert sum(p.numel() for p in params) == expected


def test_loss_matches_definition_with_padded_steps(policy: SmolVLAPolicy) -> None:
    batch = _batch()
    is_pad = torch.zeros(2, 10, dtype=torch.bool)
    is_pad[0, 6:] = True
    is_pad[1, 9:] = True
    batch["action_is_pad"] = is_pad
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(2, 10, 32, generator=gen)
    time = torch.tensor([0.3, 0.8])
    loss = flow_matching_loss(policy, batch, noise=noise, time=time)

    # the definition, written out: target noise - actions, pad mask, mean over valid (step, dim) entries
    actions = pad_vector(policy.normalizer.normalize("action", batch["action"]), 32)
    x_t = time[:, None, None] * noise + (1 - time[:, None, None]) * actions
    captured = {}
    orig = policy.model.forward_velocity

    def spy(prefix, pad, att, x, t):
        captured["x"], captured["t"] = x, t
        captured["v"] = orig(prefix, pad, att, x, t)
        return captured["v"]

    policy.model.forward_velocity = spy
    try:
        flow_matching_loss(policy, batch, noise=noise, time=time)
    finally:
        del policy.model.forward_velocity
    torch.testing.assert_close(captured["x"], x_t)
    err = F.mse_loss(noise - actions, captured["v"], reduction="none")[..., :6]
    valid = ~is_pad
    expected = (err * valid[..., None]).sum() / (valid.sum() * 6)
    torch.testing.assert_close(loss, expected)
    # padded steps do not influence the loss
    batch2 = dict(batch)
    changed = batch["action"].clone()
    changed[0, 7:] += 1000.0
    batch2["action"] = changed
    torch.testing.assert_close(flow_matching_loss(policy, batch2, noise=noise, time=time), loss)


def test_loss_without_pad_mask_is_plain_mean_and_backpropagates(policy: SmolVLAPolicy) -> None:
    params = trainable_parameters(policy)
    policy.zero_grad(set_to_none=True)
    gen = torch.Generator().manual_seed(2)
    loss = flow_matching_loss(policy, _batch(), generator=gen)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in params)
    assert policy.model.state_proj.weight.grad.abs().sum() > 0  # flows through the frozen VLM
    assert all(p.grad is None for p in policy.model.vlm_with_expert.vlm.parameters())
    policy.zero_grad(set_to_none=True)


def test_time_sampling_is_beta_1_5_1() -> None:
    t = sample_time(20000, torch.Generator().manual_seed(0))
    assert float(t.min()) >= 0.001 and float(t.max()) <= 1.0
    # Beta(1.5, 1): mean 0.6, scaled by 0.999 and shifted by 0.001
    assert float(t.mean()) == pytest.approx(0.6 * 0.999 + 0.001, abs=0.01)
    assert float(sample_time(5000).mean()) == pytest.approx(0.6, abs=0.03)


def test_loss_is_deterministic_with_generator(policy: SmolVLAPolicy, tmp_path: Path) -> None:
    a = flow_matching_loss(policy, _batch(), generator=torch.Generator().manual_seed(9))
    b = flow_matching_loss(policy, _batch(), generator=torch.Generator().manual_seed(9))
    assert float(a.detach()) == float(b.detach())
    assert np.isfinite(float(a.detach()))
