"""Environment creation and rollout collection (vectorized, same-step autoreset)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from trpo_ros import envs
from trpo_ros.core.config import ConfigError, TRPOConfig
from trpo_ros.core.networks import merge_moments
from trpo_ros.core.policy import PolicyModel


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None,
             render_mode: str | None = None) -> gym.Env:
    """`gymnasium.make` that knows the trpo_ros ids and turns failures into ConfigError."""
    envs.register()
    _register_optional_envs(env_id)
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs['render_mode'] = render_mode
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise ConfigError(f'unknown or unusable env id {env_id!r}: {exc}') from None
    if not isinstance(env.action_space, gym.spaces.Box):
        env.close()
        raise ConfigError(f'env {env_id!r} has a {type(env.action_space).__name__} action '
                          'space; TRPO here needs a continuous Box action space')
    if not isinstance(env.observation_space, gym.spaces.Box) or \
            len(env.observation_space.shape) != 1:
        env.close()
        raise ConfigError(f'env {env_id!r} needs a flat Box observation space')
    return env


def _register_optional_envs(env_id: str) -> None:
    """Import third-party env packages that register ids on import, when the id needs them."""
    if 'Bullet' in env_id:
        try:
            import pybullet_envs_gymnasium  # noqa: F401
        except ImportError:
            pass


def env_info(env: gym.Env) -> dict[str, Any]:
    """Return the env's robot description (`spec_info()`), or {} for envs that have none."""
    spec_info = getattr(env.unwrapped, 'spec_info', None)
    return dict(spec_info()) if callable(spec_info) else {}


def make_vector_env(config: TRPOConfig) -> gym.vector.VectorEnv:
    """`n_envs` copies: in-process for one, subprocesses (AsyncVectorEnv) for more."""
    fns = [_EnvFactory(config.env_id, config.env_kwargs) for _ in range(config.n_envs)]
    mode = gym.vector.AutoresetMode.SAME_STEP
    if config.n_envs == 1:
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode, context='fork')


@dataclass(frozen=True)
class _EnvFactory:
    env_id: str
    env_kwargs: dict

    def __call__(self) -> gym.Env:
        return make_env(self.env_id, self.env_kwargs)


@dataclass
class Batch:
    """One iteration's experience, arrays shaped [T, n_envs, ...]."""

    obs: np.ndarray
    """Observations as the policy saw them: normalized with the statistics of that step."""
    actions: np.ndarray
    """Normalized (pre-scaling) policy actions u."""
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_obs: np.ndarray
    """Normalized true next observation (the final one, not the reset one, at episode ends)."""
    obs_moments: tuple[np.ndarray, np.ndarray, int]
    """(mean, variance, count) of the raw observations the envs returned during the batch."""
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    episode_successes: list[float] = field(default_factory=list)
    lost_steps: int = 0
    """Steps collected by workers that died and were collected again (Ray backend)."""

    @property
    def size(self) -> int:
        """Environment steps in the batch."""
        return int(self.rewards.size)


class CollectionCancelled(Exception):
    """A rollout was cancelled mid-batch (the trainer is stopping); the batch is discarded."""


class RolloutCollector:
    """
    Steps the vector env with the current stochastic policy.

    Episode bookkeeping carries across iterations, so episodes that span two batches are
    counted once, whole.

    A rollout backend is anything with this `collect` and `close` (see ray_rollout.py).
    """

    def __init__(self, envs: gym.vector.VectorEnv, seed: int) -> None:
        self.envs = envs
        self.raw_obs, _ = envs.reset(seed=seed)
        self.reset_obs_counted = False  # the first collect counts the reset observations
        self.running_return = np.zeros(envs.num_envs)
        self.running_length = np.zeros(envs.num_envs, dtype=np.int64)

    @torch.no_grad()
    def collect(self, n_steps: int, policy: PolicyModel, generator: torch.Generator,
                cancel: Callable[[], bool] | None = None) -> Batch:
        """
        Run `n_steps` steps in every env with the stochastic `policy`.

        Observations are normalized as they arrive, with the policy normalizer's statistics
        updated by every observation so far (the policy itself is left alone: the learner
        merges `Batch.obs_moments` into it). Raise `CollectionCancelled` as soon as `cancel()` is
        true (a shutdown must not wait for the rest of a long batch).
        """
        n_envs, obs_dim = self.raw_obs.shape
        act_dim = policy.act_dim
        obs_buf = np.zeros((n_steps, n_envs, obs_dim), np.float32)
        next_buf = np.zeros_like(obs_buf)
        act_buf = np.zeros((n_steps, n_envs, act_dim), np.float32)
        rew_buf = np.zeros((n_steps, n_envs), np.float32)
        term_buf = np.zeros((n_steps, n_envs), bool)
        trunc_buf = np.zeros((n_steps, n_envs), bool)
        running, acting = policy.rollout_copies()
        received = []  # raw observations counted in this batch
        if not self.reset_obs_counted:
            running.update(self.raw_obs)
            received.append(self.raw_obs)
            self.reset_obs_counted = True
        batch = Batch(obs_buf, act_buf, rew_buf, term_buf, trunc_buf, next_buf,
                      obs_moments=(np.zeros(obs_dim), np.ones(obs_dim), 0))
        # One draw from the trainer's generator seeds this batch's noise: reproducible runs.
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
        obs = running(self.raw_obs)
        for t in range(n_steps):
            if cancel is not None and cancel():
                raise CollectionCancelled(f'rollout cancelled after {t} of {n_steps} steps')
            obs_buf[t] = obs
            act_buf[t], env_action = acting.sample(obs, rng)
            raw_obs, reward, terminated, truncated, info = self.envs.step(env_action)
            running.update(raw_obs)
            received.append(raw_obs)
            obs = next_buf[t] = running(raw_obs)
            rew_buf[t], term_buf[t], trunc_buf[t] = reward, terminated, truncated
            self.running_return += reward
            self.running_length += 1
            done = terminated | truncated
            if done.any():
                self._finish_episodes(done, info, batch)
                next_buf[t, done] = running(np.stack(info['final_obs'][done]))
            self.raw_obs = raw_obs
        seen = np.concatenate(received).astype(np.float64)
        batch.obs_moments = (seen.mean(0), seen.var(0), len(seen))
        return batch

    def close(self) -> None:
        """Close the environments."""
        self.envs.close()

    def _finish_episodes(self, done: np.ndarray, info: dict, batch: Batch) -> None:
        final_info = info.get('final_info', {})
        for i in np.flatnonzero(done):
            batch.episode_returns.append(float(self.running_return[i]))
            batch.episode_lengths.append(int(self.running_length[i]))
            if '_is_success' in final_info and final_info['_is_success'][i]:
                batch.episode_successes.append(float(final_info['is_success'][i]))
            self.running_return[i] = 0.0
            self.running_length[i] = 0


class RewardScaler:
    """
    Divides rewards by the running std of the discounted return, clipped (as VecNormalize).

    So the critic regresses targets of order one whatever the env's reward scale. The
    statistics take in every step, so the first batch is already scaled by its own returns.
    """

    def __init__(self, n_envs: int, gamma: float, clip: float) -> None:
        self.gamma = gamma
        self.clip = clip
        self.discounted = np.zeros(n_envs)
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def scale(self, rewards: np.ndarray, terminated: np.ndarray) -> np.ndarray:
        """
        Scale a [T, n_envs] batch step by step, updating the statistics as it goes.

        The discounted return restarts at terminations only: at a truncation the task goes
        on (the critic bootstraps there), so its return scale does too.
        """
        scaled = np.empty(rewards.shape, np.float32)
        for t in range(len(rewards)):
            self.discounted = self.discounted * self.gamma + rewards[t]
            self.mean, self.var, self.count = merge_moments(
                self.mean, self.var, self.count, self.discounted.mean(), self.discounted.var(),
                self.discounted.size)
            scaled[t] = np.clip(rewards[t] / np.sqrt(self.var + 1e-8), -self.clip, self.clip)
            self.discounted[terminated[t]] = 0.0
        return scaled

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state."""
        return {'discounted': self.discounted.tolist(), 'mean': float(self.mean),
                'var': float(self.var), 'count': float(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        self.discounted = np.array(state['discounted'])
        self.mean, self.var, self.count = state['mean'], state['var'], state['count']


@torch.no_grad()
def evaluate(env: gym.Env, act: Any, episodes: int, seed: int) -> dict[str, float]:
    """Deterministic evaluation: `act(obs) -> env action`; mean/std return, success rate."""
    returns, successes = [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done, info = 0.0, False, {}
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        if 'is_success' in info:
            successes.append(float(info['is_success']))
    result = {'return_mean': float(np.mean(returns)), 'return_std': float(np.std(returns))}
    if successes:
        result['success_rate'] = float(np.mean(successes))
    return result
