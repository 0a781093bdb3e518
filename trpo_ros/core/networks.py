"""Policy and critic networks, the observation normalizer, and action scaling."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal


def mlp(sizes: list[int], out_gain: float) -> nn.Sequential:
    """Tanh MLP with orthogonal init; the last layer is linear with gain `out_gain`."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        linear = nn.Linear(n_in, n_out)
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, gain=out_gain if last else np.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def merge_moments(mean, var, count, batch_mean, batch_var, batch_count):  # noqa: ANN001, ANN201
    """
    Combine (mean, population variance, count) of two sample sets (Chan et al.).

    Works on floats, numpy arrays and tensors alike.
    """
    total = count + batch_count
    diff = batch_mean - mean
    new_mean = mean + diff * batch_count / total
    new_var = (var * count + batch_var * batch_count
               + diff**2 * count * batch_count / total) / total
    return new_mean, new_var, total


class ObsNormalizer(nn.Module):
    """
    Running mean/variance of observations.

    Its state lives in buffers, so it is saved with the model and traced into the ONNX
    graph. It only changes when `update` or `merge` is called.
    """

    def __init__(self, obs_dim: int, clip: float = 10.0, enabled: bool = True) -> None:
        super().__init__()
        self.clip = float(clip)
        self.enabled = enabled
        self.register_buffer('mean', torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer('var', torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer('count', torch.tensor(1e-4, dtype=torch.float64))

    def update(self, batch: np.ndarray) -> None:
        """Merge a batch [n, obs_dim] into the running statistics (parallel Welford)."""
        x = np.asarray(batch, np.float64).reshape(-1, self.mean.numel())
        self.merge(x.mean(0), x.var(0), len(x))

    @torch.no_grad()
    def merge(self, mean: np.ndarray | torch.Tensor, var: np.ndarray | torch.Tensor,
              count: float) -> None:
        """Merge statistics (mean, population variance, count) of another set of samples."""
        if not self.enabled:
            return
        mean, var = (torch.from_numpy(np.array(a, np.float64)) for a in (mean, var))  # copies
        new_mean, new_var, total = merge_moments(self.mean, self.var, self.count, mean, var,
                                                 count)
        self.mean.copy_(new_mean)
        self.var.copy_(new_var)
        self.count.copy_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalize and clip; float32 in, float32 out."""
        if not self.enabled:
            return obs
        mean = self.mean.to(obs.dtype)
        std = torch.sqrt(self.var + 1e-8).to(obs.dtype)
        return torch.clamp((obs - mean) / std, -self.clip, self.clip)


class GaussianActor(nn.Module):
    """
    Diagonal Gaussian policy over normalized actions.

    mean = MLP(obs), state-independent log-std. Input is the already-normalized observation.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...],
                 init_log_std: float) -> None:
        super().__init__()
        self.mean_net = mlp([obs_dim, *hidden, act_dim], out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def distribution(self, obs: torch.Tensor) -> Normal:
        """pi(. | obs) as a torch Normal with independent dimensions."""
        return Normal(self.mean_net(obs), self.log_std.exp().expand(obs.shape[0], -1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic (mean) action in normalized units."""
        return self.mean_net(obs)


class Critic(nn.Module):
    """State-value function V(obs) on normalized observations."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden, 1], out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """V(obs), shape [batch]."""
        return self.net(obs).squeeze(-1)


class ActionScaler(nn.Module):
    """
    Maps normalized policy actions u in [-1, 1] to the env's Box bounds, clipping first.

    Unbounded dimensions pass through unchanged.
    """

    def __init__(self, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__()
        low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        bounded = np.isfinite(low) & np.isfinite(high)
        center, half = np.zeros_like(low), np.ones_like(low)
        center[bounded] = (high[bounded] + low[bounded]) / 2
        half[bounded] = (high[bounded] - low[bounded]) / 2
        self.register_buffer('center', torch.as_tensor(center, dtype=torch.float32))
        self.register_buffer('half_range', torch.as_tensor(half, dtype=torch.float32))
        self.register_buffer('bounded', torch.as_tensor(bounded))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Env action for normalized action u."""
        u = torch.where(self.bounded, torch.clamp(u, -1.0, 1.0), u)
        return self.center + self.half_range * u
