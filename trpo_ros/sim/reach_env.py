"""Reach task for a URDF arm: move the end-effector link to a random goal point."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
import os
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet as p
from trpo_ros.robot.config import RobotConfigError
from trpo_ros.robot.reach_task import DEFAULT_ROBOT_YAML, reach_task
from trpo_ros.robot.task import ArmTask
from trpo_ros.sim.robot import Robot


class ReachEnv(gym.Env):
    """
    Move the end-effector link of a URDF arm to a goal point (PyBullet, one client per env).

    Observation, action bounds, reward and success are those of the robot's `ReachTask`
    (``self.task``; the tables are in `trpo_ros.robot.reach_task`); the action is clipped to its
    box. `info` has ``distance`` (m), ``is_success``, the reward terms ``reward_distance``,
    ``reward_action``, ``reward_velocity``, and ``self_collision``. Episodes are cut by
    gymnasium's `TimeLimit` (``episode_steps`` in the YAML); ``terminated`` is True only on a
    self-collision with ``terminate_on_self_collision=True``.

    Parameters
    ----------
    robot_yaml
        robot/task YAML (path or name under `sim/`); default 'kuka_reach.yaml'.
    urdf
        override the robot: file path, pybullet_data name or URDF text. The YAML's robot
        fields (joints, ee_link, home, limits) are kept when its ee_link and joints exist
        in this URDF (same robot), else dropped (auto joints, last link, zero home).
    joints
        controlled joint names (None: from YAML, else all movable joints).
    ee_link
        end-effector link name.
    control_mode
        'position' | 'position_delta' | 'velocity' | 'torque'.
    control_rate_hz
        control (env step) rate.
    physics_rate_hz
        physics rate; each step runs round(physics_rate_hz / control_rate_hz) sub-steps.
    max_delta
        largest position change per step in position_delta mode (rad or m).
    position_gain
        pybullet POSITION_CONTROL gain (0..1].
    goal_low, goal_high
        goal region box corners (m, world frame).
    success_threshold
        success distance (m).
    init_joint_noise
        uniform noise (rad) added to the home pose at reset.
    home
        reset configuration (defaults to the YAML's, else zeros clipped to limits).
    limits
        per-joint limit overrides {joint: {lower, upper, velocity, effort}}.
    base_position, base_orientation
        robot base pose in the world.
    action_penalty, velocity_penalty
        reward weights.
    self_collision
        simulate and report self-collisions (costs physics time on mesh robots).
    terminate_on_self_collision
        end the episode (terminated=True) on a self-collision.
    ground_plane
        add a floor at z = 0.
    mass_scale_range, damping_scale_range, friction_scale_range
        (low, high) factors drawn per reset for domain randomization; None = off.
    obs_noise_std
        std of Gaussian noise on observed joint positions and velocities.
    action_latency
        the action applied is the one chosen this many steps earlier.
    render_mode
        None or 'rgb_array' (TinyRenderer, headless).
    render_width, render_height
        image size in pixels.
    mesh_search_paths
        folders to resolve mesh files of a URDF given as text.

    """

    metadata = {'render_modes': ['rgb_array'], 'render_fps': 50}
    default_yaml = DEFAULT_ROBOT_YAML

    def __init__(
        self,
        robot_yaml: str | os.PathLike | None = None,
        urdf: str | os.PathLike | None = None,
        joints: Sequence[str] | None = None,
        ee_link: str | None = None,
        control_mode: str | None = None,
        control_rate_hz: float | None = None,
        physics_rate_hz: float | None = None,
        max_delta: float | None = None,
        position_gain: float = 0.5,
        goal_low: Sequence[float] | None = None,
        goal_high: Sequence[float] | None = None,
        success_threshold: float | None = None,
        init_joint_noise: float | None = None,
        home: Sequence[float] | None = None,
        limits: Mapping[str, Mapping[str, float]] | None = None,
        base_position: Sequence[float] | None = None,
        base_orientation: Sequence[float] | None = None,
        action_penalty: float = 0.01,
        velocity_penalty: float = 0.001,
        self_collision: bool = True,
        terminate_on_self_collision: bool = False,
        ground_plane: bool = True,
        mass_scale_range: Sequence[float] | None = None,
        damping_scale_range: Sequence[float] | None = None,
        friction_scale_range: Sequence[float] | None = None,
        obs_noise_std: float = 0.0,
        action_latency: int = 0,
        render_mode: str | None = None,
        render_width: int = 320,
        render_height: int = 240,
        mesh_search_paths: Sequence[str | os.PathLike] = (),
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata['render_modes']:
            raise RobotConfigError(f'unsupported render_mode {render_mode!r} (use rgb_array)')
        if action_latency < 0 or obs_noise_std < 0:
            raise RobotConfigError('action_latency and obs_noise_std must be >= 0')
        if not 0.0 < position_gain <= 1.0:
            raise RobotConfigError(f'position_gain must be in (0, 1], got {position_gain}')
        self.task = self._build_task(
            robot_yaml if robot_yaml is not None else self.default_yaml,
            robot={'urdf': urdf, 'joints': joints, 'ee_link': ee_link, 'home': home,
                   'limits': limits, 'base_position': base_position,
                   'base_orientation': base_orientation,
                   'mesh_search_paths': [str(d) for d in mesh_search_paths]},
            action_penalty=action_penalty, velocity_penalty=velocity_penalty,
            control_mode=control_mode, control_rate_hz=control_rate_hz,
            physics_rate_hz=physics_rate_hz, max_delta=max_delta, goal_low=goal_low,
            goal_high=goal_high, success_threshold=success_threshold,
            init_joint_noise=init_joint_noise)
        task = self.task
        self.robot_yaml = task.source
        self.control_mode, self.max_delta = task.control_mode, task.max_delta
        self.control_rate_hz, self.physics_rate_hz = task.control_rate_hz, task.physics_rate_hz
        self.substeps, self.episode_steps = task.substeps, task.episode_steps
        self.success_threshold, self.init_joint_noise = (task.success_threshold,
                                                         task.init_joint_noise)
        self.goal_low, self.goal_high = task.goal_low, task.goal_high
        self.home, self.obs_names = task.robot.home, list(task.obs_names)
        self.terminate_on_self_collision = terminate_on_self_collision
        self.mass_scale_range = mass_scale_range
        self.damping_scale_range = damping_scale_range
        self.friction_scale_range = friction_scale_range
        self.obs_noise_std = float(obs_noise_std)
        self.action_latency = int(action_latency)
        self.render_mode = render_mode
        self.render_width, self.render_height = int(render_width), int(render_height)
        self.action_space, self.observation_space = task.spaces()
        self._act_low, self._act_high = self.action_space.low, self.action_space.high

        self.robot = Robot(task.robot, self_collision=self_collision, ground_plane=ground_plane,
                           physics_rate_hz=self.physics_rate_hz)
        try:
            self._setup(position_gain)
        except Exception:
            self.robot.close()
            raise

    def _build_task(self, robot_yaml: Any, **kwargs: Any) -> ArmTask:
        """Return this env's task; subclasses for other tasks build theirs."""
        return reach_task(robot_yaml, **kwargs)

    def _setup(self, position_gain: float) -> None:
        robot = self.robot
        robot.set_control_mode(self.control_mode, position_gain)
        robot.reset_joints(self.home)
        robot.disable_default_collisions()
        self._goal = (self.goal_low + self.goal_high) / 2.0
        self._q = self.home.copy()
        self._qd = np.zeros(robot.n_joints)
        self._ee = robot.ee_position()
        self._pending: deque[np.ndarray] = deque()
        self._goal_marker = -1
        if self.render_mode is not None:
            shape = p.createVisualShape(p.GEOM_SPHERE, radius=0.03, rgbaColor=(0.1, 0.9, 0.1, 0.8),
                                        physicsClientId=robot.client)
            self._goal_marker = p.createMultiBody(baseMass=0.0, baseVisualShapeIndex=shape,
                                                  basePosition=self._goal.tolist(),
                                                  physicsClientId=robot.client)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None,
              options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Put the arm near home (uniform noise), draw a goal; options may give 'goal'."""
        super().reset(seed=seed)
        rng = self.np_random
        robot = self.robot
        robot.randomize_dynamics(rng, self.mass_scale_range, self.damping_scale_range,
                                 self.friction_scale_range)
        noise = rng.uniform(-self.init_joint_noise, self.init_joint_noise, size=robot.n_joints)
        robot.reset_joints(np.clip(self.home + noise, robot.lower, robot.upper))
        goal = (options or {}).get('goal')
        self.set_goal(goal if goal is not None else rng.uniform(self.goal_low, self.goal_high))
        self._pending = deque(self._neutral_action() for _ in range(self.action_latency))
        self._read_state()
        self._reset_scene(rng, options or {})
        return self._observe(), {**self._start_info(), 'self_collision': False}

    def _reset_scene(self, rng: np.random.Generator, options: dict) -> None:
        """Put the task's objects in place after the arm and goal (reach: none)."""

    def _start_info(self) -> dict[str, Any]:
        distance = float(np.linalg.norm(self._ee - self._goal))
        return {'distance': distance, 'is_success': distance < self.success_threshold}

    def _outcome(self, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        """Return the task's (reward, info) for the clipped `action` just applied."""
        return self.task.outcome(self._ee, self._goal, action, self._qd)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Apply one action for one control period; see the class docstring for the reward."""
        action = self.apply_action(action)
        self.robot.step_physics(self.substeps)
        self._read_state()
        collided = self.robot.in_self_collision()
        reward, info = self._outcome(action)
        info['self_collision'] = collided
        terminated = bool(collided and self.terminate_on_self_collision)
        return self._observe(), reward, terminated, False, info

    def apply_action(self, action: np.ndarray) -> np.ndarray:
        """
        Clip `action` to the action space and send it (after `action_latency` steps).

        Returns the clipped action (the one the policy chose this step).
        """
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(-1),
                         self._act_low, self._act_high)
        if action.shape != self._act_low.shape:
            raise ValueError(f'action has {action.size} values, expected {self._act_low.size}')
        applied = action
        if self.action_latency:
            self._pending.append(action)
            applied = self._pending.popleft()
        if self.control_mode == 'position_delta':
            self.robot.command(self._q + applied)
        else:
            self.robot.command(applied, self._q, self._qd, 1.0 / self.control_rate_hz)
        return action

    def _neutral_action(self) -> np.ndarray:
        """Return what a delayed pipeline applies before the first real action: hold still."""
        if self.control_mode == 'position':
            return np.clip(self._q, self._act_low, self._act_high)
        return np.zeros(self.robot.n_joints)

    def _read_state(self) -> None:
        self._q, self._qd = self.robot.positions_velocities()
        self._ee = self.robot.ee_position()

    def _observed_joints(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (q, qd) as the policy sees them (with `obs_noise_std` noise)."""
        q, qd = self._q, self._qd
        if self.obs_noise_std > 0:
            n = self.robot.n_joints
            noise = self.np_random.normal(0.0, self.obs_noise_std, size=2 * n)
            q, qd = q + noise[:n], qd + noise[n:]
        return q, qd

    def _observe(self) -> np.ndarray:
        return self.task.observation(*self._observed_joints(), self._ee, self._goal)

    def render(self) -> np.ndarray | None:
        """Return an RGB uint8 image (height, width, 3) from PyBullet's TinyRenderer."""
        if self.render_mode != 'rgb_array':
            return None
        cid = self.robot.client
        target = ((self.goal_low + self.goal_high) / 2.0 * [0.5, 0.5, 0.8]).tolist()
        view = p.computeViewMatrixFromYawPitchRoll(target, 1.6, 50.0, -25.0, 0.0, 2,
                                                   physicsClientId=cid)
        proj = p.computeProjectionMatrixFOV(60.0, self.render_width / self.render_height, 0.05,
                                            10.0, physicsClientId=cid)
        _, _, rgba, _, _ = p.getCameraImage(self.render_width, self.render_height, view, proj,
                                            renderer=p.ER_TINY_RENDERER, physicsClientId=cid)
        image = np.asarray(rgba, dtype=np.uint8).reshape(self.render_height, self.render_width, 4)
        return image[:, :, :3].copy()

    def close(self) -> None:
        """Disconnect the physics client."""
        robot = getattr(self, 'robot', None)
        if robot is not None:
            robot.close()

    def __del__(self) -> None:
        """Free the physics client if the env is garbage collected unclosed."""
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ------------------------------------------------------------------ node helpers
    @property
    def goal(self) -> np.ndarray:
        """Return the current goal position (m, world frame), a copy."""
        return self._goal.copy()

    def set_goal(self, xyz: Sequence[float]) -> None:
        """Move the goal to `xyz` (m, world frame); not restricted to the goal region."""
        goal = np.asarray(xyz, dtype=np.float64).reshape(-1)
        if goal.shape != (3,) or not np.all(np.isfinite(goal)):
            raise ValueError(f'goal must be 3 finite numbers, got {xyz!r}')
        self._goal = goal
        if self._goal_marker >= 0:
            p.resetBasePositionAndOrientation(self._goal_marker, goal.tolist(), (0, 0, 0, 1),
                                              physicsClientId=self.robot.client)

    def ee_position(self) -> np.ndarray:
        """World position of the end-effector link frame (m)."""
        return self.robot.ee_position()

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, velocities, efforts) of the controlled joints, in joint_names order."""
        return self.robot.joint_state()

    def set_joint_state(self, positions: Sequence[float],
                        velocities: Sequence[float] | None = None) -> None:
        """Teleport the arm (e.g. to mirror a real robot) and hold it there."""
        self.robot.reset_joints(positions, velocities)
        self._read_state()

    def spec_info(self) -> dict[str, Any]:
        """Everything export and nodes need about this env, JSON-serializable."""
        return self.task.spec_info()

    def robot_config(self) -> dict[str, Any]:
        """Return the robot and task as a robot/task YAML mapping (see ReachTask.robot_config)."""
        return self.task.robot_config()


def save_gif(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 25.0) -> None:
    """Write RGB frames (H, W, 3 uint8) to an animated GIF that loops forever."""
    import imageio.v3 as iio

    if len(frames) == 0:
        raise ValueError('save_gif needs at least one frame')
    iio.imwrite(path, np.stack([np.asarray(f, dtype=np.uint8) for f in frames]),
                duration=1000.0 / fps, loop=0)
