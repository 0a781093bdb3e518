#!/usr/bin/env bash
# The tests: install into ./.venv (with test tools), lint, then every tier (unit, integration,
# learning) of the suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-test.txt
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST  # tests never let DDS leave loopback
echo "ruff: $(.venv/bin/ruff --version)"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
