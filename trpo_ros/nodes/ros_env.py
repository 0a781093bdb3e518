"""
A Gymnasium reach env whose robot lives on the other side of ROS 2 topics.

`RosReachEnv` (``trpo_ros/RosReach-v0``) takes its spaces, reward and `spec_info()` from the
same `trpo_ros.robot.ReachTask` as the PyBullet `trpo_ros.sim.ReachEnv` of the robot YAML (no
PyBullet here), so a policy trained over ROS exports and deploys like one trained in-process.
Each step turns the action into an ABSOLUTE joint position target (what the exported graph
outputs), filters it, publishes it (``std_msgs/Float64MultiArray``) and waits for the
``sensor_msgs/JointState`` that answers it; FK of the URDF on ``/robot_description`` gives the
end effector. Goals are drawn here and published on ``/trpo/goal`` (transient local). The ROS
side (`trpo_ros.nodes.robot_link.RobotLink`) connects on the first `reset()`: building the env
(as the Trainer does for its evaluation env) touches no ROS entity. README: "Training or
fine-tuning over ROS 2 topics".
"""

from __future__ import annotations

from collections.abc import Sequence
import os
import time
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import TimeLimit
import numpy as np
from trpo_ros import envs
from trpo_ros.nodes.robot_link import RobotLink, RosEnvError, RosEnvTimeout, stamp_ns
from trpo_ros.robot import CommandFilter, kinematics
from trpo_ros.robot.reach_task import reach_task, ReachTask

ENV_ID = envs.ROS_ENV_ID
SERVER_PARAMETERS = {'mode': 'lockstep', 'episode_steps': 0, 'follow_goal_topic': True}
"""sim_node parameters for serving this env: one step per command, no auto-reset at its own
TimeLimit (the env resets episodes through ~/reset), and the env's goals on /trpo/goal."""
TIMINGS, SUPPORTED_MODES = ('lockstep', 'realtime'), ('position_delta', 'position')


class RosReachEnv(gym.Env):
    """
    Reach task on a robot behind ROS 2 topics (the YAML's `ReachTask`, ``self.task``).

    ``ee_pos`` is FK of the measured positions. Commands are absolute targets through the
    command filter: velocity cap ``|target - q| <= max_joint_velocity / control_rate_hz`` and a
    hold (target = q) if the FK end effector would leave the `workspace` box (moving back
    towards it is allowed). `info` has the task's terms plus ``late_states``,
    ``workspace_holds`` (this episode), ``velocity_capped``, ``state_stamp`` (s), ``state_count``.

    Parameters
    ----------
    robot_yaml
        robot/task YAML (path or name under `sim/`), default 'kuka_reach.yaml'.
    joints
        controlled joint names (default: the YAML's / the URDF's movable joints).
    command_topic
        Float64MultiArray absolute position targets (RELIABLE).
    state_topic
        sensor_msgs/JointState input.
    reset_service
        std_srvs/Trigger that starts an episode on the other side; None, '' or absent at
        connect time = drive to the YAML's home pose instead.
    goal_topic
        PointStamped goal output (transient local), '' = do not publish.
    robot_description_topic
        std_msgs/String URDF (transient local) used for FK; '' = the YAML's URDF.
    ee_topic
        optional PointStamped end-effector position (world frame) used instead of FK
        (latest message, not synchronized).
    timing
        'lockstep' (one remote step per command) or 'realtime' (fixed rate).
    control_rate_hz
        realtime command rate and the rate of the velocity cap (default: the YAML's).
    state_timeout
        seconds to wait for a fresh JointState before `RosEnvTimeout`.
    connect_timeout
        seconds to wait at connect for a JointState, the URDF and a command subscriber.
    workspace
        ((x, y, z) low, (x, y, z) high) box the end effector must stay in; None = off.
    max_joint_velocity
        rad/s cap (scalar or per joint); None = the URDF velocity limits.
    home_tolerance
        rad; homing (no reset service) ends when every joint is this close.
    home_timeout
        seconds allowed for homing.
    action_penalty, velocity_penalty
        reward weights (ReachEnv defaults).
    frame_id
        frame of the published goal.

    """

    metadata = {'render_modes': []}

    def __init__(
        self,
        robot_yaml: str | os.PathLike | None = None,
        joints: Sequence[str] | None = None,
        command_topic: str = '/forward_position_controller/commands',
        state_topic: str = '/joint_states',
        reset_service: str | None = '/sim_node/reset',
        goal_topic: str = '/trpo/goal',
        robot_description_topic: str = '/robot_description',
        ee_topic: str | None = None,
        timing: str = 'lockstep',
        control_rate_hz: float | None = None,
        state_timeout: float = 2.0,
        connect_timeout: float = 15.0,
        workspace: Sequence[Sequence[float]] | None = None,
        max_joint_velocity: float | Sequence[float] | None = None,
        home_tolerance: float = 0.02,
        home_timeout: float = 10.0,
        action_penalty: float = 0.01,
        velocity_penalty: float = 0.001,
        frame_id: str = 'world',
    ) -> None:
        if timing not in TIMINGS:
            raise ValueError(f'timing must be one of {TIMINGS}, got {timing!r}')
        if state_timeout <= 0 or connect_timeout <= 0:
            raise ValueError('state_timeout and connect_timeout must be > 0')
        # The same task as the PyBullet env's, read from the YAML and URDF (no physics).
        self.task: ReachTask = reach_task(robot_yaml, robot={'joints': joints},
                                          action_penalty=action_penalty,
                                          velocity_penalty=velocity_penalty)
        task, robot = self.task, self.task.robot
        if task.control_mode not in SUPPORTED_MODES:
            raise ValueError(f'control_mode {task.control_mode!r} is not supported over ROS '
                             f'(supported: {SUPPORTED_MODES})')
        self._info = task.spec_info()
        self.action_space, self.observation_space = task.spaces()
        self.robot_yaml, self.episode_steps = task.source, task.episode_steps
        self.control_mode, self.home = task.control_mode, robot.home.copy()
        self.joint_names, self.obs_names = list(robot.joint_names), list(task.obs_names)
        self.lower, self.upper = robot.lower, robot.upper
        self.goal_low, self.goal_high = task.goal_low, task.goal_high
        self.success_threshold = task.success_threshold
        self.command_topic, self.state_topic = command_topic, state_topic
        self.reset_service = reset_service or None
        self.goal_topic, self.frame_id = goal_topic, frame_id
        self.robot_description_topic = robot_description_topic or ''
        self.ee_topic = ee_topic or None
        self.timing = timing
        self.control_rate_hz = float(control_rate_hz or task.control_rate_hz)
        if self.control_rate_hz <= 0:
            raise ValueError(f'control_rate_hz must be > 0, got {control_rate_hz}')
        self.state_timeout, self.connect_timeout = float(state_timeout), float(connect_timeout)
        cap = np.broadcast_to(np.asarray(
            max_joint_velocity if max_joint_velocity is not None else robot.velocity_limits,
            np.float64), self.lower.shape).copy()
        if np.any(cap <= 0):
            raise ValueError(f'max_joint_velocity must be > 0, got {max_joint_velocity}')
        self.max_joint_velocity = cap
        self._max_step = cap / self.control_rate_hz
        self.home_tolerance, self.home_timeout = float(home_tolerance), float(home_timeout)
        self._base = (robot.base_position, robot.base_orientation)
        self._set_chain([dict(j) for j in robot.fk_chain])
        self._filter = CommandFilter(self.lower, self.upper, max_step=self._max_step,
                                     workspace=workspace, fk=self._fk)

        self._ros: RobotLink | None = None
        self._layout: Any = None
        self._use_service = False
        self._used = (0, 0, None)  # (arrival count, stamp ns, msg) of the state last used
        self._q = self.home.copy()
        self._qd = np.zeros_like(self.home)
        self._ee = np.zeros(3)
        self._goal = (self.goal_low + self.goal_high) / 2.0
        self.late_states = self.workspace_holds = 0  # totals over the env's life
        self._episode_late = self._episode_holds = 0
        self.last_command: np.ndarray | None = None

    # ------------------------------------------------------------------ connection
    @property
    def connected(self) -> bool:
        """Tell whether `connect()` succeeded (and until `close()`)."""
        return self._ros is not None

    def connect(self) -> None:
        """
        Create the node, check the remote joints, get the URDF; idempotent.

        Raises
        ------
            RosEnvTimeout: no JointState / robot description / command subscriber in time.
            RosEnvError: the remote JointState lacks configured joints, or the URDF does not
                reach the end-effector link through them.

        """
        if self._ros is not None:
            return
        from trpo_ros.robot.observation import ObservationLayout

        self._layout = ObservationLayout(
            [f'joint_pos/{j}' for j in self.joint_names]
            + [f'joint_vel/{j}' for j in self.joint_names], self.joint_names)
        ros = self._ros = RobotLink(self.command_topic, self.state_topic, self.goal_topic,
                                    self.robot_description_topic, self.ee_topic,
                                    self.reset_service, self.timing, self.control_rate_hz,
                                    self.state_timeout)
        try:
            chain, self._use_service = ros.check_remote(
                self.joint_names, self.task.robot.ee_link, self.robot_description_topic,
                self.connect_timeout)
            if chain is not None:
                self._set_chain(chain)
        except BaseException:
            self._ros = None
            ros.close()
            raise

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None,
              options: dict | None = None) -> tuple[np.ndarray, dict]:
        """
        Start an episode: remote reset service (or drive home), draw and publish a goal.

        `options` may give 'goal' (xyz). Connects on the first call.
        """
        super().reset(seed=seed)
        self.connect()
        try:
            if self._use_service:
                self._call_reset_service()
            else:
                self._drive_home()
            goal = (options or {}).get('goal')
            goal = goal if goal is not None else self.np_random.uniform(self.goal_low,
                                                                        self.goal_high)
            self.set_goal(goal)
            self._episode_late = self._episode_holds = 0
            self._ros.start_clock()
        except BaseException:
            self._publish_hold()
            raise
        distance = float(np.linalg.norm(self._ee - self._goal))
        return self._observe(), {'distance': distance,
                                 'is_success': distance < self.success_threshold}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Publish the command for `action`, wait for the next state; reward as ReachEnv."""
        if self._ros is None:
            raise RosEnvError('step() before reset(): the env connects on its first reset')
        try:
            return self._step(action)
        except BaseException:
            self._publish_hold()
            raise

    def _step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        low, high = self.task.action_bounds
        action = np.clip(np.asarray(action, np.float64).reshape(-1), low, high)
        if action.shape != low.shape:
            raise ValueError(f'action has {action.size} values, expected {low.size}')
        target = action if self.control_mode == 'position' else self._q + action
        target, capped = self.safe_target(target)
        self._exchange(target)
        reward, info = self.task.outcome(self._ee, self._goal, action, self._qd)
        info.update({'late_states': self._episode_late, 'workspace_holds': self._episode_holds,
                     'velocity_capped': capped, 'state_stamp': self._used[1] * 1e-9,
                     'state_count': self._used[0]})
        return self._observe(), reward, False, False, info

    def close(self) -> None:
        """Publish a hold command, then tear the node down (no-op if never connected)."""
        ros, self._ros = self._ros, None
        if ros is None:
            return
        try:
            self._publish_hold(ros)
        finally:
            ros.close()

    def __del__(self) -> None:
        """Release the ROS context if the env is garbage collected unclosed."""
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ------------------------------------------------------------------ safety
    @property
    def workspace(self) -> np.ndarray | None:
        """End-effector box ((x, y, z) low, (x, y, z) high) of the command filter, or None."""
        return self._filter.workspace

    @workspace.setter
    def workspace(self, box: Any) -> None:
        self._filter.workspace = None if box is None else np.asarray(box, np.float64)

    def safe_target(self, target: np.ndarray) -> tuple[np.ndarray, bool]:
        """
        Joint limits, velocity cap and workspace box applied to an absolute target.

        Returns (target to publish, whether the velocity cap changed it). A target whose FK
        end-effector position leaves the workspace box (and does not move back towards it) is
        replaced by the hold target (current positions) and counted in `workspace_holds`.
        """
        result = self._filter(target, self._q)
        if result.workspace_hold:
            self.workspace_holds += 1
            self._episode_holds += 1
        return result.command, result.velocity_capped

    def _publish_hold(self, ros: RobotLink | None = None) -> None:
        """Command the newest measured positions (best effort; never raises)."""
        ros = ros or self._ros
        if ros is not None:
            self.last_command = ros.publish_hold(self._layout, self._q)

    # ------------------------------------------------------------------ state exchange
    def _exchange(self, target: np.ndarray) -> None:
        """Publish `target`, wait for the state that answers it (per `timing`), read it."""
        assert self._ros is not None
        self.last_command = np.array(target, np.float64)
        entry, late = self._ros.exchange(self.last_command, self._used)
        if late:
            self.late_states += 1
            self._episode_late += 1
        self._use(entry)

    def _use(self, entry: tuple) -> None:
        count, _, msg = entry
        self._layout.read_state(msg.name, msg.position, msg.velocity)
        self._q = self._layout.controlled_positions().copy()
        self._qd = self._layout.velocities[:len(self.joint_names)].copy()
        self._used = (count, stamp_ns(msg), msg)
        measured = self._ros.ee_position() if self._ros is not None else None
        self._ee = measured if measured is not None else self._fk(self._q)

    def _call_reset_service(self) -> None:
        assert self._ros is not None and self.reset_service
        sent = time.monotonic()
        self._ros.call_reset(self.reset_service, self.state_timeout)
        # The state published by the reset handler precedes its response; take the newest.
        self._use(self._ros.wait_fresh(self._used, sent, time.monotonic() + self.state_timeout,
                                       newest=True, skip_repeats=False))

    def _drive_home(self) -> None:
        """Publish home targets (velocity-capped) until within `home_tolerance` or timeout."""
        assert self._ros is not None
        newest = self._ros.newest_state()
        if newest is None:
            raise RosEnvTimeout(f'no JointState on {self.state_topic}')
        self._use(newest)
        deadline = time.monotonic() + self.home_timeout
        self._ros.start_clock()
        while np.max(np.abs(self._q - self.home)) > self.home_tolerance:
            if time.monotonic() > deadline:
                raise RosEnvTimeout(
                    f'joints did not reach home within {self.home_timeout:g} s (largest error '
                    f'{np.max(np.abs(self._q - self.home)):.3f} rad); a hold was published')
            step = np.clip(self.home - self._q, -self._max_step, self._max_step)
            self._exchange(np.clip(self._q + step, self.lower, self.upper))

    # ------------------------------------------------------------------ helpers
    def _set_chain(self, chain: list[dict]) -> None:
        self._chain = chain
        self._kinematics = kinematics.KinematicChain(chain, self.joint_names, *self._base)

    def _fk(self, q: np.ndarray) -> np.ndarray:
        """Return the end-effector position for positions `q` (joint_names order)."""
        return self._kinematics.position(q)

    def _observe(self) -> np.ndarray:
        return self.task.observation(self._q, self._qd, self._ee, self._goal)

    @property
    def goal(self) -> np.ndarray:
        """Return the current goal position (m, world frame), a copy."""
        return self._goal.copy()

    def set_goal(self, xyz: Sequence[float]) -> None:
        """Set the goal and publish it on `goal_topic` (PointStamped, transient local)."""
        goal = np.asarray(xyz, np.float64).reshape(-1)
        if goal.shape != (3,) or not np.all(np.isfinite(goal)):
            raise ValueError(f'goal must be 3 finite numbers, got {xyz!r}')
        self._goal = goal
        if self._ros is not None and self.goal_topic:
            self._ros.publish_goal(goal, self.frame_id)

    def ee_position(self) -> np.ndarray:
        """End-effector position (m, world frame) of the last state used."""
        return self._ee.copy()

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, velocities, zeros) of the last state used, in joint_names order."""
        return self._q.copy(), self._qd.copy(), np.zeros_like(self._q)

    def spec_info(self) -> dict[str, Any]:
        """Return the task's spec info (the PyBullet env's for that YAML); no connection needed."""
        return dict(self._info)


def make_ros_reach_env(robot_yaml: str | os.PathLike | None = None, **kwargs: Any) -> gym.Env:
    """Entry point of ``trpo_ros/RosReach-v0``: RosReachEnv cut at the YAML's episode_steps."""
    env = RosReachEnv(robot_yaml=robot_yaml, **kwargs)
    return TimeLimit(env, env.episode_steps)


__all__ = ['ENV_ID', 'SERVER_PARAMETERS', 'RosEnvError', 'RosEnvTimeout', 'RosReachEnv',
           'make_ros_reach_env']
envs.register()  # importing this module makes trpo_ros/RosReach-v0 available
