"""
State -> command round trip through inference_node vs a bare echo node, plus a 500 Hz soak.

    .venv/bin/python bench/ros_latency.py                    # 60 s soak
    .venv/bin/python bench/ros_latency.py --soak-seconds 10  # short version

This script is the external prober: it starts inference_node (publish_on_state) and an echo
node (JointState in -> Float64MultiArray out, no policy, same runner and QoS) as separate
processes, publishes /joint_states one at a time (ping-pong) at --rate Hz, alternating the two
targets, and measures the time until the command comes back. Then it publishes at --soak-rate
Hz for --soak-seconds into inference_node, counts states left unanswered and reads the node's
RSS from /proc/<pid>/status before and after.

Targets: p50 ratio (inference / echo) <= 1.3; inference p99 <= 2 ms at 200 Hz; at 500 Hz every
state answered and RSS growth < 5 MB.
"""

from __future__ import annotations

import os

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'  # only loopback here, always

import argparse  # noqa: E402, I100
import json  # noqa: E402
from pathlib import Path  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

KUKA_JOINTS = [f'lbr_iiwa_joint_{i}' for i in range(1, 8)]


# --------------------------------------------------------------------------- target processes

def echo_main(args: list[str]) -> int:
    """Build the anchor: a node written like inference_node but without a policy."""
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from trpo_ros.nodes.conversions import as_array, command_qos, float64_array, state_qos
    from trpo_ros.nodes.runner import run_nodes

    class EchoNode(Node):
        def __init__(self, **kwargs):
            super().__init__('echo_node', **kwargs)
            self.declare_parameter('state_topic', '/joint_states')
            self.declare_parameter('command_topic', '/echo/commands')
            self._msg = None
            self._pub = self.create_publisher(
                Float64MultiArray, self.get_parameter('command_topic').value, command_qos())
            self.create_subscription(JointState, self.get_parameter('state_topic').value,
                                     self._on_state, state_qos())

        def _on_state(self, msg):
            out = as_array(msg.position)
            if self._msg is None:
                self._msg = float64_array(out)
            else:
                float64_array(out, msg=self._msg)
            self._pub.publish(self._msg)

    # The same executor as inference_node (single-threaded).
    return run_nodes(lambda context: EchoNode(context=context), args=args, num_threads=1)


def write_mlp_policy(path: Path) -> Path:
    """Build a random 20 -> 64 -> 64 -> 7 tanh MLP for the KUKA joints in the trpo_ros format."""
    import onnx
    from onnx import helper, numpy_helper, TensorProto

    inputs = ([f'joint_pos/{j}' for j in KUKA_JOINTS] + [f'joint_vel/{j}' for j in KUKA_JOINTS]
              + ['goal/x', 'goal/y', 'goal/z'])
    rng = np.random.default_rng(0)
    sizes = [len(inputs), 64, 64, 7]
    nodes, inits, x = [], [], 'obs'
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        inits += [numpy_helper.from_array(rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out))
                                          .astype(np.float32), f'W{i}'),
                  numpy_helper.from_array(np.zeros(n_out, np.float32), f'b{i}')]
        nodes.append(helper.make_node('Gemm', [x, f'W{i}', f'b{i}'], [f'z{i}']))
        x = f'z{i}'
        if i < len(sizes) - 2:
            nodes.append(helper.make_node('Tanh', [x], [f'h{i}']))
            x = f'h{i}'
    nodes.append(helper.make_node('Identity', [x], ['action']))
    graph = helper.make_graph(
        nodes, 'mlp', [helper.make_tensor_value_info('obs', TensorProto.FLOAT, ['b', 17])],
        [helper.make_tensor_value_info('action', TensorProto.FLOAT, ['b', 7])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    meta = {'trpo_ros_format': 1, 'env_id': 'bench/Mlp-v0', 'input_names': inputs,
            'joint_names': KUKA_JOINTS, 'action_low': [-3.0] * 7, 'action_high': [3.0] * 7,
            'control_mode': 'position', 'control_rate_hz': 200.0}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))
    return path


def start(module_args: list[str], params: dict[str, str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, *module_args, '--ros-args']
    for key, value in params.items():
        cmd += ['-p', f'{key}:={value}']
    return subprocess.Popen(cmd, stdout=open(log, 'wb'), stderr=subprocess.STDOUT)  # noqa: SIM115


def rss_kb(pid: int) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    return -1


# --------------------------------------------------------------------------------- the prober

class Prober:
    """
    Publishes JointStates to each target and timestamps the commands coming back.

    Everything runs in the calling thread (a SingleThreadedExecutor spun between publishes),
    so no thread hand-off adds to the measured round trip.
    """

    def __init__(self, targets: dict[str, tuple[str, str]]) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        from trpo_ros.nodes.conversions import command_qos, state_qos

        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node('latency_prober', context=self.context)
        self.pubs, self.received, self.arrival = {}, {}, {}
        for name, (state_topic, command_topic) in targets.items():
            self.pubs[name] = self.node.create_publisher(JointState, state_topic, state_qos())
            self.received[name] = 0
            # deep queue: a slow prober must not be mistaken for unanswered states
            self.node.create_subscription(Float64MultiArray, command_topic,
                                          self._callback(name), command_qos(depth=1000))
        self.msg = JointState(name=KUKA_JOINTS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _callback(self, name):
        def on_command(_msg):
            self.arrival[name] = time.perf_counter()
            self.received[name] += 1
        return on_command

    def spin_until(self, deadline: float, name: str | None = None, count: int = 0) -> None:
        """Process callbacks until `deadline` (or until target `name` has `count` replies)."""
        while True:
            if name is not None and self.received[name] >= count:
                return
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self.executor.spin_once(timeout_sec=left)

    def send(self, name: str, rng: np.random.Generator) -> float:
        self.msg.position = rng.uniform(-1, 1, 7).tolist()
        self.msg.velocity = rng.uniform(-1, 1, 7).tolist()
        self.msg.header.stamp = self.node.get_clock().now().to_msg()
        t = time.perf_counter()
        self.pubs[name].publish(self.msg)
        return t

    def round_trip(self, name: str, rng: np.random.Generator, timeout: float = 0.1) -> float:
        expected = self.received[name] + 1
        t = self.send(name, rng)
        self.spin_until(t + timeout, name, expected)
        if self.received[name] < expected:
            return float('nan')
        return self.arrival[name] - t

    def wait_ready(self, rng: np.random.Generator, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for name in self.pubs:
            while not np.isfinite(self.round_trip(name, rng, 0.2)):
                if time.monotonic() > deadline:
                    raise SystemExit(f'target {name} never answered')
        self.spin_until(time.perf_counter() + 0.2)  # drain late replies
        for name in self.pubs:
            self.received[name] = 0

    def close(self) -> None:
        import rclpy

        rclpy.shutdown(context=self.context)


def paced(rate: float, seconds: float):
    """Yield at `rate` Hz (absolute deadlines, no drift) for `seconds`."""
    period, start = 1.0 / rate, time.perf_counter()
    k = 0
    while True:
        deadline = start + k * period
        if deadline - start >= seconds:
            return
        yield k, deadline
        k += 1


def stats_ms(samples: list[float]) -> dict[str, float]:
    x = np.asarray(samples) * 1e3
    ok = x[np.isfinite(x)]
    return {'n': int(x.size), 'lost': int(x.size - ok.size),
            'p50_ms': float(np.percentile(ok, 50)), 'p99_ms': float(np.percentile(ok, 99)),
            'max_ms': float(ok.max())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', help='policy .onnx (default: a random 20-64-64-7 MLP)')
    parser.add_argument('--rate', type=float, default=200.0, help='ping-pong rate (Hz)')
    parser.add_argument('--samples', type=int, default=2000, help='round trips per target')
    parser.add_argument('--soak-rate', type=float, default=500.0)
    parser.add_argument('--soak-seconds', type=float, default=60.0)
    parser.add_argument('--domain', type=int, default=int(os.environ.get('ROS_DOMAIN_ID', 180)))
    parser.add_argument('--echo-node', action='store_true', help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.echo_node:
        return echo_main(rest)
    os.environ['ROS_DOMAIN_ID'] = str(args.domain)
    os.environ.setdefault('OMP_NUM_THREADS', '1')

    tmp = Path(tempfile.mkdtemp(prefix='ros_latency_'))
    model = Path(args.model) if args.model else write_mlp_policy(tmp / 'mlp.onnx')
    inference = start(['-m', 'trpo_ros.nodes.inference_node'], {
        'model_path': str(model), 'publish_on_state': 'true', 'goal': '[0.5,0.0,0.5]',
        'state_topic': '/bench/inference/joint_states',
        'command_topic': '/bench/inference/commands', 'obs_timeout': '5.0'},
        tmp / 'inference.log')
    echo = start([str(Path(__file__).resolve()), '--echo-node'], {
        'state_topic': '/bench/echo/joint_states', 'command_topic': '/bench/echo/commands'},
        tmp / 'echo.log')
    prober = Prober({'inference': ('/bench/inference/joint_states',
                                   '/bench/inference/commands'),
                     'echo': ('/bench/echo/joint_states', '/bench/echo/commands')})
    rng = np.random.default_rng(0)
    try:
        prober.wait_ready(rng)
        for _ in range(200):  # warm-up
            prober.round_trip('inference', rng)
            prober.round_trip('echo', rng)
        samples: dict[str, list[float]] = {'inference': [], 'echo': []}
        seconds = 2 * args.samples / args.rate
        for k, deadline in paced(args.rate, seconds):
            prober.spin_until(deadline)
            name = 'inference' if k % 2 == 0 else 'echo'
            samples[name].append(prober.round_trip(name, rng, timeout=0.9 / args.rate))
        inf, ech = stats_ms(samples['inference']), stats_ms(samples['echo'])
        ratio = inf['p50_ms'] / ech['p50_ms']
        print(f'round trip state -> command, {args.rate:g} Hz ping-pong, '
              f'{args.samples} samples each (model {model.name})')
        for name, s in (('inference_node', inf), ('echo_node', ech)):
            print(f'  {name:15s} p50 {s["p50_ms"]:.3f} ms  p99 {s["p99_ms"]:.3f} ms  '
                  f'max {s["max_ms"]:.2f} ms  lost {s["lost"]}')
        print(f'  p50 ratio inference/echo {ratio:.2f}  (target <= 1.3: '
              f'{"OK" if ratio <= 1.3 else "MISSED"}); inference p99 <= 2 ms: '
              f'{"OK" if inf["p99_ms"] <= 2.0 else "MISSED"}')

        # Soak: open loop at soak-rate into inference_node.
        prober.spin_until(time.perf_counter() + 0.5)
        base = prober.received['inference']
        rss0 = rss_kb(inference.pid)
        sent = 0
        for _, deadline in paced(args.soak_rate, args.soak_seconds):
            prober.spin_until(deadline)
            prober.send('inference', rng)
            sent += 1
        prober.spin_until(time.perf_counter() + 0.5)
        answered = prober.received['inference'] - base
        rss1 = rss_kb(inference.pid)
        growth_mb = (rss1 - rss0) / 1024
        print(f'soak {args.soak_rate:g} Hz for {args.soak_seconds:g} s: sent {sent}, '
              f'answered {answered}, unanswered {sent - answered}; RSS {rss0 / 1024:.1f} -> '
              f'{rss1 / 1024:.1f} MB (growth {growth_mb:+.2f} MB)  (targets: 0 unanswered: '
              f'{"OK" if sent == answered else "MISSED"}, growth < 5 MB: '
              f'{"OK" if growth_mb < 5 else "MISSED"})')
        print(json.dumps({'inference': inf, 'echo': ech, 'p50_ratio': ratio,
                          'soak': {'rate_hz': args.soak_rate, 'seconds': args.soak_seconds,
                                   'sent': sent, 'answered': answered,
                                   'rss_growth_mb': growth_mb}}))
    finally:
        prober.close()
        for proc in (inference, echo):
            proc.send_signal(signal.SIGINT)
        for proc in (inference, echo):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
