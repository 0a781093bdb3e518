"""
The ROS side of the safety modes (:mod:`trpo_ros.safety_modes`) of inference_node.

Services (``std_srvs/Trigger``): ``~/activate_policy``, ``~/standby``, ``~/hold``, ``~/estop``,
``~/reset_estop``. Topic in: ``~/mode_request`` (``std_msgs/String``: standby, active, hold,
estop, reset_estop), VOLATILE so that a restarted node never replays an old "active". Topics
out: ``~/mode`` (``std_msgs/String``, transient local: the current mode, e.g.
``estop: 50 consecutive fault holds (...)``) and ``~/policy_preview``
(``std_msgs/Float64MultiArray``: the policy's command while it is not sent).
"""

from __future__ import annotations

from collections.abc import Sequence
import threading
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trpo_ros.nodes.conversions import float64_array, latched_qos
from trpo_ros.nodes.guard import Guard, SafeLog
from trpo_ros.safety_modes import SafetyModes
from trpo_ros.serving import PolicyServer

SERVICES = {'activate_policy': 'active', 'standby': 'standby', 'hold': 'hold',
            'estop': 'estop', 'reset_estop': 'reset_estop'}
"""Service name (under the node) -> mode request."""


def mode_label(modes: SafetyModes) -> str:
    """Return the mode as published on ~/mode: 'active', 'estop: <why>', ..."""
    if modes.mode == 'estop':
        return f'estop: {modes.estop_reason}'
    if modes.mode == 'active' and modes.handing_over:
        return 'active (handing over)'
    return modes.mode


class ModeInterface:
    """Services and topics that switch and show one node's :class:`SafetyModes`."""

    def __init__(self, node: Node, guard: Guard, log: SafeLog, lock: threading.Lock,
                 server: PolicyServer) -> None:
        self._log, self._lock, self._server = log, lock, server
        self._shown = ''
        self.requests = 0
        for name, request in SERVICES.items():
            node.create_service(Trigger, f'~/{name}', guard.service(
                f'service {name}', lambda _req, res, request=request: self._reply(request, res)))
        node.create_subscription(String, '~/mode_request', guard.wrap(
            'mode_request', self._on_request), QoSProfile(depth=10))
        self._mode_pub = node.create_publisher(String, '~/mode', latched_qos())
        self._preview_pub = node.create_publisher(Float64MultiArray, '~/policy_preview', 10)
        self._preview_msg: Float64MultiArray | None = None

    def _reply(self, request: str, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.request(request)
        return response

    def _on_request(self, msg: String) -> None:
        ok, message = self.request(msg.data.strip().lower())
        if not ok:
            self._log.warning(f'mode request {msg.data!r} refused: {message}',
                              throttle_sec=1.0, key='mode_request')

    def request(self, name: str) -> tuple[bool, str]:
        """Apply one mode request; it takes effect at the next control step."""
        with self._lock:
            ok, message = self._server.request_mode(name)
            self.requests += 1
        self.publish_mode()
        return ok, message

    def publish_mode(self) -> None:
        """Publish ~/mode when it changed (called after every control step and request)."""
        label = mode_label(self._server.modes)
        if label != self._shown:
            self._shown = label
            self._mode_pub.publish(String(data=label))
            if label.startswith('estop'):
                self._log.error(f'mode: {label}')
            else:
                self._log.info(f'mode: {label}')

    def publish_preview(self, preview: np.ndarray | None, joints: Sequence[str]) -> None:
        """Publish the policy's unsent command on ~/policy_preview."""
        if preview is None:
            return
        if self._preview_msg is None or len(self._preview_msg.data) != len(preview):
            self._preview_msg = float64_array(preview, joints)
        else:
            float64_array(preview, msg=self._preview_msg)
        self._preview_pub.publish(self._preview_msg)

    def diagnostics(self) -> dict[str, Any]:
        """Key values for /diagnostics."""
        modes = self._server.modes
        return {'mode': modes.mode, 'estop_reason': modes.estop_reason,
                'handing_over': modes.handing_over,
                'consecutive_faults': modes.consecutive_faults, 'mode_requests': self.requests}
