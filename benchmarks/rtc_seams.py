"""Seam discontinuity with and without real-time chunking (RTC), closed loop in the MuJoCo simulator.

For each fusion mode (``latest_only``, ``weighted_average``, ``blend``, ``rtc``) the same episodes (same
seeds, same policy, same injected latency) run in discrete time: the simulator (``smolvla_sim.sim.ArmSim``,
both cameras rendered for every request), the action queue's core (``ActionQueueCore``, Algorithm 1, as in the
``action_queue`` node) and the policy through the policy server's ``smolvla`` backend (``SmolVLABackend``:
units, joint order, RTC exactly as the server applies it). A request captured at tick ``k`` is answered at
tick ``k + latency_ticks`` (injected latency, independent of how long the CPU took), so every mode sees the
same timeline and the numbers are reproducible.

Measured per mode, over all episodes (joint-space L-infinity norm, radians, commands at 30 Hz):

* **seam jump**: ``|c[t] - c[t-1]|`` at the first tick executed after a chunk was merged (max and p95);
* **in-chunk step**: the same for every other executed tick (p95) -- the goal is seam p95 <= in-chunk p95;
* **jerk**: third difference of the commands / period^3 (RMS and max, rad/s^3), and RMS jerk of the measured
  joint positions (what the arm does after its position controllers);
* **success**: episodes in which the task succeeded at some tick; idle ticks.

The queue's ``max_step`` clamp is off here (it would hide the jumps being measured); joint limits stay on.

Subject: ``--checkpoint`` (default: the suite-trained ``models/smolvla_sim_pick_place`` when it exists);
without one, a tiny random-weight SmolVLA checkpoint is generated and the table says so -- its chunks are
noise-like and it never succeeds, so only the seam numbers mean something then.

Run: ``source scripts/env.sh && python benchmarks/rtc_seams.py [--episodes 3 --seconds 15]``
(``--quick`` for a smoke run; ``--subject empirical`` for the cheap stand-in policy of ``rtc_subject.py``).
Writes section ``rtc_seams_<subject>`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO_ROOT, machine_line, markdown_table, write_section  # noqa: E402

MODES = ("latest_only", "weighted_average", "blend", "rtc")
TRAINED = REPO_ROOT / "models" / "smolvla_sim_pick_place"


@dataclass
class ModeStats:
    seam: list[float] = field(default_factory=list)
    inside: list[float] = field(default_factory=list)
    jerk: list[float] = field(default_factory=list)
    arm_jerk: list[float] = field(default_factory=list)
    successes: int = 0
    episodes: int = 0
    ticks: int = 0
    idle: int = 0
    chunks: int = 0
    guided: int = 0


def run_episode(backend, sim, mode: str, seed: int, args: argparse.Namespace, stats: ModeStats, bar) -> None:
    from smolvla_policy.backend import ChunkRequest, RTCRequest
    from smolvla_policy.queue import ActionQueueCore, QueueConfig

    fps = args.fps
    period = 1.0 / fps
    core = ActionQueueCore(
        6,
        QueueConfig(
            fps=fps,
            chunk_threshold=args.threshold,
            aggregate_fn=mode,
            blend_ramp=args.blend_ramp,
            similarity_epsilon=-1.0,
            max_step=0.0,
            lower_limits=tuple(sim.lower),
            upper_limits=tuple(sim.upper),
            request_timeout=1e9,
        ),
    )
    sim.reset(seed)
    task = sim.task.text
    from rtc_subject import scene_features

    scene = scene_features(sim)
    pending: list[tuple[int, int, int, np.ndarray]] = []  # (due tick, request id, start timestep, chunk)
    commands, positions, seam_flags, executed = [], [], [], []
    merged_since_last = False
    success = False
    for tick in range(int(args.seconds * fps)):
        now = tick * period
        for item in [p for p in pending if p[0] <= tick]:
            pending.remove(item)
            out = core.on_chunk(item[1], item[2], item[3], now)
            merged_since_last = merged_since_last or out.accepted
        q = sim.joint_positions
        res = core.tick(now, q)
        if res.request is not None:
            req = res.request
            images = (
                {cam: sim.render(cam, args.image_size, args.image_size) for cam in ("top", "wrist")}
                if getattr(backend, "needs_images", True)
                else {}
            )
            request = ChunkRequest(
                images=images,
                joint_names=list(sim.joint_names),
                positions=q.copy(),
                task=task,
                timestep=req.timestep,
                seed=seed * 100003 + req.request_id,  # same noise per (episode, request) in every mode
            )
            request.extras["scene"] = scene  # used by the empirical subject only (privileged)
            if req.rtc_prefix is not None:
                request.rtc = RTCRequest(
                    prefix=req.rtc_prefix,
                    inference_delay=req.rtc_inference_delay,
                    execution_horizon=args.execution_horizon,
                    prefix_attention_schedule=args.schedule,
                    max_guidance_weight=args.max_guidance_weight,
                )
                stats.guided += 1
            chunk = backend.predict(request)
            # the first request's latency is known to the queue only after it: the injected latency is fixed
            pending.append((tick + args.latency_ticks, req.request_id, req.timestep, chunk))
        if res.executed:
            seam_flags.append(merged_since_last)
            merged_since_last = False
        executed.append(res.executed)
        commands.append(res.command.copy())
        sim.step(res.command)
        positions.append(sim.joint_positions)
        success = success or sim.task_success()
        bar.update(1)
    c, p = np.asarray(commands), np.asarray(positions)
    ex = np.asarray(executed)
    steps = np.abs(np.diff(c, axis=0)).max(axis=1)  # step into tick t (t >= 1)
    seam_at = np.zeros(len(c), bool)
    seam_at[np.flatnonzero(ex)] = seam_flags
    both = ex[1:] & ex[:-1]  # consecutive executed ticks (idle holds excluded)
    first_chunk = np.flatnonzero(ex)[0] if ex.any() else len(c)
    valid = both & (np.arange(1, len(c)) > first_chunk)  # from the first executed action on
    stats.seam += steps[valid & seam_at[1:]].tolist()
    stats.inside += steps[valid & ~seam_at[1:]].tolist()
    jerk = np.abs(np.diff(c[first_chunk:], n=3, axis=0)).max(axis=1) * fps**3
    arm = np.abs(np.diff(p[first_chunk:], n=3, axis=0)).max(axis=1) * fps**3
    stats.jerk += jerk.tolist()
    stats.arm_jerk += arm.tolist()
    stats.successes += int(success)
    stats.episodes += 1
    stats.ticks += len(c)
    stats.idle += int((~ex).sum())
    stats.chunks += core.counters.chunks_received


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def rms(values: list[float]) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--checkpoint",
        default="",
        help="SmolVLA checkpoint (default: models/smolvla_sim_pick_place if present, else a tiny random one)",
    )
    ap.add_argument(
        "--subject",
        choices=("smolvla", "empirical"),
        default="smolvla",
        help="smolvla: --checkpoint / the trained model / a tiny random one; empirical: the exact flow of a "
        "scripted-expert chunk library (benchmarks/rtc_subject.py)",
    )
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument(
        "--library-episodes", type=int, default=12, help="empirical: demonstrations in the library"
    )
    ap.add_argument("--seconds", type=float, default=15.0, help="simulated seconds per episode")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--latency-ticks", type=int, default=8, help="injected latency in control ticks")
    ap.add_argument("--threshold", type=float, default=0.7, help="g of the queue")
    ap.add_argument("--blend-ramp", type=float, default=10.0)
    ap.add_argument("--schedule", default="linear")
    ap.add_argument("--max-guidance-weight", type=float, default=10.0)
    ap.add_argument("--execution-horizon", type=int, default=20)
    ap.add_argument("--num-steps", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--seed", type=int, default=1000, help="first episode seed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1 episode of 4 s (smoke run, no docs update)")
    ap.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = ap.parse_args()
    if args.quick:
        args.episodes, args.seconds, args.no_write = 1, 4.0, True
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    from smolvla_policy.queue import AGGREGATE_NAMES

    bad = [m for m in modes if m not in AGGREGATE_NAMES]
    if bad or args.latency_ticks < 1 or args.episodes < 1:
        ap.error(f"unknown mode(s) {bad}" if bad else "latency-ticks and episodes must be >= 1")

    import torch
    from tqdm import tqdm

    from smolvla_policy.server.smolvla_backend import SmolVLABackend
    from smolvla_sim.sim import ArmSim, SimConfig

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="rtc_seams_")
    ckpt = args.checkpoint or (str(TRAINED) if TRAINED.exists() else "")
    if args.subject == "empirical":
        from rtc_subject import make_empirical_backend

        library = [args.seed + e for e in range(max(args.episodes, args.library_episodes))]
        backend = make_empirical_backend(library, num_steps=args.num_steps)
        subject = (
            f"exact flow-matching policy over a library of {len(backend.states)} scripted-expert chunks from "
            f"{len(library)} demonstrations, conditioned on the joint state and (privileged) the cube "
            "and tray positions, evaluated on scenes of its library (benchmarks/rtc_subject.py; a stand-in "
            "for a trained SmolVLA: no network, no perception)"
        )
    elif ckpt:
        subject = f"checkpoint `{Path(ckpt).name}`"
    else:
        from smolvla_policy.model.testing import make_tiny_checkpoint

        ckpt = str(make_tiny_checkpoint(Path(tmp.name) / "tiny", seed=0))
        subject = "tiny random-weight SmolVLA (no trained checkpoint available; its chunks are noise-like)"
    if args.subject == "smolvla":
        backend = SmolVLABackend.from_options(
            {"checkpoint": ckpt, "device": "cpu", "num_steps": args.num_steps}
        )
    sim = ArmSim(SimConfig(image_width=args.image_size, image_height=args.image_size))
    results: dict[str, ModeStats] = {}
    total = len(modes) * args.episodes * int(args.seconds * args.fps)
    t0 = time.perf_counter()
    with tqdm(total=total, desc="ticks", unit="tick") as bar:
        for mode in modes:
            stats = ModeStats()
            for e in range(args.episodes):
                run_episode(backend, sim, mode, args.seed + e, args, stats, bar)
            results[mode] = stats
    sim.close()
    elapsed = time.perf_counter() - t0

    headers = ["mode", "seam jump max", "seam jump p95", "in-chunk step p95", "seam p95 / in-chunk p95",
               "cmd jerk RMS", "cmd jerk max", "arm jerk RMS", "success", "idle %", "chunks",
               "guided"]  # fmt: skip
    rows = []
    for mode, s in results.items():
        ratio = pct(s.seam, 95) / pct(s.inside, 95) if s.inside else float("nan")
        rows.append([
            mode, pct(s.seam, 100), pct(s.seam, 95), pct(s.inside, 95), ratio, rms(s.jerk), pct(s.jerk, 100),
            rms(s.arm_jerk), f"{s.successes}/{s.episodes}", 100.0 * s.idle / max(1, s.ticks), s.chunks,
            s.guided,
        ])  # fmt: skip
    table = markdown_table(headers, rows)
    print(table)
    latency_ms = 1000.0 * args.latency_ticks / args.fps
    body = f"""## Real-time chunking: seam discontinuity, subject `{args.subject}` (`benchmarks/rtc_seams.py`)

{machine_line()}; {elapsed:.0f} s.

Subject: {subject}. Closed loop in discrete time: MuJoCo pick-and-place (`ArmSim`,
{args.image_size}x{args.image_size} cameras), the queue core (Algorithm 1, g = {args.threshold:g},
`max_step` off, joint limits on) and the policy as the server calls it ({args.num_steps} denoising
steps); injected latency {args.latency_ticks} ticks ({latency_ms:.0f} ms at {args.fps:g} Hz), same
seeds and same noise per request in every mode; {args.episodes} episodes x {args.seconds:g} s per
mode. RTC: schedule `{args.schedule}`, max guidance weight {args.max_guidance_weight:g}, execution
horizon {args.execution_horizon}, inference delay from the queue's measured latency (`min(q,
ceil(L_max / period))`); `blend` ramp {args.blend_ramp:g} ticks. Jumps and steps: joint-space L-inf
of consecutive commands (rad); jerk: third difference / period^3 (rad/s^3), of the commands and of
the measured joint positions (arm).

{table}
"""
    if not args.no_write:
        path = write_section(f"rtc_seams_{args.subject}", body)
        print(f"wrote section rtc_seams_{args.subject} of {path}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
