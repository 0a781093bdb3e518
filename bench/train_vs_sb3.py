"""
Training speed and final deterministic return: trpo_ros TRPO vs sb3-contrib TRPO.

Usage:
    .venv/bin/python bench/train_vs_sb3.py [--steps 100000] [--seeds 0 1 2] [--n-steps 1024]
        [--eval-episodes 10] [--cg-iters 10] [--adaptive] [--quick] [--scratch DIR] [--json PATH]

Both algorithms train on the same env (default HopperBulletEnv-v0, registered by
`pybullet_envs_gymnasium`) for the same number of env steps with matched settings:

    n_envs 1, n_steps, batch = n_steps       target_kl 0.01 (ours: trust_region='fixed', below)
    CG iterations (cg_iters = cg_max_steps)  cg_damping 0.1, sub_sampling / fisher_subsample = all
    line search 10 steps, decay 0.8          (sb3 defaults; ours is set to match)
    critic: Adam lr 1e-3, 10 epochs x minibatch 128 (sb3 n_critic_updates / batch_size)
    separate 64-64 tanh MLPs for pi and V, orthogonal init (gains sqrt2 / 0.01 / 1)
    log-std init -0.5 (ours: init_log_std, sb3: log_std_init), gamma 0.99, GAE lambda 0.95
    obs normalization clip 10 + reward scaling by the discounted-return std, clip 10, both
        updated every step (ours: normalize_obs + normalize_rewards + reward_clip,
        sb3: VecNormalize(norm_obs, norm_reward))
    advantage standardization on, torch.set_num_threads(1) in both.

The trust region needs translating: sb3-contrib's KL is `kl_divergence(...).mean()` over a
[batch, act_dim] tensor, i.e. the mean over action DIMENSIONS as well as states, while ours
(as in the paper) sums over dimensions. So sb3's target_kl 0.01 on Hopper's 3 action
dimensions is a trust region of 0.03 in our KL, and its damping 0.1 on F / 3 is 0.3 on F:
with delta = act_dim * target_kl and cg_damping = act_dim * 0.1 ours takes exactly sb3's step
(row 'ours-matched'; `sb3_kl_factor` checks the per-dimension mean on sb3's own code each run).
Row 'ours-fixed' keeps delta 0.01 in our KL: act_dim times tighter than sb3.

Remaining (inherent) differences: sb3's CG starts from 1e-4 * randn and spends one extra
Fisher-vector product on the initial residual; VecNormalize restarts the discounted return
of its reward scaling at every episode end, ours at terminations only (a truncated task goes
on); sb3's Adam uses eps 1e-5 (ours 1e-8); sb3 constrains KL(new || old), ours KL(old || new).
bench/hopper_ablation.py swaps our normalization for gymnasium's wrappers one at a time.

Each training run is a fresh subprocess (isolation; interpreter start-up is not timed). Runs
are interleaved seed by seed, alternating which algorithm goes first, and the table reports
medians over seeds so that load from other processes on the machine hurts both alike.

steps/s = env steps / wall time of the training loop only: sb3 `model.learn()` (verbose 0, no
callbacks); ours the `Trainer.train_iteration()` loop that `Trainer.train()` runs (eval_every 0,
no checkpoint/ONNX export inside the loop, tensorboard off; the final save that `train()` does
after the loop is excluded). Environment construction is not timed for either.

Evaluation (not timed): N episodes with deterministic actions on a fresh env with the
same reset seeds for both (seed + 10000 + episode). Ours: `Trainer.evaluate(N)`. sb3:
`model.predict(VecNormalize.normalize_obs(obs), deterministic=True)` with the VecNormalize
statistics frozen (training=False), via the same `trpo_ros.core.rollout.evaluate` loop.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

MATCHED = {
    'gamma': 0.99,
    'gae_lambda': 0.95,
    'delta': 0.01,
    'cg_damping': 0.1,
    'line_search_steps': 10,
    'line_search_decay': 0.8,
    'critic_lr': 1e-3,
    'n_critic_epochs': 10,
    'critic_batch_size': 128,
    'hidden': (64, 64),
    'init_log_std': -0.5,
    'obs_clip': 10.0,
    'reward_clip': 10.0,
}


# ---------------------------------------------------------------------------- workers


def matched_config(spec: dict[str, Any]) -> Any:
    """Our TRPOConfig for one run: MATCHED plus the spec's env, seed, sizes, trust region."""
    from trpo_ros.core.config import TRPOConfig

    return TRPOConfig(
        env_id=spec['env_id'], seed=spec['seed'], total_steps=spec['steps'], n_envs=1,
        n_steps=spec['n_steps'], gamma=MATCHED['gamma'], gae_lambda=MATCHED['gae_lambda'],
        hidden_sizes=MATCHED['hidden'], init_log_std=MATCHED['init_log_std'],
        normalize_obs=True, obs_clip=MATCHED['obs_clip'], normalize_rewards=True,
        reward_clip=MATCHED['reward_clip'],
        normalize_advantages=True, delta=spec['delta'], delta_max=max(spec['delta'], 0.02),
        trust_region=spec['trust_region'], cg_iters=spec['cg_iters'],
        cg_damping=spec['cg_damping'], fisher_subsample=1.0,
        line_search_steps=MATCHED['line_search_steps'],
        line_search_decay=MATCHED['line_search_decay'], critic_lr=MATCHED['critic_lr'],
        n_critic_epochs=MATCHED['n_critic_epochs'],
        critic_batch_size=MATCHED['critic_batch_size'], rollback_on_regression=False,
        checkpoint_every=10**9, eval_every=0, eval_episodes=spec['eval_episodes'],
        torch_threads=1)


def run_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """Train trpo_ros's Trainer; returns timing and evaluation."""
    import torch
    from trpo_ros.core.trainer import Trainer

    torch.set_num_threads(1)
    config = matched_config(spec)
    with tempfile.TemporaryDirectory(prefix='ours_', dir=spec['scratch']) as run_dir:
        trainer = Trainer(config, Path(run_dir) / 'run', tensorboard=False)
        returns: list[float] = []
        started = time.perf_counter()
        while trainer.env_steps < config.total_steps:  # = Trainer.train() minus the final save
            row = trainer.train_iteration()
            returns.append(row['rollout/ep_return_mean'])
        wall = time.perf_counter() - started
        steps, iterations = trainer.env_steps, trainer.iteration
        result = trainer.evaluate(spec['eval_episodes'])
        trainer.close()
    return {'steps': steps, 'iterations': iterations, 'wall': wall,
            'eval_mean': result['return_mean'], 'eval_std': result['return_std'],
            'train_return_last': returns[-1] if returns else float('nan')}


def run_sb3(spec: dict[str, Any]) -> dict[str, Any]:
    """Train sb3-contrib TRPO with the matched settings; returns timing and evaluation."""
    import numpy as np
    from sb3_contrib import TRPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize
    import torch
    from trpo_ros.core.rollout import evaluate, make_env

    torch.set_num_threads(1)
    env_id = spec['env_id']
    venv = make_vec_env(lambda: make_env(env_id), n_envs=1, seed=spec['seed'])
    venv = VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=MATCHED['obs_clip'],
                        clip_reward=MATCHED['reward_clip'], gamma=MATCHED['gamma'])
    model = TRPO(
        'MlpPolicy', venv, learning_rate=MATCHED['critic_lr'], n_steps=spec['n_steps'],
        batch_size=MATCHED['critic_batch_size'], gamma=MATCHED['gamma'],
        cg_max_steps=spec['cg_iters'], cg_damping=MATCHED['cg_damping'],
        line_search_shrinking_factor=MATCHED['line_search_decay'],
        line_search_max_iter=MATCHED['line_search_steps'],
        n_critic_updates=MATCHED['n_critic_epochs'], gae_lambda=MATCHED['gae_lambda'],
        normalize_advantage=True, target_kl=MATCHED['delta'], sub_sampling_factor=1,
        policy_kwargs={'net_arch': {'pi': list(MATCHED['hidden']), 'vf': list(MATCHED['hidden'])},
                       'activation_fn': torch.nn.Tanh, 'ortho_init': True,
                       'log_std_init': MATCHED['init_log_std']},
        verbose=0, seed=spec['seed'], device='cpu')
    started = time.perf_counter()
    model.learn(total_timesteps=spec['steps'])
    wall = time.perf_counter() - started
    buffer = [info['r'] for info in model.ep_info_buffer]
    venv.training = False  # freeze the observation statistics

    def act(obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(venv.normalize_obs(obs[None].astype(np.float32)),
                                  deterministic=True)
        return action[0]

    eval_env = make_env(env_id)
    result = evaluate(eval_env, act, spec['eval_episodes'], seed=spec['seed'] + 10_000)
    eval_env.close()
    venv.close()
    return {'steps': int(model.num_timesteps), 'iterations': int(model._n_updates),
            'wall': wall, 'eval_mean': result['return_mean'], 'eval_std': result['return_std'],
            'train_return_last': float(np.mean(buffer[-10:])) if buffer else float('nan')}


def sb3_kl_factor(env_id: str) -> int:
    """
    Return k such that sb3-contrib's KL == ours / k for the env's diagonal Gaussian policy.

    Checked numerically on sb3's own `kl_divergence` (what its TRPO line search and Fisher
    use); k is the number of action dimensions because sb3 averages over them.
    """
    from stable_baselines3.common.distributions import DiagGaussianDistribution, kl_divergence
    import torch
    from torch.distributions import Normal
    from trpo_ros.core.rollout import make_env

    env = make_env(env_id)
    act_dim = int(env.action_space.shape[0])
    env.close()
    generator = torch.Generator().manual_seed(0)
    mean_a, mean_b = torch.randn(2, 64, act_dim, generator=generator)
    log_std_a, log_std_b = 0.3 * torch.randn(2, act_dim, generator=generator)
    sb3 = kl_divergence(DiagGaussianDistribution(act_dim).proba_distribution(mean_a, log_std_a),
                        DiagGaussianDistribution(act_dim).proba_distribution(mean_b, log_std_b))
    ours = torch.distributions.kl_divergence(Normal(mean_a, log_std_a.exp()),
                                             Normal(mean_b, log_std_b.exp())).sum(-1).mean()
    factor = (ours / sb3.mean()).item()
    if abs(factor - act_dim) > 1e-4 * act_dim:
        raise RuntimeError(f'sb3 KL semantics changed: ours / sb3 = {factor}, expected {act_dim}')
    return act_dim


def worker(spec: dict[str, Any]) -> None:
    """Entry point of a subprocess: one training run, result as one JSON line on stdout."""
    result = run_ours(spec) if spec['algo'].startswith('ours') else run_sb3(spec)
    result['sps'] = result['steps'] / result['wall']
    print('RESULT ' + json.dumps({**spec, **result}), flush=True)


# ---------------------------------------------------------------------------- driver


def launch(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one training in a fresh interpreter and parse its result."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    proc = subprocess.run([sys.executable, __file__, '--worker', json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith('RESULT '):
            return json.loads(line[len('RESULT '):])
    raise RuntimeError(f"{spec['algo']} seed {spec['seed']} failed "
                       f'(exit {proc.returncode}):\n{proc.stderr[-3000:]}')


def summarize(results: list[dict[str, Any]], algos: list[str]) -> dict[str, dict[str, Any]]:
    """Per algorithm: median/min/max steps/s, per-seed speed ratio vs sb3, eval stats."""
    by_algo = {a: sorted((r for r in results if r['algo'] == a), key=lambda r: r['seed'])
               for a in algos}
    sb3_sps = {r['seed']: r['sps'] for r in by_algo['sb3']}
    out = {}
    for algo, runs in by_algo.items():
        sps = [r['sps'] for r in runs]
        evals = [r['eval_mean'] for r in runs]
        ratios = [r['sps'] / sb3_sps[r['seed']] for r in runs if r['seed'] in sb3_sps]
        out[algo] = {
            'sps_median': statistics.median(sps), 'sps_min': min(sps), 'sps_max': max(sps),
            'ratio_seedwise_median': statistics.median(ratios) if ratios else float('nan'),
            'eval_mean': statistics.fmean(evals),
            'eval_std': statistics.pstdev(evals) if len(evals) > 1 else 0.0,
            'eval_median': statistics.median(evals),
            'steps': runs[0]['steps'], 'iterations': runs[0]['iterations'], 'seeds': len(runs)}
    return out


LABELS = {'ours-fixed': "trpo_ros (trust_region='fixed', delta 0.01)",
          'ours-matched': "trpo_ros ('fixed', sb3's trust region: delta = act_dim x 0.01)",
          'ours-adaptive': "trpo_ros (trust_region='adaptive', default)",
          'sb3': 'sb3-contrib TRPO'}


def table(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown table of the run (the README's "Against sb3-contrib TRPO" is built from it)."""
    import sb3_contrib
    import torch

    sb3 = summary['sb3']
    lines = [
        f'### TRPO training speed vs sb3-contrib on {args.env_id} '
        f'({datetime.date.today().isoformat()})',
        '',
        f'Machine: {platform.platform()}, {platform.processor() or platform.machine()}, '
        f'{os.cpu_count()} CPUs; Python {platform.python_version()}, torch {torch.__version__}, '
        f'sb3-contrib {sb3_contrib.__version__}; torch threads 1. '
        f'{len(args.seeds)} seeds ({", ".join(map(str, args.seeds))}) x {sb3["steps"]} steps '
        f'({sb3["iterations"]} iterations of n_steps {args.n_steps}, n_envs 1), '
        f'CG {args.cg_iters} iters, target_kl 0.01, line search 10 x 0.8, critic 10 x 128, '
        f'64-64 tanh; eval: {args.eval_episodes} deterministic episodes per seed.',
        '',
        '| algorithm | env steps/s (median, min-max) | speed vs sb3 (median of medians; '
        'median per-seed) | eval return (mean ± std over seeds) | eval median |',
        '|---|---|---|---|---|',
    ]
    for algo, s in summary.items():
        ratio = s['sps_median'] / sb3['sps_median']
        lines.append(
            f"| {LABELS[algo]} | {s['sps_median']:.0f} ({s['sps_min']:.0f}-{s['sps_max']:.0f}) "
            f"| {ratio:.2f}x; {s['ratio_seedwise_median']:.2f}x "
            f"| {s['eval_mean']:.1f} ± {s['eval_std']:.1f} | {s['eval_median']:.1f} |")
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--env-id', default='HopperBulletEnv-v0')
    parser.add_argument('--steps', type=int, default=100_000, help='env steps per run')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--n-steps', type=int, default=1024, help='steps per iteration')
    parser.add_argument('--eval-episodes', type=int, default=10)
    parser.add_argument('--cg-iters', type=int, default=10,
                        help='CG iterations for both (sb3 default 15, ours 10)')
    parser.add_argument('--adaptive', action='store_true',
                        help="also run ours with trust_region='adaptive' (extra row)")
    parser.add_argument('--quick', action='store_true',
                        help='smoke setting: 1 seed x 4096 steps, n_steps 1024, 2 eval episodes')
    parser.add_argument('--scratch', default=None,
                        help='parent dir of the temporary run dirs (default: system temp)')
    parser.add_argument('--json', default=None, help='also write all per-run results here')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(json.loads(args.worker))
        return
    if args.quick:
        args.seeds, args.steps, args.n_steps, args.eval_episodes = [0], 4096, 1024, 2
    if args.scratch:
        Path(args.scratch).mkdir(parents=True, exist_ok=True)

    algos = ['ours-matched', 'sb3', 'ours-fixed'] + (['ours-adaptive'] if args.adaptive else [])
    factor = sb3_kl_factor(args.env_id)
    delta, damping = MATCHED['delta'], MATCHED['cg_damping']
    print(f"sb3-contrib's KL is the mean over {factor} action dimensions (checked): its "
          f'target_kl {delta} is delta {factor * delta:g} in ours', flush=True)
    trust = dict.fromkeys(algos, (delta, damping))  # (delta, cg_damping) per row
    trust['ours-matched'] = (factor * delta, factor * damping)
    results = []
    for i, seed in enumerate(args.seeds):
        order = algos if i % 2 == 0 else list(reversed(algos))  # alternate who goes first
        for algo in order:
            spec = {'algo': algo, 'seed': seed, 'env_id': args.env_id, 'steps': args.steps,
                    'n_steps': args.n_steps, 'cg_iters': args.cg_iters,
                    'eval_episodes': args.eval_episodes, 'scratch': args.scratch,
                    'trust_region': 'adaptive' if algo == 'ours-adaptive' else 'fixed',
                    'delta': trust[algo][0], 'cg_damping': trust[algo][1]}
            r = launch(spec)
            results.append(r)
            print(f"{algo:14s} seed {seed}: {r['steps']} steps in {r['wall']:.1f}s = "
                  f"{r['sps']:.0f} steps/s; eval {r['eval_mean']:.1f} ± {r['eval_std']:.1f}; "
                  f"last train return {r['train_return_last']:.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    summary = summarize(results, algos)
    print()
    print(table(summary, args))
    ours, sb3 = summary['ours-matched'], summary['sb3']
    speed = ours['sps_median'] / sb3['sps_median']
    print(f'\nTarget (ours >= 1.5x sb3 steps/s, eval mean not lower): speed {speed:.2f}x '
          f"{'OK' if speed >= 1.5 else 'MISSED'}; eval {ours['eval_mean']:.1f} vs "
          f"{sb3['eval_mean']:.1f} {'OK' if ours['eval_mean'] >= sb3['eval_mean'] else 'MISSED'}")


if __name__ == '__main__':
    main()
