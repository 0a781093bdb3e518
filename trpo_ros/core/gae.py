"""Generalized advantage estimation as a pure function on arrays."""

from __future__ import annotations

import numpy as np


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray,
        terminated: np.ndarray, truncated: np.ndarray, gamma: float,
        lam: float) -> tuple[np.ndarray, np.ndarray]:
    """
    GAE(lambda) advantages and value targets, arrays shaped [T, n_envs].

    `next_values[t]` is V(s_{t+1}) of the true next state (for a truncated step the final
    observation, not the reset one). A terminated step has no future value; a truncated step
    bootstraps from V(s_{t+1}); both end the trace, so advantages never leak across episodes.
    """
    rewards, values, next_values = (np.asarray(a, np.float64)
                                    for a in (rewards, values, next_values))
    alive = 1.0 - np.asarray(terminated, np.float64)
    continues = 1.0 - np.maximum(alive == 0, np.asarray(truncated, bool))
    deltas = rewards + gamma * alive * next_values - values  # TD residuals
    advantages = np.zeros_like(deltas)
    running = np.zeros(deltas.shape[1:])
    for t in reversed(range(len(deltas))):
        running = deltas[t] + gamma * lam * continues[t] * running
        advantages[t] = running
    return advantages, advantages + values
