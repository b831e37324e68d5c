#!/usr/bin/env bash
# Set up (idempotent) and run the main job: the simulated SO-101 in a closed loop with the policy server and
# the asynchronous action queue (python tools/run_demo.py; arguments are passed on, see --help). The policy is
# the SmolVLA checkpoint shipped in models/smolvla_sim_pick_place (trained by this suite in simulation);
# backend:=scripted runs the simulator's scripted expert instead.
# Usage: scripts/run.sh [--episodes N] [--viewer] [name:=value ...]     e.g. scripts/run.sh backend:=scripted
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
# shellcheck disable=SC1091
source scripts/env.sh
# --viewer: also start the Rerun viewer node (launch argument viewer:=true). Its web viewer listens on
# 127.0.0.1 of this machine's network, so the loop runs without `unshare -n` then; the shared-memory-only DDS
# profile (scripts/env.sh) still sends no packet on any interface.
args=()
viewer=0
for a in "$@"; do
  if [ "$a" = "--viewer" ]; then viewer=1; args+=("viewer:=true"); else args+=("$a"); fi
done
if [ "$viewer" = 1 ]; then
  echo "[run] viewer: open http://127.0.0.1:9090/?url=rerun%2Bhttp%3A%2F%2F127.0.0.1%3A9876%2Fproxy"
  exec python tools/run_demo.py "${args[@]}"
fi
if unshare -n true 2>/dev/null; then
  exec unshare -n python tools/run_demo.py "${args[@]}"
fi
exec python tools/run_demo.py "${args[@]}"
