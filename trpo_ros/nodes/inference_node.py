"""
Lifecycle node serving an exported ONNX policy: /joint_states + goal -> joint commands.

Configure loads the model (:class:`trpo_ros.runtime.Policy`), activate starts the I/O, and
`autostart` (default true) does both at start-up. Setting `model_path` at run time hot-swaps
the model between two control steps; a bad file is rejected and the old model keeps serving.
Stale, NaN, incomplete states and bad goals make it publish the hold command and report ERROR
on /diagnostics. Never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
import numpy as np
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trpo_ros.nodes.conversions import (
    command_qos,
    diagnostic_array,
    diagnostic_status,
    ERROR,
    float64_array,
    latched_qos,
    LatencyWindow,
    LEVEL_NAMES,
    ObservationError,
    ObservationLayout,
    OK,
    reliability_policy,
    state_qos,
    validate_goal,
    WARN,
)
from trpo_ros.nodes.runner import run_nodes
from trpo_ros.runtime import Policy, PolicyError

NODE_NAME = 'inference_node'
DEFAULT_COMMAND_TOPIC = '/forward_position_controller/commands'

PARAMETERS: dict[str, tuple[Any, str]] = {
    'model_path': ('', 'exported policy (.onnx); set at run time to hot-swap the model'),
    'autostart': (True, 'configure and activate at start-up'),
    'command_topic': (DEFAULT_COMMAND_TOPIC, 'Float64MultiArray command topic'),
    'command_reliability': ('reliable', "command QoS: 'reliable' or 'best_effort'"),
    'state_topic': ('/joint_states', 'sensor_msgs/JointState input'),
    'goal_topic': ('/trpo/goal', 'geometry_msgs/PointStamped reach goal (transient local)'),
    'goal': ([], 'reach goal [x, y, z] in the world frame (overrides until the next goal msg)'),
    'publish_on_state': (False, 'publish one command per JointState instead of on a timer'),
    'control_rate_hz': (0.0, 'command rate; 0 = the rate the model was trained at'),
    'obs_timeout': (0.5, 'seconds without a JointState before holding and reporting ERROR'),
    'max_delta': (0.0, 'largest change of a command per step (0 = off)'),
    'diagnostics_period': (1.0, 'seconds between /diagnostics messages'),
}
"""Declared parameters: name -> (default, description)."""


class _Model:
    """A loaded policy with its observation layout (swapped as one object on hot reload)."""

    def __init__(self, path: str) -> None:
        if not path:
            raise PolicyError('parameter model_path is empty')
        self.policy = Policy.load(path)
        if self.policy.control_mode not in ('position', 'velocity', 'torque'):
            raise PolicyError(f'{path}: control_mode {self.policy.control_mode!r} cannot drive '
                              'a robot (expected position, velocity or torque)')
        try:
            self.layout = ObservationLayout(self.policy.input_names, self.policy.joint_names)
        except ObservationError as exc:
            raise PolicyError(f'{path}: {exc}') from None
        self.path = str(Path(path).resolve())
        self.position_mode = self.policy.control_mode == 'position'
        self.low = self.policy.action_low.astype(np.float64)
        self.high = self.policy.action_high.astype(np.float64)


class InferenceNode(LifecycleNode):
    """Serve a policy on ROS 2 (see the module docstring and README for topics/parameters)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, text) in PARAMETERS.items():
            descriptor = ParameterDescriptor(description=text, dynamic_typing=name == 'goal')
            self.declare_parameter(name, default, descriptor)
        self._params = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._lock = threading.Lock()  # one control step at a time; model swaps in between
        self._model: _Model | None = None
        self._model_error = 'not configured'
        self._io: list[Any] = []
        self._pub = None
        self._command_msg: Float64MultiArray | None = None
        self._last_command: np.ndarray | None = None
        self._hold_positions: np.ndarray | None = None
        self._state_msg: JointState | None = None
        self._state_time = 0.0  # perf_counter when the last JointState arrived
        self._state_used = True  # timer mode: the last state has been turned into a command
        self._goal: np.ndarray | None = None
        self._goal_error = ''
        self._fault = ''  # why the last step held
        self._fault_level = OK
        self._window_faults: dict[str, int] = {}  # hold reasons since the last diagnostics
        self._latency = LatencyWindow()
        self._counts = {'commands': 0, 'timeouts': 0, 'rejected': 0, 'reloads': 0}
        self._window_start = time.perf_counter()
        self._window_commands = 0
        self._apply_goal_parameter(self.get_parameter('goal').value)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(
            max(0.05, float(self.get_parameter('diagnostics_period').value)), self._publish_diag)
        if self.get_parameter('autostart').value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    # ------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Load and validate the model named by `model_path`."""
        path = str(self.get_parameter('model_path').value)
        try:
            model = _Model(path)
        except PolicyError as exc:
            self._model_error = str(exc)
            self.get_logger().error(f'cannot load model: {exc}')
            return TransitionCallbackReturn.FAILURE
        with self._lock:
            self._model = model
            self._model_error = ''
            self._last_command = None
        p = model.policy
        self.get_logger().info(
            f'loaded {model.path}: {p.obs_dim} inputs -> {p.action_dim} {p.control_mode} '
            f'commands for {", ".join(p.joint_names)} at {p.control_rate_hz:g} Hz')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Create the subscriptions, the command publisher and the control timer."""
        try:
            qos = command_qos(str(self.get_parameter('command_reliability').value))
        except ValueError as exc:
            self.get_logger().error(str(exc))
            return TransitionCallbackReturn.FAILURE
        topic = str(self.get_parameter('command_topic').value)
        self._pub = self.create_publisher(Float64MultiArray, topic, qos)
        self._command_msg = None
        on_state = bool(self.get_parameter('publish_on_state').value)
        rate = float(self.get_parameter('control_rate_hz').value) \
            or self._model.policy.control_rate_hz
        self._state_used = True
        self._io = [
            self._pub,
            self.create_subscription(JointState, str(self.get_parameter('state_topic').value),
                                     self._on_state, state_qos()),
            self.create_subscription(PointStamped, str(self.get_parameter('goal_topic').value),
                                     self._on_goal, latched_qos()),
            self.create_timer(1.0 / rate, self._on_timer),
        ]
        self._window_start, self._window_commands = time.perf_counter(), 0
        self.get_logger().info(f'active: commands on {topic} '
                               f'({"per state" if on_state else f"{rate:g} Hz"})')
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """Stop commanding: destroy the I/O entities."""
        self._release_io()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        """Release the I/O and the model."""
        self._release_io()
        with self._lock:
            self._model = None
            self._model_error = 'not configured'
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        """Release everything."""
        return self.on_cleanup(state)

    def _release_io(self) -> None:
        with self._lock:
            io, self._io, self._pub = self._io, [], None
            self._state_msg = None
        for entity in io:
            if hasattr(entity, 'cancel'):
                entity.cancel()
                self.destroy_timer(entity)
            elif hasattr(entity, 'publish'):
                self.destroy_publisher(entity)
            else:
                self.destroy_subscription(entity)

    # ------------------------------------------------------------------------- callbacks
    def _on_goal(self, msg: PointStamped) -> None:
        self._set_goal((msg.point.x, msg.point.y, msg.point.z))

    def _apply_goal_parameter(self, value: Any) -> None:
        if value is None or (isinstance(value, (list, tuple)) and len(value) == 0) \
                or (hasattr(value, '__len__') and len(value) == 0):
            return
        self._set_goal(value)

    def _set_goal(self, values: Any) -> None:
        try:
            goal = validate_goal(values)
        except ObservationError as exc:
            self._goal, self._goal_error = None, str(exc)
            self._counts['rejected'] += 1
            self.get_logger().error(f'rejected goal: {exc}', throttle_duration_sec=1.0)
            return
        self._goal, self._goal_error = goal, ''

    def _on_state(self, msg: JointState) -> None:
        now = time.perf_counter()
        self._state_msg, self._state_time, self._state_used = msg, now, False
        if self._params['publish_on_state']:
            self._guarded_step(now)

    def _on_timer(self) -> None:
        now = time.perf_counter()
        timeout = self._params['obs_timeout']
        if self._state_msg is not None and now - self._state_time > timeout:
            self._hold(f'no JointState for {now - self._state_time:.2f} s '
                       f'(obs_timeout {timeout:g} s)', timeout=True)
        elif not self._params['publish_on_state'] and self._state_msg is not None:
            self._guarded_step(None if self._state_used else self._state_time)

    def _guarded_step(self, received: float | None) -> None:
        try:
            self._step(received)
        except Exception as exc:  # noqa: BLE001 - a robot node must hold, not die
            self._hold(f'unexpected {exc.__class__.__name__}: {exc}')

    # ------------------------------------------------------------------------ control step
    def _step(self, received: float | None) -> None:
        """One control step for the newest state: observation -> policy -> command."""
        with self._lock:
            model, msg = self._model, self._state_msg
            self._state_used = True
            if model is None or self._pub is None or msg is None:
                return
            layout = model.layout
            try:
                layout.read_state(msg.name, msg.position, msg.velocity)
            except ObservationError as exc:
                self._hold_locked(model, f'rejected JointState: {exc}', rejected=True)
                return
            self._hold_positions = layout.controlled_positions()
            if layout.needs_goal and self._goal is None:
                if self._goal_error:
                    self._hold_locked(model, self._goal_error)
                else:
                    self._hold_locked(model, 'waiting for a goal (goal topic or parameter)',
                                      level=WARN)
                return
            try:
                command = model.policy.act(layout.fill(self._goal))
            except (ObservationError, PolicyError) as exc:
                self._hold_locked(model, str(exc), rejected=True)
                return
            self._fault, self._fault_level = '', OK
            self._publish_locked(model, command, received)

    def _hold(self, reason: str, timeout: bool = False) -> None:
        with self._lock:
            if self._model is not None and self._pub is not None:
                self._hold_locked(self._model, reason, timeout=timeout)

    def _hold_locked(self, model: _Model, reason: str, timeout: bool = False,
                     rejected: bool = False, level: int = ERROR) -> None:
        """Publish the hold command: last good positions (position mode) or zeros."""
        if timeout:
            self._counts['timeouts'] += 1
        if rejected:
            self._counts['rejected'] += 1
        if reason != self._fault:
            log = self.get_logger().error if level == ERROR else self.get_logger().warning
            log(f'holding: {reason}')
        self._fault, self._fault_level = reason, level
        if len(self._window_faults) < 8:
            self._window_faults.setdefault(reason, level)
        if model.position_mode:
            if self._hold_positions is None:
                return  # never had a valid state: nothing safe to command
            hold = self._hold_positions
        else:
            hold = np.zeros(model.policy.action_dim)
        self._publish_locked(model, hold, None)

    def _publish_locked(self, model: _Model, command: np.ndarray, received: float | None) -> None:
        out = np.clip(np.asarray(command, np.float64), model.low, model.high)
        max_delta = self._params['max_delta']
        if max_delta > 0 and self._last_command is not None:
            last = self._last_command
            out = np.clip(out, last - max_delta, last + max_delta)
        self._last_command = out
        if self._command_msg is None:
            self._command_msg = float64_array(out, model.policy.joint_names)
        else:
            float64_array(out, msg=self._command_msg)
        self._pub.publish(self._command_msg)
        if received is not None:
            self._latency.add(time.perf_counter() - received)
        self._counts['commands'] += 1
        self._window_commands += 1

    # ------------------------------------------------------------------------- parameters
    def _on_set_parameters(self, params: Sequence[Parameter]) -> SetParametersResult:
        """Validate parameter changes; `model_path` loads and swaps the model atomically."""
        updates: dict[str, Any] = {}
        for param in params:
            name, value = param.name, param.value
            if name == 'command_reliability':
                try:
                    reliability_policy(str(value))
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
            elif name in ('obs_timeout', 'max_delta') and (value is None or value < 0):
                return SetParametersResult(successful=False, reason=f'{name} must be >= 0')
            elif name == 'model_path' and self._model is not None:
                reason = self._reload(str(value))
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
            updates[name] = value
        for name, value in updates.items():
            if name == 'goal':
                self._apply_goal_parameter(value)
            if name in PARAMETERS:
                self._params[name] = value
        return SetParametersResult(successful=True)

    def _reload(self, path: str) -> str:
        """Load `path` and swap it in; returns '' on success or why it was rejected."""
        try:
            model = _Model(path)
        except PolicyError as exc:
            reason = f'model not reloaded, still serving {self._model.path}: {exc}'
            self.get_logger().error(reason)
            return reason
        old = self._model
        if model.policy.joint_names != old.policy.joint_names:
            reason = (f'model not reloaded: {path} controls joints {model.policy.joint_names}, '
                      f'the served model {old.policy.joint_names}')
            self.get_logger().error(reason)
            return reason
        with self._lock:  # between two control steps
            self._model = model
            self._counts['reloads'] += 1
        self.get_logger().info(f'hot-swapped model: now serving {model.path}')
        return ''

    # ------------------------------------------------------------------------ diagnostics
    def _publish_diag(self) -> None:
        now = time.perf_counter()
        elapsed = max(now - self._window_start, 1e-9)
        rate = self._window_commands / elapsed
        self._window_start, self._window_commands = now, 0
        model, state_label = self._model, self._state_machine_label()
        faults, self._window_faults = self._window_faults, {}
        p50, p99 = self._latency.percentiles_ms()
        values: dict[str, Any] = {
            'lifecycle_state': state_label,
            'model': model.path if model else str(self.get_parameter('model_path').value),
            'rate_hz': rate,
            'latency_p50_ms': p50,
            'latency_p99_ms': p99,
            **self._counts,
        }
        if model is not None:
            values['control_mode'] = model.policy.control_mode
            values['model_rate_hz'] = model.policy.control_rate_hz
        if model is None:
            level, message = ERROR, f'no model: {self._model_error}'
        elif state_label != 'active':
            level, message = WARN, f'{state_label}: not commanding'
        elif faults:
            level, message = max(faults.values()), 'holding: ' + '; '.join(faults)
        elif self._state_msg is None:
            level, message = WARN, f'waiting for {self._params["state_topic"]}'
        else:
            level, message = OK, f'serving at {rate:.1f} Hz'
        values['level'] = LEVEL_NAMES[level]
        status = diagnostic_status(f'{self.get_name()}: policy', self.get_fully_qualified_name(),
                                   level, message, values)
        self._diag_pub.publish(diagnostic_array(self.get_clock().now().to_msg(), [status]))

    def latency_ms(self) -> tuple[float, float]:
        """(p50, p99) of state received -> command published over the recent window, ms."""
        return self._latency.percentiles_ms()

    @property
    def model_error(self) -> str:
        """Why no model is loaded ('' when one is)."""
        return '' if self._model is not None else self._model_error

    @property
    def commands_published(self) -> int:
        """Commands published since start (hold commands included)."""
        return self._counts['commands']

    def _state_machine_label(self) -> str:
        if self._pub is not None:
            return 'active'
        return 'inactive' if self._model is not None else 'unconfigured'


def main(args: Sequence[str] | None = None) -> int:
    """Entry point: `inference_node --ros-args -p model_path:=policy.onnx`."""
    # One thread: callbacks never overlap, so states are answered in order and a hot reload
    # lands between two control steps (it pauses commands for the few ms the load takes).
    return run_nodes(lambda context: InferenceNode(context=context), args=args, num_threads=1)


if __name__ == '__main__':
    raise SystemExit(main())
