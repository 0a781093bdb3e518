"""
Fingerprint of the package's behaviour, to compare two revisions bit for bit.

Trains trpo_ros/KukaReach-v0 for 10 iterations with a fixed seed, exports the policy, and
prints a SHA-256 of metrics.csv (timing columns left out) and of the ONNX outputs on a fixed
set of observations. Run it on both revisions (e.g. two `git worktree`s) and compare:

    python bench/behaviour_digest.py --out /tmp/digest_new.json
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path
import tempfile

import numpy as np


def main() -> None:
    """Train, export, print and write the digests."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, help='write the digests here (JSON)')
    parser.add_argument('--iterations', type=int, default=10)
    args = parser.parse_args()

    from trpo_ros.core.config import load_config
    from trpo_ros.core.trainer import Trainer
    from trpo_ros.export import export_onnx
    from trpo_ros.runtime import Policy

    n_steps = 1024
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / 'run'
        config = load_config(env_id='trpo_ros/KukaReach-v0', seed=0, n_envs=1,
                             n_steps=n_steps, total_steps=n_steps * args.iterations,
                             eval_every=0, checkpoint_every=1000)
        trainer = Trainer(config, run_dir, tensorboard=False, exporter=export_onnx)
        try:
            trainer.train()
        finally:
            trainer.close()
        with (run_dir / 'metrics.csv').open() as f:
            rows = [{k: v for k, v in row.items() if not k.startswith('time/')}
                    for row in csv.DictReader(f)]
        policy = Policy.load(run_dir / 'policy.onnx')
        rng = np.random.default_rng(123)
        obs = rng.uniform(-1.0, 1.0, (64, policy.obs_dim)).astype(np.float32)
        actions = np.stack([policy.act(o) for o in obs])
    digests = {
        'metrics_rows': len(rows),
        'metrics_sha256': hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest(),
        'onnx_outputs_sha256': hashlib.sha256(actions.tobytes()).hexdigest(),
    }
    print(json.dumps(digests, indent=2))
    if args.out:
        args.out.write_text(json.dumps(digests, indent=2) + '\n')


if __name__ == '__main__':
    main()
