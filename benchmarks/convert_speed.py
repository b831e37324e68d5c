"""bag2lerobot conversion speed: a 2-camera 640x480 30 Hz bag of >= 60 s -> LeRobot v3.0, AV1 and H.264.

The bag is written from MuJoCo simulator frames by the test fixture
``src/smolvla_train/test/sim_bag_fixture.py`` (``/joint_states`` 60 Hz, ``/joint_commands`` 30 Hz,
``/cameras/{top,wrist}/image_raw`` rgb8 30 Hz, recorder events; uncompressed MCAP, ~3.3 GB per minute),
then converted with the defaults of each codec (AV1: libsvtav1 crf 30 preset 12 g 2, lerobot's defaults;
H.264: libx264 crf 23 veryfast g 2). Reported per codec: wall time, dataset frames/s, image frames
encoded/s (2 per dataset frame), input MB/s, the real-time factor (bag seconds per wall second; goal >= 3)
and the dataset size. Writes its section of docs/benchmarks.md.

    python benchmarks/convert_speed.py                # 60 s bag, both codecs
    python benchmarks/convert_speed.py --seconds 10 --no-write    # quick look
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _report import REPO_ROOT, machine_line, markdown_table, write_section

sys.path.insert(0, str(REPO_ROOT / "src" / "smolvla_train" / "test"))


def dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="bag length (default 60)")
    ap.add_argument("--codecs", default="av1,h264")
    ap.add_argument("--bag", type=Path, help="reuse this bag (written by a previous run with --keep-bag)")
    ap.add_argument("--keep-bag", type=Path, help="write the bag here and keep it")
    ap.add_argument("--encoder-threads", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()

    from sim_bag_fixture import write_sim_bag

    from smolvla_train.bag2lerobot import ConvertOptions, convert

    work = Path(tempfile.mkdtemp(prefix="convert_speed_"))
    try:
        bag = args.bag
        if bag is None:
            bag = args.keep_bag or work / "bag"
            t = time.perf_counter()
            write_sim_bag(bag, seconds=args.seconds, width=640, height=480, keep_images=False)
            print(f"bag written in {time.perf_counter() - t:.1f} s: {bag} ({dir_size(bag) / 1e6:.0f} MB)")
        bag_mb = dir_size(bag) / 1e6
        rows = []
        for codec in args.codecs.split(","):
            out = work / f"ds_{codec}"
            opts = ConvertOptions(codec=codec, progress=False, encoder_threads=args.encoder_threads)
            t = time.perf_counter()
            cpu = time.process_time()
            report = convert([bag], out, opts)
            wall = time.perf_counter() - t
            cpu = time.process_time() - cpu
            frames = report["total_frames"]
            duration = frames / report["fps"]
            rows.append(
                [
                    codec,
                    frames,
                    round(duration, 1),
                    round(wall, 1),
                    round(frames / wall, 1),
                    round(2 * frames / wall, 1),
                    round(bag_mb / wall, 1),
                    round(duration / wall, 2),
                    round(cpu, 1),
                    round(cpu / wall, 2),
                    round(duration / (cpu / 2), 2),
                    round(dir_size(out) / 1e6, 1),
                ]
            )
            print(f"{codec}: {frames} frames in {wall:.1f} s ({duration / wall:.2f}x real time)")
            shutil.rmtree(out)
        headers = [
            "codec",
            "frames",
            "bag s",
            "wall s",
            "frames/s",
            "images/s",
            "input MB/s",
            "x real time",
            "CPU s",
            "CPU/wall",
            "x real time, 2 free cores (est.)",
            "dataset MB",
        ]
        table = markdown_table(headers, rows)
        print(table)
        body = (
            "## Bag -> LeRobot conversion speed (`benchmarks/convert_speed.py`)\n\n"
            f"{machine_line()}. Input: {rows[0][2]:.0f} s simulator bag, 2 cameras 640x480 rgb8 at 30 Hz, "
            f"joint states 60 Hz, commands 30 Hz, uncompressed MCAP ({bag_mb:.0f} MB). Output at 30 fps with "
            "each codec's defaults (AV1 = lerobot's libsvtav1 crf 30 preset 12 g 2; H.264 = libx264 crf 23 "
            "veryfast g 2). `x real time` = bag seconds per wall second (goal >= 3); `CPU s` = CPU time of "
            "the conversion (all threads); `CPU/wall` < 2: the run did not get both cores (other jobs on "
            "the machine); `bag s / (CPU s / 2)` estimates the real-time factor if both cores were free "
            "and the work split evenly (an upper bound).\n\n" + table + "\n"
        )
        if not args.no_write:
            print(f"wrote {write_section('convert_speed', body)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
