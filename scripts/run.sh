#!/usr/bin/env bash
# Set up (idempotent) and run the main job: the simulated SO-101 in a closed loop with the policy server and
# the asynchronous action queue (python tools/run_demo.py; arguments are passed on, see --help).
# Usage: scripts/run.sh [--episodes N] [name:=value ...]     e.g. scripts/run.sh backend:=scripted
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
# shellcheck disable=SC1091
source scripts/env.sh
if unshare -n true 2>/dev/null; then
  exec unshare -n python tools/run_demo.py "$@"
fi
exec python tools/run_demo.py "$@"
