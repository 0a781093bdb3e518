"""
What every arm task shares (numpy only): control settings, action bounds, the action penalty.

A task is a frozen dataclass deriving from :class:`ArmTask`; it adds its observation layout
(`obs_names`, `observation`), its reward and success (`outcome`) and the observation SOURCES a
robot must provide (`sources`: the joint states, the goal, an object pose, ...). The sim env
and the ROS env run the task; the export carries `spec_info()`.

Action (physical units, clipped to [action_low, action_high]):

| control_mode     | meaning                                       | bounds                   |
| ---------------- | --------------------------------------------- | ------------------------ |
| position         | joint position targets (rad)                  | joint limits             |
| position_delta   | target = current position + action (rad)      | ±min(max_delta, v_max/f) |
| velocity         | joint velocity targets (rad/s)                | ±velocity limits         |
| torque           | joint torques (Nm)                            | ±effort limits           |

The action penalty of the rewards is ``action_penalty*|a_n|^2`` with
``a_n = 2 (a - low) / (high - low) - 1`` in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from trpo_ros.robot.config import CONTROL_MODES, RobotConfigError
from trpo_ros.robot.spec import RobotSpec

DEFAULT_ROBOT_YAML = 'kuka_reach.yaml'

# Used when neither the YAML nor an override sets a value.
TASK_DEFAULTS: dict[str, Any] = {
    'control_mode': 'position_delta',
    'max_delta': 0.05,
    'control_rate_hz': 50.0,
    'physics_rate_hz': 240.0,
    'episode_steps': 250,  # 5 s at 50 Hz
    'success_threshold': 0.05,
    'goal_low': (0.35, -0.3, 0.25),
    'goal_high': (0.65, 0.3, 0.65),
    'init_joint_noise': 0.1,
}


def joint_sources(joint_names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Return the source of the joint blocks: one sensor_msgs/JointState, by joint name."""
    return [{'name': 'joint_states', 'type': 'sensor_msgs/JointState', 'topic': '/joint_states',
             'columns': [f'joint_pos/{j}' for j in joint_names]
             + [f'joint_vel/{j}' for j in joint_names]}]


@dataclass(frozen=True, eq=False)
class ArmTask:
    """
    An arm, how it is commanded, and when an episode ends.

    Attributes
    ----------
        robot: the arm.
        source: where the task came from (YAML path or '<embedded>').
        control_mode: 'position' | 'position_delta' | 'velocity' | 'torque'.
        control_rate_hz: env steps per second.
        physics_rate_hz: physics steps per second (sim only).
        max_delta: largest position change per step in position_delta mode (rad or m).
        episode_steps: steps per episode.
        success_threshold: success distance (m).
        goal_low: goal box corner (m, world frame).
        goal_high: goal box corner (m, world frame).
        init_joint_noise: uniform noise (rad) around home at reset.
        action_penalty: reward weight of |a_n|^2.
        velocity_penalty: reward weight of |qd|^2.

    """

    kind = 'arm'  # the YAML's task.type

    robot: RobotSpec
    source: str
    control_mode: str
    control_rate_hz: float
    physics_rate_hz: float
    max_delta: float
    episode_steps: int
    success_threshold: float
    goal_low: np.ndarray
    goal_high: np.ndarray
    init_joint_noise: float
    action_penalty: float = 0.01
    velocity_penalty: float = 0.001
    obs_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        """Check the numbers and name the observation."""
        if self.control_mode not in CONTROL_MODES:
            raise RobotConfigError(f'unknown control_mode {self.control_mode!r} '
                                   f'(choose from {CONTROL_MODES})')
        if self.control_rate_hz <= 0 or self.physics_rate_hz < self.control_rate_hz:
            raise RobotConfigError('need 0 < control_rate_hz <= physics_rate_hz, got '
                                   f'{self.control_rate_hz} and {self.physics_rate_hz}')
        if self.goal_low.shape != (3,) or self.goal_high.shape != (3,) or \
                np.any(self.goal_low > self.goal_high):
            raise RobotConfigError(f'goal_low/goal_high must be 3 values with low <= high, got '
                                   f'{self.goal_low.tolist()} and {self.goal_high.tolist()}')
        if self.control_mode == 'position_delta' and self.max_delta <= 0:
            raise RobotConfigError(f'max_delta must be > 0, got {self.max_delta}')
        object.__setattr__(self, 'obs_names', tuple(self.observation_names()))

    def observation_names(self) -> list[str]:
        """Return the names of the observation's entries, in order (the task's layout)."""
        raise NotImplementedError

    def sources(self) -> list[dict[str, Any]]:
        """Where a robot gets each observation block: message type, default topic, columns."""
        raise NotImplementedError

    @property
    def substeps(self) -> int:
        """Return the physics steps per control step."""
        return max(1, round(self.physics_rate_hz / self.control_rate_hz))

    @cached_property
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (low, high) of the action, float64, in the units of the control mode."""
        robot = self.robot
        if self.control_mode == 'position':
            low, high = robot.lower, robot.upper
        elif self.control_mode == 'position_delta':
            high = np.minimum(self.max_delta, robot.velocity_limits / self.control_rate_hz)
            low = -high
        elif self.control_mode == 'velocity':
            low, high = -robot.velocity_limits, robot.velocity_limits
        else:
            low, high = -robot.effort_limits, robot.effort_limits
        return low.astype(np.float64), high.astype(np.float64)

    def spaces(self) -> tuple[Any, Any]:
        """Return gymnasium (action_space, observation_space); gymnasium loads on first use."""
        import gymnasium as gym

        low, high = self.action_bounds
        return (gym.spaces.Box(low=low, high=high, dtype=np.float64),
                gym.spaces.Box(-np.inf, np.inf, shape=(len(self.obs_names),), dtype=np.float32))

    def action_term(self, action: np.ndarray) -> float:
        """Return the action penalty term of the reward (<= 0) for a clipped `action`."""
        low, high = self.action_bounds
        a_n = (action - (high + low) / 2.0) / ((high - low) / 2.0)
        return -self.action_penalty * float(a_n @ a_n)

    def spec_info(self) -> dict[str, Any]:
        """Everything export and nodes need about the task and its robot, JSON-serializable."""
        robot = self.robot
        low, high = self.action_bounds
        return {
            'joint_names': list(robot.joint_names),
            'obs_names': list(self.obs_names),
            'control_mode': self.control_mode,
            'control_rate_hz': self.control_rate_hz,
            'joint_lower': robot.lower.tolist(),
            'joint_upper': robot.upper.tolist(),
            'velocity_limits': robot.velocity_limits.tolist(),
            'effort_limits': robot.effort_limits.tolist(),
            'ee_link': robot.ee_link,
            'success_threshold': self.success_threshold,
            'fk_chain': [dict(j) for j in robot.fk_chain],
            'base_position': list(robot.base_position),
            'base_orientation': list(robot.base_orientation),
            'robot_description': robot.urdf_text,
            'base_link': robot.base_link,
            'action_low': low.tolist(),
            'action_high': high.tolist(),
            'max_episode_steps': self.episode_steps,
            'goal_low': self.goal_low.tolist(),
            'goal_high': self.goal_high.tolist(),
            'task': self.kind,
            'sources': self.sources(),
            'robot_config': self.robot_config(),
        }

    def task_config(self) -> dict[str, Any]:
        """Return the YAML ``task:`` mapping of this task (its `type` only when not reach)."""
        return {'control_mode': self.control_mode, 'max_delta': self.max_delta,
                'control_rate_hz': self.control_rate_hz,
                'physics_rate_hz': self.physics_rate_hz,
                'episode_steps': self.episode_steps,
                'success_threshold': self.success_threshold,
                'goal_low': self.goal_low.tolist(), 'goal_high': self.goal_high.tolist(),
                'init_joint_noise': self.init_joint_noise}

    def robot_config(self) -> dict[str, Any]:
        """
        Return the robot and task as a robot/task YAML mapping, URDF text included.

        `load_task(task.robot_config())` rebuilds the same task without the original files
        (an exported model carries it, so sim_node can simulate what a model drove).
        """
        robot = self.robot
        return {
            'robot': {'urdf': robot.portable_urdf(), 'joints': list(robot.joint_names),
                      'ee_link': robot.ee_link, 'base_position': list(robot.base_position),
                      'base_orientation': list(robot.base_orientation),
                      'home': robot.home.tolist(), 'limits': robot.limits()},
            'task': self.task_config(),
        }


def common_fields(task: dict[str, Any]) -> dict[str, Any]:
    """Return the ArmTask constructor fields of a merged YAML task mapping."""
    return {'control_mode': task['control_mode'],
            'control_rate_hz': float(task['control_rate_hz']),
            'physics_rate_hz': float(task['physics_rate_hz']),
            'max_delta': float(task['max_delta']), 'episode_steps': int(task['episode_steps']),
            'success_threshold': float(task['success_threshold']),
            'goal_low': np.asarray(task['goal_low'], dtype=np.float64),
            'goal_high': np.asarray(task['goal_high'], dtype=np.float64),
            'init_joint_noise': float(task['init_joint_noise'])}


def merged_task(cfg: Mapping[str, Any], kind: str, defaults: Mapping[str, Any],
                overrides: Mapping[str, Any]) -> dict[str, Any]:
    """
    Return the YAML task over `defaults`, with non-None `overrides`, checked for `kind`.

    The keys a `kind` task may set are `type` and those of its `defaults`.
    """
    allowed = {'type', *defaults}
    given = dict(cfg['task'])
    if given.get('type', 'reach') != kind:
        raise RobotConfigError(f"{cfg['path']}: task type {given.get('type')!r} is not {kind!r}")
    extra = sorted(set(given) - set(allowed))
    if extra:
        raise RobotConfigError(f"{cfg['path']}: unknown {kind} task keys {extra} "
                               f'(allowed: {sorted(allowed)})')
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise RobotConfigError(f'unknown task fields {unknown} (known: {sorted(allowed)})')
    return {**defaults, **given, **{k: v for k, v in overrides.items() if v is not None}}
