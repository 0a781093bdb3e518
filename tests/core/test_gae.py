import numpy as np
import pytest
from trpo_ros.core.gae import gae

pytestmark = pytest.mark.unit


def test_hand_computed_three_steps_with_truncation():
    # One env, 3 steps: step 1 is truncated (bootstraps from V(s_1')), step 3 terminates.
    gamma, lam = 0.9, 0.8
    rewards = np.array([[1.0], [2.0], [3.0]])
    values = np.array([[0.5], [1.0], [1.5]])
    next_values = np.array([[4.0], [2.0], [9.0]])  # V of the true next states
    terminated = np.array([[False], [False], [True]])
    truncated = np.array([[True], [False], [False]])
    adv, ret = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    # Step 3: terminal, no future: delta = 3 - 1.5.
    d3 = 3.0 - 1.5
    # Step 2: delta = 2 + 0.9*2 - 1, trace continues into step 3.
    d2 = 2.0 + 0.9 * 2.0 - 1.0
    a2 = d2 + gamma * lam * d3
    # Step 1: truncated: bootstrap 0.9*4 from the final observation, trace cut.
    a1 = 1.0 + 0.9 * 4.0 - 0.5
    np.testing.assert_allclose(adv[:, 0], [a1, a2, d3])
    np.testing.assert_allclose(ret, adv + values)


def test_envs_are_independent_and_lambda_one_is_monte_carlo():
    rewards = np.array([[1.0, 0.0], [1.0, 5.0]])
    values = np.zeros((2, 2))
    next_values = np.zeros((2, 2))
    terminated = np.array([[False, True], [True, True]])
    truncated = np.zeros((2, 2), bool)
    adv, _ = gae(rewards, values, next_values, terminated, truncated, 0.5, 1.0)
    np.testing.assert_allclose(adv[:, 0], [1.0 + 0.5 * 1.0, 1.0])
    np.testing.assert_allclose(adv[:, 1], [0.0, 5.0])
