"""
PyBullet Gymnasium envs for URDF arms; importing this module registers them.

Registered ids:

- ``trpo_ros/KukaReach-v0``: KUKA LBR iiwa 7 DoF (`sim/kuka_reach.yaml`), the default robot.
- ``trpo_ros/PandaReach-v0``: Franka Panda, 7 arm joints (`sim/panda_reach.yaml`).
- ``trpo_ros/Reach-v0``: any robot/task YAML: ``gym.make('trpo_ros/Reach-v0', robot_yaml=PATH)``.
"""

from __future__ import annotations

from collections.abc import Mapping
import os
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import TimeLimit
from trpo_ros.robot.config import find_sim_file, load_robot_yaml, RobotConfigError
from trpo_ros.robot.reach_task import TASK_DEFAULTS
from trpo_ros.sim.reach_env import ReachEnv, save_gif

__all__ = ['ENV_IDS', 'ReachEnv', 'RobotConfigError', 'find_sim_file', 'load_robot_yaml',
           'make_env_from_yaml', 'reach_from_yaml', 'robot_yaml_of', 'save_gif']

ENV_IDS = {'trpo_ros/KukaReach-v0': 'kuka_reach.yaml',
           'trpo_ros/PandaReach-v0': 'panda_reach.yaml'}


def _episode_steps(robot_yaml: str | os.PathLike | Mapping[str, Any]) -> int:
    task = load_robot_yaml(robot_yaml)['task']
    return int(task.get('episode_steps', TASK_DEFAULTS['episode_steps']))


def reach_from_yaml(robot_yaml: str | os.PathLike | Mapping[str, Any],
                    max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """
    Entry point of 'trpo_ros/Reach-v0': a ReachEnv cut at `max_episode_steps`.

    `robot_yaml` is a file or a robot/task mapping (an exported model's `robot_config`);
    `max_episode_steps` defaults to the YAML's episode_steps.
    """
    steps = _episode_steps(robot_yaml) if max_episode_steps is None else max_episode_steps
    return TimeLimit(ReachEnv(robot_yaml=robot_yaml, **kwargs), int(steps))


def make_env_from_yaml(robot_yaml: str | os.PathLike | Mapping[str, Any],
                       **kwargs: Any) -> gym.Env:
    """``gym.make`` a reach env from a robot/task YAML (path, name under `sim/`, or mapping)."""
    source = robot_yaml if isinstance(robot_yaml, Mapping) else str(robot_yaml)
    return gym.make('trpo_ros/Reach-v0', robot_yaml=source, **kwargs)


def robot_yaml_of(env_id: str) -> str:
    """Return the robot/task YAML behind a registered reach env id (RobotConfigError else)."""
    if env_id not in ENV_IDS:
        raise RobotConfigError(f'{env_id!r} is not a trpo_ros reach robot (known: '
                               f'{", ".join(ENV_IDS)}; or give a robot/task YAML)')
    return ENV_IDS[env_id]


def _register() -> None:
    for env_id, robot_yaml in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point='trpo_ros.sim.reach_env:ReachEnv',
                         kwargs={'robot_yaml': robot_yaml},
                         max_episode_steps=_episode_steps(robot_yaml))
    if 'trpo_ros/Reach-v0' not in gym.registry:
        gym.register('trpo_ros/Reach-v0', entry_point='trpo_ros.sim:reach_from_yaml')
    if 'trpo_ros/RosReach-v0' not in gym.registry:  # over ROS topics; rclpy loads on make
        gym.register('trpo_ros/RosReach-v0',
                     entry_point='trpo_ros.nodes.ros_env:make_ros_reach_env')


_register()
