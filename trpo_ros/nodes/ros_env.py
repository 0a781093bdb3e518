"""
A Gymnasium reach env whose robot lives on the other side of ROS 2 topics.

`RosReachEnv` (registered as ``trpo_ros/RosReach-v0``) takes its action space, observation
layout, reward and `spec_info()` from the same `trpo_ros.robot.ReachTask` as the PyBullet
`trpo_ros.sim.ReachEnv` of the robot YAML (read from the YAML and URDF: no PyBullet here), so a
policy trained over ROS exports and deploys exactly like one trained in-process. Each step
turns the action into an ABSOLUTE joint position target (what the exported ONNX graph outputs),
enforces the safety limits, publishes it as ``std_msgs/Float64MultiArray`` on the commands
topic, and waits for the next ``sensor_msgs/JointState`` (mapped by joint name). The
end-effector position comes from numpy forward kinematics on the URDF received on
``/robot_description``. Goals are drawn here (``self.np_random``, the YAML's goal box) and
published on ``/trpo/goal`` (PointStamped, transient local) for markers on the robot side.

Design (see the README section "Training or fine-tuning over ROS 2 topics"):

- The node has its own rclpy Context and is spun by a SingleThreadedExecutor on a daemon
  thread; step/reset wait on a condition variable the state callback notifies. States are
  time-stamped on arrival (late-state accounting in realtime mode is honest) and a service
  future completes without the caller spinning. Several envs can coexist in one process.
- The ROS side is connected lazily, on the first `reset()` (or `connect()`): constructing the
  env (as the Trainer does for its evaluation env) touches no ROS entity, and `spec_info()`,
  the spaces and `close()` work without a connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
import itertools
import os
import threading
import time
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import TimeLimit
import numpy as np
from trpo_ros.robot import CommandFilter, kinematics
from trpo_ros.robot.reach_task import reach_task, ReachTask

ENV_ID = 'trpo_ros/RosReach-v0'
SERVER_PARAMETERS = {'mode': 'lockstep', 'episode_steps': 0, 'follow_goal_topic': True}
"""sim_node parameters for serving this env: one step per command, no auto-reset at its own
TimeLimit (the env resets episodes through ~/reset), and the env's goals on /trpo/goal."""
TIMINGS = ('lockstep', 'realtime')
SUPPORTED_MODES = ('position_delta', 'position')
_node_ids = itertools.count()


class RosEnvError(RuntimeError):
    """The ROS side is unusable (wrong joints, no subscriber, no robot description, ...)."""


class RosEnvTimeout(RosEnvError, TimeoutError):
    """The other side did not answer in time (no fresh JointState, service, home pose)."""


class _Ros:
    """The rclpy entities of one env: own Context, node, executor thread (created on connect)."""

    def __init__(self, env: RosReachEnv) -> None:
        from geometry_msgs.msg import PointStamped
        import rclpy
        from rclpy.context import Context
        from rclpy.duration import Duration
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray, String
        from std_srvs.srv import Trigger
        from trpo_ros.nodes.conversions import command_qos, latched_qos, state_qos

        self.rclpy, self.Duration = rclpy, Duration
        self.PointStamped, self.Trigger = PointStamped, Trigger
        self.context = Context()
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        try:
            name = f'ros_reach_env_{os.getpid()}_{next(_node_ids)}'
            self.node = rclpy.create_node(name, context=self.context)
            node = self.node
            self.command_pub = node.create_publisher(Float64MultiArray, env.command_topic,
                                                     command_qos())
            self.goal_pub = node.create_publisher(PointStamped, env.goal_topic, latched_qos())
            node.create_subscription(JointState, env.state_topic, env._on_state, state_qos())
            if env.robot_description_topic:
                node.create_subscription(String, env.robot_description_topic,
                                         env._on_description, latched_qos())
            if env.ee_topic:
                node.create_subscription(PointStamped, env.ee_topic, env._on_ee, state_qos())
            self.reset_client = node.create_client(Trigger, env.reset_service) \
                if env.reset_service else None
            self.executor = SingleThreadedExecutor(context=self.context)
            self.executor.add_node(node)
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._spin, name=name, daemon=True)
            self.thread.start()
        except Exception:
            rclpy.shutdown(context=self.context)
            raise

    def _spin(self) -> None:
        from trpo_ros.nodes.runner import spin_until

        spin_until(self.executor, self.stop.is_set, poll=0.1)

    def now_msg(self) -> Any:
        """Return the current ROS time as builtin_interfaces/Time."""
        return self.node.get_clock().now().to_msg()

    def close(self) -> None:
        """Stop the executor thread, destroy the node, shut the context down."""
        self.stop.set()
        self.thread.join(timeout=2.0)
        self.executor.shutdown(timeout_sec=1.0)
        try:
            self.node.destroy_node()
        finally:
            if self.context.ok():
                self.rclpy.shutdown(context=self.context)


class RosReachEnv(gym.Env):
    """
    Reach task on a robot behind ROS 2 topics, same spaces/reward as `ReachEnv`.

    Observation (float32, ``spec_info()['obs_names']``): ``joint_pos/<j>`` (rad),
    ``joint_vel/<j>`` (rad/s) from the JointState, ``ee_pos/x|y|z`` (m, world, FK of the
    measured positions), ``goal/x|y|z`` (m, world).

    Action: as ReachEnv (position_delta: a delta within ±min(max_delta, v_max/f); position:
    absolute targets). The published command is the absolute target
    ``clip(q + delta, lower, upper)``, then limited to ``|target - q| <= max_joint_velocity /
    control_rate_hz`` and replaced by a hold (target = q) if its FK end-effector position would
    leave the `workspace` box (moving back towards the box from outside is allowed).

    Reward: the task's (``-distance - action_penalty |a_n|^2 - velocity_penalty |qd|^2``), with
    the policy's (clipped) action; `info` has ``distance``, ``is_success``,
    ``reward_distance``, ``reward_action``, ``reward_velocity``, plus ``late_states`` and
    ``workspace_holds`` (counts this episode), ``velocity_capped`` (this step),
    ``state_stamp`` (s) and ``state_count`` (arrival index of the state used).

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
        std_srvs/Trigger that starts an episode on the other side; None or ''
        (or no such service at connect time) = drive to the YAML's home pose instead.
    goal_topic
        PointStamped goal output (transient local), '' = do not publish.
    robot_description_topic
        std_msgs/String URDF (transient local) used for FK; '' = use
        the local YAML's URDF.
    ee_topic
        optional PointStamped end-effector position (world frame) used instead of
        FK for the observation and reward (latest message, not synchronized).
    timing
        'lockstep' (one remote step per command) or 'realtime' (fixed rate).
    control_rate_hz
        realtime command rate and the rate of the velocity cap (default:
        the YAML's control rate).
    state_timeout
        seconds to wait for a fresh JointState before `RosEnvTimeout`.
    connect_timeout
        seconds to wait for the first JointState, the robot description and
        a command subscriber at connect.
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
        self._info = info = self.task.spec_info()
        self.home = self.task.robot.home.copy()
        self.action_space, self.observation_space = self.task.spaces()
        self.episode_steps = self.task.episode_steps
        self.robot_yaml = self.task.source
        if info['control_mode'] not in SUPPORTED_MODES:
            raise ValueError(f"control_mode {info['control_mode']!r} is not supported over ROS "
                             f'(supported: {SUPPORTED_MODES})')
        self.control_mode: str = info['control_mode']
        self.joint_names: list[str] = list(info['joint_names'])
        self.obs_names: list[str] = list(info['obs_names'])
        self.lower = np.asarray(info['joint_lower'], np.float64)
        self.upper = np.asarray(info['joint_upper'], np.float64)
        self.goal_low = np.asarray(info['goal_low'], np.float64)
        self.goal_high = np.asarray(info['goal_high'], np.float64)
        self.success_threshold = float(info['success_threshold'])
        self.command_topic, self.state_topic = command_topic, state_topic
        self.reset_service = reset_service or None
        self.goal_topic, self.frame_id = goal_topic, frame_id
        self.robot_description_topic = robot_description_topic or ''
        self.ee_topic = ee_topic or None
        self.timing = timing
        self.control_rate_hz = float(control_rate_hz or info['control_rate_hz'])
        if self.control_rate_hz <= 0:
            raise ValueError(f'control_rate_hz must be > 0, got {control_rate_hz}')
        self.state_timeout, self.connect_timeout = float(state_timeout), float(connect_timeout)
        cap = np.broadcast_to(np.asarray(
            max_joint_velocity if max_joint_velocity is not None else info['velocity_limits'],
            np.float64), self.lower.shape).copy()
        if np.any(cap <= 0):
            raise ValueError(f'max_joint_velocity must be > 0, got {max_joint_velocity}')
        self.max_joint_velocity = cap
        self._max_step = cap / self.control_rate_hz
        self.home_tolerance, self.home_timeout = float(home_tolerance), float(home_timeout)
        self._act_low, self._act_high = self.action_space.low, self.action_space.high
        self._base = (tuple(info['base_position']), tuple(info['base_orientation']))
        self._set_chain([dict(j) for j in info['fk_chain']])
        self._filter = CommandFilter(self.lower, self.upper, max_step=self._max_step,
                                     workspace=workspace, fk=self._fk)

        self._ros: _Ros | None = None
        self._layout: Any = None
        self._cond = threading.Condition()
        self._states: deque[tuple[int, float, Any]] = deque(maxlen=32)
        self._state_count = 0
        self._description: str | None = None
        self._ee_msg: Any = None
        self._use_service = False
        self._used = (0, 0, None)  # (arrival count, stamp ns, msg) of the state last used
        self._q = self.home.copy()
        self._qd = np.zeros_like(self.home)
        self._ee = np.zeros(3)
        self._goal = (self.goal_low + self.goal_high) / 2.0
        self._next_tick = 0.0
        self.late_states = 0          # total over the env's life (realtime)
        self.workspace_holds = 0
        self._episode_late = 0
        self._episode_holds = 0
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
        ros = self._ros = _Ros(self)
        try:
            self._check_remote()
        except BaseException:
            self._ros = None
            ros.close()
            raise

    def _check_remote(self) -> None:
        ros = self._ros
        assert ros is not None
        deadline = time.monotonic() + self.connect_timeout
        with self._cond:
            got = self._cond.wait_for(lambda: self._states, timeout=self.connect_timeout)
            first = self._states[-1][2] if got else None
        if first is None:
            raise RosEnvTimeout(f'no sensor_msgs/JointState on {self.state_topic} within '
                                f'{self.connect_timeout:g} s (is the robot / sim_node running, '
                                'same ROS_DOMAIN_ID?)')
        remote = list(first.name)
        missing = [j for j in self.joint_names if j not in remote]
        if missing:
            raise RosEnvError(
                f'remote robot on {self.state_topic} does not publish the configured joint(s) '
                f'{missing}; it publishes {remote}; configured joints: {self.joint_names}')
        if self.robot_description_topic:
            with self._cond:
                self._cond.wait_for(lambda: self._description is not None,
                                    timeout=max(0.0, deadline - time.monotonic()))
                urdf = self._description
            if urdf is None:
                raise RosEnvTimeout(
                    f'no URDF on {self.robot_description_topic} within {self.connect_timeout:g} s'
                    " (pass robot_description_topic='' to use the robot YAML's URDF)")
            self._set_chain(self._remote_chain(urdf))
        while ros.command_pub.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise RosEnvTimeout(f'nobody subscribes to {self.command_topic} '
                                    f'(waited {self.connect_timeout:g} s)')
            time.sleep(0.01)
        client = ros.reset_client
        self._use_service = bool(client is not None and client.wait_for_service(
            timeout_sec=min(2.0, max(0.1, deadline - time.monotonic()))))

    def _remote_chain(self, urdf: str) -> list[dict]:
        try:
            chain = kinematics.parse_chain(urdf, base_link=None, ee_link=self._info['ee_link'])
        except kinematics.UrdfError as exc:
            raise RosEnvError(f'URDF from {self.robot_description_topic}: {exc}') from None
        movable = kinematics.movable_joint_names(chain)
        off_chain = [j for j in self.joint_names if j not in movable]
        if off_chain:
            raise RosEnvError(f'URDF from {self.robot_description_topic}: joint(s) {off_chain} '
                              f"are not on the chain to {self._info['ee_link']} ({movable})")
        return chain

    # ------------------------------------------------------------------ callbacks (executor)
    def _on_state(self, msg: Any) -> None:
        with self._cond:
            self._state_count += 1
            self._states.append((self._state_count, time.monotonic(), msg))
            self._cond.notify_all()

    def _on_description(self, msg: Any) -> None:
        with self._cond:
            self._description = msg.data
            self._cond.notify_all()

    def _on_ee(self, msg: Any) -> None:
        self._ee_msg = msg

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
            self._next_tick = time.monotonic() + 1.0 / self.control_rate_hz
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
        action = np.clip(np.asarray(action, np.float64).reshape(-1), self._act_low,
                         self._act_high)
        if action.shape != self._act_low.shape:
            raise ValueError(f'action has {action.size} values, expected {self._act_low.size}')
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

    def _publish_hold(self, ros: _Ros | None = None) -> None:
        """Command the newest measured positions (best effort; never raises)."""
        ros = ros or self._ros
        if ros is None:
            return
        try:
            q = self._q
            with self._cond:
                newest = self._states[-1][2] if self._states else None
            if newest is not None:
                try:
                    self._layout.read_state(newest.name, newest.position, newest.velocity)
                    q = self._layout.controlled_positions().copy()
                except ValueError:
                    pass
            self._publish(q, ros)
            ros.command_pub.wait_for_all_acked(ros.Duration(seconds=0.2))
        except Exception:  # noqa: BLE001 - already failing; the hold is best effort
            pass

    def _publish(self, target: np.ndarray, ros: _Ros | None = None) -> float:
        from trpo_ros.nodes.conversions import float64_array

        ros = ros or self._ros
        assert ros is not None
        self.last_command = np.array(target, np.float64)
        sent = time.monotonic()
        ros.command_pub.publish(float64_array(self.last_command))
        return sent

    # ------------------------------------------------------------------ state exchange
    def _exchange(self, target: np.ndarray) -> None:
        """Publish `target`, wait for the state that answers it (per `timing`), read it."""
        sent = self._publish(target)
        if self.timing == 'lockstep':
            entry = self._wait_fresh(sent, sent + self.state_timeout, newest=False,
                                     skip_repeats=True)
        else:
            pause = self._next_tick - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            entry = self._fresh(sent, newest=True, skip_repeats=False)
            if entry is None:  # late: count it, keep waiting (never reuse the old state)
                self.late_states += 1
                self._episode_late += 1
                entry = self._wait_fresh(sent, sent + self.state_timeout, newest=False,
                                         skip_repeats=False)
            period = 1.0 / self.control_rate_hz
            self._next_tick += period
            if self._next_tick < time.monotonic():
                self._next_tick = time.monotonic() + period
        self._use(entry)

    def _fresh(self, after: float, newest: bool, skip_repeats: bool) -> tuple | None:
        """(lock held by caller or not needed) First/newest state that answers a command."""
        used_count, used_stamp, used_msg = self._used
        found = None
        for entry in self._states:
            count, arrived, msg = entry
            if count <= used_count or arrived < after:
                continue
            stamp = _stamp_ns(msg)
            if stamp and stamp <= used_stamp:
                continue
            if skip_repeats and used_msg is not None and msg.position == used_msg.position \
                    and msg.velocity == used_msg.velocity:
                continue  # an idle re-publish of the previous state (sim_node lockstep_kick)
            found = entry
            if not newest:
                break
        return found

    def _wait_fresh(self, after: float, deadline: float, newest: bool,
                    skip_repeats: bool) -> tuple:
        with self._cond:
            entry = None

            def ready() -> bool:
                nonlocal entry
                entry = self._fresh(after, newest, skip_repeats)
                return entry is not None

            self._cond.wait_for(ready, timeout=max(0.0, deadline - time.monotonic()))
        if entry is None:
            with self._cond:
                late = [e for e in self._states if e[1] >= after]
            raise RosEnvTimeout(
                f'no fresh JointState on {self.state_topic} within {self.state_timeout:g} s '
                f'after the command on {self.command_topic} (robot stopped answering?); '
                f'{len(late)} state(s) arrived but were not newer / repeated the last one; '
                'a hold command was published')
        return entry

    def _use(self, entry: tuple) -> None:
        count, _, msg = entry
        self._layout.read_state(msg.name, msg.position, msg.velocity)
        self._q = self._layout.controlled_positions().copy()
        self._qd = self._layout.velocities[:len(self.joint_names)].copy()
        self._used = (count, _stamp_ns(msg), msg)
        if self.ee_topic and self._ee_msg is not None:
            point = self._ee_msg.point
            self._ee = np.array([point.x, point.y, point.z])
        else:
            self._ee = self._fk(self._q)

    def _call_reset_service(self) -> None:
        ros = self._ros
        assert ros is not None
        sent = time.monotonic()
        future = ros.reset_client.call_async(ros.Trigger.Request())
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(self.state_timeout):
            ros.reset_client.remove_pending_request(future)
            raise RosEnvTimeout(f'reset service {self.reset_service} did not answer within '
                                f'{self.state_timeout:g} s')
        response = future.result()
        if response is None or not response.success:
            raise RosEnvError(f'reset service {self.reset_service} failed: '
                              f'{getattr(response, "message", "no response")}')
        # The state published by the reset handler precedes its response; take the newest.
        self._use(self._wait_fresh(sent, time.monotonic() + self.state_timeout, newest=True,
                                   skip_repeats=False))

    def _drive_home(self) -> None:
        """Publish home targets (velocity-capped) until within `home_tolerance` or timeout."""
        with self._cond:
            newest = self._states[-1] if self._states else None
        if newest is None:
            raise RosEnvTimeout(f'no JointState on {self.state_topic}')
        self._use(newest)
        deadline = time.monotonic() + self.home_timeout
        self._next_tick = time.monotonic() + 1.0 / self.control_rate_hz
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
        ros = self._ros
        if ros is not None and self.goal_topic:
            msg = ros.PointStamped()
            msg.header.frame_id = self.frame_id
            msg.header.stamp = ros.now_msg()
            msg.point.x, msg.point.y, msg.point.z = (float(v) for v in goal)
            ros.goal_pub.publish(msg)

    def ee_position(self) -> np.ndarray:
        """End-effector position (m, world frame) of the last state used."""
        return self._ee.copy()

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, velocities, zeros) of the last state used, in joint_names order."""
        return self._q.copy(), self._qd.copy(), np.zeros_like(self._q)

    def spec_info(self) -> dict[str, Any]:
        """Return the task's spec info (the PyBullet env's for that YAML); no connection needed."""
        return dict(self._info)


def _stamp_ns(msg: Any) -> int:
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_ros_reach_env(robot_yaml: str | os.PathLike | None = None, **kwargs: Any) -> gym.Env:
    """Entry point of ``trpo_ros/RosReach-v0``: RosReachEnv cut at the YAML's episode_steps."""
    env = RosReachEnv(robot_yaml=robot_yaml, **kwargs)
    return TimeLimit(env, env.episode_steps)


__all__ = ['ENV_ID', 'SERVER_PARAMETERS', 'RosEnvError', 'RosEnvTimeout', 'RosReachEnv',
           'make_ros_reach_env']
