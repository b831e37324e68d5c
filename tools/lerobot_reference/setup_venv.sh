#!/usr/bin/env bash
# Build the SEPARATE lerobot 0.6.1 reference venv used only to (re)generate the parity fixtures and to time
# lerobot. It lives outside the repository (default /tmp/lerobot_ref_venv) and is never a project dependency.
#
#   bash tools/lerobot_reference/setup_venv.sh [VENV_DIR]
#
# lerobot 0.6.1 declares Requires-Python >= 3.12, torch < 2.12 and torchvision; here it is forced onto Python 3.11
# with torch==2.13.0 (the local CPU wheel) via --no-deps --ignore-requires-python, its PEP 695 syntax is rewritten
# by rewrite_pep695.py, and torchvision is replaced by an import stub (see below). Idempotent: re-running it only
# fills in what is missing. Needs the package registry (pip), nothing from the Hugging Face Hub.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${1:-${LEROBOT_REF_VENV:-/tmp/lerobot_ref_venv}}
PY311=${PYTHON311:-$(command -v python3.11 || true)}
[ -n "$PY311" ] || { echo "python3.11 not found (set PYTHON311)" >&2; exit 1; }
# the ROS wheels' bootstrapper guard must not leak from the project venv into this one
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE VIRTUAL_ENV PYTHONPATH

if [ ! -x "$VENV/bin/python" ]; then
  "$PY311" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# 1. torch first, pinned, CPU build (the local wheel in /opt/wheels if pip's find-links has it)
"${PIP[@]}" install "torch==2.13.0"
# 2. what lerobot's smolvla path imports (versions that worked with torch 2.13 CPU, see ENVIRONMENT.md §7)
"${PIP[@]}" install \
  "transformers==5.5.4" "tokenizers==0.22.2" "safetensors==0.8.0" "huggingface_hub==1.33.0" \
  "accelerate==1.15.0" "num2words==0.5.14" "draccus==0.11.6" "numpy==2.2.6" \
  "einops>=0.8,<0.9" "pillow>=10,<13" "packaging>=24.2,<26" "termcolor>=2.4,<4" "tqdm>=4.66,<5" \
  "requests>=2.32,<3" "gymnasium>=1.1.1,<2" "jsonlines" "deepdiff" "psutil" \
  "opencv-python-headless>=4.9,<4.14" "datasets==4.8.5" "pyarrow==26.0.1" "pandas==2.3.3" "av==15.1.0"
# 3. lerobot itself without its dependency pins (it would pull torch<2.12 and a CUDA torchvision)
"${PIP[@]}" install --no-deps --ignore-requires-python "lerobot==0.6.1"
# make sure nothing above replaced torch
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
v = md.version("torch")
assert v.startswith("2.13.0"), f"reference venv has torch {v}, expected 2.13.0"
try:
    md.version("torchvision")
    raise SystemExit("a real torchvision is installed in the reference venv; remove it")
except md.PackageNotFoundError:
    pass
PY

SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# 4. PEP 695 (Python 3.12) syntax -> 3.11 (idempotent)
"$VENV/bin/python" "$HERE/rewrite_pep695.py" "$SITE/lerobot"

# 5. torchvision stub. lerobot.processor/__init__ imports hil_processor, which does
#    `import torchvision.transforms.functional`; the smolvla path never calls it. The stub has no dist-info, so
#    transformers' is_torchvision_available() stays False; any use of it raises.
mkdir -p "$SITE/torchvision"
cat > "$SITE/torchvision/__init__.py" <<'PY'
"""Import stub for torchvision in the lerobot reference venv (NOT the real package).

Any submodule imports; any attribute is a placeholder that raises when called or used.
"""

import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "0.0.0+stub"


class _Missing:
    def __init__(self, name):
        self._name = name

    def __call__(self, *a, **k):
        raise RuntimeError(f"torchvision stub: {self._name} is not available in the reference venv")

    def __getattr__(self, attr):
        return _Missing(f"{self._name}.{attr}")

    def __mro_entries__(self, bases):
        return (object,)


class _StubModule(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Missing(f"{self.__name__}.{attr}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = _StubModule(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())


def __getattr__(attr):
    if attr.startswith("__"):
        raise AttributeError(attr)
    return _Missing(f"torchvision.{attr}")
PY

"$VENV/bin/python" -c "
import torch, transformers, lerobot
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from lerobot.policies.factory import make_pre_post_processors
print('reference venv OK:', '$VENV', 'lerobot', lerobot.__version__, 'torch', torch.__version__,
      'transformers', transformers.__version__)
"
