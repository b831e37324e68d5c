#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite inside a private network namespace when available.
# Usage: scripts/test.sh [pytest args...]      e.g. scripts/test.sh -m "not slow"
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
# shellcheck disable=SC1091
source scripts/env.sh
export SMOLVLA_TEST_DOMAIN_BASE=$(( 1 + ($$ % 24) * 4 ))
if unshare -n true 2>/dev/null; then
  echo "[test] running pytest inside 'unshare -n' (no network interface but a down loopback)"
  exec unshare -n python -m pytest "$@"
fi
echo "[test] 'unshare -n' is not available: running pytest with the SHM-only profile (sends no packets)"
exec python -m pytest "$@"
