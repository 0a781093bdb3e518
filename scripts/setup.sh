#!/usr/bin/env bash
# Create ./.venv (Python 3.11) and install trpo_ros with pinned dependencies.
# Usage: scripts/setup.sh [requirements file ...]   (re-runs only when a pin changes)
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin=${PYTHON:-}
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin=$candidate; break; fi
  done
fi
if [ -z "$python_bin" ]; then
  echo "trpo_ros: Python 3.11 not found (Debian/Ubuntu: apt-get install python3.11 python3.11-venv)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv || {
    echo "trpo_ros: could not create a virtualenv (Debian/Ubuntu: apt-get install python3.11-venv)" >&2
    exit 1
  }
fi

requirements=(requirements.txt "$@")
stamp=.venv/.trpo_ros-installed
wanted=$(cat "${requirements[@]}" setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "trpo_ros: installing into .venv (first run takes about a minute)"
  args=()
  for file in "${requirements[@]}"; do args+=(-r "$file"); done
  .venv/bin/pip install --quiet --disable-pip-version-check "${args[@]}" 2>&1 \
    | grep -v "^WARNING: Location" || true
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -e . 2>&1 \
    | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import trpo_ros, torch, rclpy, pybullet, onnxruntime" \
    || { echo "trpo_ros: install failed (see pip output above)" >&2; exit 1; }
  echo "$wanted" > "$stamp"
fi
