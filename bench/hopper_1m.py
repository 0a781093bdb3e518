"""
1M-step side-by-side bench: trpo_ros (shipped defaults) vs sb3-contrib TRPO (rl-zoo settings).

Usage (from the repository root, after the README's install and
`.venv/bin/pip install -r bench/requirements-bench.txt` for sb3-contrib):

    .venv/bin/python bench/hopper_1m.py [--steps 1000000] [--seeds 0 1 2 3 4]
        [--envs HopperBulletEnv-v0 HalfCheetahBulletEnv-v0] [--impl trpo_ros sb3]
        [--variant default] [--nice 19] [--results CSV] [--runs DIR] [--stop-at HH:MM]
        [--report]

A full bench (2 implementations x 2 envs x 5 seeds x 1M steps) takes many hours on 2 cores;
run it in the background, e.g. `nohup .venv/bin/python bench/hopper_1m.py --nice 19 &`.
Trainings run one at a time. Every finished (implementation, env, seed, variant, steps) is
appended to the results CSV (default bench/results/hopper_1m.csv at 1M steps, else
bench/results/hopper_<steps/1000>k.csv) and the markdown table next to it (same name, .md)
is regenerated; a re-run skips what the CSV already holds. A run killed half-way continues
from its run directory (default bench/runs/<results name>/, gitignored): trpo_ros runs with
`trpo-ros train --resume RUN_DIR`, sb3 from the model it saves every ~100k steps. Two
drivers may run at once: each run directory is locked while a driver works on it.

trpo_ros: exactly what a user types, `trpo-ros train --env ENV --n-envs 2 --total-steps N
--seed S --run-dir DIR --no-progress` (as a fresh `python -m trpo_ros.cli` process, so the
shipped defaults are the CLI's), plus the config overrides of `--variant` for ablations;
then the evaluation of `trpo-ros eval DIR --episodes 10` (newest checkpoint, deterministic,
reset seeds 12345 + episode).

sb3-contrib: TRPO with the rl-baselines3-zoo's hyperparams/trpo.yml entry for the env
(HopperBulletEnv-v0 inherits the HalfCheetahBulletEnv-v0 "pybullet-defaults": n_envs 2,
n_steps 1024, batch_size 128, gamma 0.99, gae_lambda 0.95, sub_sampling_factor 1,
cg_max_steps 25, cg_damping 0.1, n_critic_updates 20, learning_rate 1e-3, normalize: true,
i.e. VecNormalize(gamma=0.99) with its defaults; everything else sb3's defaults: target_kl
0.01, line search 10 x 0.8, MlpPolicy 64-64 tanh). Envs as the zoo makes them: make_vec_env
(Monitor + DummyVecEnv, seed S). Not reproduced from the zoo's train.py: its periodic
EvalCallback (5 episodes every 10k steps); torch threads are 1 in both (the zoo leaves
torch's default). Evaluation: 10 deterministic episodes on a fresh env with the same reset
seeds as ours, observations normalized by the frozen VecNormalize statistics.

Columns of the table:
  eval return    mean of the 10 deterministic episodes, per seed; then mean and min over seeds.
  collapses      iterations after the first 100k env steps whose batch return (trpo_ros's
                 `rollout/ep_return_mean`: mean return of the episodes that ended in the
                 batch; sb3: the same, logged per rollout by a callback from Monitor's
                 episode infos) is below half of the run's best batch return so far (only
                 while that best is > 0; batches in which no episode ended are skipped).
  KL check       trpo_ros only, from metrics.csv: every accepted step's measured KL
                 (`train/kl`, on that batch's states) <= the delta in force (`train/delta`);
                 'fresh>d' counts iterations whose KL of the previous update on the new
                 batch's states (`train/kl_next_batch`) exceeded that update's delta (info).
  steps/s        env steps / wall time of the whole training process (start to exit,
                 interpreter start-up, updates and the in-training evaluations included:
                 ours evaluates every 10 iterations and at the end as shipped, the sb3 worker
                 once at the end). Runs resumed after an interrupt have no steps/s. The load
                 average at the start of each run is in the CSV: speeds from a loaded
                 machine are not the idle-machine numbers the issue asks for.

Variants (`--variant NAME`, trpo_ros only; sb3 is always 'zoo'): a name from VARIANTS below
or ad hoc overrides 'field=value,field=value' of TRPOConfig fields.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
import contextlib
import csv
import datetime
import fcntl
import json
import math
import os
from pathlib import Path
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
EVAL_EPISODES = 10
EVAL_SEED = 12345  # `trpo-ros eval`'s default seed of the first episode
N_ENVS = 2
COLLAPSE_AFTER = 100_000
SB3_SAVE_EVERY = 100_000  # env steps between sb3 resume points

# Named trpo_ros config overrides for ablations ('default' = as shipped).
VARIANTS: dict[str, dict[str, Any]] = {
    'default': {},
    'n1024': {'n_steps': 1024},
    'dmax04': {'delta_max': 0.04},
    'rb': {'rollback_on_regression': True},
    'n1024-dmax04': {'n_steps': 1024, 'delta_max': 0.04},
    'n1024-rb': {'n_steps': 1024, 'rollback_on_regression': True},
    'n1024-dmax04-rb': {'n_steps': 1024, 'delta_max': 0.04, 'rollback_on_regression': True},
    'n1024-critic20': {'n_steps': 1024, 'n_critic_epochs': 20},
    'n1024-zoo': {'n_steps': 1024, 'n_critic_epochs': 20, 'cg_iters': 25},  # zoo's CG, critic
    'n1536': {'n_steps': 1536},
}

# rl-baselines3-zoo hyperparams/trpo.yml (DLR-RM/rl-baselines3-zoo @ 22e3ff2, 2026-04-23).
_ZOO_PYBULLET = {'n_envs': 2, 'n_steps': 1024, 'batch_size': 128, 'gamma': 0.99,
                 'gae_lambda': 0.95, 'sub_sampling_factor': 1, 'cg_max_steps': 25,
                 'cg_damping': 0.1, 'n_critic_updates': 20, 'learning_rate': 1e-3}
ZOO: dict[str, dict[str, Any]] = {
    'HalfCheetahBulletEnv-v0': _ZOO_PYBULLET,  # n_timesteps 2e6 in the zoo
    'HopperBulletEnv-v0': _ZOO_PYBULLET,       # n_timesteps 1e6
}

FIELDS = ['impl', 'env', 'seed', 'variant', 'steps', 'env_steps', 'iterations', 'eval_mean',
          'eval_std', 'best_batch_return', 'collapses', 'iters_after_100k', 'kl_checked',
          'kl_violations', 'kl_max_ratio', 'kl_fresh_over', 'rolled_back', 'wall_s',
          'steps_per_s', 'resumed', 'load_start', 'overrides', 'finished', 'machine']


# ---------------------------------------------------------------------------- analysis


def count_collapses(curve: list[tuple[float, float]],
                    after: int = COLLAPSE_AFTER) -> tuple[int, int, float]:
    """
    Count iterations after `after` env steps whose batch return < half the best so far.

    `curve` is (env_steps at the end of the batch, batch return) per iteration. Returns
    (collapses, iterations considered after `after`, best batch return). NaN returns (no
    episode ended in the batch) are skipped; nothing counts while the best is <= 0.
    """
    best, collapses, considered = -math.inf, 0, 0
    for steps, ret in curve:
        if not math.isfinite(ret):
            continue
        if steps > after:
            considered += 1
            if best > 0 and ret < 0.5 * best:
                collapses += 1
        best = max(best, ret)
    return collapses, considered, best


def read_metrics(path: Path) -> list[dict[str, float]]:
    """trpo_ros's metrics.csv as float rows (empty cells are NaN)."""
    with path.open(newline='') as f:
        return [{k: float(v) if v not in ('', None) else math.nan for k, v in row.items()}
                for row in csv.DictReader(f)]


def kl_check(rows: list[dict[str, float]]) -> dict[str, float]:
    """Check from metrics.csv rows that each accepted step's measured KL is <= its delta."""
    accepted = [r for r in rows if r['train/step_accepted'] == 1.0]
    ratios = [r['train/kl'] / r['train/delta'] for r in accepted]
    fresh_over = 0
    for previous, row in zip(rows, rows[1:]):
        if previous['train/step_accepted'] == 1.0 and \
                row['train/kl_next_batch'] > previous['train/delta']:
            fresh_over += 1
    return {'kl_checked': len(accepted),
            'kl_violations': sum(ratio > 1.0 for ratio in ratios),
            'kl_max_ratio': max(ratios) if ratios else math.nan,
            'kl_fresh_over': fresh_over,
            'rolled_back': int(sum(r.get('train/rolled_back', 0.0) == 1.0 for r in rows))}


# ---------------------------------------------------------------------------- variants


def variant_overrides(variant: str) -> dict[str, Any]:
    """Config overrides of a named variant or of an ad hoc 'field=value,field=value'."""
    if variant in VARIANTS:
        return VARIANTS[variant]
    from trpo_ros.core.config import coerce

    overrides: dict[str, Any] = {}
    for item in filter(None, variant.split(',')):
        name, sep, value = item.partition('=')
        if not sep:
            raise SystemExit(f'unknown variant {variant!r}: not one of {sorted(VARIANTS)} '
                             'nor field=value,...')
        overrides[name.strip()] = coerce(name.strip(), value.strip())
    return overrides


def cli_flags(overrides: dict[str, Any]) -> list[str]:
    """`trpo-ros train` flags for config overrides."""
    flags: list[str] = []
    for name, value in overrides.items():
        if isinstance(value, (tuple, list)):
            value = ','.join(map(str, value))
        flags += ['--' + name.replace('_', '-'), str(value).lower()
                  if isinstance(value, bool) else str(value)]
    return flags


# ---------------------------------------------------------------------------- trpo_ros


def _child_env() -> dict[str, str]:
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}


def run_trpo_ros(env_id: str, seed: int, steps: int, variant: str,
                 run_dir: Path) -> dict[str, Any]:
    """Train (or resume) with `trpo-ros train`, evaluate like `trpo-ros eval`, analyse."""
    timing_path = run_dir / 'bench_timing.json'
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    if not timing.get('complete'):
        resumed = (run_dir / 'checkpoints').is_dir() and any(
            (run_dir / 'checkpoints').glob('ckpt_*.pt'))
        cli = [sys.executable, '-m', 'trpo_ros.cli', 'train']
        if resumed:
            command = cli + ['--resume', str(run_dir), '--total-steps', str(steps),
                             '--no-progress']
        else:
            command = cli + ['--env', env_id, '--n-envs', str(N_ENVS), '--total-steps',
                             str(steps), '--seed', str(seed), '--run-dir', str(run_dir),
                             '--no-progress'] + cli_flags(variant_overrides(variant))
        log(f'  $ {" ".join(command[1:])}')
        run_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with (run_dir / 'bench_train.log').open('a') as out:
            proc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                                  env=_child_env(), cwd=ROOT)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f'trpo-ros train exited {proc.returncode}; see '
                               f'{run_dir / "bench_train.log"}')
        timing = {'complete': True, 'wall': wall,
                  'resumed': resumed or bool(timing.get('resumed'))}
        timing_path.write_text(json.dumps(timing))

    from trpo_ros.core.checkpoint import load_policy
    from trpo_ros.core.rollout import evaluate, make_env

    bundle = load_policy(run_dir)
    env = make_env(bundle.config.env_id, bundle.config.env_kwargs)
    try:
        result = evaluate(env, bundle.act, EVAL_EPISODES, EVAL_SEED)
    finally:
        env.close()
    rows = read_metrics(run_dir / 'metrics.csv')
    curve = [(r['env_steps'], r['rollout/ep_return_mean']) for r in rows]
    collapses, considered, best = count_collapses(curve)
    env_steps = int(rows[-1]['env_steps'])
    return {'env_steps': env_steps, 'iterations': len(rows),
            'eval_mean': result['return_mean'], 'eval_std': result['return_std'],
            'best_batch_return': best, 'collapses': collapses,
            'iters_after_100k': considered, **kl_check(rows), 'wall_s': timing['wall'],
            'steps_per_s': math.nan if timing['resumed'] else env_steps / timing['wall'],
            'resumed': int(timing['resumed']),
            'overrides': json.dumps(variant_overrides(variant), sort_keys=True)}


# ---------------------------------------------------------------------------- sb3-contrib


def sb3_worker(spec: dict[str, Any]) -> None:
    """Subprocess: train sb3-contrib TRPO with the zoo's settings (resumable), evaluate."""
    import numpy as np
    import pybullet_envs_gymnasium  # noqa: F401  (registers the Bullet env ids)
    from sb3_contrib import TRPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize
    import torch
    from trpo_ros.core.rollout import evaluate, make_env

    torch.set_num_threads(1)
    env_id, seed, steps = spec['env'], spec['seed'], spec['steps']
    run_dir = Path(spec['run_dir'])
    run_dir.mkdir(parents=True, exist_ok=True)
    hp = dict(ZOO[env_id])
    n_envs = hp.pop('n_envs')
    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    model_path, stats_path = run_dir / 'model.zip', run_dir / 'vecnormalize.pkl'
    state_path = run_dir / 'progress.json'
    resumed = state_path.exists() and model_path.exists() and stats_path.exists()
    if resumed:
        state = json.loads(state_path.read_text())
        venv = VecNormalize.load(str(stats_path), venv)
        model = TRPO.load(str(model_path), env=venv, device='cpu')
    else:
        state = {'curve': []}
        venv = VecNormalize(venv, gamma=hp['gamma'])  # zoo: normalize: true, gamma of the algo
        model = TRPO('MlpPolicy', venv, seed=seed, device='cpu', verbose=0, **hp)

    class RolloutLog(BaseCallback):
        """Mean return of the episodes that ended in each rollout; resume points."""

        def __init__(self) -> None:
            super().__init__()
            self.returns: list[float] = []
            self.next_save = (model.num_timesteps // SB3_SAVE_EVERY + 1) * SB3_SAVE_EVERY

        def _on_rollout_start(self) -> None:
            # The model here is after the previous update: a consistent resume point.
            if self.num_timesteps >= self.next_save and self.num_timesteps < steps:
                self.next_save += SB3_SAVE_EVERY
                model.save(str(run_dir / 'model.tmp.zip'))
                venv.save(str(run_dir / 'vecnormalize.tmp.pkl'))
                os.replace(run_dir / 'model.tmp.zip', model_path)
                os.replace(run_dir / 'vecnormalize.tmp.pkl', stats_path)
                state_path.write_text(json.dumps(state))

        def _on_step(self) -> bool:
            for info in self.locals['infos']:
                if 'episode' in info:
                    self.returns.append(float(info['episode']['r']))
            return True

        def _on_rollout_end(self) -> None:
            mean = float(np.mean(self.returns)) if self.returns else math.nan
            state['curve'].append([int(self.num_timesteps), mean])
            self.returns = []

    model.learn(total_timesteps=steps - model.num_timesteps, callback=RolloutLog(),
                reset_num_timesteps=not resumed)
    venv.training = False  # freeze the observation statistics for evaluation

    def act(obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(venv.normalize_obs(obs[None].astype(np.float32)),
                                  deterministic=True)
        return action[0]

    eval_env = make_env(env_id)
    result = evaluate(eval_env, act, EVAL_EPISODES, EVAL_SEED)
    eval_env.close()
    venv.close()
    (run_dir / 'curve.json').write_text(json.dumps(state['curve']))
    print('RESULT ' + json.dumps({'env_steps': int(model.num_timesteps),
                                  'iterations': len(state['curve']),
                                  'eval_mean': result['return_mean'],
                                  'eval_std': result['return_std'], 'resumed': resumed}),
          flush=True)


def run_sb3(env_id: str, seed: int, steps: int, run_dir: Path) -> dict[str, Any]:
    """Run the sb3 worker in a fresh interpreter (timed start to exit) and analyse."""
    spec = {'env': env_id, 'seed': seed, 'steps': steps, 'run_dir': str(run_dir)}
    command = [sys.executable, str(Path(__file__).resolve()), '--sb3-worker', json.dumps(spec)]
    log(f'  $ sb3 worker {json.dumps(spec)}')
    run_dir.mkdir(parents=True, exist_ok=True)
    was_resumed = (run_dir / 'progress.json').exists()
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=_child_env(), cwd=ROOT)
    wall = time.perf_counter() - started
    (run_dir / 'bench_train.log').write_text(proc.stdout + proc.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f'sb3 worker exited {proc.returncode}:\n{proc.stderr[-3000:]}')
    result = json.loads(lines[-1][len('RESULT '):])
    curve = [(float(s), float(r)) for s, r in json.loads((run_dir / 'curve.json').read_text())]
    collapses, considered, best = count_collapses(curve)
    resumed = bool(result.pop('resumed')) or was_resumed
    return {**result, 'best_batch_return': best, 'collapses': collapses,
            'iters_after_100k': considered, 'wall_s': wall,
            'steps_per_s': math.nan if resumed else result['env_steps'] / wall,
            'resumed': int(resumed), 'overrides': json.dumps(ZOO[env_id], sort_keys=True)}


# ---------------------------------------------------------------------------- results


def log(message: str) -> None:
    """Timestamped progress line on stdout."""
    print(f'[{datetime.datetime.now():%H:%M:%S}] {message}', flush=True)


def default_results(steps: int) -> Path:
    """bench/results/hopper_1m.csv at 1M steps, else hopper_<steps/1000>k.csv."""
    name = 'hopper_1m' if steps == 1_000_000 else f'hopper_{steps // 1000}k'
    return BENCH / 'results' / f'{name}.csv'


def read_results(path: Path) -> list[dict[str, str]]:
    """Rows of the results CSV (empty if it does not exist)."""
    if not path.exists():
        return []
    with path.open(newline='') as f:
        return list(csv.DictReader(f))


def result_key(row: dict[str, Any]) -> tuple[str, str, int, str, int]:
    """Return what identifies one result: (implementation, env, seed, variant, steps)."""
    return (str(row['impl']), str(row['env']), int(row['seed']), str(row['variant']),
            int(row['steps']))


def append_result(path: Path, row: dict[str, Any]) -> None:
    """Append one row to the results CSV (header on creation), under a file lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(BENCH / 'runs' / f'.{path.name}.lock', blocking=True):  # gitignored
        new = not path.exists()
        with path.open('a', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: _cell(row.get(k, '')) for k in FIELDS})


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return '' if math.isnan(value) else f'{value:.6g}'
    return value


@contextlib.contextmanager
def locked(path: Path, blocking: bool) -> Iterator[bool]:
    """Exclusive flock on `path`; yields False (without waiting) if held and not blocking."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open('a') as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _num(text: str) -> float:
    return float(text) if text not in ('', None) else math.nan


def _fmt(value: float, digits: int = 0) -> str:
    return '—' if not math.isfinite(value) else f'{value:,.{digits}f}'


def markdown(rows: list[dict[str, str]], source: Path) -> str:
    """Build the results table: a section per (env, steps), a line per (impl, variant)."""
    out = [f'# {source.stem}: trpo_ros vs sb3-contrib TRPO',
           '',
           f'Generated by `bench/hopper_1m.py` from `{source.name}` (one line per finished '
           'run there; see the script docstring for the columns). trpo_ros: `trpo-ros '
           "train --n-envs 2` with the shipped defaults plus the variant's overrides; "
           "sb3-contrib: the rl-zoo's settings. Eval: 10 deterministic episodes per seed. "
           'Collapses: iterations after 100k steps whose batch return fell below half the '
           'best so far (per seed). steps/s: whole training process; median over seeds; '
           '"load" is the median 1-min load average at the start of the runs (2 cores: '
           'a load above ~0.3 means the speed is not an idle-machine number).',
           '']
    groups: dict[tuple[str, int], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault((row['env'], int(row['steps'])), []).append(row)
    for (env, steps), group in sorted(groups.items()):
        machines = sorted({r['machine'] for r in group})
        dates = sorted(r['finished'][:10] for r in group)
        out += [f'## {env}, {steps:,} steps', '',
                f'Runs finished {dates[0]} – {dates[-1]} on: {"; ".join(machines)}.', '',
                '| impl | variant | seeds | eval return per seed | mean | min | collapses '
                'per seed | KL check (accepted steps) | steps/s (load) |',
                '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
        lines: dict[tuple[str, str], list[dict[str, str]]] = {}
        for row in group:
            lines.setdefault((row['impl'], row['variant']), []).append(row)
        order = sorted(lines, key=lambda k: (k[0] != 'trpo_ros', k[1] != 'default', k))
        for impl, variant in order:
            runs = sorted(lines[(impl, variant)], key=lambda r: int(r['seed']))
            evals = [_num(r['eval_mean']) for r in runs]
            per_seed = ', '.join(f"{r['seed']}: {_fmt(e)}" for r, e in zip(runs, evals))
            collapses = ', '.join(r['collapses'] for r in runs)
            if impl == 'trpo_ros':
                checked = sum(int(r['kl_checked']) for r in runs)
                bad = sum(int(r['kl_violations']) for r in runs)
                worst = max(_num(r['kl_max_ratio']) for r in runs)
                fresh = sum(int(r['kl_fresh_over']) for r in runs)
                kl = (f"{'ok' if bad == 0 else f'{bad} OVER'} ({checked} steps, max KL/δ "
                      f'{worst:.3f}; fresh>δ {fresh})')
            else:
                kl = 'n/a (sb3)'
            sps = [_num(r['steps_per_s']) for r in runs if r['steps_per_s']]
            loads = [_num(r['load_start']) for r in runs]
            speed = (f'{statistics.median(sps):,.0f} ({statistics.median(loads):.1f})'
                     if sps else '—')
            out.append(f'| {impl} | {variant} | {len(runs)} | {per_seed} | '
                       f'{_fmt(statistics.fmean(evals))} | {_fmt(min(evals))} | {collapses} '
                       f'| {kl} | {speed} |')
        overrides = {f"{r['impl']} {r['variant']}": r['overrides'] for r in group}
        out += ['', 'Overrides per line: ' + '; '.join(
            f'{name}: `{text}`' for name, text in sorted(overrides.items())) + '.', '']
    return '\n'.join(out) + '\n'


def write_markdown(results: Path) -> Path:
    """Regenerate the .md next to the results CSV."""
    path = results.with_suffix('.md')
    path.write_text(markdown(read_results(results), results))
    return path


def machine() -> str:
    """One-line description of this machine and the software versions."""
    import torch

    versions = f'torch {torch.__version__}'
    try:
        import sb3_contrib

        versions += f', sb3-contrib {sb3_contrib.__version__}'
    except ImportError:
        pass
    return (f'{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} '
            f'{platform.release()}, Python {platform.python_version()}, {versions}')


# ---------------------------------------------------------------------------- driver


def main() -> None:
    """Parse the flags and run every missing (impl, env, seed) one after the other."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--steps', type=int, default=1_000_000, help='env steps per run')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    parser.add_argument('--envs', nargs='+', default=['HopperBulletEnv-v0',
                                                      'HalfCheetahBulletEnv-v0'])
    parser.add_argument('--impl', nargs='+', choices=('trpo_ros', 'sb3'),
                        default=['trpo_ros', 'sb3'])
    parser.add_argument('--variant', nargs='+', default=['default'],
                        help=f'trpo_ros config override sets: {", ".join(VARIANTS)} or '
                             "'field=value,...' (several run one after the other)")
    parser.add_argument('--nice', type=int, default=0, help='os.nice increment (e.g. 19)')
    parser.add_argument('--results', type=Path, default=None,
                        help='results CSV (default bench/results/hopper_1m.csv at 1M steps)')
    parser.add_argument('--runs', type=Path, default=None,
                        help='parent of the run directories (default bench/runs/<results>)')
    parser.add_argument('--stop-at', default=None, metavar='HH:MM',
                        help='start no new run after this local time (a running one finishes)')
    parser.add_argument('--report', action='store_true',
                        help='only regenerate the markdown table from the CSV')
    parser.add_argument('--sb3-worker', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sb3_worker is not None:
        sb3_worker(json.loads(args.sb3_worker))
        return
    results = args.results or default_results(args.steps)
    if args.report:
        log(f'wrote {write_markdown(results)}')
        return
    if args.nice:
        os.nice(args.nice)
    for variant in args.variant:
        variant_overrides(variant)  # fail early on a bad variant
    if 'sb3' in args.impl:
        try:
            import sb3_contrib  # noqa: F401
        except ImportError:
            raise SystemExit('sb3-contrib is missing: .venv/bin/pip install -r '
                             'bench/requirements-bench.txt') from None
    runs_root = args.runs or BENCH / 'runs' / results.stem
    todo = []
    for seed in args.seeds:  # seed-major: a partial bench has every line on the same seeds
        for env_id in args.envs:
            for impl in args.impl:
                for variant in (args.variant if impl == 'trpo_ros' else ['zoo']):
                    if impl == 'sb3' and env_id not in ZOO:
                        raise SystemExit(f'no rl-zoo settings for {env_id} here')
                    todo.append((impl, env_id, seed, variant))
    failed: list[tuple[str, str, int, str, int]] = []
    for impl, env_id, seed, variant in todo:
        key = (impl, env_id, seed, variant, args.steps)
        if args.stop_at and f'{datetime.datetime.now():%H:%M}' >= args.stop_at:
            log(f'stop: it is past {args.stop_at}; {key} and the rest not started')
            break
        if key in {result_key(r) for r in read_results(results)}:
            log(f'skip {key}: already in {results.name}')
            continue
        name = f'{impl}_{env_id.split("-")[0]}_{variant.replace("=", "-").replace(",", "_")}'
        run_dir = runs_root / f'{name}_s{seed}'
        with locked(run_dir.parent / f'.{run_dir.name}.lock', blocking=False) as mine:
            if not mine:
                log(f'skip {key}: another driver is running it')
                continue
            if key in {result_key(r) for r in read_results(results)}:
                continue
            load = os.getloadavg()[0]
            log(f'start {key} in {run_dir} (load {load:.2f})')
            try:
                if impl == 'trpo_ros':
                    result = run_trpo_ros(env_id, seed, args.steps, variant, run_dir)
                else:
                    result = run_sb3(env_id, seed, args.steps, run_dir)
            except RuntimeError as exc:  # a failed run is reported; the others go on
                failed.append(key)
                log(f'FAILED {key}: {exc}')
                continue
            row = {'impl': impl, 'env': env_id, 'seed': seed, 'variant': variant,
                   'steps': args.steps, 'load_start': round(load, 2), 'machine': machine(),
                   'finished': datetime.datetime.now().isoformat(timespec='seconds'),
                   **result}
            append_result(results, row)
            write_markdown(results)
            log(f"done {key}: eval {result['eval_mean']:.0f}, collapses "
                f"{result['collapses']}/{result['iters_after_100k']}, "
                f"{_fmt(result['steps_per_s'])} steps/s")
    if failed:
        raise SystemExit(f'{len(failed)} run(s) failed (run again to retry): {failed}')


if __name__ == '__main__':
    main()
