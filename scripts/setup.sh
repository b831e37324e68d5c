#!/usr/bin/env bash
# Set up (idempotently) everything the project needs on a fresh machine:
#   1. .venv (Python 3.11) with requirements.txt: ROS 2 Kilted from PyPI wheels, torch 2.13.0 CPU, MuJoCo, ...
#      Skipped when requirements.txt did not change since the last successful install.
#      With SMOLVLA_SYSTEM_ROS=1 (a sourced ROS 2 Jazzy/Kilted install), the ros-* wheels are not installed.
#   2. the CMake include-path fix for the wheels (scripts/fix_wheel_cmake.py),
#   3. colcon build of the workspace (interfaces + ament_python packages) into install/.
# Usage: scripts/setup.sh            (prints a short summary; full logs in log/setup/)
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
mkdir -p log/setup
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV="$ROOT/.venv"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi

reqs=requirements.txt
if [ "${SMOLVLA_SYSTEM_ROS:-0}" = "1" ]; then
  grep -vE '^(ros-|colcon-)' requirements.txt > log/setup/requirements-nonros.txt
  reqs=log/setup/requirements-nonros.txt
fi
want=$(cat "$reqs" scripts/setup.sh | sha256sum | cut -d' ' -f1)
stamp="$VENV/.smolvla-requirements"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing $reqs into .venv (first run: a few minutes)"
  t0=$(date +%s)
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs" > log/setup/pip.log 2>&1 \
    || { tail -30 log/setup/pip.log; echo "[setup] pip install failed (log/setup/pip.log)"; exit 1; }
  if [ "${SMOLVLA_SYSTEM_ROS:-0}" != "1" ]; then "$VENV/bin/python" scripts/fix_wheel_cmake.py; fi
  echo "$want" > "$stamp"
  echo "[setup] dependencies installed in $(( $(date +%s) - t0 )) s"
fi

if [ "${SMOLVLA_SYSTEM_ROS:-0}" != "1" ]; then
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
fi
export PATH="$VENV/bin:$PATH"
t0=$(date +%s)
colcon build --base-paths src --symlink-install \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF > log/setup/colcon.log 2>&1 \
  || { tail -40 log/setup/colcon.log; echo "[setup] colcon build failed (log/setup/colcon.log)"; exit 1; }
echo "[setup] colcon build done in $(( $(date +%s) - t0 )) s: $(grep -c 'Finished <<<' log/setup/colcon.log) packages"
# the README's command lines: `smolvla_train` into the venv's bin (colcon puts console scripts off the PATH),
# and on pip installs a `ros2` command (smolvla_train.ros2cli: run, launch, param, topic, service call,
# action send_goal, bag info) unless a ROS install provides one
( set +u; source install/setup.bash; "$VENV/bin/python" -m smolvla_train.ros2cli --install-shim "$VENV/bin" ) \
  || echo "[setup] warning: the ros2 / smolvla_train commands were not installed"

