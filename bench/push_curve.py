"""
Snapshot a push-task learning run into bench/results/push/ (a table, the curve and metrics).

The runs themselves are long (3 M steps take about 40 min per seed on 2 cores) and resumable:

    .venv/bin/trpo-ros train --env trpo_ros/KukaPush-v0 --n-envs 2 --total-steps 3000000
        --seed 0 --run-dir bench/runs/push/kuka_push_s0 --no-progress   (one line)
    .venv/bin/trpo-ros train --resume bench/runs/push/kuka_push_s0   # after an interruption
    .venv/bin/python bench/push_curve.py bench/runs/push/kuka_push_s0

writes ``bench/results/push/<run>.md`` (batch return and success rate per 100k steps, the
deterministic evaluation when the run has finished) and copies its metrics.csv and
learning_curve.png next to it, so the curve can be committed while the run goes on.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
from pathlib import Path
import shutil

RESULTS = Path(__file__).resolve().parent / 'results' / 'push'


def main() -> None:
    """Summarize one run directory."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('run_dir', type=Path)
    parser.add_argument('--every', type=int, default=100_000, help='table row spacing (steps)')
    args = parser.parse_args()
    rows = list(csv.DictReader((args.run_dir / 'metrics.csv').open()))
    if not rows:
        raise SystemExit(f'{args.run_dir}: no iterations yet')
    name = args.run_dir.name
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run_dir / 'metrics.csv', RESULTS / f'{name}_metrics.csv')
    if (args.run_dir / 'learning_curve.png').is_file():
        shutil.copyfile(args.run_dir / 'learning_curve.png', RESULTS / f'{name}_curve.png')

    lines = [f'# {name}: push-task learning curve',
             '',
             f'Snapshot {datetime.date.today().isoformat()} of `{args.run_dir}` '
             f'({int(float(rows[-1]["env_steps"])):,} steps so far), written by '
             '`bench/push_curve.py`. Batch columns are means over the 8 iterations (16k steps) '
             'before each row; success = the cube within 5 cm of the goal at the episode end.',
             '',
             '| env steps | batch return | batch success | eval success (10 episodes) |',
             '| --- | --- | --- | --- |']
    next_row = args.every
    for i, row in enumerate(rows):
        steps = float(row['env_steps'])
        if steps < next_row and i != len(rows) - 1:
            continue
        window = rows[max(0, i - 7):i + 1]
        ret = sum(float(r['rollout/ep_return_mean']) for r in window) / len(window)
        success = [float(r['rollout/success_rate']) for r in window
                   if not math.isnan(float(r['rollout/success_rate']))]
        evals = [float(r['eval/success_rate']) for r in rows[:i + 1]
                 if not math.isnan(float(r['eval/success_rate']))]
        lines.append(f'| {int(steps):,} | {ret:.1f} | '
                     f'{sum(success) / max(len(success), 1):.0%} | '
                     f'{f"{evals[-1]:.0%}" if evals else "–"} |')
        next_row = (int(steps) // args.every + 1) * args.every
    (RESULTS / f'{name}.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
