"""
The push task (numpy only): push a cube across a table to a goal position on the table.

Observation (float32, `obs_names`) — no object velocity, so a robot can supply the object from
one ``geometry_msgs/PoseStamped`` (perception or motion capture):

| block                       | size | unit                          | source on a robot          |
| --------------------------- | ---- | ----------------------------- | -------------------------- |
| ``joint_pos/<j>``           | n    | rad (m)                       | sensor_msgs/JointState     |
| ``joint_vel/<j>``           | n    | rad/s (m/s)                   | sensor_msgs/JointState     |
| ``ee_pos/x, y, z``          | 3    | m, world frame                | forward kinematics of q    |
| ``object_pos/x, y, z``      | 3    | m, world frame                | geometry_msgs/PoseStamped  |
| ``object_quat/x, y, z, w``  | 4    | unit quaternion, w >= 0       | geometry_msgs/PoseStamped  |
| ``goal/x, y, z``            | 3    | m, world frame (on the table) | geometry_msgs/PointStamped |

Reward (dense): ``-ee_object_weight*|ee - push_point| - object_goal_weight*|object - goal|
- action_penalty*|a_n|^2``, plus `success_bonus` on every step the object is within
`success_threshold` (5 cm) of the goal (success).
The push point lies `push_offset` behind the object's center on the far side from the goal and
`push_height` above it: where the end effector pushes from (a flange is wider than its frame
origin and longer below it, so touching the center is neither possible nor the aim).
The cube (edge `object_size`, `object_mass`, `object_friction`, each with an optional
randomization range drawn per episode) starts uniformly in [object_low, object_high] (x, y) on
a table whose top is at `table_height`; goals are drawn in [goal_low, goal_high] (x, y) on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import os
from typing import Any

import numpy as np
from trpo_ros.robot.config import load_robot_yaml, RobotConfigError
from trpo_ros.robot.kinematics import canonical_quaternion
from trpo_ros.robot.reach_task import GOAL_SOURCE
from trpo_ros.robot.spec import robot_spec
from trpo_ros.robot.task import ArmTask, common_fields, joint_sources, merged_task
from trpo_ros.robot.task import TASK_DEFAULTS as ARM_DEFAULTS

PUSH_DEFAULTS: dict[str, Any] = {
    **ARM_DEFAULTS,
    'type': 'push',
    'table_height': 0.2,
    'object_low': (0.45, -0.15),
    'object_high': (0.6, 0.15),
    'goal_low': (0.45, -0.2),
    'goal_high': (0.65, 0.2),
    'object_size': 0.05,
    'object_mass': 0.2,
    'object_friction': 0.5,
    'object_size_range': None,
    'object_mass_range': None,
    'object_friction_range': None,
    'push_offset': 0.0,
    'push_height': 0.0,
    'ee_object_weight': 0.5,
    'object_goal_weight': 1.0,
    'success_bonus': 0.0,
}
OBJECT_SOURCE = {'name': 'object', 'type': 'geometry_msgs/PoseStamped',
                 'topic': '/trpo/object_pose',
                 'columns': [f'object_pos/{a}' for a in 'xyz']
                 + [f'object_quat/{a}' for a in 'xyzw']}


def _range(name: str, value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = (float(v) for v in value)
    if not 0 < low <= high:
        raise RobotConfigError(f'{name} must be [low, high] with 0 < low <= high, got {value}')
    return low, high


@dataclass(frozen=True, eq=False)
class PushTask(ArmTask):
    """
    Push a cube on a table to a goal (see the module docstring for the layout and reward).

    Attributes (besides ArmTask's)
    ------------------------------
        table_height: z of the table top (m, world frame).
        object_low: (x, y) corner of the cube's start region.
        object_high: (x, y) corner of the cube's start region.
        object_size: cube edge (m).
        object_mass: cube mass (kg).
        object_friction: lateral friction coefficient of the cube.
        object_size_range: (low, high) randomization of the edge per episode, or None.
        object_mass_range: (low, high) randomization of the mass per episode, or None.
        object_friction_range: (low, high) randomization of the friction, or None.
        push_offset: distance of the push point behind the object's center (m, horizontal).
        push_height: height of the push point above the object's center (m).
        ee_object_weight: reward weight of the end effector -> push point distance.
        object_goal_weight: reward weight of the object -> goal distance.
        success_bonus: reward added on each step of success.

    """

    kind = 'push'

    table_height: float = 0.2
    object_low: np.ndarray = field(default_factory=lambda: np.zeros(2))
    object_high: np.ndarray = field(default_factory=lambda: np.zeros(2))
    object_size: float = 0.05
    object_mass: float = 0.2
    object_friction: float = 0.5
    object_size_range: tuple[float, float] | None = None
    object_mass_range: tuple[float, float] | None = None
    object_friction_range: tuple[float, float] | None = None
    push_offset: float = 0.0
    push_height: float = 0.0
    ee_object_weight: float = 0.5
    object_goal_weight: float = 1.0
    success_bonus: float = 0.0

    def __post_init__(self) -> None:
        """Check the object and table numbers, then as ArmTask."""
        if self.object_low.shape != (2,) or self.object_high.shape != (2,) or \
                np.any(self.object_low > self.object_high):
            raise RobotConfigError('object_low/object_high must be 2 values (x, y) with low <= '
                                   f'high, got {self.object_low.tolist()} and '
                                   f'{self.object_high.tolist()}')
        if min(self.object_size, self.object_mass, self.object_friction) <= 0:
            raise RobotConfigError('object_size, object_mass and object_friction must be > 0')
        super().__post_init__()

    def observation_names(self) -> list[str]:
        """Return joints, end effector, object position and orientation, goal."""
        names = self.robot.joint_names
        return ([f'joint_pos/{j}' for j in names] + [f'joint_vel/{j}' for j in names]
                + [f'ee_pos/{a}' for a in 'xyz'] + list(OBJECT_SOURCE['columns'])
                + [f'goal/{a}' for a in 'xyz'])

    def sources(self) -> list[dict[str, Any]]:
        """Return the joint states, the object pose and the goal (ee_pos is computed by FK)."""
        return [*joint_sources(self.robot.joint_names), dict(OBJECT_SOURCE), dict(GOAL_SOURCE)]

    def resting_z(self, size: float | None = None) -> float:
        """Return the z of a cube's center resting on the table."""
        return self.table_height + 0.5 * (self.object_size if size is None else size)

    def observation(self, q: np.ndarray, qd: np.ndarray, ee: np.ndarray, object_pos: np.ndarray,
                    object_quat: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Return the observation vector (float32, `obs_names` order); quat made w >= 0."""
        return np.concatenate([q, qd, ee, object_pos, canonical_quaternion(object_quat),
                               goal]).astype(np.float32)

    def push_point(self, object_pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Return where the end effector pushes from: behind the object, seen from the goal."""
        away = object_pos[:2] - goal[:2]
        norm = float(np.linalg.norm(away))
        behind = away / norm * self.push_offset if norm > 1e-6 else np.zeros(2)
        return object_pos + np.array([behind[0], behind[1], self.push_height])

    def outcome(self, ee: np.ndarray, object_pos: np.ndarray, goal: np.ndarray,
                action: np.ndarray) -> tuple[float, dict[str, Any]]:
        """
        Return (reward, info) for a step that applied the clipped `action`.

        `info` has ``distance`` (object -> goal, m), ``ee_distance`` (end effector -> push point),
        ``is_success`` and the reward terms ``reward_ee``, ``reward_object``, ``reward_action``.
        """
        distance = float(np.linalg.norm(object_pos - goal))
        ee_distance = float(np.linalg.norm(ee - self.push_point(object_pos, goal)))
        r_ee = -self.ee_object_weight * ee_distance
        r_object = -self.object_goal_weight * distance
        r_act = self.action_term(action)
        success = distance < self.success_threshold
        r_success = self.success_bonus if success else 0.0
        info = {'distance': distance, 'ee_distance': ee_distance, 'is_success': success,
                'reward_ee': r_ee, 'reward_object': r_object, 'reward_action': r_act,
                'reward_success': r_success}
        return r_ee + r_object + r_act + r_success, info

    def task_config(self) -> dict[str, Any]:
        """Return the YAML ``task:`` mapping of this task."""
        goal_xy = {'goal_low': self.goal_low[:2].tolist(),
                   'goal_high': self.goal_high[:2].tolist()}
        return {**super().task_config(), **goal_xy, 'type': 'push',
                'table_height': self.table_height, 'object_low': self.object_low.tolist(),
                'object_high': self.object_high.tolist(), 'object_size': self.object_size,
                'object_mass': self.object_mass, 'object_friction': self.object_friction,
                'object_size_range': self.object_size_range,
                'object_mass_range': self.object_mass_range,
                'object_friction_range': self.object_friction_range,
                'push_offset': self.push_offset, 'push_height': self.push_height,
                'ee_object_weight': self.ee_object_weight,
                'object_goal_weight': self.object_goal_weight,
                'success_bonus': self.success_bonus}

    def spec_info(self) -> dict[str, Any]:
        """As ArmTask's, plus the table and the object."""
        return {**super().spec_info(), 'table_height': self.table_height,
                'object_size': self.object_size}


def push_task(robot_yaml: str | os.PathLike | Mapping[str, Any], *,
              robot: Mapping[str, Any] | None = None, action_penalty: float = 0.01,
              velocity_penalty: float = 0.0, **task_overrides: Any) -> PushTask:
    """
    Build the PushTask of a robot/task YAML whose task has ``type: push``.

    Arguments as `trpo_ros.robot.reach_task.reach_task`; goal_low/goal_high are (x, y) on the
    table (the goal's z is the resting height of the cube's center).

    Raises
    ------
        RobotConfigError: the YAML, the URDF or a value is unusable (the message says which).

    """
    cfg = load_robot_yaml(robot_yaml)
    task = merged_task(cfg, 'push', PUSH_DEFAULTS, task_overrides)
    for key in ('goal_low', 'goal_high'):
        if len(task[key]) != 2:
            raise RobotConfigError(f'{cfg["path"]}: a push task {key} is (x, y) on the table, '
                                   f'got {task[key]}')
    resting = float(task['table_height']) + 0.5 * float(task['object_size'])
    task['goal_low'], task['goal_high'] = ([*task[k], resting] for k in ('goal_low', 'goal_high'))
    spec = robot_spec(cfg['robot'], **{k: v for k, v in (robot or {}).items() if v is not None})
    return PushTask(
        robot=spec, source=cfg['path'], **common_fields(task),
        action_penalty=float(action_penalty), velocity_penalty=float(velocity_penalty),
        table_height=float(task['table_height']),
        object_low=np.asarray(task['object_low'], np.float64),
        object_high=np.asarray(task['object_high'], np.float64),
        object_size=float(task['object_size']), object_mass=float(task['object_mass']),
        object_friction=float(task['object_friction']),
        object_size_range=_range('object_size_range', task['object_size_range']),
        object_mass_range=_range('object_mass_range', task['object_mass_range']),
        object_friction_range=_range('object_friction_range', task['object_friction_range']),
        push_offset=float(task['push_offset']), push_height=float(task['push_height']),
        ee_object_weight=float(task['ee_object_weight']),
        object_goal_weight=float(task['object_goal_weight']),
        success_bonus=float(task['success_bonus']))
