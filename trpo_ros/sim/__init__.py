"""
PyBullet Gymnasium envs for URDF arms; importing this module registers the trpo_ros ids.

The ids and what they are: `trpo_ros.envs` (``trpo_ros/KukaReach-v0``, ``PandaReach-v0``,
``KukaPush-v0``, ``PandaPush-v0``, ``Reach-v0`` / ``Push-v0`` for any robot/task YAML, and
``RosReach-v0`` over ROS topics).
"""

from __future__ import annotations

from collections.abc import Mapping
import os
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import TimeLimit
from trpo_ros import envs
from trpo_ros.envs import ENV_IDS, robot_yaml_of
from trpo_ros.robot.config import find_sim_file, load_robot_yaml, RobotConfigError
from trpo_ros.sim.reach_env import ReachEnv, save_gif

__all__ = ['ENV_IDS', 'ReachEnv', 'RobotConfigError', 'env_from_yaml', 'find_sim_file',
           'load_robot_yaml', 'make_env_from_yaml', 'push_from_yaml', 'reach_from_yaml',
           'robot_yaml_of', 'save_gif']


def reach_from_yaml(robot_yaml: str | os.PathLike | Mapping[str, Any],
                    max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """
    Entry point of 'trpo_ros/Reach-v0': a ReachEnv cut at `max_episode_steps`.

    `robot_yaml` is a file or a robot/task mapping (an exported model's `robot_config`);
    `max_episode_steps` defaults to the YAML's episode_steps.
    """
    steps = envs.episode_steps(robot_yaml) if max_episode_steps is None else max_episode_steps
    return TimeLimit(ReachEnv(robot_yaml=robot_yaml, **kwargs), int(steps))


def push_from_yaml(robot_yaml: str | os.PathLike | Mapping[str, Any],
                   max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """Entry point of 'trpo_ros/Push-v0': a PushEnv cut at `max_episode_steps` (as above)."""
    from trpo_ros.sim.push_env import PushEnv

    steps = envs.episode_steps(robot_yaml) if max_episode_steps is None else max_episode_steps
    return TimeLimit(PushEnv(robot_yaml=robot_yaml, **kwargs), int(steps))


def env_from_yaml(robot_yaml: str | os.PathLike | Mapping[str, Any],
                  max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """Return the reach or push env of a robot/task YAML (by its task type), time-limited."""
    build = push_from_yaml if envs.task_type(robot_yaml) == 'push' else reach_from_yaml
    return build(robot_yaml, max_episode_steps=max_episode_steps, **kwargs)


def make_env_from_yaml(robot_yaml: str | os.PathLike | Mapping[str, Any],
                       **kwargs: Any) -> gym.Env:
    """``gym.make`` the env of a robot/task YAML (path, name under `sim/`, or mapping)."""
    source = robot_yaml if isinstance(robot_yaml, Mapping) else str(robot_yaml)
    env_id = 'trpo_ros/Push-v0' if envs.task_type(source) == 'push' else 'trpo_ros/Reach-v0'
    return gym.make(env_id, robot_yaml=source, **kwargs)


envs.register()
