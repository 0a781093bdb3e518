"""
The TRPO update (Schulman et al. 2015, Appendix C) and an adaptive trust region.

One policy update, as in the paper:
    L(theta)  = E[ pi_theta(a|s) / pi_old(a|s) * A(s, a) ]          surrogate advantage
    g         = grad L(theta_old)                                    policy gradient
    s         = F^-1 g          by conjugate gradient on Fisher-vector products
    beta      = sqrt(2 delta / s^T F s)                              largest step with KL ~ delta
    theta_new = theta_old + decay^k * beta * s                       backtracking line search,
                accepted only if the MEASURED mean KL <= delta and L(theta_new) > L(theta_old)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import math

import numpy as np
import torch
from torch import nn
from torch.distributions import kl_divergence, Normal
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from trpo_ros.core.config import TRPOConfig
from trpo_ros.core.networks import Critic, GaussianActor

torch.distributions.Distribution.set_default_validate_args(False)


def flat_grad(output: torch.Tensor, params: list[nn.Parameter],
              create_graph: bool = False, retain_graph: bool | None = None) -> torch.Tensor:
    """Gradient of a scalar with respect to `params`, as one flat vector."""
    grads = torch.autograd.grad(output, params, create_graph=create_graph,
                                retain_graph=retain_graph)
    return torch.cat([g.reshape(-1) for g in grads])


def conjugate_gradient(matrix_vector_product: Callable[[torch.Tensor], torch.Tensor],
                       b: torch.Tensor, iters: int, tolerance: float = 1e-10) -> torch.Tensor:
    """Approximately solve A x = b for symmetric positive-definite A given only x -> A x."""
    x = torch.zeros_like(b)
    residual = b.clone()
    direction = b.clone()
    residual_sq = residual @ residual
    for _ in range(iters):
        a_direction = matrix_vector_product(direction)
        alpha = residual_sq / (direction @ a_direction)
        x += alpha * direction
        residual -= alpha * a_direction
        new_residual_sq = residual @ residual
        if new_residual_sq < tolerance:
            break
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
    return x


def mean_kl(old: Normal, actor: GaussianActor, obs: torch.Tensor) -> torch.Tensor:
    """Mean over states of KL(pi_old(.|s) || pi_theta(.|s))."""
    return kl_divergence(old, actor.distribution(obs)).sum(-1).mean()


def fisher_vector_product(actor: GaussianActor, obs: torch.Tensor,
                          damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """
    Return the map v -> (F + damping I) v.

    F is the Hessian of the mean KL at the current parameters (which equals the Fisher
    information of the policy there).
    """
    params = list(actor.parameters())
    with torch.no_grad():
        current = actor.distribution(obs)
        frozen = Normal(current.mean, current.stddev)
    kl_grad = flat_grad(mean_kl(frozen, actor, obs), params, create_graph=True)

    def product(v: torch.Tensor) -> torch.Tensor:
        return flat_grad(kl_grad @ v, params, retain_graph=True) + damping * v

    return product


@dataclass(frozen=True)
class StepResult:
    """What one TRPO update did (all floats, ready to log)."""

    accepted: bool
    kl: float
    """Measured mean KL of the accepted step (0 when rejected)."""
    surrogate_gain: float
    """Measured L(theta_new) - L(theta_old) (0 when rejected)."""
    expected_gain: float
    """Linear prediction g . (theta_new - theta_old) of the accepted step."""
    line_search_steps: int
    """Candidate steps evaluated (1 = the full trust-region step was accepted)."""
    delta: float
    """Trust-region radius this step was bounded by."""
    entropy: float

    @property
    def improvement_ratio(self) -> float:
        """Actual over predicted surrogate gain (0 when rejected)."""
        return self.surrogate_gain / self.expected_gain if self.expected_gain > 0 else 0.0

    @property
    def full_step(self) -> bool:
        """Tell whether the step went to the trust-region boundary (no backtracking)."""
        return self.accepted and self.line_search_steps == 1


def trpo_step(actor: GaussianActor, obs: torch.Tensor, actions: torch.Tensor,
              advantages: torch.Tensor, delta: float, config: TRPOConfig,
              generator: torch.Generator | None = None) -> StepResult:
    """
    Do one TRPO policy update in place.

    On rejection the parameters are left exactly as they were. `obs` are normalized
    observations, `actions` normalized (pre-scaling) actions.
    """
    params = list(actor.parameters())
    theta_old = parameters_to_vector(params).detach().clone()
    with torch.no_grad():
        old_dist = actor.distribution(obs)
        old = Normal(old_dist.mean, old_dist.stddev)
        old_log_prob = old.log_prob(actions).sum(-1)
        entropy = old.entropy().sum(-1).mean().item()

    def surrogate() -> torch.Tensor:
        log_prob = actor.distribution(obs).log_prob(actions).sum(-1)
        return (torch.exp(log_prob - old_log_prob) * advantages).mean()

    surrogate_old = surrogate()
    g = flat_grad(surrogate_old, params)
    fisher_obs = _subsample(obs, config.fisher_subsample, generator)
    fvp = fisher_vector_product(actor, fisher_obs, config.cg_damping)
    direction = conjugate_gradient(fvp, g, config.cg_iters)  # s = F^-1 g
    s_f_s = (direction @ fvp(direction)).item()
    rejected = StepResult(False, 0.0, 0.0, 0.0, config.line_search_steps, delta, entropy)
    if not (s_f_s > 0 and math.isfinite(s_f_s)):
        return rejected
    full_step = math.sqrt(2 * delta / s_f_s) * direction  # beta * s
    surrogate_old = surrogate_old.item()

    with torch.no_grad():
        for k in range(config.line_search_steps):
            fraction = config.line_search_decay ** k
            vector_to_parameters(theta_old + fraction * full_step, params)
            kl = mean_kl(old, actor, obs).item()
            gain = surrogate().item() - surrogate_old
            if kl <= delta and gain > 0 and math.isfinite(kl):
                expected = fraction * (g @ full_step).item()
                return StepResult(True, kl, gain, expected, k + 1, delta, entropy)
        vector_to_parameters(theta_old, params)
    return rejected


def _subsample(obs: torch.Tensor, fraction: float,
               generator: torch.Generator | None) -> torch.Tensor:
    if fraction >= 1.0:
        return obs
    count = max(1, int(len(obs) * fraction))
    return obs[torch.randperm(len(obs), generator=generator)[:count]]


class TrustRegion:
    """
    The radius delta: fixed, or adapted from how well the quadratic model predicted.

    After each step: rejected or improvement ratio < ratio_shrink_below -> shrink;
    ratio > ratio_expand_above with the full step accepted -> expand (up to delta_max).
    After the next batch: KL(previous policy || current policy) on its states > the delta the
    step was taken with -> shrink. The radius never leaves [delta_min, delta_max].
    """

    def __init__(self, config: TRPOConfig, delta: float | None = None) -> None:
        self.config = config
        self.delta = config.delta if delta is None else float(delta)

    @property
    def adaptive(self) -> bool:
        """Whether delta changes at all."""
        return self.config.trust_region == 'adaptive'

    @property
    def at_floor(self) -> bool:
        """Delta has shrunk to delta_min."""
        return self.delta <= self.config.delta_min

    def shrink(self) -> None:
        """Shrink delta (also used by the regression guard)."""
        if self.adaptive:
            self.delta = max(self.config.delta_min, self.delta * self.config.delta_shrink)

    def after_step(self, result: StepResult) -> None:
        """Adapt delta from the step's actual vs predicted gain."""
        if not result.accepted or result.improvement_ratio < self.config.ratio_shrink_below:
            self.shrink()
        elif result.improvement_ratio > self.config.ratio_expand_above and result.full_step:
            if self.adaptive:
                self.delta = min(self.config.delta_max, self.delta * self.config.delta_expand)

    def after_next_batch(self, kl_on_new_states: float, step_delta: float) -> None:
        """Shrink when the last step moved the policy more than allowed on fresh states."""
        if kl_on_new_states > step_delta:
            self.shrink()


def fit_critic(critic: Critic, optimizer: torch.optim.Optimizer, obs: torch.Tensor,
               returns: torch.Tensor, epochs: int, batch_size: int,
               generator: torch.Generator | None = None) -> float:
    """
    Regress V(obs) on the GAE returns by minibatch Adam.

    Returns the mean squared error of the last epoch.
    """
    losses: list[float] = []
    for _ in range(epochs):
        losses.clear()
        for index in torch.randperm(len(obs), generator=generator).split(batch_size):
            loss = (critic(obs[index]) - returns[index]).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return float(np.mean(losses)) if losses else float('nan')


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 - Var(target - predicted) / Var(target); 1 is perfect, 0 is no better than a constant."""
    variance = np.var(target)
    return float('nan') if variance == 0 else float(1 - np.var(target - predicted) / variance)
