"""Shared helpers of smolvla_train's training tests: a tiny init config and a short finetune run."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATASET = FIXTURES / "reach_tiny"  # written by lerobot 0.6.1 (tools/lerobot_reference/make_dataset.py)

TINY_INIT = {
    "policy": {
        "type": "smolvla",
        "chunk_size": 10,
        "n_action_steps": 10,
        "num_steps": 4,
        "num_vlm_layers": 2,
        "resize_imgs_with_padding": [64, 64],
        "optimizer_lr": 1e-3,
        "scheduler_warmup_steps": 0,
    },
    "vlm": {
        "scale_factor": 2,
        "vocab_size": 280,
        "pad_token_id": 2,
        "text_config": {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "intermediate_size": 64,
        },
        "vision_config": {
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 1,
            "intermediate_size": 32,
            "image_size": 64,
            "patch_size": 16,
        },
    },  # fmt: skip
    "tokenizer": "byte_level",
}


def run_tiny_finetune(tmp_path: Path, out: str, *extra: str, dataset: Path = DATASET) -> int:
    """``smolvla_train finetune`` of the tiny config on ``dataset`` into ``tmp_path/out`` (exit code)."""
    from smolvla_train.finetune import main

    init = tmp_path / "tiny_init.json"
    init.write_text(json.dumps(TINY_INIT))
    args = ["--dataset", str(dataset), "--init", str(init), "--out", str(tmp_path / out), "--train-all",
            "--batch-size", "4", "--num-workers", "0", "--log-every", "1", "--val-samples", "8",
            "--no-progress", "--seed", "3", *extra]  # fmt: skip
    return main(args)
