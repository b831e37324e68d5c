"""Time lerobot 0.6.1's SmolVLA ``predict_action_chunk`` on CPU (runs in the REFERENCE venv only).

    /tmp/lerobot_ref_venv/bin/python tools/lerobot_reference/time_lerobot.py [--size full|tiny] [--repeats 3]

Setup as in issue 3's speed goal: 2 cameras 512x512, 6-D state, a 12-token task (including the "\\n"
lerobot appends), ``num_steps`` 10, float32, ``torch.set_num_threads(2)``; 2 warm-up calls, then
``--repeats`` timed calls. The model has lerobot's own random initialisation (speed does not depend on the
values); the VLM config and tokenizer come from the committed fixture directory
(``.../fixtures/lerobot_reference/<size>/vlm``), so nothing is downloaded. Breakdown by wrapping lerobot's
stages on the instance: vision = ``embed_image`` (SigLIP + connector, all cameras), prefix = rest of
``sample_actions`` until the first ``denoise_step`` (embeddings + VLM prefill with KV cache), denoise = all
``denoise_step`` calls; preprocess = processor pipeline + resize-with-pad + the rest.

Prints ONE JSON object on stdout (everything else goes to stderr). The project's benchmark
(``benchmarks/policy_latency.py``) runs this when ``SMOLVLA_LEROBOT_PYTHON`` names the reference venv's
python.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "src/smolvla_policy/test/fixtures/lerobot_reference"
CAMERAS = ("observation.images.top", "observation.images.wrist")
SENTENCE = "pick up the red cube and place it in the bowl then push the yellow ball to the left side"


class StageTimer:
    def __init__(self, model):
        self.reset()
        vwe = model.vlm_with_expert
        orig_image, orig_sample, orig_denoise = vwe.embed_image, model.sample_actions, model.denoise_step

        def embed_image(img):
            t0 = time.perf_counter()
            out = orig_image(img)
            self.vision += time.perf_counter() - t0
            return out

        def sample_actions(*args, **kwargs):
            self.t_start = time.perf_counter()
            out = orig_sample(*args, **kwargs)
            self.t_end = time.perf_counter()
            return out

        def denoise_step(*args, **kwargs):
            if self.t_first_denoise is None:
                self.t_first_denoise = time.perf_counter()
            return orig_denoise(*args, **kwargs)

        vwe.embed_image = embed_image
        model.sample_actions = sample_actions
        model.denoise_step = denoise_step

    def reset(self):
        self.vision = 0.0
        self.t_start = self.t_end = self.t_first_denoise = None


def task_with_tokens(tokenizer, n_tokens: int) -> str:
    """The shortest prefix of a fixed sentence whose tokens, with lerobot's appended "\\n", number n."""
    text = SENTENCE
    for end in range(1, len(text) + 1):
        task = text[:end].rstrip()
        if len(tokenizer(task + "\n")["input_ids"]) == n_tokens:
            return task
    raise ValueError(f"no prefix of the sentence has {n_tokens} tokens")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("full", "tiny"), default="full")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--num-steps", type=int, default=10)
    ap.add_argument("--task-tokens", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    real_stdout = sys.stdout

    with contextlib.redirect_stdout(sys.stderr):
        import lerobot
        from lerobot.configs import FeatureType, PolicyFeature
        from lerobot.policies.factory import make_pre_post_processors
        from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
        from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

        vlm_dir = FIXTURES / args.size / "vlm"
        ref_conf = json.loads((FIXTURES / args.size / "config.json").read_text())
        inputs = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(6,))}
        for key in CAMERAS:
            inputs[key] = PolicyFeature(type=FeatureType.VISUAL, shape=(3, 512, 512))
        overrides = {}
        if args.size == "tiny":
            overrides = {"num_vlm_layers": ref_conf["num_vlm_layers"]}
        cfg = SmolVLAConfig(
            input_features=inputs,
            output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(6,))},
            vlm_model_name=str(vlm_dir),
            load_vlm_weights=False,
            num_steps=args.num_steps,
            device="cpu",
            push_to_hub=False,
            **overrides,
        )
        torch.manual_seed(0)
        t0 = time.perf_counter()
        policy = SmolVLAPolicy(cfg).eval()
        build_s = time.perf_counter() - t0
        stats = {
            k: {"mean": torch.full((6,), 5.0), "std": torch.full((6,), 20.0)}
            for k in ("observation.state", "action")
        }
        pre, post = make_pre_post_processors(policy_cfg=cfg, dataset_stats=stats)
        tokenizer = policy.model.vlm_with_expert.processor.tokenizer
        task = task_with_tokens(tokenizer, args.task_tokens)
        rng = np.random.default_rng(0)
        images = {k: rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for k in CAMERAS}
        state = rng.standard_normal(6).astype(np.float32) * 20
        timer = StageTimer(policy.model)

        def one_chunk() -> dict:
            timer.reset()
            c0, w0 = time.process_time(), time.perf_counter()
            batch = {"observation.state": torch.from_numpy(state.copy()), "task": task}
            for k, img in images.items():
                batch[k] = torch.from_numpy(img).permute(2, 0, 1).to(torch.float32) / 255.0
            with torch.no_grad():
                proc = pre(batch)
                n_tok = int(proc["observation.language.tokens"].shape[1])
                chunk = post(policy.predict_action_chunk(proc))
            total = time.perf_counter() - w0
            prefix = timer.t_first_denoise - timer.t_start - timer.vision
            denoise = timer.t_end - timer.t_first_denoise
            assert chunk.shape == (1, cfg.chunk_size, 6), chunk.shape
            return {
                "total_s": total,
                "vision_s": timer.vision,
                "prefix_s": prefix,
                "denoise_s": denoise,
                "preprocess_s": total - (timer.t_end - timer.t_start),
                "cpu_s": time.process_time() - c0,
                "tokens": n_tok,
            }

        for _ in range(args.warmup):
            one_chunk()
        runs = [one_chunk() for _ in range(args.repeats)]

    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 4)

    result = {
        "impl": "lerobot",
        "lerobot_version": lerobot.__version__,
        "torch_version": torch.__version__,
        "size": args.size,
        "params": sum(p.numel() for p in policy.parameters()),
        "dtype": "float32",
        "threads": args.threads,
        "cameras": len(CAMERAS),
        "image_hw": [512, 512],
        "state_dim": 6,
        "task_tokens": runs[0]["tokens"],
        "prefix_len": 64 * len(CAMERAS) + runs[0]["tokens"] + 1,
        "num_steps": args.num_steps,
        "chunk_size": cfg.chunk_size,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "latency_s": [round(r["total_s"], 4) for r in runs],
        "median_s": med("total_s"),
        "min_s": round(min(r["total_s"] for r in runs), 4),
        "max_s": round(max(r["total_s"] for r in runs), 4),
        "vision_s": med("vision_s"),
        "prefix_s": med("prefix_s"),
        "denoise_s": med("denoise_s"),
        "preprocess_s": med("preprocess_s"),
        "cpu_s_per_chunk": med("cpu_s"),
        "build_s": round(build_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    real_stdout.write(json.dumps(result) + "\n")
    real_stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
