"""
Lifecycle node serving an exported ONNX policy: /joint_states + goal (+ object) -> commands.

A thin adapter: :class:`trpo_ros.serving.PolicyServer` decides every command (fail closed,
hold on a bad input, URDF limits, the safety modes of :mod:`trpo_ros.safety_modes`);
:mod:`trpo_ros.nodes.mode_interface` maps the modes' services and topics and
:mod:`trpo_ros.nodes.inference_support` holds the parameters. Configure loads the model,
activate starts the I/O, `autostart` does both; setting `model_path` hot-swaps the model
between two control steps (a bad file is rejected, the old model keeps serving). No exception
in a callback ends the node (:mod:`trpo_ros.nodes.guard`). Never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped, PoseStamped
import numpy as np
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.logging import LoggingSeverity
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from trpo_ros.nodes import inference_support as support
from trpo_ros.nodes.conversions import (
    command_qos,
    destroy_entities,
    diagnostic_array,
    diagnostic_status,
    ERROR,
    float64_array,
    goal_from_msg,
    latched_qos,
    LatencyWindow,
    LEVEL_NAMES,
    object_pose_from_msg,
    object_qos,
    state_qos,
    subscribe_any_durability,
    WARN,
)
from trpo_ros.nodes.guard import Guard, SafeLog
from trpo_ros.nodes.inference_support import PARAMETERS
from trpo_ros.nodes.mode_interface import ModeInterface
from trpo_ros.nodes.runner import run_nodes
from trpo_ros.robot.observation import validate_goal
from trpo_ros.runtime import PolicyError
from trpo_ros.serving import PolicyServer, ServedModel, Step

NODE_NAME = 'inference_node'

_SEVERITY = {WARN: LoggingSeverity.WARN, ERROR: LoggingSeverity.ERROR}


class InferenceNode(LifecycleNode):
    """Serve a policy on ROS 2 (see the module docstring and README for topics/parameters)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.log = SafeLog(self.get_logger())
        self.guard = Guard(self.log)
        for name, (default, text) in PARAMETERS.items():
            descriptor = ParameterDescriptor(description=text, dynamic_typing=name == 'goal')
            self.declare_parameter(name, default, descriptor)
        self._params = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._lock = threading.Lock()  # one control step at a time; model swaps in between
        self._server = PolicyServer()  # the model, goal, limits, modes and hold (ROS-free)
        self._server.modes = support.safety_modes(self._params)
        self._mode_io = ModeInterface(self, self.guard, self.log, self._lock, self._server)
        self._mode_io.publish_mode()  # shown before the robot's first state
        support.apply_to_server(self._server, self._params, PARAMETERS)
        self._model_error, self._fault = 'not configured', ''  # no model; why the last step held
        self._io: list[Any] = []
        self._pub = None
        self._command_msg: Float64MultiArray | None = None
        self._state_msg: JointState | None = None
        self._state_time = 0.0  # perf_counter when the last JointState arrived
        self._state_used = True  # timer mode: the last state has been turned into a command
        self._window_faults: dict[str, int] = {}  # hold reasons since the last diagnostics
        self._latency = LatencyWindow()
        self._counts = {'commands': 0, 'timeouts': 0, 'rejected': 0, 'reloads': 0}
        self._window_start, self._window_commands = time.perf_counter(), 0
        self._apply_goal_parameter(self.get_parameter('goal').value)
        self.add_on_set_parameters_callback(self.guard.wrap(
            'parameters', self._on_set_parameters,
            lambda why, _: SetParametersResult(successful=False, reason=why)))
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(
            max(0.05, float(self.get_parameter('diagnostics_period').value)),
            self.guard.wrap('diagnostics', self._publish_diag))
        # Goal and description inputs live as long as the node: a re-activated node must not
        # take a latched message again over a newer one from a volatile publisher.
        subscribe_any_durability(self, PointStamped, str(self.get_parameter('goal_topic').value),
                                 self.guard.wrap('goal', self._on_goal))
        topic = str(self.get_parameter('robot_description_topic').value)
        if topic:
            self.create_subscription(String, topic, self.guard.wrap(
                'robot_description', self._on_description), latched_qos())
        topic = str(self.get_parameter('object_topic').value)
        if topic:
            self.create_subscription(PoseStamped, topic, self.guard.wrap(
                'object', self._on_object), object_qos())
        if self.get_parameter('autostart').value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    # ------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Load and validate the model named by `model_path`."""
        return self._transition('configure', self._configure)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Create the subscriptions, the command publisher and the control timer."""
        return self._transition('activate', self._activate)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """Stop commanding: destroy the I/O entities."""
        return self._transition('deactivate', self._release_io)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        """Release the I/O and the model."""
        return self._transition('cleanup', self._cleanup)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        """Release everything."""
        return self._transition('shutdown', self._cleanup)

    def _transition(self, name: str, work: Any) -> TransitionCallbackReturn:
        """Run a transition; False or an exception (contained) fails it, the node stays."""
        try:
            ok = work() is not False
        except Exception as exc:  # noqa: BLE001 - a failed transition, not a dead node
            self.guard.record(f'lifecycle {name}', exc)
            ok = False
        return TransitionCallbackReturn.SUCCESS if ok else TransitionCallbackReturn.FAILURE

    def _configure(self) -> bool:
        path = str(self.get_parameter('model_path').value)
        try:
            model = ServedModel(path)
        except PolicyError as exc:
            self._model_error = str(exc)
            self.log.error(f'cannot load model: {exc}')
            return False
        with self._lock:
            self._model_error = ''
            self._refuse_if(self._server.configure(model))
        p = model.policy
        self.log.info(
            f'loaded {model.path}: {p.obs_dim} inputs -> {p.action_dim} {p.control_mode} '
            f'commands for {", ".join(p.joint_names)} at {p.control_rate_hz:g} Hz')
        return True

    def _activate(self) -> bool:
        try:
            qos = command_qos(str(self.get_parameter('command_reliability').value))
        except ValueError as exc:
            self.log.error(str(exc))
            return False
        model = self._model
        topic = str(self.get_parameter('command_topic').value)
        on_state = bool(self.get_parameter('publish_on_state').value)
        rate = float(self.get_parameter('control_rate_hz').value) \
            or model.policy.control_rate_hz
        if rate <= 0:
            self.log.error('control_rate_hz must be > 0 (the model does not say its rate)')
            return False
        trained = model.policy.control_rate_hz
        if not on_state and trained > 0 and abs(rate - trained) > 0.1 * trained:
            self.log.warning(f'control rate {rate:g} Hz differs from the {trained:g} Hz the '
                             'model was trained at by more than 10 %')
        self._command_msg = None
        self._state_used = True
        self._server.activate()  # fail closed again until a complete JointState
        self._server.period = 1.0 / (model.policy.control_rate_hz if on_state else rate)
        self._pub = self.create_publisher(Float64MultiArray, topic, qos)
        self._io = [
            self._pub,
            self.create_subscription(JointState, str(self.get_parameter('state_topic').value),
                                     self.guard.wrap('joint_states', self._on_state,
                                                     self._hold_on_error), state_qos()),
            self.create_timer(1.0 / rate, self.guard.wrap('control timer', self._on_timer,
                                                          self._hold_on_error)),
        ]
        self._window_start, self._window_commands = time.perf_counter(), 0
        self.log.info(f'active: commands on {topic} '
                      f'({"per state" if on_state else f"{rate:g} Hz"})')
        return True

    def _cleanup(self) -> None:
        self._release_io()
        with self._lock:
            self._server.model = None
            self._model_error = 'not configured'

    def _release_io(self) -> None:
        with self._lock:
            io, self._io, self._pub = self._io, [], None
            self._state_msg = None
            self._server.modes.restart()  # the next activation starts in start_mode
        destroy_entities(self, io)

    # ------------------------------------------------------------------------- callbacks
    def _on_goal(self, msg: PointStamped) -> None:
        frame = str(self._params['base_frame'])
        self._take('goal', lambda: self._server.set_goal(lambda: goal_from_msg(msg, frame)))

    def _on_object(self, msg: PoseStamped) -> None:
        frame, now = str(self._params['base_frame']), time.monotonic()
        self._take('object', lambda: self._server.set_object_pose(
            lambda: object_pose_from_msg(msg, frame), now))

    def _apply_goal_parameter(self, value: Any) -> None:
        if value is not None and not (hasattr(value, '__len__') and len(value) == 0):
            self._take('goal', lambda: self._server.set_goal(lambda: validate_goal(value)))

    def _take(self, key: str, set_input: Any) -> None:
        """Hand an input to the server (locked); count and log it when rejected."""
        with self._lock:
            error = set_input()
        if error:
            self._counts['rejected'] += 1
            self.log.error(error, throttle_sec=1.0, key=key)

    def _on_description(self, msg: String) -> None:
        with self._lock:
            self._refuse_if(self._server.set_description(msg.data))

    def _refuse_if(self, why: str) -> None:
        if why:
            self.log.error(f'not serving: {why} (parameter accept_tighter_limits overrides)')

    def _on_state(self, msg: JointState) -> None:
        now = time.perf_counter()
        self._state_msg, self._state_time, self._state_used = msg, now, False
        if self._params['publish_on_state']:
            self._step(now)

    def _on_timer(self) -> None:
        now = time.perf_counter()
        timeout = self._params['obs_timeout']
        if self._state_msg is not None and now - self._state_time > timeout:
            self._hold(f'no JointState for {now - self._state_time:.2f} s '
                       f'(obs_timeout {timeout:g} s)', timeout=True)
        elif not self._params['publish_on_state'] and self._state_msg is not None:
            self._step(None if self._state_used else self._state_time)

    # ------------------------------------------------------------------------ control step
    def _step(self, received: float | None) -> None:
        """One control step for the newest state: observation -> policy -> command."""
        with self._lock:
            msg = self._state_msg
            self._state_used = True
            if self._server.model is None or self._pub is None or msg is None:
                return
            self._send(self._server.step(msg.name, msg.position, msg.velocity,
                                         self._params['max_delta'], time.monotonic()), received)

    def _hold_on_error(self, text: str, _args: tuple) -> None:
        self._hold(f'unexpected {text}')

    def _hold(self, reason: str, timeout: bool = False) -> None:
        with self._lock:
            if self._server.model is not None and self._pub is not None:
                self._counts['timeouts'] += int(timeout)
                self._send(self._server.hold(reason, self._params['max_delta']), None)

    def _send(self, step: Step, received: float | None) -> None:
        """Publish a step's command (if any); log and count its fault (lock held)."""
        self._counts['rejected'] += int(step.rejected)
        if step.fault:
            level = ERROR if step.severity == 'error' else WARN
            if step.fault != self._fault:
                self.log.log(_SEVERITY[level], f'holding: {step.fault}', throttle_sec=1.0,
                             key=step.fault[:40])
            if len(self._window_faults) < 8:
                self._window_faults.setdefault(step.fault, level)
        self._fault = step.fault
        if step.command is not None:
            self._publish_locked(step.command, received)
        self._mode_io.publish_preview(step.preview, self._server.model.policy.joint_names)
        self._mode_io.publish_mode()

    def _publish_locked(self, out: np.ndarray, received: float | None) -> None:
        if self._command_msg is None:
            self._command_msg = float64_array(out, self._server.model.policy.joint_names)
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
            reason = support.check_change(name, value, {**self._params, **updates})
            if not reason and name == 'model_path' and self._model is not None:
                reason = self._reload(str(value))
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            updates[name] = value
        for name, value in updates.items():
            if name == 'goal':
                self._apply_goal_parameter(value)
            if name in PARAMETERS:
                self._params[name] = value
        with self._lock:
            self._refuse_if(support.apply_to_server(self._server, self._params, updates))
        return SetParametersResult(successful=True)

    def _reload(self, path: str) -> str:
        """Load `path` and swap it in; returns '' on success or why it was rejected."""
        try:
            model = ServedModel(path)
        except PolicyError as exc:
            reason = f'model not reloaded, still serving {self._model.path}: {exc}'
            self.log.error(reason)
            return reason
        try:
            with self._lock:  # between two control steps
                self._refuse_if(self._server.swap(model))
        except PolicyError as exc:  # other joints: the swap says why
            self.log.error(str(exc))
            return str(exc)
        self._counts['reloads'] += 1
        self.log.info(f'hot-swapped model: now serving {model.path}')
        return ''

    # ------------------------------------------------------------------------ diagnostics
    def _publish_diag(self) -> None:
        now = time.perf_counter()
        rate = self._window_commands / max(now - self._window_start, 1e-9)
        self._window_start, self._window_commands = now, 0
        model, state_label = self._model, self._state_machine_label()
        faults, self._window_faults = self._window_faults, {}
        contained = self.guard.take_recent()
        p50, p99 = self._latency.percentiles_ms()
        values: dict[str, Any] = {
            'lifecycle_state': state_label,
            'model': model.path if model else str(self.get_parameter('model_path').value),
            'rate_hz': rate, 'latency_p50_ms': p50, 'latency_p99_ms': p99, **self._counts,
            'callback_errors': self.guard.errors, **self._mode_io.diagnostics()}
        if model is not None:
            values.update(control_mode=model.policy.control_mode,
                          model_rate_hz=model.policy.control_rate_hz)
        level, message = support.status_of(
            contained=contained, model_error=self._model_error if model is None else '',
            lifecycle=state_label, modes=self._server.modes, faults=faults,
            fail_closed=self._server.hold_positions is None,
            waiting_for='' if self._state_msg is not None else self._params['state_topic'],
            rate=rate)
        values['level'] = LEVEL_NAMES[level]
        status = diagnostic_status(f'{self.get_name()}: policy', self.get_fully_qualified_name(),
                                   level, message[:2000], values)
        self._diag_pub.publish(diagnostic_array(self.get_clock().now().to_msg(), [status]))

    def latency_ms(self) -> tuple[float, float]:
        """(p50, p99) of state received -> command published over the recent window, ms."""
        return self._latency.percentiles_ms()

    @property
    def _model(self) -> ServedModel | None:
        return self._server.model

    @property
    def model_error(self) -> str:
        """Why no model is loaded ('' when one is)."""
        return '' if self._model is not None else self._model_error

    @property
    def commands_published(self) -> int:
        """Commands published since start (hold commands included)."""
        return self._counts['commands']

    def _state_machine_label(self) -> str:
        return 'active' if self._pub is not None else \
            'inactive' if self._model is not None else 'unconfigured'


def main(args: Sequence[str] | None = None) -> int:
    """Entry point: `inference_node --ros-args -p model_path:=policy.onnx`."""
    # One thread: callbacks never overlap, so states are answered in order and a hot reload
    # lands between two control steps (it pauses commands for the few ms the load takes).
    return run_nodes(lambda context: InferenceNode(context=context), args=args, num_threads=1,
                     name=NODE_NAME)


if __name__ == '__main__':
    raise SystemExit(main())
