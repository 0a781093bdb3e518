"""Known-answer tests of the TRPO building blocks."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal
from torch.nn.utils import parameters_to_vector
from trpo_ros.core.config import TRPOConfig
from trpo_ros.core.networks import GaussianActor
from trpo_ros.core.trpo import (
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    StepResult,
    trpo_step,
    TrustRegion,
)

pytestmark = pytest.mark.unit


def test_conjugate_gradient_solves_spd_system():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(8, 8))
    a = m @ m.T + 8 * np.eye(8)
    b = rng.normal(size=8)
    x = conjugate_gradient(lambda v: torch.as_tensor(a) @ v, torch.as_tensor(b), iters=8)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(a, b), rtol=1e-6, atol=1e-8)


def test_flat_grad_matches_autograd():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    b = torch.nn.Parameter(torch.tensor(3.0))
    g = flat_grad((w**2).sum() * b, [w, b])
    np.testing.assert_allclose(g.numpy(), [6.0, 12.0, 5.0])


def test_fisher_vector_product_equals_explicit_kl_hessian():
    torch.manual_seed(0)
    actor = GaussianActor(2, 2, (3,), init_log_std=-0.3).double()
    obs = torch.randn(5, 2, dtype=torch.float64)
    params = list(actor.parameters())
    theta = parameters_to_vector(params).detach()
    with torch.no_grad():
        d = actor.distribution(obs)
        old = Normal(d.mean, d.stddev)

    names = [name for name, _ in actor.named_parameters()]
    shapes = [p.shape for p in params]

    def kl_of(flat: torch.Tensor) -> torch.Tensor:
        pieces = flat.split([p.numel() for p in params])
        weights = {n: x.view(s) for n, x, s in zip(names, pieces, shapes)}
        mean = torch.func.functional_call(actor.mean_net, {k[len('mean_net.'):]: v for k, v in
                                                           weights.items() if k != 'log_std'},
                                          (obs,))
        new = Normal(mean, weights['log_std'].exp().expand_as(mean))
        return torch.distributions.kl_divergence(old, new).sum(-1).mean()

    hessian = torch.autograd.functional.hessian(kl_of, theta.clone())
    assert hessian.abs().max() > 0.1  # a real, non-trivial curvature matrix
    damping = 0.1
    fvp = fisher_vector_product(actor, obs, damping)
    v = torch.randn(theta.numel(), dtype=torch.float64)
    expected = hessian @ v + damping * v
    np.testing.assert_allclose(fvp(v).detach().numpy(), expected.numpy(), rtol=1e-8, atol=1e-10)


def _problem(seed: int = 0):
    torch.manual_seed(seed)
    actor = GaussianActor(3, 2, (16,), init_log_std=-0.5)
    obs = torch.randn(256, 3)
    with torch.no_grad():
        actions = actor.distribution(obs).sample()
    advantages = torch.randn(256)
    return actor, obs, actions, advantages


def test_accepted_step_is_inside_trust_region_and_improves_surrogate():
    actor, obs, actions, advantages = _problem()
    result = trpo_step(actor, obs, actions, advantages, 0.01, TRPOConfig())
    assert result.accepted
    assert 0 < result.kl <= 0.01
    assert result.surrogate_gain > 0
    assert result.expected_gain > 0


def test_line_search_rejects_step_that_raises_kl_above_delta(monkeypatch):
    # A Fisher model that underestimates curvature 1e4-fold makes every candidate step far
    # too long: the measured KL exceeds delta at all 3 backtracking steps.
    import trpo_ros.core.trpo as trpo

    real = trpo.fisher_vector_product

    def underestimated(actor, obs, damping):
        product = real(actor, obs, 0.0)
        return lambda v: product(v) * 1e-4

    monkeypatch.setattr(trpo, 'fisher_vector_product', underestimated)
    actor, obs, actions, advantages = _problem()
    before = parameters_to_vector(actor.parameters()).detach().clone()
    result = trpo_step(actor, obs, actions, advantages, 0.01,
                       TRPOConfig(line_search_steps=3, cg_damping=0.0))
    assert not result.accepted and result.kl == 0.0
    assert torch.equal(parameters_to_vector(actor.parameters()), before)


def test_line_search_rejects_step_that_lowers_surrogate(monkeypatch):
    # Flip the gradient the step follows: every candidate lowers the surrogate.
    import trpo_ros.core.trpo as trpo

    real = trpo.flat_grad
    calls = {'n': 0}

    def flipped(output, params, **kwargs):
        calls['n'] += 1
        grad = real(output, params, **kwargs)
        return -grad if calls['n'] == 1 else grad  # the first call is g

    monkeypatch.setattr(trpo, 'flat_grad', flipped)
    actor, obs, actions, advantages = _problem(1)
    before = parameters_to_vector(actor.parameters()).detach().clone()
    result = trpo_step(actor, obs, actions, advantages, 0.01, TRPOConfig())
    assert not result.accepted
    assert result.line_search_steps == TRPOConfig().line_search_steps
    assert torch.equal(parameters_to_vector(actor.parameters()), before)


@pytest.mark.parametrize('seed', range(20))
def test_property_every_accepted_step_has_kl_within_delta(seed):
    rng = np.random.default_rng(seed)
    actor, obs, actions, advantages = _problem(seed)
    advantages = advantages * float(rng.uniform(0.1, 100))
    delta = float(10 ** rng.uniform(-4, -1))
    config = TRPOConfig(cg_iters=int(rng.integers(1, 15)), delta=delta,
                        delta_min=min(delta, 1e-4), delta_max=max(delta, 0.05))
    result = trpo_step(actor, obs, actions, advantages, delta, config)
    if result.accepted:
        with torch.no_grad():
            assert result.kl <= delta
    else:
        assert result.kl == 0.0


def _result(accepted=True, gain=1.0, expected=1.0, steps=1, delta=0.01):
    return StepResult(accepted, 0.005 if accepted else 0.0, gain, expected, steps, delta, 1.0)


def test_adaptive_trust_region_shrinks_and_grows_as_specified():
    config = TRPOConfig(delta=0.01, delta_min=0.002, delta_max=0.02, delta_shrink=0.5,
                        delta_expand=1.5)
    region = TrustRegion(config)
    region.after_step(_result(gain=0.9, expected=1.0, steps=1))  # good ratio, full step
    assert math.isclose(region.delta, 0.015)
    region.after_step(_result(gain=0.9, expected=1.0, steps=1))
    assert math.isclose(region.delta, 0.02)  # capped at delta_max
    region.after_step(_result(gain=0.9, expected=1.0, steps=2))  # backtracked: no expansion
    assert math.isclose(region.delta, 0.02)
    region.after_step(_result(gain=0.5, expected=1.0, steps=1))  # middling ratio: unchanged
    assert math.isclose(region.delta, 0.02)
    region.after_step(_result(gain=0.1, expected=1.0))  # poor ratio
    assert math.isclose(region.delta, 0.01)
    region.after_step(_result(accepted=False))  # rejected
    assert math.isclose(region.delta, 0.005)
    region.after_next_batch(kl_on_new_states=0.006, step_delta=0.005)  # KL overshoot
    assert math.isclose(region.delta, 0.0025)
    region.after_step(_result(accepted=False))
    assert math.isclose(region.delta, 0.002) and region.at_floor  # floored at delta_min


def test_fixed_trust_region_never_changes():
    region = TrustRegion(TRPOConfig(trust_region='fixed', delta=0.01))
    region.after_step(_result(accepted=False))
    region.after_step(_result(gain=0.9, expected=1.0))
    region.after_next_batch(1.0, 0.01)
    assert region.delta == 0.01
