"""
The acting policy as one module: observation normalizer -> Gaussian actor -> action scaler.

`PolicyModel` owns the three parts, as rsl_rl's actor-critic owns its normalizer: the trainer
updates them, checkpoints save them, the export graph is built from them, the rollouts act
through float numpy copies of them (`rollout_copies`) and Ray workers receive them as one
payload of numpy arrays (`payload` / `load_payload`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from trpo_ros.core.config import TRPOConfig
from trpo_ros.core.networks import ActionScaler, GaussianActor, ObsNormalizer


class RolloutPolicy:
    """
    Frozen float32 numpy copy of actor -> scaler, acting on normalized observations.

    Used to sample actions during collection: torch's per-call overhead is several times the
    cost of these tiny matrix products (about 220 vs 40 us per step). Same math as the torch
    modules (tested).
    """

    def __init__(self, actor: GaussianActor, scaler: ActionScaler) -> None:
        with torch.no_grad():
            self.layers = [(m.weight.T.numpy().copy(), m.bias.numpy().copy())
                           for m in actor.mean_net if isinstance(m, torch.nn.Linear)]
            self.std = actor.log_std.exp().numpy().copy()
            self.center = scaler.center.numpy()
            self.half_range = scaler.half_range.numpy()
            self.bounded = scaler.bounded.numpy()

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        """Mean of pi(.|obs) in normalized action units, obs normalized, [n, obs_dim]."""
        x = obs
        for i, (weight, bias) in enumerate(self.layers):
            x = x @ weight + bias
            if i < len(self.layers) - 1:
                x = np.tanh(x)
        return x

    def to_env(self, u: np.ndarray) -> np.ndarray:
        """Apply ActionScaler in numpy: clip bounded dimensions to [-1, 1], scale to the Box."""
        return self.center + self.half_range * np.where(self.bounded, np.clip(u, -1, 1), u)

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return (normalized action u ~ pi(.|obs), env action)."""
        mean = self.mean_action(obs)
        u = (mean + self.std * rng.standard_normal(mean.shape, dtype=np.float32))
        return u, self.to_env(u)


class RunningObsNormalizer:
    """
    The ObsNormalizer as the collector uses it, updated with every observation (VecNormalize).

    float64 numpy statistics take in each observation the envs return before it is
    normalized. Early in training the statistics move a lot within one batch; normalizing each
    observation with statistics that already include it keeps the policy's inputs in range
    from the first steps on. Same formula as `ObsNormalizer.forward` (tested).
    """

    def __init__(self, normalizer: ObsNormalizer) -> None:
        self.enabled = normalizer.enabled
        self.clip = normalizer.clip
        self.mean = normalizer.mean.numpy().copy()
        self.count = float(normalizer.count)
        self.sum_sq = normalizer.var.numpy() * self.count  # sum of squared deviations

    def update(self, obs: np.ndarray) -> None:
        """Take in observations [n, obs_dim], one at a time (Welford: a few us per step)."""
        if not self.enabled:
            return
        for x in obs:
            self.count += 1.0
            deviation = x - self.mean
            self.mean += deviation / self.count
            self.sum_sq += deviation * (x - self.mean)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Normalize and clip, float32."""
        if not self.enabled:
            return obs.astype(np.float32)
        x = (obs - self.mean) / np.sqrt(self.sum_sq / self.count + 1e-8)
        return np.clip(x, -self.clip, self.clip).astype(np.float32)


class PolicyModel(nn.Module):
    """normalizer -> actor -> scaler; `forward` is the deterministic env action (evaluation)."""

    def __init__(self, normalizer: ObsNormalizer, actor: GaussianActor,
                 scaler: ActionScaler) -> None:
        super().__init__()
        self.normalizer, self.actor, self.scaler = normalizer, actor, scaler

    @classmethod
    def build(cls, config: TRPOConfig, obs_dim: int, action_low: np.ndarray,
              action_high: np.ndarray) -> PolicyModel:
        """Build the policy for a config and the env's spaces (fresh weights)."""
        normalizer = ObsNormalizer(obs_dim, config.obs_clip, config.normalize_obs)
        actor = GaussianActor(obs_dim, len(action_low), config.hidden_sizes, config.init_log_std)
        return cls(normalizer, actor, ActionScaler(action_low, action_high))

    @property
    def obs_dim(self) -> int:
        """Return the observation size."""
        return int(self.normalizer.mean.numel())

    @property
    def act_dim(self) -> int:
        """Return the action size."""
        return int(self.actor.log_std.numel())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic env action(s) for raw observation(s) [n, obs_dim]."""
        return self.scaler(self.actor(self.normalizer(obs)))

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic env action for one observation or a batch, in numpy."""
        x = torch.as_tensor(np.asarray(obs, np.float32))
        single = x.ndim == 1
        action = self(x.reshape(1, -1) if single else x)
        return action[0].numpy() if single else action.numpy()

    def rollout_copies(self) -> tuple[RunningObsNormalizer, RolloutPolicy]:
        """Numpy copies for collection: a running normalizer and the sampling policy."""
        return RunningObsNormalizer(self.normalizer), RolloutPolicy(self.actor, self.scaler)

    def payload(self) -> dict[str, dict[str, np.ndarray]]:
        """Return the parts' weights and buffers as numpy arrays (Ray ships them unpickled)."""
        return {name: {k: v.detach().cpu().numpy().copy() for k, v in part.state_dict().items()}
                for name, part in self.parts().items()}

    def load_payload(self, payload: dict[str, Any]) -> None:
        """Load what `payload` returned (possibly in another process)."""
        for name, part in self.parts().items():
            part.load_state_dict({k: torch.tensor(v) for k, v in payload[name].items()})

    def parts(self) -> dict[str, nn.Module]:
        """Return {'normalizer', 'actor', 'scaler'} (the checkpoint and payload keys)."""
        return {'normalizer': self.normalizer, 'actor': self.actor, 'scaler': self.scaler}
