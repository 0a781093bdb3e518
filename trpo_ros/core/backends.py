"""The rollout backends: a local vector env (core.rollout) or Ray actors (core.ray_rollout)."""

from __future__ import annotations

from trpo_ros.core.config import TRPOConfig
from trpo_ros.core.rollout import make_vector_env, RolloutCollector


def make_collector(config: TRPOConfig, seed: int) -> RolloutCollector:
    """Build the rollout backend of the config: local vector env, or Ray actors."""
    if config.rollout_backend == 'ray':
        from trpo_ros.core.ray_rollout import RayCollector

        return RayCollector(config, seed)
    return RolloutCollector(make_vector_env(config), seed)
