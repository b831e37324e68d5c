"""Flow-matching training loss of SmolVLA (lerobot 0.6.1 semantics) and the default trainable-parameter set.

Loss (spec section 7): ``t ~ Beta(1.5, 1) * 0.999 + 0.001``, ``x_t = t * noise + (1 - t) * actions``, target
``u_t = noise - actions`` (actions normalised and padded to ``max_action_dim``), squared error against the
predicted velocity, sliced to the real action dims, padded steps (``action_is_pad``) masked; the mean is taken
over the valid (step, dim) entries. The VLM is frozen and kept in eval mode; the action expert, ``state_proj``
and the action/time projections train.

Batch keys (lerobot's names): ``observation.images.<cam>`` float [B, 3, H, W] in [0, 1] (or uint8
[B, H, W, 3]),
optional ``observation.images.<cam>_padding_mask`` [B] bool, ``observation.state`` [B, state_dim] (raw units),
``action`` [B, chunk, action_dim] (raw units), optional ``action_is_pad`` [B, chunk] bool, and ``task``
(list of strings) or ``observation.language.tokens`` + ``observation.language.attention_mask``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .modeling import SmolVLAModel, pad_vector
from .processor import resize_with_pad, tokenize


def _policy_and_model(policy_or_model: Any) -> tuple[Any, SmolVLAModel]:
    if isinstance(policy_or_model, SmolVLAModel):
        return None, policy_or_model
    return policy_or_model, policy_or_model.model


def trainable_parameters(policy_or_model: Any, train_state_proj: bool | None = None) -> list[nn.Parameter]:
    """Freeze the VLM (eval mode, no grad); make the expert and projections trainable; return them."""
    _, model = _policy_and_model(policy_or_model)
    if train_state_proj is None:
        train_state_proj = model.config.train_state_proj
    vlm = model.vlm_with_expert.vlm
    vlm.requires_grad_(False)
    vlm.eval()
    params: list[nn.Parameter] = []
    modules: list[nn.Module] = [
        model.vlm_with_expert.lm_expert,
        model.action_in_proj,
        model.action_out_proj,
        model.action_time_mlp_in,
        model.action_time_mlp_out,
    ]
    model.state_proj.requires_grad_(train_state_proj)
    if train_state_proj:
        modules.append(model.state_proj)
    for m in modules:
        m.requires_grad_(True)
        params.extend(m.parameters())
    return params


def sample_time(bsize: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Beta(1.5, 1) * 0.999 + 0.001, sampled on the CPU (density grows with t: noisier times more often)."""
    if generator is None:
        beta = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0)).sample((bsize,))
    else:  # Beta(a, 1) = U^(1/a): reproducible with an explicit generator
        beta = torch.rand(bsize, generator=generator) ** (1.0 / 1.5)
    return (beta * 0.999 + 0.001).to(torch.float32)


def _images(
    policy: Any, model: SmolVLAModel, batch: dict[str, Any]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    config = model.config
    keys = config.image_features
    present = [k for k in keys if k in batch]
    missing = [k for k in keys if k not in batch]
    if not present:
        raise KeyError(f"batch has none of the image features {keys}")
    if len(missing) > config.empty_cameras:
        raise KeyError(f"batch misses image feature(s) {missing} (empty_cameras = {config.empty_cameras})")
    device = model.state_proj.weight.device
    imgs, masks = [], []
    for key in present:
        img = torch.as_tensor(batch[key])
        if img.ndim == 5:
            img = img[:, -1]
        if img.dtype == torch.uint8:
            img = img.permute(0, 3, 1, 2).to(torch.float32) / 255
        img = img.to(device=device, dtype=torch.float32)
        if config.resize_imgs_with_padding is not None:
            img = resize_with_pad(img, *config.resize_imgs_with_padding, pad_value=0.0)
        imgs.append(img * 2.0 - 1.0)
        bsize = img.shape[0]
        mask = batch.get(f"{key}_padding_mask")
        masks.append(
            torch.as_tensor(mask, dtype=torch.bool, device=device)
            if mask is not None
            else torch.ones(bsize, dtype=torch.bool, device=device)
        )
    for _ in missing[: config.empty_cameras]:
        imgs.append(torch.full_like(imgs[0], -1.0))
        masks.append(torch.zeros_like(masks[0]))
    return torch.cat(imgs, dim=0), masks


def flow_matching_loss(
    policy_or_model: Any,
    batch: dict[str, Any],
    *,
    noise: torch.Tensor | None = None,
    time: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """Scalar flow-matching loss. With a bare :class:`SmolVLAModel` (no normaliser/tokenizer) the batch must
    already be normalised and tokenised (pass ``normalize=False``)."""
    policy, model = _policy_and_model(policy_or_model)
    config = model.config
    device = model.state_proj.weight.device
    state = torch.as_tensor(batch["observation.state"], dtype=torch.float32, device=device)
    if state.ndim == 3:
        state = state[:, -1]
    actions = torch.as_tensor(batch["action"], dtype=torch.float32, device=device)
    if normalize:
        if policy is None:
            raise ValueError("normalising needs the policy (its normaliser); pass the SmolVLAPolicy")
        state = policy.normalizer.normalize(config.state_key, state)
        actions = policy.normalizer.normalize(config.action_key, actions)
    bsize = state.shape[0]
    state = pad_vector(state, config.max_state_dim)
    action_dim = actions.shape[-1]
    actions = pad_vector(actions, config.max_action_dim)
    if "observation.language.tokens" in batch:
        tokens = torch.as_tensor(batch["observation.language.tokens"], dtype=torch.int64, device=device)
        lang_mask = torch.as_tensor(
            batch["observation.language.attention_mask"], dtype=torch.bool, device=device
        )
    else:
        if policy is None or policy.tokenizer is None:
            raise ValueError("batch has no language tokens and no tokenizer is available")
        tasks = batch["task"]
        tasks = [tasks] * bsize if isinstance(tasks, str) else list(tasks)
        tokens, lang_mask = tokenize(policy.tokenizer, tasks, config)
        tokens, lang_mask = tokens.to(device), lang_mask.to(device)

    pixels, img_masks = _images(policy, model, batch)
    n_img = len(img_masks)
    backbone = model.vlm_with_expert.vlm.model
    vision_params = [*backbone.vision_model.parameters(), *backbone.connector.parameters()]
    vision_frozen = not any(p.requires_grad for p in vision_params)
    with torch.no_grad() if vision_frozen else contextlib.nullcontext():
        img_embs_all = model.embed_images(pixels)
    img_embs = list(img_embs_all.split(bsize, dim=0))
    assert len(img_embs) == n_img
    prefix, pad, att = model.embed_prefix(img_embs, img_masks, tokens, lang_mask, state)

    if noise is None:
        noise = torch.randn(actions.shape, generator=generator, dtype=torch.float32).to(device)
    if time is None:
        time = sample_time(bsize, generator).to(device)
    noise = noise.to(device=device, dtype=torch.float32)
    time = time.to(device=device, dtype=torch.float32)
    t = time[:, None, None]
    x_t = t * noise + (1 - t) * actions
    u_t = noise - actions
    v_t = model.forward_velocity(prefix, pad, att, x_t, time)
    losses = F.mse_loss(u_t, v_t, reduction="none")[..., :action_dim]
    is_pad = batch.get("action_is_pad")
    if is_pad is None:
        return losses.mean()
    valid = ~torch.as_tensor(is_pad, dtype=torch.bool, device=device)
    losses = losses * valid[..., None]
    n_valid = valid.sum().clamp(min=1)
    return losses.sum() / (n_valid * action_dim)
