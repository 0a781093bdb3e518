"""Node test helpers: hand-made ONNX policies, an in-process probe node, node processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

PYTHON = sys.executable
JOINTS = ['a1', 'a2', 'a3']
LINEAR_BOUND = 2.0  # write_linear_policy's commands lie in [-LINEAR_BOUND, LINEAR_BOUND]


def train_run(run_dir: Path, **config: Any) -> Path:
    """Train a run with the given config fields and export it (run_dir/policy.onnx)."""
    from trpo_ros.core.config import load_config
    from trpo_ros.core.trainer import Trainer
    from trpo_ros.export import export_onnx

    trainer = Trainer(load_config(**config), run_dir, tensorboard=False, exporter=export_onnx)
    try:
        trainer.train()
    finally:
        trainer.close()
    assert (run_dir / 'policy.onnx').is_file()
    return run_dir


def write_linear_policy(path: str | Path, joint_names: Sequence[str] = JOINTS,
                        control_mode: str = 'position', rate_hz: float = 50.0,
                        seed: int = 0, with_goal: bool = True,
                        weight_scale: float = 0.7, with_object: bool = False) -> Path:
    """Write a trpo_ros-format ONNX policy: action = center + half * tanh(W obs + b)."""
    import onnx
    from onnx import helper, numpy_helper, TensorProto

    joints = list(joint_names)
    inputs = [f'joint_pos/{j}' for j in joints] + [f'joint_vel/{j}' for j in joints]
    if with_object:  # a push policy's object pose, between the joints and the goal
        inputs += [f'object_pos/{a}' for a in 'xyz'] + [f'object_quat/{a}' for a in 'xyzw']
    if with_goal:
        inputs += ['goal/x', 'goal/y', 'goal/z']
    rng = np.random.default_rng(seed)
    n_in, n_out = len(inputs), len(joints)
    low = np.full(n_out, -LINEAR_BOUND, np.float32)
    high = np.full(n_out, LINEAR_BOUND, np.float32)
    weights = [
        numpy_helper.from_array(
            rng.normal(0, weight_scale, (n_in, n_out)).astype(np.float32), 'W'),
        numpy_helper.from_array(rng.normal(0, 0.3, n_out).astype(np.float32), 'b'),
        numpy_helper.from_array((high - low) / 2, 'half'),
        numpy_helper.from_array((high + low) / 2, 'center'),
    ]
    nodes = [
        helper.make_node('Gemm', ['obs', 'W', 'b'], ['z']),
        helper.make_node('Tanh', ['z'], ['t']),
        helper.make_node('Mul', ['t', 'half'], ['s']),
        helper.make_node('Add', ['s', 'center'], ['action']),
    ]
    graph = helper.make_graph(
        nodes, 'linear_policy',
        [helper.make_tensor_value_info('obs', TensorProto.FLOAT, ['batch', n_in])],
        [helper.make_tensor_value_info('action', TensorProto.FLOAT, ['batch', n_out])],
        initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    meta = {
        'trpo_ros_format': 1, 'trpo_ros_version': '0.1.0', 'env_id': 'test/Linear-v0',
        'input_names': inputs, 'obs_names': inputs, 'joint_names': joints,
        'action_low': low.tolist(), 'action_high': high.tolist(),
        'control_mode': control_mode, 'env_control_mode': control_mode,
        'control_rate_hz': rate_hz, 'ee_link': None, 'config': {}, 'success_threshold': None,
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def seen_since(entries: Sequence[tuple[float, Any]], since: float,
               match: Callable[[Any], bool]) -> bool:
    """
    Return True if an entry `(t, x)` received at `t >= since` has `match(x)`.

    Newest first, stopping at `since`: a predicate of `Probe.wait_for` runs under the probe's
    lock, so scanning everything received so far would delay its callbacks.
    """
    for t, x in reversed(entries):
        if t < since:
            return False
        if match(x):
            return True
    return False


class Stream:
    """Calls `publish(content)` every `period` s from a thread while `content` is not None."""

    def __init__(self, publish: Callable[[Any], None], period: float) -> None:
        self.publish, self.period = publish, period
        self.content: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            content = self.content
            if content is not None:
                self.publish(content)
            time.sleep(self.period)

    def close(self) -> None:
        """Stop publishing."""
        self._stop.set()
        self._thread.join(timeout=2.0)


class Probe:
    """An in-process rclpy node (own context, executor thread) that plays the robot side."""

    def __init__(self, command_topic: str = '/forward_position_controller/commands') -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PointStamped
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        from trpo_ros.nodes.conversions import command_qos, latched_qos, state_qos

        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node('probe', context=self.context)
        self.lock = threading.Lock()
        self.commands: list[tuple[float, np.ndarray]] = []
        self.diagnostics: list[tuple[float, Any]] = []
        self.state_pub = self.node.create_publisher(JointState, '/joint_states', state_qos())
        self.goal_pub = self.node.create_publisher(PointStamped, '/trpo/goal', latched_qos())
        self.node.create_subscription(Float64MultiArray, command_topic, self._on_command,
                                      command_qos('reliable'))
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        # Not a MultiThreadedExecutor: in this process its spinning held the GIL for up to
        # 0.56 s at a time (61 stalls > 60 ms in 40 s; none with this one), which stopped the
        # Streams' publishing and failed the timed waits.
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self._JointState = JointState
        self._PointStamped = PointStamped

    def _spin(self) -> None:
        from trpo_ros.nodes.runner import spin_until

        spin_until(self.executor, lambda: False, poll=0.05)

    def _on_command(self, msg: Any) -> None:
        with self.lock:
            self.commands.append((time.monotonic(), np.array(msg.data)))

    def _on_diag(self, msg: Any) -> None:
        with self.lock:
            for status in msg.status:
                self.diagnostics.append((time.monotonic(), status))

    def listen(self, msg_type: Any, topic: str, qos: Any = 10) -> list[Any]:
        """Subscribe to `topic`; returns the list the messages are appended to."""
        received: list[Any] = []

        def store(msg: Any) -> None:
            with self.lock:
                received.append(msg)

        self.node.create_subscription(msg_type, topic, store, qos)
        return received

    def publisher(self, msg_type: Any, topic: str, qos: Any = 10) -> Any:
        """Create a publisher on the probe node."""
        return self.node.create_publisher(msg_type, topic, qos)

    def publish_state(self, names: Sequence[str], position: Sequence[float],
                      velocity: Sequence[float] | None = None) -> None:
        """Publish one JointState."""
        msg = self._JointState()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.name = list(names)
        msg.position = [float(v) for v in position]
        msg.velocity = [float(v) for v in (velocity if velocity is not None else
                                           [0.0] * len(names))]
        self.state_pub.publish(msg)

    def publish_goal(self, xyz: Sequence[float]) -> None:
        """Publish a PointStamped goal in frame world."""
        msg = self._PointStamped()
        msg.header.frame_id = 'world'
        msg.point.x, msg.point.y, msg.point.z = (float(v) for v in xyz)
        self.goal_pub.publish(msg)

    def clear(self) -> None:
        """Forget received commands and diagnostics."""
        with self.lock:
            self.commands.clear()
            self.diagnostics.clear()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0,
                 period: float = 0.01) -> Any:
        """Poll `predicate()` until truthy (returned) or raise AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                value = predicate()
            if isinstance(value, np.ndarray) or value:
                return value
            time.sleep(period)
        raise AssertionError(f'timed out after {timeout} s waiting for {predicate}')

    def wait_subscribers(self, publisher: Any, timeout: float = 10.0) -> None:
        """Wait until `publisher` is matched by a subscription."""
        deadline = time.monotonic() + timeout
        while publisher.get_subscription_count() == 0:
            assert time.monotonic() < deadline, 'no subscriber matched'
            time.sleep(0.02)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        """Call a service and return the response (AssertionError on timeout)."""
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f'no service {name}'
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done():
                assert time.monotonic() < deadline, f'service {name} timed out'
                time.sleep(0.01)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, node: str, **values: Any) -> list[Any]:
        """Set parameters of a remote node; returns the SetParametersResult list."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request()
        request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        return list(self.call(SetParameters, f'/{node}/set_parameters', request).results)

    def change_state(self, node: str, transition_id: int) -> bool:
        """Trigger a lifecycle transition of a remote node."""
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        request.transition.id = transition_id
        return bool(self.call(ChangeState, f'/{node}/change_state', request).success)

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        import rclpy

        rclpy.shutdown(context=self.context)
        self._thread.join(timeout=2.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()


def ros_args(params: dict[str, Any]) -> list[str]:
    """`--ros-args -p k:=v ...` for a parameter dict (lists and bools as YAML)."""
    out = ['--ros-args']
    for key, value in params.items():
        if isinstance(value, bool):
            text = 'true' if value else 'false'
        elif isinstance(value, (list, tuple)):
            text = '[' + ','.join(repr(float(v)) for v in value) + ']'
        else:
            text = str(value)
        out += ['-p', f'{key}:={text}']
    return out


class NodeProcess:
    """A node started as `python -m <module> --ros-args ...` (output in a log file)."""

    def __init__(self, module: str, params: dict[str, Any], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, 'wb')  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        self.proc = subprocess.Popen([PYTHON, '-m', module, *ros_args(params)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors='replace')

    def alive(self) -> bool:
        """Return True while the process runs."""
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 5.0) -> tuple[int | None, float]:
        """Send `sig`, wait; returns (exit code or None if killed, seconds to exit)."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code: int | None = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        self._log.close()
        return code, time.monotonic() - start


def stop_machine_node(proc: NodeProcess, probe: Probe, streams: Sequence[Stream],
                      folder: Path) -> None:
    """Tear a node state machine down: streams, the node (it must exit 0), probe, files."""
    for stream in streams:
        stream.close()
    alive = proc.alive()
    code, _ = proc.stop(signal.SIGINT)
    probe.close()
    log = proc.log()
    shutil.rmtree(folder, ignore_errors=True)
    assert alive and code == 0, log[-3000:]


def run_stateful(machine: type, examples: int, steps: int, steps_run: list[int],
                 minimum: int = 200) -> None:
    """
    Run a node state machine: `examples` runs of `steps` rules, each on a fresh node process.

    Derandomized when CI=true (same sequences in every CI run). `steps_run[0]` is counted by
    the machine's invariant; at least `minimum` rule steps must have run.
    """
    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import run_state_machine_as_test

    steps_run[0] = 0
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        derandomize=os.environ.get('CI', '') == 'true',
        suppress_health_check=list(HealthCheck)))
    assert steps_run[0] >= minimum, f'only {steps_run[0]} rule steps ran'


ACTIVE_AT_ONCE = {'start_mode': 'active', 'handover_rate': 1e6, 'estop_after_faults': 0,
                  'estop_limit_margin': -1.0, 'estop_command_step': 0.0}
"""inference_node parameters of the per-message fault tests: active from the start, no
hand-over ramp, no automatic e-stop (the safety modes have their own tests)."""
