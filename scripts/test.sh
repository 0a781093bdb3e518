#!/usr/bin/env bash
# The tests: install into ./.venv (with test tools), lint, then every tier (unit, integration,
# learning) of the suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-test.txt
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST  # tests never let DDS leave loopback
# ROS 2's real `ros2 launch` and CLI for tests/nodes/test_ros2_cli.py: from ../shared/ros2_launch
# when that folder exists (then a missing `ros2` fails those tests instead of skipping them).
if [ -d ../shared/ros2_launch ]; then
  if [ -f ../shared/ros2_launch/install.sh ] && [ ! -x .venv/bin/ros2 ]; then
    bash ../shared/ros2_launch/install.sh .venv
  fi
  export TRPO_ROS_REQUIRE_ROS2=1
fi
echo "ruff: $(.venv/bin/ruff --version)"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
