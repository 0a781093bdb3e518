"""
Hopper ablations: which part of trpo_ros's data path separates it from sb3-contrib TRPO.

Usage (one run; prints one RESULT json line):
    .venv/bin/python bench/hopper_ablation.py VARIANT SEED

VARIANT joins flags with '+': 'base' (trpo_ros as shipped), 'd03' (sb3's trust region on
Hopper: delta 0.03, cg_damping 0.3, see train_vs_sb3.py), 'adapt' (trust_region 'adaptive'
instead of 'fixed'), 'rsb3' (VecNormalize's reward scaling, which restarts the discounted
return at truncations too, as an env wrapper instead of our RewardScaler), 'obsw' (gymnasium
NormalizeObservation + clip 10 in the env instead of our per-step observation normalization),
'rew' (gymnasium NormalizeReward + clip 10 instead of our RewardScaler). Everything else is
train_vs_sb3.py's matched config (1 env, 1024 steps per iteration, 100k steps, 10 evaluation
episodes). The variants patch trpo_ros in this process only. Results: README, "Against
sb3-contrib TRPO".
"""
import dataclasses
import json
from pathlib import Path
import sys
import tempfile
import time

import gymnasium as gym
import numpy as np
from trpo_ros.core.networks import merge_moments

sys.path.insert(0, str(Path(__file__).parent))


class Sb3RewardScaling(gym.Wrapper):
    """VecNormalize's reward scaling as an env wrapper: per step, reset at any episode end."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.discounted, self.stats = 0.0, (0.0, 1.0, 1e-4)

    def step(self, action):  # noqa: ANN001, ANN201, D102
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.discounted = self.discounted * 0.99 + float(reward)
        self.stats = merge_moments(*self.stats, self.discounted, 0.0, 1)
        scaled = float(np.clip(reward / np.sqrt(self.stats[1] + 1e-8), -10, 10))
        if terminated or truncated:
            self.discounted = 0.0
        return obs, scaled, terminated, truncated, info


def run(variant: str, seed: int, steps: int = 100_000) -> dict:
    """Train one variant on one seed; return its evaluation and a few training statistics."""
    import torch
    from train_vs_sb3 import matched_config
    import trpo_ros.core.rollout as rollout
    from trpo_ros.core.trainer import Trainer

    flags = set(variant.split('+')) - {'base'}
    torch.set_num_threads(1)
    original_make_env = rollout.make_env

    def wrapped_make_env(env_id, env_kwargs=None, render_mode=None):
        env = original_make_env(env_id, env_kwargs, render_mode)
        if 'obsw' in flags:
            env = gym.wrappers.NormalizeObservation(env)
            env = gym.wrappers.TransformObservation(env, lambda o: np.clip(o, -10, 10),
                                                    env.observation_space)
        if 'rsb3' in flags:
            env = Sb3RewardScaling(env)
        if 'rew' in flags:
            env = gym.wrappers.NormalizeReward(env, gamma=0.99)
            env = gym.wrappers.TransformReward(env, lambda r: float(np.clip(r, -10, 10)))
        return env

    if flags & {'obsw', 'rew', 'rsb3'}:
        rollout.make_env = wrapped_make_env
    d03 = 'd03' in flags
    spec = {'env_id': 'HopperBulletEnv-v0', 'seed': seed, 'steps': steps, 'n_steps': 1024,
            'cg_iters': 10, 'eval_episodes': 10,
            'trust_region': 'adaptive' if 'adapt' in flags else 'fixed',
            'delta': 0.03 if d03 else 0.01, 'cg_damping': 0.3 if d03 else 0.1}
    config = dataclasses.replace(matched_config(spec), normalize_obs='obsw' not in flags,
                                 normalize_rewards=not flags & {'rew', 'rsb3'})
    with tempfile.TemporaryDirectory(prefix='abl_') as run_dir:
        trainer = Trainer(config, Path(run_dir) / 'run', tensorboard=False)
        rows = []
        started = time.perf_counter()
        while trainer.env_steps < config.total_steps:
            rows.append(trainer.train_iteration())
        wall = time.perf_counter() - started
        if 'obsw' in flags:
            train_wrapper = trainer.collector.envs.envs[0]
            while not isinstance(train_wrapper, gym.wrappers.NormalizeObservation):
                train_wrapper = train_wrapper.env
            rms = train_wrapper.obs_rms
            env = original_make_env('HopperBulletEnv-v0')

            def act(obs):
                x = np.clip((obs - rms.mean) / np.sqrt(rms.var + 1e-8), -10, 10)
                with torch.no_grad():
                    u = trainer.policy.actor(torch.as_tensor(x[None], dtype=torch.float32))
                    return trainer.policy.scaler(u)[0].numpy()
            result = rollout.evaluate(env, act, 10, seed=seed + 10_000)
            env.close()
        else:
            result = trainer.evaluate(10)
        trainer.close()
    returns = [r['rollout/ep_return_mean'] for r in rows]
    return {'variant': variant, 'seed': seed, 'wall': wall, 'eval': result['return_mean'],
            'train_last': returns[-1],
            'accepted': float(np.mean([r['train/step_accepted'] for r in rows])),
            'ls_steps': float(np.mean([r['train/line_search_steps'] for r in rows])),
            'ev': float(np.nanmean([r['train/explained_variance'] for r in rows[-10:]])),
            'entropy_last': rows[-1]['train/entropy']}


if __name__ == '__main__':
    out = run(sys.argv[1], int(sys.argv[2]))
    print('RESULT ' + json.dumps(out), flush=True)
