"""Pre/post-processing: resize-with-pad, tokenisation, normalisation, config JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smolvla_policy.model import SmolVLAConfig
from smolvla_policy.model.processor import (
    Normalizer,
    load_normalizer,
    preprocess_image,
    resize_with_pad,
    save_processors,
    tokenize,
)
from smolvla_policy.model.testing import make_test_tokenizer, random_stats, tiny_config


def test_resize_with_pad_640x480_pads_top_only() -> None:
    img = torch.rand(1, 3, 480, 640)
    out = resize_with_pad(img, 512, 512)
    assert out.shape == (1, 3, 512, 512)
    assert torch.all(out[:, :, :128] == 0)
    expected = F.interpolate(img, size=(384, 512), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[:, :, 128:], expected)


def test_resize_with_pad_portrait_pads_left() -> None:
    img = torch.rand(1, 3, 400, 200)
    out = resize_with_pad(img, 512, 512)
    assert out.shape == (1, 3, 512, 512)
    assert torch.all(out[..., :256] == 0) and out[..., 256:].abs().sum() > 0


def test_resize_512_is_identity_and_no_antialias() -> None:
    img = torch.rand(1, 3, 512, 512)
    torch.testing.assert_close(resize_with_pad(img, 512, 512), img)
    big = torch.rand(1, 3, 1024, 1024)
    expected = F.interpolate(big, size=(512, 512), mode="bilinear", align_corners=False, antialias=False)
    torch.testing.assert_close(resize_with_pad(big, 512, 512), expected)


def test_preprocess_image_range_and_padding_value() -> None:
    cfg = tiny_config()
    img = np.full((480, 640, 3), 255, np.uint8)
    out = preprocess_image(img, cfg)
    assert out.shape == (1, 3, 512, 512)
    assert torch.all(out[:, :, :128] == -1.0)
    torch.testing.assert_close(out[:, :, 200:], torch.ones_like(out[:, :, 200:]))


def test_tokenization_newline_and_right_padding() -> None:
    tok = make_test_tokenizer()
    assert tok.pad_token_id == 2
    cfg = tiny_config()
    ids, mask = tokenize(tok, ["ab", "abcd\n"], cfg)
    assert ids.dtype == torch.int64 and mask.dtype == torch.bool
    assert ids.shape == (2, 5)  # "abcd\n" = 5 byte tokens; "ab\n" padded on the right
    assert mask[0].tolist() == [True, True, True, False, False]
    assert ids[0, 3:].tolist() == [2, 2]
    assert tok.decode(ids[1]) == "abcd\n"
    cfg_max = tiny_config(pad_language_to="max_length")
    ids, mask = tokenize(tok, "ab", cfg_max)
    assert ids.shape == (1, 48) and int(mask.sum()) == 3
    ids, mask = tokenize(tok, "x" * 100, cfg)
    assert ids.shape == (1, 48)


def test_normalizer_eps_convention() -> None:
    cfg = tiny_config()
    stats = {"observation.state": {"mean": np.arange(6.0), "std": np.array([0.0, 1, 2, 3, 4, 5])}}
    norm = Normalizer.from_config(cfg, stats)
    x = torch.ones(1, 6) * 10
    n = norm.normalize("observation.state", x)
    expected = (x - torch.arange(6.0)) / (torch.tensor([0.0, 1, 2, 3, 4, 5]) + 1e-8)
    torch.testing.assert_close(n, expected)
    back = norm.unnormalize("observation.state", n[:, 1:2].expand(1, 6))
    assert back.shape == (1, 6)
    with pytest.raises(KeyError, match="action.mean"):
        norm.normalize("action", x)


def test_processor_files_round_trip(tmp_path: Path) -> None:
    cfg = tiny_config()
    norm = Normalizer.from_config(cfg, random_stats(cfg, seed=3))
    save_processors(tmp_path, cfg, norm, "some/tokenizer")
    pre = json.loads((tmp_path / "policy_preprocessor.json").read_text())
    names = [s["registry_name"] for s in pre["steps"]]
    assert names == [
        "rename_observations_processor",
        "to_batch_processor",
        "smolvla_new_line_processor",
        "tokenizer_processor",
        "device_processor",
        "normalizer_processor",
    ]
    loaded, tok_cfg = load_normalizer(tmp_path, cfg)
    assert tok_cfg["tokenizer_name"] == "some/tokenizer" and tok_cfg["max_length"] == 48
    for key in ("observation.state", "action"):
        for stat in ("mean", "std"):
            torch.testing.assert_close(loaded.stats[key][stat], norm.stats[key][stat])


def test_config_json_round_trip_keeps_unknown_keys(tmp_path: Path) -> None:
    cfg = tiny_config()
    data = json.loads(cfg.to_json())
    data["some_future_field"] = {"a": 1}
    data["use_peft"] = False
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    again = SmolVLAConfig.from_json(path)
    assert again.extra == {"some_future_field": {"a": 1}, "use_peft": False}
    assert json.loads(again.to_json()) == data
    assert again.resize_imgs_with_padding == (512, 512)
    assert again.image_features == ["observation.images.top", "observation.images.wrist"]
    with pytest.raises(ValueError, match="expected 'smolvla'"):
        SmolVLAConfig.from_dict({**data, "type": "act"})
