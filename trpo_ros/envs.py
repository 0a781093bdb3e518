"""
The gymnasium ids of trpo_ros, registered with string entry points (nothing heavy loads here).

- ``trpo_ros/KukaReach-v0``: KUKA LBR iiwa 7 DoF (`sim/kuka_reach.yaml`), the default robot.
- ``trpo_ros/PandaReach-v0``: Franka Panda, 7 arm joints (`sim/panda_reach.yaml`).
- ``trpo_ros/Reach-v0``: any robot/task YAML: ``gym.make('trpo_ros/Reach-v0', robot_yaml=PATH)``.
- ``trpo_ros/KukaPush-v0``, ``trpo_ros/PandaPush-v0``: push a cube on a table to a goal
  (`sim/kuka_push.yaml`, `sim/panda_push.yaml`).
- ``trpo_ros/Push-v0``: any robot/task YAML with ``task: {type: push, ...}``.
- ``trpo_ros/RosReach-v0``: the reach task on a robot behind ROS 2 topics (rclpy loads on
  connect).

All but the last are PyBullet envs (`trpo_ros.sim`, pybullet loads on ``gym.make``); the last
needs no simulator (`trpo_ros.nodes.ros_env`).
"""

from __future__ import annotations

from collections.abc import Mapping
import os
from typing import Any

import gymnasium as gym
from trpo_ros.robot.config import load_robot_yaml, RobotConfigError
from trpo_ros.robot.reach_task import TASK_DEFAULTS

ENV_IDS = {'trpo_ros/KukaReach-v0': 'kuka_reach.yaml',
           'trpo_ros/PandaReach-v0': 'panda_reach.yaml',
           'trpo_ros/KukaPush-v0': 'kuka_push.yaml',
           'trpo_ros/PandaPush-v0': 'panda_push.yaml'}
ROS_ENV_ID = 'trpo_ros/RosReach-v0'
ENTRY_POINTS = {'reach': 'trpo_ros.sim.reach_env:ReachEnv',
                'push': 'trpo_ros.sim.push_env:PushEnv'}
FROM_YAML = {'trpo_ros/Reach-v0': 'trpo_ros.sim:reach_from_yaml',
             'trpo_ros/Push-v0': 'trpo_ros.sim:push_from_yaml'}


def task_type(robot_yaml: str | os.PathLike | Mapping[str, Any]) -> str:
    """Return a robot/task YAML's task type ('reach' or 'push')."""
    kind = str(load_robot_yaml(robot_yaml)['task'].get('type', 'reach'))
    if kind not in ENTRY_POINTS:
        raise RobotConfigError(f'unknown task type {kind!r} (known: {sorted(ENTRY_POINTS)})')
    return kind


def episode_steps(robot_yaml: str | os.PathLike | Mapping[str, Any]) -> int:
    """Return a robot/task YAML's episode length (steps)."""
    task = load_robot_yaml(robot_yaml)['task']
    return int(task.get('episode_steps', TASK_DEFAULTS['episode_steps']))


def robot_yaml_of(env_id: str) -> str:
    """Return the robot/task YAML behind a registered trpo_ros id (RobotConfigError else)."""
    if env_id not in ENV_IDS:
        raise RobotConfigError(f'{env_id!r} is not a trpo_ros robot env (known: '
                               f'{", ".join(ENV_IDS)}; or give a robot/task YAML)')
    return ENV_IDS[env_id]


def register() -> None:
    """Register the trpo_ros ids with gymnasium (idempotent)."""
    for env_id, robot_yaml in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=ENTRY_POINTS[task_type(robot_yaml)],
                         kwargs={'robot_yaml': robot_yaml},
                         max_episode_steps=episode_steps(robot_yaml))
    for env_id, entry_point in FROM_YAML.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point)
    if ROS_ENV_ID not in gym.registry:
        gym.register(ROS_ENV_ID, entry_point='trpo_ros.nodes.ros_env:make_ros_reach_env')
