# Source me:  source scripts/env.sh [ROS_DOMAIN_ID]
# Puts the workspace on the path (install/setup.bash), activates .venv and applies the network isolation:
# the shared-memory-only Fast DDS profile through both profile variables and a ROS_DOMAIN_ID of this shell's own.
_smolvla_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "${SMOLVLA_SYSTEM_ROS:-0}" != "1" ]; then
  export AMENT_PREFIX_PATH="$_smolvla_root/.venv" CMAKE_PREFIX_PATH="$_smolvla_root/.venv"
fi
export PATH="$_smolvla_root/.venv/bin:$PATH"
export VIRTUAL_ENV="$_smolvla_root/.venv"
# colcon's setup.bash is not safe under `set -u`
case $- in *u*) _smolvla_u=1; set +u;; *) _smolvla_u=0;; esac
# shellcheck disable=SC1091
source "$_smolvla_root/install/setup.bash"
[ "$_smolvla_u" = 1 ] && set -u
export FASTDDS_DEFAULT_PROFILES_FILE="$_smolvla_root/config/fastdds_shm_only.xml"
export FASTRTPS_DEFAULT_PROFILES_FILE="$_smolvla_root/config/fastdds_shm_only.xml"
unset ROS_AUTOMATIC_DISCOVERY_RANGE ROS_STATIC_PEERS ROS_LOCALHOST_ONLY FASTDDS_BUILTIN_TRANSPORTS
export ROS_DOMAIN_ID="${1:-$(( 1 + ($$ % 100) ))}"
export ROS_LOG_DIR="${ROS_LOG_DIR:-$_smolvla_root/log/ros}"
export HOME="${HOME:-/tmp}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYTHONPATH="$_smolvla_root/tools${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$ROS_LOG_DIR"
unset _smolvla_root _smolvla_u
