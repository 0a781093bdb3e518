"""
The reach task (numpy only): move the end-effector link to a goal point inside a box.

One :class:`ReachTask` serves the PyBullet env (`trpo_ros.sim.ReachEnv`) and the env over ROS
topics (`trpo_ros.nodes.ros_env.RosReachEnv`), so both give the policy the same observation and
reward. Observation (float32, `obs_names`):

| block                | size | unit           | source on a robot           |
| -------------------- | ---- | -------------- | --------------------------- |
| ``joint_pos/<j>``    | n    | rad (m)        | sensor_msgs/JointState      |
| ``joint_vel/<j>``    | n    | rad/s (m/s)    | sensor_msgs/JointState      |
| ``ee_pos/x, y, z``   | 3    | m, world frame | forward kinematics of q     |
| ``goal/x, y, z``     | 3    | m, world frame | geometry_msgs/PointStamped  |

Reward: ``-distance - action_penalty*|a_n|^2 - velocity_penalty*|qd|^2`` (the action term is
`ArmTask.action_term`); success: distance < success_threshold. Actions: `trpo_ros.robot.task`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import os
from typing import Any

import numpy as np
from trpo_ros.robot.config import load_robot_yaml
from trpo_ros.robot.spec import robot_spec
from trpo_ros.robot.task import (
    ArmTask,
    common_fields,
    DEFAULT_ROBOT_YAML,
    joint_sources,
    merged_task,
    TASK_DEFAULTS,
)

__all__ = ['DEFAULT_ROBOT_YAML', 'ReachTask', 'TASK_DEFAULTS', 'reach_task']

GOAL_SOURCE = {'name': 'goal', 'type': 'geometry_msgs/PointStamped', 'topic': '/trpo/goal',
               'columns': ['goal/x', 'goal/y', 'goal/z']}


@dataclass(frozen=True, eq=False)
class ReachTask(ArmTask):
    """Move the end-effector link of `robot` to a goal point inside [goal_low, goal_high]."""

    kind = 'reach'

    def observation_names(self) -> list[str]:
        """Return joint positions, joint velocities, end-effector position, goal."""
        names = self.robot.joint_names
        return ([f'joint_pos/{j}' for j in names] + [f'joint_vel/{j}' for j in names]
                + [f'ee_pos/{a}' for a in 'xyz'] + [f'goal/{a}' for a in 'xyz'])

    def sources(self) -> list[dict[str, Any]]:
        """Return the joint states and the goal (ee_pos is computed by FK)."""
        return [*joint_sources(self.robot.joint_names), dict(GOAL_SOURCE)]

    def observation(self, q: np.ndarray, qd: np.ndarray, ee: np.ndarray,
                    goal: np.ndarray) -> np.ndarray:
        """Return the observation vector (float32, `obs_names` order)."""
        return np.concatenate([q, qd, ee, goal]).astype(np.float32)

    def outcome(self, ee: np.ndarray, goal: np.ndarray, action: np.ndarray,
                qd: np.ndarray) -> tuple[float, dict[str, Any]]:
        """
        Return (reward, info) for a step that applied the clipped `action`.

        `info` has ``distance`` (m), ``is_success`` and the reward terms ``reward_distance``,
        ``reward_action``, ``reward_velocity``.
        """
        distance = float(np.linalg.norm(ee - goal))
        r_dist = -distance
        r_act = self.action_term(action)
        r_vel = -self.velocity_penalty * float(qd @ qd)
        info = {'distance': distance, 'is_success': distance < self.success_threshold,
                'reward_distance': r_dist, 'reward_action': r_act, 'reward_velocity': r_vel}
        return r_dist + r_act + r_vel, info


def reach_task(robot_yaml: str | os.PathLike | Mapping[str, Any] | None = None, *,
               robot: Mapping[str, Any] | None = None, action_penalty: float = 0.01,
               velocity_penalty: float = 0.001, **task_overrides: Any) -> ReachTask:
    """
    Build the ReachTask of a robot/task YAML (path, name under `sim/`, or mapping).

    `robot` holds keyword overrides for `trpo_ros.robot.spec.robot_spec` (urdf, joints,
    ee_link, home, limits, base_position, base_orientation, mesh_search_paths);
    `task_overrides` replace YAML task fields (None = keep the YAML's).

    Raises
    ------
        RobotConfigError: the YAML, the URDF or a value is unusable (the message says which).

    """
    cfg = load_robot_yaml(robot_yaml if robot_yaml is not None else DEFAULT_ROBOT_YAML)
    task = merged_task(cfg, 'reach', TASK_DEFAULTS, task_overrides)
    spec = robot_spec(cfg['robot'], **{k: v for k, v in (robot or {}).items() if v is not None})
    return ReachTask(robot=spec, source=cfg['path'], **common_fields(task),
                     action_penalty=float(action_penalty),
                     velocity_penalty=float(velocity_penalty))
