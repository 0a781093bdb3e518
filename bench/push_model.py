"""
Make tests/data/kuka_push.onnx: the trained push policy the closed-loop tests serve.

    .venv/bin/python bench/push_model.py                  # train (or reuse) seed 1, copy
    .venv/bin/python bench/push_model.py --seed 0

The policy is the final one of a push benchmark run (`bench/push_curve.py` documents them):
``trpo-ros train --env trpo_ros/KukaPush-v0 --n-envs 2 --total-steps 3000000 --seed 1``,
bench/runs/push/kuka_push_s1 (the committed model: 40 % deterministic success). When
the run directory holds no finished run, this script trains it (the committed run took 65 min
on the shared 2-core VM; an interrupted run continues with ``--resume``); then it evaluates
the run's policy (100 deterministic episodes), and copies its policy.onnx to
tests/data/kuka_push.onnx (atomically).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / 'tests' / 'data' / 'kuka_push.onnx'
TOTAL_STEPS = 3_000_000


def trpo_ros(*args: str) -> subprocess.CompletedProcess:
    """Run the package's CLI (this interpreter); raise when it fails."""
    return subprocess.run([sys.executable, '-m', 'trpo_ros.cli', *args], check=True,
                          text=True, capture_output=True)


def trained_steps(run: Path) -> int:
    """Env steps of the run's last logged iteration (0 before the first)."""
    with open(run / 'metrics.csv', newline='') as handle:
        rows = list(csv.DictReader(handle))
    return int(float(rows[-1]['env_steps'])) if rows else 0


def main() -> None:
    """Train or reuse the run, report its success, copy its ONNX model into tests/data."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args()
    run = REPO / 'bench' / 'runs' / 'push' / f'kuka_push_s{args.seed}'
    if not (run / 'config.json').is_file():
        trpo_ros('train', '--env', 'trpo_ros/KukaPush-v0', '--n-envs', '2', '--total-steps',
                 str(TOTAL_STEPS), '--seed', str(args.seed), '--run-dir', str(run),
                 '--no-progress')
    config = json.loads((run / 'config.json').read_text())
    if trained_steps(run) < config['total_steps']:
        trpo_ros('train', '--resume', str(run), '--no-progress')
    print(f"{run}: {config['env_id']}, seed {config['seed']}, {config['total_steps']:,} steps")
    print(trpo_ros('eval', str(run), '--episodes', '100').stdout.strip())
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    partial = TARGET.with_suffix('.onnx.partial')
    shutil.copyfile(run / 'policy.onnx', partial)
    os.replace(partial, TARGET)
    print(f'copied {run / "policy.onnx"} -> {TARGET.relative_to(REPO)}')


if __name__ == '__main__':
    main()
