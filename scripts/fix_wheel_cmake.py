"""Rewrite the wheel builder's include paths baked into the ROS 2 PyPI wheels' CMake exports.

The ros-* wheels install CMake config files under <venv>/share that hard-code the wheel builder's Python and
numpy include directories. Building an interface package (smolvla_msgs) against them fails with
"includes non-existent path /opt/python/cp311-cp311/include/python3.11". This script points them at this
interpreter's directories. Idempotent; run after every `pip install` of ros-* wheels.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

PY_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
NP_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include")


def main() -> int:
    share = Path(sys.prefix) / "share"
    py_inc = sysconfig.get_paths()["include"]
    np_inc = numpy.get_include()
    patched = 0
    for path in share.rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        new = NP_INCLUDE.sub(np_inc, text)
        new = PY_INCLUDE.sub(py_inc, new)
        if new != text:
            path.write_text(new, errors="surrogateescape")
            patched += 1
    print(f"fix_wheel_cmake: {patched} CMake file(s) patched under {share}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
