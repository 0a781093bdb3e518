#!/usr/bin/env bash
# The main job: install into ./.venv, train the default robot, export ONNX, serve it over ROS 2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Keep DDS discovery on this machine (set ROS_AUTOMATIC_DISCOVERY_RANGE yourself to override).
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
exec .venv/bin/trpo-ros demo "$@"
