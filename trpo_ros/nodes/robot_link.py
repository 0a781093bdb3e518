"""
The ROS side of `RosReachEnv`: one node in its own Context, and the JointStates it receives.

A `RobotLink` is created when the env connects. Its SingleThreadedExecutor spins on a daemon
thread; the JointState callback time-stamps each state on arrival (so late-state accounting in
realtime mode is honest) and notifies a condition variable that the env's step/reset wait on.
A service future completes without the caller spinning, and several links can live in one
process (each has its own rclpy Context).
"""

from __future__ import annotations

from collections import deque
import itertools
import os
import threading
import time
from typing import Any

import numpy as np
from trpo_ros.errors import UserError
from trpo_ros.robot import kinematics

_node_ids = itertools.count()

# (arrival index, arrival time.monotonic(), sensor_msgs/JointState) of one received state.
StateEntry = tuple[int, float, Any]


class RosEnvError(UserError, RuntimeError):
    """The ROS side is unusable (wrong joints, no subscriber, no robot description, ...)."""


class RosEnvTimeout(RosEnvError, TimeoutError):
    """The other side did not answer in time (no fresh JointState, service, home pose)."""


def stamp_ns(msg: Any) -> int:
    """Return a message's header stamp in nanoseconds (0 = unstamped)."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def remote_chain(urdf: str, joint_names: list[str], ee_link: str, topic: str) -> list[dict]:
    """Return the URDF's chain to `ee_link`; RosEnvError unless it holds every joint."""
    try:
        chain = kinematics.parse_chain(urdf, base_link=None, ee_link=ee_link)
    except kinematics.UrdfError as exc:
        raise RosEnvError(f'URDF from {topic}: {exc}') from None
    movable = kinematics.movable_joint_names(chain)
    off_chain = [j for j in joint_names if j not in movable]
    if off_chain:
        raise RosEnvError(f'URDF from {topic}: joint(s) {off_chain} are not on the chain to '
                          f'{ee_link} ({movable})')
    return chain


class RobotLink:
    """Publisher of commands and goals, receiver of JointStates, URDF and ee position."""

    def __init__(self, command_topic: str, state_topic: str, goal_topic: str,
                 robot_description_topic: str, ee_topic: str | None,
                 reset_service: str | None, timing: str, control_rate_hz: float,
                 state_timeout: float) -> None:
        """Create the node and its entities and start spinning; see `exchange` for timing."""
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

        self.command_topic, self.state_topic = command_topic, state_topic
        self.timing, self.period, self.state_timeout = timing, 1.0 / control_rate_hz, state_timeout
        self.next_tick = 0.0
        self.rclpy, self.Duration = rclpy, Duration
        self.PointStamped, self.Trigger = PointStamped, Trigger
        self.cond = threading.Condition()
        self.states: deque[StateEntry] = deque(maxlen=32)
        self.state_count = 0
        self.description: str | None = None
        self.ee_msg: Any = None
        self.context = Context()
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        try:
            name = f'ros_reach_env_{os.getpid()}_{next(_node_ids)}'
            self.node = node = rclpy.create_node(name, context=self.context)
            self.command_pub = node.create_publisher(Float64MultiArray, command_topic,
                                                     command_qos())
            self.goal_pub = node.create_publisher(PointStamped, goal_topic, latched_qos())
            node.create_subscription(JointState, state_topic, self._on_state, state_qos())
            if robot_description_topic:
                node.create_subscription(String, robot_description_topic, self._on_description,
                                         latched_qos())
            if ee_topic:
                node.create_subscription(PointStamped, ee_topic, self._on_ee, state_qos())
            self.reset_client = node.create_client(Trigger, reset_service) \
                if reset_service else None
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

    # ------------------------------------------------------------------ callbacks (executor)
    def _on_state(self, msg: Any) -> None:
        with self.cond:
            self.state_count += 1
            self.states.append((self.state_count, time.monotonic(), msg))
            self.cond.notify_all()

    def _on_description(self, msg: Any) -> None:
        with self.cond:
            self.description = msg.data
            self.cond.notify_all()

    def _on_ee(self, msg: Any) -> None:
        self.ee_msg = msg

    # ------------------------------------------------------------------ waiting
    def newest_state(self) -> StateEntry | None:
        """Return the newest received state, or None."""
        with self.cond:
            return self.states[-1] if self.states else None

    def wait_state(self, timeout: float) -> StateEntry | None:
        """Wait up to `timeout` s for any JointState; return the newest (None if none came)."""
        with self.cond:
            self.cond.wait_for(lambda: self.states, timeout=timeout)
            return self.states[-1] if self.states else None

    def wait_description(self, timeout: float) -> str | None:
        """Wait up to `timeout` s for the URDF on the robot description topic."""
        with self.cond:
            self.cond.wait_for(lambda: self.description is not None, timeout=timeout)
            return self.description

    def fresh(self, used: tuple, after: float, newest: bool,
              skip_repeats: bool) -> StateEntry | None:
        """
        Return the first (or newest) state that answers a command sent at `after`.

        It must have arrived after `after`, be newer than `used` (the (count, stamp ns, msg) of
        the state used last) by arrival and by stamp and, with `skip_repeats`, differ from it
        (sim_node's idle lockstep re-publish repeats the previous state).
        """
        used_count, used_stamp, used_msg = used
        found = None
        with self.cond:
            for entry in self.states:
                count, arrived, msg = entry
                if count <= used_count or arrived < after:
                    continue
                stamp = stamp_ns(msg)
                if stamp and stamp <= used_stamp:
                    continue
                if skip_repeats and used_msg is not None and msg.position == used_msg.position \
                        and msg.velocity == used_msg.velocity:
                    continue
                found = entry
                if not newest:
                    break
        return found

    def wait_fresh(self, used: tuple, after: float, deadline: float, newest: bool,
                   skip_repeats: bool) -> StateEntry:
        """`fresh` once one arrives before `deadline`; RosEnvTimeout naming the topics else."""
        entry = None

        def ready() -> bool:
            nonlocal entry
            entry = self.fresh(used, after, newest, skip_repeats)
            return entry is not None

        with self.cond:
            self.cond.wait_for(ready, timeout=max(0.0, deadline - time.monotonic()))
            late = [e for e in self.states if e[1] >= after]
        if entry is None:
            raise RosEnvTimeout(
                f'no fresh JointState on {self.state_topic} within {self.state_timeout:g} s '
                f'after the command on {self.command_topic} (robot stopped answering?); '
                f'{len(late)} state(s) arrived but were not newer / repeated the last one; '
                'a hold command was published')
        return entry

    def check_remote(self, joint_names: list[str], ee_link: str, description_topic: str,
                     timeout: float) -> tuple[list[dict] | None, bool]:
        """
        Check the robot on the other side; return (its FK chain or None, use the reset service).

        Waits (`timeout` s in all) for a JointState naming every joint in `joint_names`, the
        URDF on `description_topic` (if given; its chain to `ee_link` must hold the joints), a
        command subscriber and the reset service (if any; else the env drives home).

        Raises
        ------
            RosEnvTimeout: no JointState / robot description / command subscriber in time.
            RosEnvError: the JointState lacks configured joints, or the URDF does not reach
                `ee_link` through them.

        """
        deadline = time.monotonic() + timeout
        entry = self.wait_state(timeout)
        if entry is None:
            raise RosEnvTimeout(f'no sensor_msgs/JointState on {self.state_topic} within '
                                f'{timeout:g} s (is the robot / sim_node running, same '
                                'ROS_DOMAIN_ID?)')
        remote = list(entry[2].name)
        missing = [j for j in joint_names if j not in remote]
        if missing:
            raise RosEnvError(
                f'remote robot on {self.state_topic} does not publish the configured joint(s) '
                f'{missing}; it publishes {remote}; configured joints: {joint_names}')
        chain = None
        if description_topic:
            urdf = self.wait_description(max(0.0, deadline - time.monotonic()))
            if urdf is None:
                raise RosEnvTimeout(
                    f'no URDF on {description_topic} within {timeout:g} s'
                    " (pass robot_description_topic='' to use the robot YAML's URDF)")
            chain = remote_chain(urdf, joint_names, ee_link, description_topic)
        while self.command_pub.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise RosEnvTimeout(f'nobody subscribes to {self.command_topic} '
                                    f'(waited {timeout:g} s)')
            time.sleep(0.01)
        client = self.reset_client
        use_service = bool(client is not None and client.wait_for_service(
            timeout_sec=min(2.0, max(0.1, deadline - time.monotonic()))))
        return chain, use_service

    # ------------------------------------------------------------------ the timing protocol
    def start_clock(self) -> None:
        """Start the realtime command clock: the next command goes out one period from now."""
        self.next_tick = time.monotonic() + self.period

    def exchange(self, target: np.ndarray, used: tuple) -> tuple[StateEntry, bool]:
        """
        Publish `target` and return (the state that answers it, whether it came late).

        lockstep: the first fresh state after the command (one remote step per command).
        realtime: commands go out at the control rate; the newest fresh state at the next
        tick answers; if none has come by then the step is late and waits for one (an old
        state is never reused).
        """
        sent = self.publish_command(target)
        deadline = sent + self.state_timeout
        if self.timing == 'lockstep':
            return self.wait_fresh(used, sent, deadline, newest=False, skip_repeats=True), False
        pause = self.next_tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        entry = self.fresh(used, sent, newest=True, skip_repeats=False)
        late = entry is None
        if late:
            entry = self.wait_fresh(used, sent, deadline, newest=False, skip_repeats=False)
        self.next_tick += self.period
        if self.next_tick < time.monotonic():
            self.next_tick = time.monotonic() + self.period
        return entry, late

    # ------------------------------------------------------------------ sending
    def publish_command(self, target: np.ndarray) -> float:
        """Publish absolute position targets; return the time.monotonic() they left."""
        from trpo_ros.nodes.conversions import float64_array

        sent = time.monotonic()
        self.command_pub.publish(float64_array(np.asarray(target, np.float64)))
        return sent

    def publish_hold(self, layout: Any, fallback: np.ndarray) -> np.ndarray:
        """
        Command the newest measured positions (`fallback` if unreadable); return the target.

        Best effort, never raises: it runs when something already failed. `layout` is the
        env's ObservationLayout (maps the JointState's names to the controlled joints).
        """
        target = np.array(fallback, np.float64)
        try:
            newest = self.newest_state()
            if newest is not None:
                msg = newest[2]
                try:
                    layout.read_state(msg.name, msg.position, msg.velocity)
                    target = layout.controlled_positions().astype(np.float64)
                except ValueError:
                    pass
            self.publish_command(target)
            self.command_pub.wait_for_all_acked(self.Duration(seconds=0.2))
        except Exception:  # noqa: BLE001 - already failing; the hold is best effort
            pass
        return target

    def ee_position(self) -> np.ndarray | None:
        """Return the newest end-effector position from the ee topic (m), None without one."""
        msg = self.ee_msg
        return None if msg is None else np.array([msg.point.x, msg.point.y, msg.point.z])

    def publish_goal(self, goal: np.ndarray, frame_id: str) -> None:
        """Publish the goal as PointStamped (transient local) in `frame_id`."""
        msg = self.PointStamped()
        msg.header.frame_id = frame_id
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.point.x, msg.point.y, msg.point.z = (float(v) for v in goal)
        self.goal_pub.publish(msg)

    def call_reset(self, service: str, timeout: float) -> None:
        """Call the reset Trigger; RosEnvTimeout / RosEnvError if it does not answer or fails."""
        assert self.reset_client is not None
        future = self.reset_client.call_async(self.Trigger.Request())
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            self.reset_client.remove_pending_request(future)
            raise RosEnvTimeout(f'reset service {service} did not answer within {timeout:g} s')
        response = future.result()
        if response is None or not response.success:
            raise RosEnvError(f'reset service {service} failed: '
                              f'{getattr(response, "message", "no response")}')

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
