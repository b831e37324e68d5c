"""The ``smolvla_train`` command: one executable, one subcommand per tool.

    smolvla_train --help
    smolvla_train record-sim --episodes 3 --out /tmp/demos
    smolvla_train <subcommand> --help

Adding a subcommand is one line in :data:`SUBCOMMANDS`:
``"name": ("package.module:function", "one-line help")``.
The function takes ``argv: list[str]`` (the arguments after the subcommand name) and returns the exit code;
it builds its own ``argparse`` parser with ``prog="smolvla_train <name>"``. Modules are imported only when
their subcommand runs, so one broken or slow import does not affect the others.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# name -> ("module:function", help). Keep sorted by name; one line per subcommand.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "bag2lerobot": ("smolvla_train.bag2lerobot:main", "convert rosbag2 bags into a LeRobot v3.0 dataset"),
    "evaluate": (
        "smolvla_train.evaluate:main",
        "action MSE per joint of a checkpoint on held-out episodes of a LeRobot v3 dataset",
    ),
    "finetune": (
        "smolvla_train.finetune:main",
        "train SmolVLA on a LeRobot v3 dataset (lerobot-layout, resumable checkpoints)",
    ),
    "inspect": (
        "smolvla_train.inspect_cmd:main",
        "one-screen summary of a LeRobot v3.0 dataset or a rosbag2 bag",
    ),
    "lerobot2bag": (
        "smolvla_train.lerobot2bag:main",
        "write one rosbag2 bag per episode of a LeRobot v3.0 dataset (graph contract topics, ROS units)",
    ),
    "record-sim": (
        "smolvla_train.recording.sim_record:main",
        "record N scripted-expert episodes in simulation into rosbag2 bags",
    ),
    "recover-bags": (
        "smolvla_train.recording.bag:recover_main",
        "finish the partial episode bags a crashed episode_recorder left in a directory",
    ),
    "view": (
        "smolvla_train.viewer.replay:main",
        "show a LeRobot v3.0 dataset or a rosbag2 bag in Rerun's web viewer (127.0.0.1)",
    ),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = [
        "usage: smolvla_train <subcommand> [options]",
        "",
        "Tools of the smolvla_train package (demonstrations, datasets, finetuning).",
        "",
        "subcommands:",
    ]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in sorted(SUBCOMMANDS.items())]
    lines += ["", "smolvla_train <subcommand> --help shows the options of one subcommand."]
    return "\n".join(lines)


def resolve(name: str) -> Callable[[list[str]], int]:
    """Import and return the function of subcommand ``name`` (KeyError if unknown)."""
    target, _ = SUBCOMMANDS[name]
    module_name, _, func_name = target.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"smolvla_train: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    code = resolve(name)(rest)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
