"""Parity with lerobot 0.6.1's SmolVLA ``predict_action_chunk`` (issue 3).

The fixtures in ``fixtures/lerobot_reference/`` were recorded by ``tools/lerobot_reference/make_fixtures.py``
in a separate lerobot venv (lerobot is never a dependency of this project; see
``tools/lerobot_reference/README.md``):

* ``tiny/`` + ``tiny_case1.npz``: checkpoint written by lerobot's ``save_pretrained`` and its processors;
  cameras top 512x512 and wrist 480x640 (not square: resize-with-pad), task padded to 48 tokens
  (``max_length``);
* ``tiny_longest/`` + ``tiny_longest_case1.npz``: ``pad_language_to="longest"``, other weights and inputs;
* ``full/`` + ``full_case1.npz``: SmolVLM2-500M dimensions; no weights committed, they are regenerated here by
  ``deterministic_weights.py`` from ``state_dict_manifest.json`` into a ``model.safetensors`` (slow).

Each ``.npz`` holds the inputs (uint8 images, state, task, noise), lerobot's token ids and attention mask, the
chunk (checkpoint units) and per-stage intermediates (``lr_*``) used to say which stage differs on failure.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lerobot_reference"
TOL = 1e-4  # max |diff| on the chunk, float32


def _policy_class():
    try:
        from smolvla_policy.model.policy import SmolVLAPolicy
    except ImportError as exc:  # the model lands in parallel (issue 3, model half)
        pytest.skip(f"smolvla_policy.model.policy.SmolVLAPolicy not importable yet: {exc}")
    return SmolVLAPolicy


def _load_case(name: str) -> dict:
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as data:
        case = {k: data[k] for k in data.files}
    keys = [str(k) for k in case["camera_keys"]]
    case["images"] = {key: case[f"image_{i}"] for i, key in enumerate(keys)}
    case["task"] = str(case["task"])
    return case


def _weights_module():
    spec = importlib.util.spec_from_file_location(
        "lerobot_ref_deterministic_weights", FIXTURES / "deterministic_weights.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _our_tokens(policy, task: str) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(policy, "tokenize"):
        ids, mask = policy.tokenize(task)
    else:
        from smolvla_policy.model.processor import tokenize

        ids, mask = tokenize(policy.tokenizer, task, policy.config)
    ids, mask = np.asarray(ids), np.asarray(mask)
    return ids.reshape(-1).astype(np.int64), mask.reshape(-1).astype(bool)


def _stage_report(policy, case: dict) -> str:
    """Best effort: compare our intermediates with lerobot's to name the first stage that differs."""
    lines = []
    try:
        import torch

        model = policy.model
        with torch.no_grad():
            pixels, img_masks = policy._images(case["images"])
            sub = pixels[:, :, ::8, ::8].float().cpu().numpy()
            lines.append(
                f"prepared images (sub8) max|d| = {np.abs(sub - case['lr_images_prepared_sub8']).max():.3g}"
            )
            embs = model.embed_images(pixels.to(policy.device))
            d = np.abs(embs.float().cpu().numpy() - case["lr_image_embs"]).max()
            lines.append(f"image embeddings (connector out) max|d| = {d:.3g}")
            ids, mask = _our_tokens(policy, case["task"])
            tokens = torch.from_numpy(ids)[None].to(policy.device)
            lmask = torch.from_numpy(mask)[None].to(policy.device)
            state = policy._state(case["state"]).to(policy.device)
            d = np.abs(state[0].float().cpu().numpy() - case["lr_state_normalized_padded"]).max()
            lines.append(f"normalized padded state max|d| = {d:.3g}")
            img_list = [embs[i : i + 1] for i in range(embs.shape[0])]
            prefix, pad, att = model.embed_prefix(
                img_list, [m.to(policy.device) for m in img_masks], tokens, lmask, state
            )
            d = np.abs(prefix[0].float().cpu().numpy() - case["lr_prefix_embs"]).max()
            lines.append(f"prefix embeddings max|d| = {d:.3g}")
            pad_eq = np.array_equal(pad[0].cpu().numpy(), case["lr_prefix_pad_mask"])
            att_eq = np.array_equal(att[0].cpu().numpy().astype(bool), case["lr_prefix_att_flags"])
            lines.append(f"prefix pad mask equal: {pad_eq}, att flags equal: {att_eq}")
            # first Euler step from the same prefix: x(t=0.9) = noise - 0.1 * v(t=1) with num_steps = 10
            cache = model.run_prefix(prefix, pad, att)
            noise = torch.from_numpy(case["noise"]).to(policy.device)
            n = int(case["lr_velocities"].shape[0])
            x1 = model.sample_actions(cache, noise.clone(), 1, None)
            v0 = (noise - x1).float().cpu().numpy()[0]  # num_steps=1: x = noise - 1.0 * v(t=1)
            d = np.abs(v0 - case["lr_velocities"][0]).max()
            lines.append(f"first velocity v(t=1) max|d| = {d:.3g} (lerobot's {n} steps recorded)")
            xn = model.sample_actions(cache, noise.clone(), n, None)[0, :, : case["chunk"].shape[1]]
            d = np.abs(xn.float().cpu().numpy() - case["chunk_normalized"]).max()
            lines.append(f"normalized chunk max|d| = {d:.3g}")
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        lines.append(f"(stage comparison stopped: {type(exc).__name__}: {exc})")
    return "\n  ".join(lines)


def _check_case(policy, case: dict, label: str) -> None:
    ids, mask = _our_tokens(policy, case["task"])
    assert ids.tolist() == case["token_ids"].tolist(), f"{label}: token ids differ from lerobot's"
    assert mask.tolist() == case["attention_mask"].tolist(), f"{label}: attention mask differs from lerobot's"
    chunk = policy.predict_chunk(case["images"], case["state"], case["task"], noise=case["noise"])
    chunk = np.asarray(chunk, dtype=np.float32)
    assert chunk.shape == case["chunk"].shape, f"{label}: chunk shape {chunk.shape} != {case['chunk'].shape}"
    diff = float(np.abs(chunk - case["chunk"]).max())
    print(f"{label}: max |chunk - lerobot| = {diff:.3g} (tolerance {TOL})")
    if not diff <= TOL:
        pytest.fail(
            f"{label}: max |chunk - lerobot| = {diff:.3g} > {TOL} (|lerobot chunk| max "
            f"{np.abs(case['chunk']).max():.3g})\n  {_stage_report(policy, case)}"
        )


@pytest.mark.parametrize("name", ["tiny", "tiny_longest"])
def test_tiny_chunk_matches_lerobot(name):
    SmolVLAPolicy = _policy_class()
    policy = SmolVLAPolicy.from_pretrained(FIXTURES / name, tokenizer=None, device="cpu", dtype="float32")
    _check_case(policy, _load_case(f"{name}_case1"), name)


def test_tiny_fixture_covers_padding_and_non_square_camera():
    """Guards the fixture itself: the issue asks for a padded task and a 480x640 camera."""
    case = _load_case("tiny_case1")
    assert not case["attention_mask"].all() and case["attention_mask"][0]
    assert (case["token_ids"][~case["attention_mask"]] == 2).all()  # <|im_end|> pads
    assert {img.shape for img in case["images"].values()} == {(512, 512, 3), (480, 640, 3)}
    conf = json.loads((FIXTURES / "tiny" / "config.json").read_text())
    assert conf["type"] == "smolvla" and conf["pad_language_to"] == "max_length"
    assert list(conf["input_features"])[1:] == list(case["images"])


def test_tokenization_matches_lerobot_tiny_padded():
    SmolVLAPolicy = _policy_class()
    policy = SmolVLAPolicy.from_pretrained(FIXTURES / "tiny", tokenizer=None, device="cpu", dtype="float32")
    case = _load_case("tiny_case1")
    ids, mask = _our_tokens(policy, case["task"])
    np.testing.assert_array_equal(ids, case["token_ids"])
    np.testing.assert_array_equal(mask, case["attention_mask"])


def test_strict_loading_rejects_renamed_tensor(tmp_path):
    from safetensors.numpy import load_file, save_file

    SmolVLAPolicy = _policy_class()
    ckpt = tmp_path / "tiny_renamed"
    shutil.copytree(FIXTURES / "tiny", ckpt)
    tensors = load_file(str(ckpt / "model.safetensors"))
    old = "model.state_proj.weight"
    assert old in tensors
    tensors["model.state_proj.weight_renamed"] = tensors.pop(old)
    save_file(tensors, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(Exception) as info:  # noqa: B017, PT011 - the type is the model's; the message matters
        SmolVLAPolicy.from_pretrained(ckpt, tokenizer=None, device="cpu", dtype="float32")
    assert old in str(info.value), f"error does not name the missing tensor: {info.value}"


@pytest.mark.parametrize(("name", "seed"), [("tiny", 11), ("tiny_longest", 22)])  # seeds of make_fixtures.py
def test_deterministic_weights_reproduce_lerobot_checkpoint(name, seed):
    """The generator, run here, gives bit-identical tensors to those it gave in the lerobot venv: the
    full-size case (whose weights are regenerated, not committed) rests on this."""
    from safetensors.torch import load_file

    dw = _weights_module()
    saved = load_file(str(FIXTURES / name / "model.safetensors"))
    regenerated = dw.deterministic_state_dict({k: v.shape for k, v in saved.items()}, seed=seed)
    for key, tensor in saved.items():
        assert regenerated[key].dtype == tensor.dtype
        assert regenerated[key].equal(tensor), key


@pytest.mark.slow
def test_full_size_chunk_matches_lerobot(tmp_path):
    from safetensors.torch import save_file

    SmolVLAPolicy = _policy_class()
    dw = _weights_module()
    ckpt = tmp_path / "full"
    shutil.copytree(FIXTURES / "full", ckpt)
    manifest = json.loads((ckpt / "state_dict_manifest.json").read_text())
    tensors = dw.deterministic_state_dict(manifest["shapes"], seed=manifest["seed"], gain=manifest["gain"])
    save_file(tensors, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    del tensors
    gc.collect()
    policy = SmolVLAPolicy.from_pretrained(ckpt, tokenizer=None, device="cpu", dtype="float32")
    (ckpt / "model.safetensors").unlink()
    _check_case(policy, _load_case("full_case1"), "full")
