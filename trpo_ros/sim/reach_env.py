"""Reach task for a URDF arm: move the end-effector link to a random goal point."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
import os
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet as p
from trpo_ros.sim.config import CONTROL_MODES, load_robot_yaml, SimConfigError
from trpo_ros.sim.robot import is_urdf_text, resolve_urdf_path, Robot

DEFAULT_ROBOT_YAML = 'kuka_reach.yaml'

# Task defaults used when neither the YAML nor a constructor kwarg sets a value.
_TASK_DEFAULTS: dict[str, Any] = {
    'control_mode': 'position_delta',
    'max_delta': 0.05,
    'control_rate_hz': 50.0,
    'physics_rate_hz': 240.0,
    'episode_steps': 50,
    'success_threshold': 0.05,
    'goal_low': (0.35, -0.3, 0.25),
    'goal_high': (0.65, 0.3, 0.65),
    'init_joint_noise': 0.1,
}


class ReachEnv(gym.Env):
    """
    Move the end-effector link of a URDF arm to a goal point (PyBullet, one client per env).

    Observation (float32, names in ``spec_info()['obs_names']``):

    | block                | size | unit           |
    | -------------------- | ---- | -------------- |
    | ``joint_pos/<j>``    | n    | rad (m)        |
    | ``joint_vel/<j>``    | n    | rad/s (m/s)    |
    | ``ee_pos/x, y, z``   | 3    | m, world frame |
    | ``goal/x, y, z``     | 3    | m, world frame |

    Action (float64 Box in physical units, clipped to the box):

    | control_mode     | meaning                                       | bounds                   |
    | ---------------- | --------------------------------------------- | ------------------------ |
    | position         | joint position targets (rad)                  | joint limits             |
    | position_delta   | target = current position + action (rad)      | ±min(max_delta, v_max/f) |
    | velocity         | joint velocity targets (rad/s)                | ±velocity limits         |
    | torque           | joint torques (Nm)                            | ±effort limits           |

    Reward: ``-distance - action_penalty*|a_n|^2 - velocity_penalty*|qd|^2`` with
    ``a_n = 2 (a - low) / (high - low) - 1`` in [-1, 1]; the three terms are in `info` as
    ``reward_distance``, ``reward_action``, ``reward_velocity``. `info` also has ``distance`` (m),
    ``is_success`` (distance < success_threshold) and ``self_collision``. Episodes are cut by
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
        control (env step) rate; physics_rate_hz: physics rate. Each step runs
        round(physics_rate_hz / control_rate_hz) physics sub-steps.
    max_delta
        largest position change per step in position_delta mode (rad or m).
    position_gain
        pybullet POSITION_CONTROL gain (0..1].
        goal_low, goal_high: goal region box corners (m, world frame).
    success_threshold
        success distance (m).
    init_joint_noise
        uniform noise (rad) added to the home pose at reset.
    home
        reset configuration (defaults to the YAML's, else zeros clipped to limits).
    limits
        per-joint limit overrides {joint: {lower, upper, velocity, effort}}.
        base_position, base_orientation: robot base pose in the world.
        action_penalty, velocity_penalty: reward weights.
    self_collision
        simulate and report self-collisions (costs physics time on mesh robots).
    terminate_on_self_collision
        end the episode (terminated=True) on a self-collision.
    ground_plane
        add a floor at z = 0.
        mass_scale_range, damping_scale_range, friction_scale_range: (low, high) factors drawn
        per reset for domain randomization; None = off.
    obs_noise_std
        std of Gaussian noise on observed joint positions and velocities.
    action_latency
        the action applied is the one chosen this many steps earlier.
    render_mode
        None or 'rgb_array' (TinyRenderer, headless).
        render_width, render_height: image size in pixels.
    mesh_search_paths
        folders to resolve mesh files of a URDF given as text.

    """

    metadata = {'render_modes': ['rgb_array'], 'render_fps': 50}

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
        cfg = load_robot_yaml(robot_yaml if robot_yaml is not None else DEFAULT_ROBOT_YAML)
        self.robot_yaml = cfg['path']
        robot_cfg = dict(cfg['robot'])
        task = {**_TASK_DEFAULTS, **cfg['task']}
        overrides = {'control_mode': control_mode, 'control_rate_hz': control_rate_hz,
                     'physics_rate_hz': physics_rate_hz, 'max_delta': max_delta,
                     'goal_low': goal_low, 'goal_high': goal_high,
                     'success_threshold': success_threshold, 'init_joint_noise': init_joint_noise}
        task.update({k: v for k, v in overrides.items() if v is not None})
        if task['control_mode'] not in CONTROL_MODES:
            raise SimConfigError(f'unknown control_mode {task["control_mode"]!r} '
                                 f'(choose from {CONTROL_MODES})')
        if render_mode is not None and render_mode not in self.metadata['render_modes']:
            raise SimConfigError(f'unsupported render_mode {render_mode!r} (use rgb_array)')
        if action_latency < 0 or obs_noise_std < 0:
            raise SimConfigError('action_latency and obs_noise_std must be >= 0')

        mesh_dirs = [str(d) for d in mesh_search_paths]
        yaml_urdf = str(robot_cfg['urdf'])
        if not is_urdf_text(yaml_urdf):
            try:
                mesh_dirs.append(str(resolve_urdf_path(yaml_urdf).parent))
            except SimConfigError:
                pass
        if urdf is not None and str(urdf) != yaml_urdf:
            robot_cfg = self._robot_fields_for(urdf, robot_cfg)
        robot_cfg['urdf'] = str(urdf) if urdf is not None else yaml_urdf

        self.control_mode: str = task['control_mode']
        self.control_rate_hz = float(task['control_rate_hz'])
        self.physics_rate_hz = float(task['physics_rate_hz'])
        if self.control_rate_hz <= 0 or self.physics_rate_hz < self.control_rate_hz:
            raise SimConfigError('need 0 < control_rate_hz <= physics_rate_hz, got '
                                 f'{self.control_rate_hz} and {self.physics_rate_hz}')
        self.substeps = max(1, round(self.physics_rate_hz / self.control_rate_hz))
        self.success_threshold = float(task['success_threshold'])
        self.init_joint_noise = float(task['init_joint_noise'])
        self.episode_steps = int(task['episode_steps'])
        self.goal_low = np.asarray(task['goal_low'], dtype=np.float64)
        self.goal_high = np.asarray(task['goal_high'], dtype=np.float64)
        if self.goal_low.shape != (3,) or self.goal_high.shape != (3,) or \
                np.any(self.goal_low > self.goal_high):
            raise SimConfigError(f'goal_low/goal_high must be 3 values with low <= high, got '
                                 f'{task["goal_low"]} and {task["goal_high"]}')
        self.action_penalty = float(action_penalty)
        self.velocity_penalty = float(velocity_penalty)
        self.terminate_on_self_collision = terminate_on_self_collision
        self.mass_scale_range = mass_scale_range
        self.damping_scale_range = damping_scale_range
        self.friction_scale_range = friction_scale_range
        self.obs_noise_std = float(obs_noise_std)
        self.action_latency = int(action_latency)
        self.render_mode = render_mode
        self.render_width, self.render_height = int(render_width), int(render_height)

        self.robot = Robot(
            robot_cfg['urdf'],
            joint_names=joints if joints is not None else robot_cfg.get('joints'),
            ee_link=ee_link if ee_link is not None else robot_cfg.get('ee_link'),
            base_position=base_position or robot_cfg.get('base_position') or (0.0, 0.0, 0.0),
            base_orientation=(base_orientation or robot_cfg.get('base_orientation')
                              or (0.0, 0.0, 0.0, 1.0)),
            limits=limits if limits is not None else robot_cfg.get('limits'),
            self_collision=self_collision, ground_plane=ground_plane,
            physics_rate_hz=self.physics_rate_hz, mesh_search_paths=mesh_dirs)
        try:
            self._setup(robot_cfg, home, float(task['max_delta']), position_gain)
        except Exception:
            self.robot.close()
            raise

    @staticmethod
    def _robot_fields_for(urdf: str | os.PathLike, robot_cfg: dict) -> dict:
        """Keep the YAML's robot fields only if they fit the overriding URDF (same robot)."""
        from trpo_ros.robot import kinematics

        source = str(urdf)
        text = source if is_urdf_text(source) else resolve_urdf_path(source).read_text()
        try:
            links = set(kinematics.link_names(text))
            joints = {j.name for j in kinematics.parse_joints(text)}
        except kinematics.UrdfError as exc:
            raise SimConfigError(f'URDF {source[:80]!r}: {exc}') from exc
        same = robot_cfg.get('ee_link') in links and set(robot_cfg.get('joints') or []) <= joints
        if same:
            return dict(robot_cfg)
        keep = ('base_position', 'base_orientation')
        return {k: v for k, v in robot_cfg.items() if k in keep}

    def _setup(self, robot_cfg: Mapping, home: Sequence[float] | None, max_delta: float,
               position_gain: float) -> None:
        robot = self.robot
        n = robot.n_joints
        home = home if home is not None else robot_cfg.get('home')
        if home is None:
            home = np.clip(np.zeros(n), robot.lower, robot.upper)
        self.home = np.asarray(home, dtype=np.float64)
        if self.home.shape != (n,):
            raise SimConfigError(f'home has {self.home.size} values, robot has {n} joints '
                                 f'{robot.joint_names}')
        if np.any(self.home < robot.lower) or np.any(self.home > robot.upper):
            raise SimConfigError(f'home {self.home.tolist()} is outside the joint limits')
        if not 0.0 < position_gain <= 1.0:
            raise SimConfigError(f'position_gain must be in (0, 1], got {position_gain}')
        self.max_delta = max_delta
        robot.set_control_mode(self.control_mode, position_gain)
        robot.reset_joints(self.home)
        robot.disable_default_collisions()

        if self.control_mode == 'position':
            low, high = robot.lower, robot.upper
        elif self.control_mode == 'position_delta':
            if max_delta <= 0:
                raise SimConfigError(f'max_delta must be > 0, got {max_delta}')
            high = np.minimum(max_delta, robot.velocity_limits / self.control_rate_hz)
            low = -high
        elif self.control_mode == 'velocity':
            low, high = -robot.velocity_limits, robot.velocity_limits
        else:
            low, high = -robot.effort_limits, robot.effort_limits
        self.action_space = gym.spaces.Box(low=low.astype(np.float64),
                                           high=high.astype(np.float64), dtype=np.float64)
        self._act_low, self._act_high = self.action_space.low, self.action_space.high
        self._act_center = (self._act_high + self._act_low) / 2.0
        self._act_half = (self._act_high - self._act_low) / 2.0

        names = robot.joint_names
        self.obs_names = ([f'joint_pos/{j}' for j in names] + [f'joint_vel/{j}' for j in names]
                          + [f'ee_pos/{a}' for a in 'xyz'] + [f'goal/{a}' for a in 'xyz'])
        self._obs = np.zeros(len(self.obs_names), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=self._obs.shape,
                                                dtype=np.float32)
        self._goal = (self.goal_low + self.goal_high) / 2.0
        self._q = self.home.copy()
        self._qd = np.zeros(n)
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
        distance = float(np.linalg.norm(self._ee - self._goal))
        info = {'distance': distance, 'is_success': distance < self.success_threshold,
                'self_collision': False}
        return self._observe(), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Apply one action for one control period; see the class docstring for the reward."""
        action = self.apply_action(action)
        self.robot.step_physics(self.substeps)
        self._read_state()
        collided = self.robot.in_self_collision()
        distance = float(np.linalg.norm(self._ee - self._goal))
        a_n = (action - self._act_center) / self._act_half
        r_dist = -distance
        r_act = -self.action_penalty * float(a_n @ a_n)
        r_vel = -self.velocity_penalty * float(self._qd @ self._qd)
        info = {'distance': distance, 'is_success': distance < self.success_threshold,
                'self_collision': collided, 'reward_distance': r_dist, 'reward_action': r_act,
                'reward_velocity': r_vel}
        terminated = bool(collided and self.terminate_on_self_collision)
        return self._observe(), r_dist + r_act + r_vel, terminated, False, info

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

    def _observe(self) -> np.ndarray:
        n = self.robot.n_joints
        obs = self._obs
        if self.obs_noise_std > 0:
            noise = self.np_random.normal(0.0, self.obs_noise_std, size=2 * n)
            obs[:n] = self._q + noise[:n]
            obs[n:2 * n] = self._qd + noise[n:]
        else:
            obs[:n] = self._q
            obs[n:2 * n] = self._qd
        obs[2 * n:2 * n + 3] = self._ee
        obs[2 * n + 3:] = self._goal
        return obs.copy()

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
        robot = self.robot
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
            'action_low': self._act_low.tolist(),
            'action_high': self._act_high.tolist(),
            'max_episode_steps': self.episode_steps,
            'goal_low': self.goal_low.tolist(),
            'goal_high': self.goal_high.tolist(),
            'robot_config': self.robot_config(),
        }

    def robot_config(self) -> dict[str, Any]:
        """
        Return this env's robot and task as a robot/task YAML mapping, URDF text included.

        `ReachEnv(robot_yaml=env.robot_config())` rebuilds the same robot and task without the
        original files (the export carries it, so sim_node can simulate what a model drove).
        """
        robot = self.robot
        limits = {j: {'lower': lo, 'upper': hi, 'velocity': v, 'effort': e}
                  for j, lo, hi, v, e in zip(robot.joint_names, robot.lower.tolist(),
                                             robot.upper.tolist(),
                                             robot.velocity_limits.tolist(),
                                             robot.effort_limits.tolist())}
        return {
            'robot': {'urdf': robot.portable_urdf(), 'joints': list(robot.joint_names),
                      'ee_link': robot.ee_link, 'base_position': list(robot.base_position),
                      'base_orientation': list(robot.base_orientation),
                      'home': self.home.tolist(), 'limits': limits},
            'task': {'control_mode': self.control_mode, 'max_delta': self.max_delta,
                     'control_rate_hz': self.control_rate_hz,
                     'physics_rate_hz': self.physics_rate_hz,
                     'episode_steps': self.episode_steps,
                     'success_threshold': self.success_threshold,
                     'goal_low': self.goal_low.tolist(), 'goal_high': self.goal_high.tolist(),
                     'init_joint_noise': self.init_joint_noise},
        }


def save_gif(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 25.0) -> None:
    """Write RGB frames (H, W, 3 uint8) to an animated GIF that loops forever."""
    import imageio.v3 as iio

    if len(frames) == 0:
        raise ValueError('save_gif needs at least one frame')
    iio.imwrite(path, np.stack([np.asarray(f, dtype=np.uint8) for f in frames]),
                duration=1000.0 / fps, loop=0)
