"""Compact observations (issue 17): the queue's resize is the model's own, the server takes raw, resized and
JPEG inputs, and raw vs resized inputs give the same chunk (bit-identical where the resize is exact)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from smolvla_policy.backend import BadRequest
from smolvla_policy.compact_observation import (
    AUTO,
    JPEG_FORMAT,
    CompactObservationError,
    CompactSettings,
    compact_camera,
    compressed_size,
    content_size,
    decode_compressed,
    encode_jpeg,
    parse_image_size,
    resize_for_model,
)
from smolvla_policy.model.configuration import SmolVLAConfig
from smolvla_policy.model.processor import preprocess_image
from smolvla_policy.server.conversion import RequestLimits, observation_to_request


def test_image_size_setting_is_parsed_and_bad_values_are_named():
    assert parse_image_size("") is None
    assert parse_image_size(" Auto ") == AUTO
    assert parse_image_size("512x384") == (512, 384)
    for bad in ("512", "512x", "0x512", "ax512", "512x512x3", "99999x10"):
        with pytest.raises(CompactObservationError, match="WIDTHxHEIGHT"):
            parse_image_size(bad)
    assert CompactSettings(AUTO).target(None) is None  # raw until the server has said
    assert CompactSettings(AUTO).target((512, 512)) == (512, 512)
    assert CompactSettings((256, 256)).target((512, 512)) == (256, 256)


def test_content_size_is_the_models_resize_with_pad_arithmetic():
    # by hand: 640x480 -> ratio 1.25 -> 512x384; 480x640 -> 384x512; 512x512 unchanged; 1280x720 -> 512x288
    assert content_size(640, 480, 512, 512) == (512, 384)
    assert content_size(480, 640, 512, 512) == (384, 512)
    assert content_size(512, 512, 512, 512) == (512, 512)
    assert content_size(1280, 720, 512, 512) == (512, 288)


def test_exact_resize_gives_the_original_content_and_the_same_model_input():
    # a 1024x768 frame that is a 2x nearest upsampling of 512x384: the bilinear half-size samples fall midway
    # between two equal pixels, so the model's resize is exact (hand computation: the original pixels)
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (384, 512, 3), dtype=np.uint8)
    big = small.repeat(2, axis=0).repeat(2, axis=1)
    resized = resize_for_model(big, 512, 512)
    assert resized.shape == (384, 512, 3)
    np.testing.assert_array_equal(resized, small)
    cfg = SmolVLAConfig()
    assert torch.equal(preprocess_image(big, cfg), preprocess_image(resized, cfg))


def test_general_resize_differs_from_the_models_input_by_the_rounding_only():
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    resized = resize_for_model(frame, 512, 512)
    assert resized.shape == (384, 512, 3) and resized.dtype == np.uint8
    cfg = SmolVLAConfig()
    a, b = preprocess_image(frame, cfg), preprocess_image(resized, cfg)
    assert a.shape == b.shape == (1, 3, 512, 512)
    # in [-1, 1] units half a level is 1/255; the padding (top 128 rows) is identical
    assert float((a - b).abs().max()) <= 1.0 / 255 + 1e-6
    assert torch.equal(a[..., :128, :], b[..., :128, :])
    # a frame already at the content size passes unchanged
    np.testing.assert_array_equal(resize_for_model(resized, 512, 512), resized)


def test_jpeg_round_trip_header_size_and_errors():
    rng = np.random.default_rng(3)
    # smooth content (JPEG's domain): a gradient plus mild noise
    y, x = np.mgrid[0:384, 0:512]
    img = np.stack([x / 2, y / 1.5, (x + y) / 4], axis=2) + rng.normal(0, 3, (384, 512, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    data = encode_jpeg(img, 90)
    assert data[:2] == b"\xff\xd8" and len(data) < img.nbytes / 10
    assert compressed_size(data) == (512, 384)
    back = decode_compressed(JPEG_FORMAT, data)
    assert back.shape == img.shape
    mse = float(np.mean((back.astype(np.float64) - img) ** 2))
    assert 10 * np.log10(255**2 / mse) > 35.0  # PSNR
    # colours are not swapped (a red image stays red)
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 200
    assert decode_compressed("jpeg", encode_jpeg(red, 95))[..., 0].mean() > 190
    with pytest.raises(CompactObservationError, match="cannot be decoded"):
        decode_compressed("jpeg", b"\xff\xd8not a jpeg")
    with pytest.raises(CompactObservationError, match="not JPEG or PNG"):
        decode_compressed("tiff", data)
    with pytest.raises(CompactObservationError, match="0..100"):
        encode_jpeg(img, 101)


def _compressed_obs(images: dict[str, np.ndarray], quality: int = 90) -> SimpleNamespace:
    stamp = SimpleNamespace(sec=0, nanosec=0)
    return SimpleNamespace(
        header=SimpleNamespace(stamp=stamp, frame_id="base_link"),
        timestep=3,
        task="pick",
        camera_names=list(images),
        images=[],
        compressed_images=[SimpleNamespace(format=JPEG_FORMAT, data=encode_jpeg(a, quality))
                           for a in images.values()],
        state=SimpleNamespace(name=["a", "b"], position=[0.1, 0.2]),
    )  # fmt: skip


def test_server_conversion_decodes_compressed_images_and_names_bad_ones():
    rng = np.random.default_rng(4)
    imgs = {"top": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)}
    req = observation_to_request(_compressed_obs(imgs), RequestLimits())
    assert req.images["top"].shape == (48, 64, 3)
    np.testing.assert_array_equal(req.images["top"], decode_compressed("jpeg", encode_jpeg(imgs["top"], 90)))
    obs = _compressed_obs(imgs)
    obs.compressed_images[0].data = b"garbage"
    with pytest.raises(BadRequest, match="camera 'top'.*cannot be decoded"):
        observation_to_request(obs, RequestLimits())
    obs = _compressed_obs(imgs)
    obs.images = [object()]
    with pytest.raises(BadRequest, match="both images and compressed_images"):
        observation_to_request(obs, RequestLimits())
    obs = _compressed_obs(imgs)
    obs.camera_names = ["top", "wrist"]
    with pytest.raises(BadRequest, match="2 camera names but 1 compressed"):
        observation_to_request(obs, RequestLimits())
    with pytest.raises(BadRequest, match="more than max_image_pixels"):
        observation_to_request(_compressed_obs(imgs), RequestLimits(max_image_pixels=100))


# -- the same chunk from raw and resized inputs (tiny random-weight SmolVLA, real preprocessing) ------------
@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    from smolvla_policy.model.testing import make_tiny_checkpoint
    from smolvla_policy.server.smolvla_backend import SmolVLABackend

    ckpt = make_tiny_checkpoint(tmp_path_factory.mktemp("compact_tiny"), seed=7)
    return SmolVLABackend.from_options({"checkpoint": str(ckpt), "device": "cpu", "num_steps": 3})


def _chunk(backend, images: dict[str, np.ndarray], settings: CompactSettings) -> np.ndarray:
    """Observation message as the queue builds it -> server conversion -> backend."""
    from smolvla_common.image_conversion import numpy_to_image
    from smolvla_policy.server.testing import make_observation

    obs = make_observation(images, positions=[0.1, -0.2, 0.3, 0.0, 0.2, 0.5])
    size = backend.image_input_size
    if settings.target(size) is not None or settings.jpeg_quality:
        pixels = {c: compact_camera(a, settings, size) for c, a in images.items()}
        if settings.jpeg_quality:
            from sensor_msgs.msg import CompressedImage

            obs.images = []
            obs.compressed_images = [
                CompressedImage(format=JPEG_FORMAT, data=list(d)) for _, d in pixels.values()
            ]
        else:
            obs.images = [numpy_to_image(p) for p, _ in pixels.values()]
    req = observation_to_request(obs, RequestLimits(seed=11))
    return np.asarray(backend.predict(req))


def test_backend_reports_its_input_size(backend):
    assert backend.image_input_size == (512, 512)


def test_raw_and_resized_inputs_give_the_bit_identical_chunk_where_the_resize_is_exact(backend):
    rng = np.random.default_rng(5)
    small = {c: rng.integers(0, 256, (384, 512, 3), dtype=np.uint8) for c in ("top", "wrist")}
    raw = {c: a.repeat(2, axis=0).repeat(2, axis=1) for c, a in small.items()}  # 1024x768 cameras
    chunk_raw = _chunk(backend, raw, CompactSettings())
    chunk_resized = _chunk(backend, raw, CompactSettings(AUTO))
    np.testing.assert_array_equal(chunk_raw, chunk_resized)
    # the test can fail: another image gives another chunk
    other = {c: np.roll(a, 40, axis=1) for c, a in raw.items()}
    assert not np.array_equal(_chunk(backend, other, CompactSettings()), chunk_raw)


def test_raw_and_resized_inputs_of_a_general_frame_differ_by_far_less_than_jpeg(backend):
    rng = np.random.default_rng(6)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([x / 2.6, y / 1.9, (x + y) / 4.4], axis=2)
    raw = {
        c: np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8) for c in ("top", "wrist")
    }
    chunk_raw = _chunk(backend, raw, CompactSettings())
    resized_dev = np.abs(_chunk(backend, raw, CompactSettings(AUTO)) - chunk_raw).max()
    jpeg_dev = np.abs(_chunk(backend, raw, CompactSettings(AUTO, 90)) - chunk_raw).max()
    assert np.isfinite(jpeg_dev) and resized_dev <= jpeg_dev
