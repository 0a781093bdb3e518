"""The training loop: collect -> normalize -> GAE -> TRPO step -> critic fit -> log/save."""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import json
import math
from pathlib import Path
import threading
import time
from typing import Any

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from trpo_ros.core.backends import make_collector
from trpo_ros.core.checkpoint import (
    atomic_write_bytes,
    CheckpointError,
    list_checkpoints,
    load_latest_good,
    PolicyBundle,
    save_checkpoint,
)
from trpo_ros.core.config import ConfigError, from_dict, TRPOConfig
from trpo_ros.core.gae import gae
from trpo_ros.core.metrics import METRICS, MetricsLog, plot_learning_curve
from trpo_ros.core.networks import Critic
from trpo_ros.core.policy import PolicyModel
from trpo_ros.core.rollout import (
    Batch,
    CollectionCancelled,
    env_info,
    evaluate,
    make_env,
    RewardScaler,
)
from trpo_ros.core.trpo import (
    explained_variance,
    fit_critic,
    mean_kl,
    StepResult,
    trpo_step,
    TrustRegion,
)
from trpo_ros.errors import UserError

IterationCallback = Callable[['Trainer', dict[str, float]], None]


def default_run_dir(env_id: str) -> str:
    """runs/<env name>_<yyyymmdd-hhmmss>."""
    name = env_id.split('/')[-1]
    return f'runs/{name}_{time.strftime("%Y%m%d-%H%M%S")}'


# Turns a checkpoint file into a deployable file at a path, returns that path (raises
# UserError when it cannot); handed in from above so that core imports nothing above it.
Exporter = Callable[[Path, Path], Path]


class Trainer:
    """Owns the run directory, the networks and the environments of one training run."""

    def __init__(self, config: TRPOConfig, run_dir: str | Path, *, resume: bool = False,
                 tensorboard: bool = True, progress: bool = False,
                 exporter: Exporter | None = None) -> None:
        """
        Start a new run in `run_dir` (must not hold one) or, with `resume`, continue it.

        On resume the saved config is used, except `total_steps` from `config`. `exporter`
        (e.g. `trpo_ros.export.export_onnx`) turns a checkpoint into a deployable file; with
        it, every checkpoint also writes run_dir/policy.onnx (and best.onnx).
        """
        self.run_dir = Path(run_dir)
        self.exporter = exporter
        state: dict[str, Any] | None = None
        if resume:
            self.checkpoint_path, state = load_latest_good(self.run_dir)
            config = from_dict({**state['config'], 'total_steps': config.total_steps})
        elif list_checkpoints(self.run_dir / 'checkpoints'):
            raise ConfigError(f'{self.run_dir} already holds a run; resume it with --resume '
                              'or choose another --run-dir')
        self.config = config
        self.progress = progress
        torch.set_num_threads(config.torch_threads)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)

        self.eval_env = make_env(config.env_id, config.env_kwargs)
        self.env_info = env_info(self.eval_env)
        space = self.eval_env.action_space
        obs_dim = self.eval_env.observation_space.shape[0]
        self.policy = PolicyModel.build(config, obs_dim, space.low, space.high)
        self.critic = Critic(obs_dim, config.hidden_sizes)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.trust_region = TrustRegion(config)
        self.reward_scaler = RewardScaler(config.total_envs, config.gamma, config.reward_clip)
        self.iteration = 0
        self.env_steps = 0
        self.best_eval_return = -math.inf
        self.previous_policy: torch.Tensor | None = None  # theta before the last update
        self.last_step_delta = config.delta
        self.last_return = math.nan
        if state is not None:
            self._load_state(state)

        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.run_dir / 'config.json',
                           json.dumps(config.to_dict(), indent=2).encode())
        self.metrics = MetricsLog(self.run_dir, tensorboard)
        if resume:
            self.metrics.truncate(self.iteration)
        self.collector = make_collector(config, seed=config.seed + 1000 * self.iteration)
        self.pause_event = threading.Event()  # set = paused (used by the ROS node)
        self.stop_event = threading.Event()
        self.policy_lock = threading.Lock()  # held while the policy parameters change
        self.last_export_error: str | None = None
        self._best_exported = True
        self._saved_iteration = self.iteration if resume else -1  # newest checkpoint on disk
        self._started = time.perf_counter()

    # ------------------------------------------------------------------ the loop

    def train(self, callback: IterationCallback | None = None, *,
              lock: contextlib.AbstractContextManager | None = None,
              hold: Callable[[], bool] | None = None,
              export_on_stop: bool = True) -> dict[str, float]:
        """
        Iterate until `total_steps` or `stop_event`; checkpoint and export at the end.

        `callback(trainer, row)` runs after each iteration. The ROS node passes its `lock`
        (held during each iteration, its callback and the final save, so services run between
        iterations) and `hold` (no iteration starts while it is true, as while `pause_event`
        is set); with `export_on_stop` false a stopped run is checkpointed but not exported.
        """
        lock = lock or contextlib.nullcontext()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.config.total_steps, initial=self.env_steps, unit='step',
                       dynamic_ncols=True, desc='train')
        row: dict[str, float] = {}
        try:
            while self.env_steps < self.config.total_steps and not self.stop_event.is_set():
                if self.pause_event.is_set() or (hold is not None and hold()):
                    time.sleep(0.02)
                    continue
                with lock:
                    try:
                        row = self.train_iteration()
                    except CollectionCancelled:  # stopping: the partial batch is dropped
                        break
                    if callback is not None:
                        callback(self, row)
                if bar is not None:
                    bar.set_postfix_str(_postfix(row), refresh=False)
                    bar.update(int(row['env_steps']) - bar.n)
        finally:
            if bar is not None:
                bar.close()
        with lock:
            if self._saved_iteration != self.iteration:
                self.save(export=export_on_stop or not self.stop_event.is_set())
        return row

    def train_iteration(self) -> dict[str, float]:
        """One TRPO iteration; returns its metrics row (also logged)."""
        started = time.perf_counter()
        config = self.config
        batch = self.collector.collect(config.n_steps, self.policy, self.generator,
                                       cancel=self.stop_event.is_set)
        self.env_steps += batch.size
        self.iteration += 1
        row = self._episode_metrics(batch)

        rolled_back = self._regression_guard(row['rollout/ep_return_mean'])
        # The update sees the observations as the collecting policy saw them (normalized
        # step by step during collection).
        obs = torch.from_numpy(batch.obs.reshape(-1, batch.obs.shape[-1]))
        next_obs = torch.from_numpy(batch.next_obs.reshape(obs.shape[0], -1))
        with torch.no_grad():
            values = self.critic(obs).numpy().reshape(batch.rewards.shape)
            next_values = self.critic(next_obs).numpy().reshape(batch.rewards.shape)
        rewards = batch.rewards
        if config.normalize_rewards:
            rewards = self.reward_scaler.scale(rewards, batch.terminated)
        advantages, returns = gae(rewards, values, next_values, batch.terminated,
                                  batch.truncated, config.gamma, config.gae_lambda)
        advantages, returns = advantages.reshape(-1), returns.reshape(-1)
        if config.normalize_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        row['train/kl_next_batch'] = self._kl_of_last_update(obs)
        if rolled_back:
            step = StepResult(False, 0.0, 0.0, 0.0, 0, self.trust_region.delta, math.nan)
        else:
            step = self._policy_step(obs, batch, advantages)
        value_loss = fit_critic(self.critic, self.critic_optimizer, obs,
                                torch.as_tensor(returns, dtype=torch.float32),
                                config.n_critic_epochs, config.critic_batch_size, self.generator)
        row.update({
            'iteration': self.iteration,
            'env_steps': self.env_steps,
            'train/kl': step.kl,
            'train/delta': step.delta,
            'train/delta_next': self.trust_region.delta,
            'train/surrogate_gain': step.surrogate_gain,
            'train/expected_gain': step.expected_gain,
            'train/improvement_ratio': step.improvement_ratio,
            'train/line_search_steps': step.line_search_steps,
            'train/step_accepted': float(step.accepted),
            'train/rolled_back': float(rolled_back),
            'train/entropy': step.entropy,
            'train/value_loss': value_loss,
            'train/explained_variance': explained_variance(values.reshape(-1), returns),
        })
        with self.policy_lock:
            self.policy.normalizer.merge(*batch.obs_moments)
        if config.eval_every and self.iteration % config.eval_every == 0:
            row.update(self._evaluate_and_keep_best())
        elapsed = time.perf_counter() - started
        row['time/steps_per_second'] = batch.size / elapsed
        row['time/elapsed'] = time.perf_counter() - self._started
        row = {key: float(row.get(key, math.nan)) for key in METRICS}
        self.metrics.append(row)
        if self.iteration % config.checkpoint_every == 0:
            self.save()
        return row

    def _policy_step(self, obs: torch.Tensor, batch: Batch,
                     advantages: np.ndarray) -> StepResult:
        """TRPO step, remembering theta_old for the next-batch KL check and the guard."""
        actions = torch.from_numpy(batch.actions.reshape(obs.shape[0], -1))
        actor = self.policy.actor
        with self.policy_lock:
            self.previous_policy = parameters_to_vector(actor.parameters()).detach().clone()
            step = trpo_step(actor, obs.detach(), actions,
                             torch.as_tensor(advantages, dtype=torch.float32),
                             self.trust_region.delta, self.config, self.generator)
        self.trust_region.after_step(step)
        self.last_step_delta = step.delta
        return step

    def _kl_of_last_update(self, obs: torch.Tensor) -> float:
        """KL(previous policy || current policy) on fresh states; shrinks delta if > delta."""
        if self.previous_policy is None:
            return math.nan
        actor = self.policy.actor
        current = parameters_to_vector(actor.parameters()).detach().clone()
        with torch.no_grad():
            vector_to_parameters(self.previous_policy, actor.parameters())
            previous = actor.distribution(obs)
            vector_to_parameters(current, actor.parameters())
            kl = mean_kl(previous, actor, obs).item()
        self.trust_region.after_next_batch(kl, self.last_step_delta)
        return kl

    def _regression_guard(self, episode_return: float) -> bool:
        """Restore the previous policy if the return fell by more than the tolerance."""
        last, self.last_return = self.last_return, episode_return
        if (not self.config.rollback_on_regression or self.previous_policy is None
                or not math.isfinite(last) or not math.isfinite(episode_return)):
            return False
        if last - episode_return <= self.config.regression_tolerance * max(abs(last), 1.0):
            return False
        with self.policy_lock:
            vector_to_parameters(self.previous_policy, self.policy.actor.parameters())
        self.previous_policy = None
        self.last_return = last
        self.trust_region.shrink()
        return True

    def _episode_metrics(self, batch: Batch) -> dict[str, float]:
        def mean(values: list[float]) -> float:
            return float(np.mean(values)) if values else math.nan

        return {'rollout/ep_return_mean': mean(batch.episode_returns),
                'rollout/ep_len_mean': mean(batch.episode_lengths),
                'rollout/success_rate': mean(batch.episode_successes),
                'rollout/lost_steps': float(batch.lost_steps)}

    # ------------------------------------------------------------------ evaluation

    def policy_bundle(self) -> PolicyBundle:
        """Return the current policy (shared, not copied)."""
        return PolicyBundle(self.config, self.policy, self.env_info, self.iteration,
                            self.env_steps)

    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        """Deterministic evaluation on the separate eval env."""
        bundle = self.policy_bundle()
        return evaluate(self.eval_env, bundle.act, episodes or self.config.eval_episodes,
                        seed=self.config.seed + 10_000)

    def _evaluate_and_keep_best(self) -> dict[str, float]:
        result = self.evaluate()
        row = {'eval/return_mean': result['return_mean'],
               'eval/success_rate': result.get('success_rate', math.nan)}
        if result['return_mean'] > self.best_eval_return:
            self.best_eval_return = result['return_mean']
            # Cheap now; best.onnx is exported from it with the next policy.onnx.
            save_checkpoint(self._state(), self.run_dir / 'checkpoints', self.iteration,
                            name='best.pt')
            self._best_exported = False
        return row

    # ------------------------------------------------------------------ persistence

    def save(self, export: bool = True) -> Path:
        """
        Checkpoint (atomic), refresh the learning curve and, by default, export.

        The export (when the trainer has an exporter) writes policy.onnx, and best.onnx when a
        better evaluation came since the last export.
        """
        path = save_checkpoint(self._state(), self.run_dir / 'checkpoints', self.iteration)
        self.checkpoint_path = path
        self._saved_iteration = self.iteration
        if self.metrics.rows:
            plot_learning_curve(self.metrics.rows, self.run_dir / 'learning_curve.png',
                                f'TRPO on {self.config.env_id}')
        if export and self.exporter is not None:
            self._export(path, self.run_dir / 'policy.onnx')
            if not self._best_exported:
                self._export(self.run_dir / 'checkpoints' / 'best.pt',
                             self.run_dir / 'best.onnx')
                self._best_exported = True
        return path

    def export(self, path: str | Path | None = None) -> Path:
        """Checkpoint now and export that checkpoint (default run_dir/policy.onnx)."""
        if self.exporter is None:
            raise ConfigError('this trainer has no exporter (pass exporter=export_onnx)')
        checkpoint = self.save(export=False)
        return self.exporter(checkpoint, path or self.run_dir / 'policy.onnx')

    def _export(self, checkpoint: Path, path: Path) -> None:
        assert self.exporter is not None
        try:
            self.exporter(checkpoint, path)
            self.last_export_error = None
        except UserError as exc:  # training goes on; the old file stays in place
            self.last_export_error = str(exc)
            print(f'warning: ONNX export to {path} failed: {exc}', flush=True)

    def _state(self) -> dict[str, Any]:
        with self.policy_lock:
            return {
                'config': self.config.to_dict(),
                'iteration': self.iteration,
                'env_steps': self.env_steps,
                'delta': self.trust_region.delta,
                'last_step_delta': self.last_step_delta,
                'last_return': self.last_return,
                'best_eval_return': self.best_eval_return,
                'obs_dim': int(self.eval_env.observation_space.shape[0]),
                'action_low': self.eval_env.action_space.low.tolist(),
                'action_high': self.eval_env.action_space.high.tolist(),
                'env_info': json.dumps(self.env_info),
                'actor': self.policy.actor.state_dict(),
                'critic': self.critic.state_dict(),
                'critic_optimizer': self.critic_optimizer.state_dict(),
                'normalizer': self.policy.normalizer.state_dict(),
                'reward_scaler': self.reward_scaler.state_dict(),
                'previous_policy': self.previous_policy,
                'torch_rng': torch.get_rng_state(),
                'generator': self.generator.get_state(),
            }

    def _load_state(self, state: dict[str, Any]) -> None:
        try:
            self.policy.actor.load_state_dict(state['actor'])
            self.critic.load_state_dict(state['critic'])
            self.critic_optimizer.load_state_dict(state['critic_optimizer'])
            self.policy.normalizer.load_state_dict(state['normalizer'])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f'checkpoint does not fit this env/config: {exc}') from None
        self.reward_scaler.load_state_dict(state['reward_scaler'])
        self.trust_region.delta = float(state['delta'])
        self.iteration = int(state['iteration'])
        self.env_steps = int(state['env_steps'])
        self.last_step_delta = float(state['last_step_delta'])
        self.last_return = float(state['last_return'])
        self.best_eval_return = float(state['best_eval_return'])
        self.previous_policy = state['previous_policy']
        torch.set_rng_state(state['torch_rng'])
        self.generator.set_state(state['generator'])

    def close(self) -> None:
        """Release the environments and the TensorBoard writer."""
        self.collector.close()
        self.eval_env.close()
        self.metrics.close()


def _postfix(row: dict[str, float]) -> str:
    parts = [f"ret {row['rollout/ep_return_mean']:.1f}", f"kl {row['train/kl']:.4f}",
             f"delta {row['train/delta_next']:.4f}"]
    if math.isfinite(row.get('rollout/success_rate', math.nan)):
        parts.insert(1, f"succ {row['rollout/success_rate']:.0%}")
    return ' '.join(parts)
