"""
Live rviz2 preview of a policy being trained: one in-process env driven at real time.

Publishes ``/joint_states``, ``/robot_description`` (transient local, rooted at `frame_id`),
``/trpo/markers`` (goal, end effector, the push task's cube, and a trail of the end effector's
last :data:`TRAIL_LENGTH` positions)
and, when `camera_rate_hz` > 0, ``sensor_msgs/Image`` frames on ``/trpo/camera`` from the env's
``rgb_array`` renderer. The node that owns it swaps in a new policy with :meth:`set_policy`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
import threading
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trpo_ros.nodes.conversions import (
    fill_joint_state,
    latched_qos,
    line_strip_marker,
    robot_description_in_world,
    state_qos,
    task_markers,
)
from visualization_msgs.msg import MarkerArray

TRAIL_LENGTH = 100
"""End-effector positions kept in the preview trail (2 s at 50 Hz)."""
TRAIL_RGBA = (0.2, 0.5, 1.0, 0.8)
TRAIL_WIDTH = 0.005
"""Trail line width (m)."""
SEED_OFFSET = 20_000
"""Preview episode k is reset with seed + SEED_OFFSET + k (apart from training seeds)."""
CAMERA_FRAME = 'trpo_camera'

Policy = Callable[[np.ndarray], np.ndarray]
"""Env observation -> env action (e.g. ``PolicyBundle.act``)."""


class PolicyPreview:
    """Steps a private env with the current policy on `node`'s timers and publishes it."""

    def __init__(self, node: Node, env_id: str, env_kwargs: dict[str, Any],
                 info: dict[str, Any], policy: Policy, *, seed: int, rate_hz: float,
                 camera_rate_hz: float, frame_id: str) -> None:
        """
        Make the env and reset it, publish the URDF, start the timers.

        `rate_hz` <= 0 means the env control rate (real time); `camera_rate_hz` 0 = no camera.
        """
        from trpo_ros.core.rollout import make_env

        self._node, self._frame_id, self._seed = node, frame_id, seed
        self._policy = policy
        self._policy_lock = threading.Lock()
        self._stopped = threading.Event()
        self.env = make_env(env_id, env_kwargs,
                            render_mode='rgb_array' if camera_rate_hz > 0 else None)
        try:
            self._start(info, rate_hz, camera_rate_hz)
        except BaseException:
            self.env.close()
            raise

    def _start(self, info: dict[str, Any], rate: float, camera_rate: float) -> None:
        node = self._node
        self._threshold = float(info.get('success_threshold') or 0.0)
        self._episode = 0
        self._obs, _ = self.env.reset(seed=self._seed + SEED_OFFSET)
        self._trail: deque[np.ndarray] = deque(maxlen=TRAIL_LENGTH)
        self._state_pub = node.create_publisher(JointState, '/joint_states', state_qos())
        self._marker_pub = node.create_publisher(MarkerArray, '/trpo/markers', 10)
        self._description_pub = node.create_publisher(String, '/robot_description',
                                                      latched_qos())
        self._description_pub.publish(String(data=robot_description_in_world(info,
                                                                             self._frame_id)))
        self._state_msg = JointState(name=list(info['joint_names']))
        group = MutuallyExclusiveCallbackGroup()  # the preview env is used by one callback
        rate = rate if rate > 0 else float(info['control_rate_hz'])
        node.create_timer(1.0 / rate, node.guard.wrap('preview', self._on_tick),
                          callback_group=group)
        if camera_rate > 0:
            self._camera_pub = node.create_publisher(Image, '/trpo/camera', 1)
            node.create_timer(1.0 / camera_rate,
                              node.guard.wrap('camera', self._on_camera_tick),
                              callback_group=group)
        node.get_logger().info(f'live preview at {rate:g} Hz on /joint_states, /trpo/markers'
                               + (f', camera at {camera_rate:g} Hz' if camera_rate > 0 else ''))

    def set_policy(self, policy: Policy) -> None:
        """Drive the preview with `policy` from the next tick on (thread-safe)."""
        with self._policy_lock:
            self._policy = policy

    def stop(self) -> None:
        """Make the timer callbacks no-ops (the node is shutting down)."""
        self._stopped.set()

    def close(self) -> None:
        """Stop, then release the env."""
        self.stop()
        self.env.close()

    # ------------------------------------------------------------------------ callbacks
    def _on_tick(self) -> None:
        if self._stopped.is_set():
            return
        with self._policy_lock:
            policy = self._policy
        env = self.env
        self._obs, _, terminated, truncated, _ = env.step(policy(self._obs))
        if terminated or truncated:
            self._episode += 1
            self._obs, _ = env.reset(seed=self._seed + SEED_OFFSET + self._episode)
            self._trail.clear()
        stamp = self._node.get_clock().now().to_msg()
        self._state_pub.publish(fill_joint_state(self._state_msg, stamp,
                                                 *env.unwrapped.joint_state()))
        self._trail.append(env.unwrapped.ee_position())
        self._marker_pub.publish(self._markers(stamp))

    def _markers(self, stamp: Any) -> MarkerArray:
        goal_size = 2 * self._threshold if self._threshold > 0 else 0.05
        markers = task_markers(self.env.unwrapped, self._threshold, goal_size, self._frame_id,
                               stamp)
        markers.append(line_strip_marker('trail', 2, self._trail, TRAIL_WIDTH, TRAIL_RGBA,
                                         self._frame_id, stamp))
        return MarkerArray(markers=markers)

    def _on_camera_tick(self) -> None:
        if self._stopped.is_set():
            return
        frame = self.env.render()
        if frame is None:
            return
        msg = Image(height=int(frame.shape[0]), width=int(frame.shape[1]), encoding='rgb8',
                    is_bigendian=0, step=int(frame.shape[1]) * 3)
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.header.frame_id = CAMERA_FRAME
        msg.data = np.ascontiguousarray(frame, np.uint8).tobytes()
        self._camera_pub.publish(msg)
