"""train_node over real DDS: metrics, diagnostics, preview, services, final export, signals."""

from __future__ import annotations

import math
from pathlib import Path
import signal
import time

import pytest

pytestmark = pytest.mark.integration

FAST = {'env_id': 'trpo_ros/KukaReach-v0', 'n_steps': 256, 'eval_every': 0,
        'tensorboard': False, 'checkpoint_every': 1000}


def test_metric_topics_unique_and_documented() -> None:
    from trpo_ros.core.metrics import METRICS
    from trpo_ros.nodes.train_node import METRIC_TOPICS

    assert set(METRIC_TOPICS) == set(METRICS)
    assert len(set(METRIC_TOPICS.values())) == len(METRICS)
    assert METRIC_TOPICS['rollout/ep_return_mean'] == '/trpo/ep_return_mean'
    assert METRIC_TOPICS['train/kl'] == '/trpo/kl'
    assert METRIC_TOPICS['rollout/success_rate'] == '/trpo/success_rate'
    assert METRIC_TOPICS['eval/success_rate'] == '/trpo/eval_success_rate'


def test_training_over_ros(probe, node_process, tmp_path: Path) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64, String
    from std_srvs.srv import SetBool, Trigger
    from trpo_ros.nodes.conversions import latched_qos, state_qos, status_level
    from trpo_ros.runtime import Policy
    from visualization_msgs.msg import MarkerArray

    run_dir = tmp_path / 'run'
    returns = probe.listen(Float64, '/trpo/ep_return_mean')
    kls = probe.listen(Float64, '/trpo/kl')
    iterations = probe.listen(Float64, '/trpo/iteration')
    diags = probe.listen(DiagnosticArray, '/diagnostics')
    states = probe.listen(JointState, '/joint_states', state_qos())
    markers = probe.listen(MarkerArray, '/trpo/markers')
    paths = probe.listen(String, '/trpo/policy_path', latched_qos())
    proc = node_process('trpo_ros.nodes.train_node', **FAST, total_steps=256 * 14,
                        run_dir=run_dir)
    probe.wait_for(lambda: iterations, timeout=60)
    probe.wait_for(lambda: returns and kls and states and markers, timeout=10)
    descriptions = probe.listen(String, '/robot_description', latched_qos())  # late joiner
    description = probe.wait_for(lambda: descriptions, timeout=10)[0].data
    assert '<link name="world"/>' in description and 'lbr_iiwa_link_0' in description
    assert all(math.isfinite(m.data) for m in returns + kls)
    state = states[-1]
    assert len(state.name) == 7 and len(state.position) == 7
    assert {m.ns for m in markers[-1].markers} == {'goal', 'end_effector', 'trail'}
    assert {m.header.frame_id for m in markers[-1].markers} == {'world'}
    status = probe.wait_for(lambda: [s for d in diags for s in d.status
                                     if s.name == 'trpo_ros: training'], timeout=10)[-1]
    keys = {kv.key for kv in status.values}
    assert {'train/kl', 'rollout/ep_return_mean', 'train/delta_next', 'state'} <= keys
    assert status_level(status) in (0, 1)

    # pause: no iteration starts; the preview keeps running
    assert probe.call(SetBool, '/train_node/pause', SetBool.Request(data=True)).success
    time.sleep(1.0)  # the iteration in flight ends
    paused_at, states_before = len(iterations), len(states)
    time.sleep(1.5)
    assert len(iterations) == paused_at, 'an iteration ran while paused'
    assert len(states) > states_before + 20, 'preview stopped while paused'

    reply = probe.call(Trigger, '/train_node/save_checkpoint', Trigger.Request())
    assert reply.success and Path(reply.message).is_file(), reply.message
    assert Path(reply.message).parent == (run_dir / 'checkpoints').resolve()

    assert probe.call(SetBool, '/train_node/pause', SetBool.Request(data=False)).success
    probe.wait_for(lambda: len(iterations) > paused_at, timeout=10)

    path = probe.wait_for(lambda: paths, timeout=90)[-1].data
    assert Path(path) == (run_dir / 'policy.onnx').resolve()
    policy = Policy.load(path)
    assert policy.env_id == 'trpo_ros/KukaReach-v0' and policy.action_dim == 7
    assert iterations[-1].data == 14
    reply = probe.call(Trigger, '/train_node/save_checkpoint', Trigger.Request())
    assert reply.success, reply.message  # still serving after training ended
    code, seconds = proc.stop(signal.SIGINT)
    assert code == 0, proc.log()
    assert 'Traceback' not in proc.log()


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_signal_during_update(sig: int, probe, node_process, tmp_path: Path) -> None:
    from std_msgs.msg import Float64
    from std_srvs.srv import Trigger
    from trpo_ros.core.config import load_config
    from trpo_ros.core.trainer import Trainer

    run_dir = tmp_path / 'run'
    iterations = probe.listen(Float64, '/trpo/iteration')
    proc = node_process('trpo_ros.nodes.train_node', **{**FAST, 'n_steps': 12000},
                        total_steps=10**6, run_dir=run_dir, preview_rate_hz=0.0)
    probe.wait_for(lambda: iterations, timeout=90)
    first = time.monotonic()
    probe.wait_for(lambda: len(iterations) >= 2, timeout=90)
    iteration_seconds = time.monotonic() - first  # one iteration at this machine's load
    reply = probe.call(Trigger, '/train_node/save_checkpoint', Trigger.Request(), timeout=20)
    assert reply.success, reply.message
    time.sleep(0.5)  # well inside the next iteration (12000 steps take several seconds)
    done = len(iterations)
    code, seconds = proc.stop(sig)
    assert code == 0, proc.log()
    # Relative to the iteration, not a wall-clock bound: a loaded machine slows both.
    assert seconds < 0.5 * iteration_seconds, \
        f'exit took {seconds:.2f} s ({iteration_seconds:.2f} s per iteration)'
    assert len(iterations) == done, 'the signal did not arrive during an iteration'
    assert 'Traceback' not in proc.log()
    trainer = Trainer(load_config(total_steps=10**6), run_dir, resume=True, tensorboard=False)
    try:
        assert trainer.iteration >= 1
        assert trainer.config.n_steps == 12000
    finally:
        trainer.close()


def test_bad_parameters_exit_2(node_process, tmp_path: Path) -> None:
    proc = node_process('trpo_ros.nodes.train_node', n_steps=-5, run_dir=tmp_path / 'run')
    assert proc.proc.wait(timeout=60) == 2
    log = proc.log()
    assert 'n_steps must be > 0' in log and 'Traceback' not in log, log
    proc = node_process('trpo_ros.nodes.train_node', env=str(tmp_path / 'nope.yaml'))
    assert proc.proc.wait(timeout=60) == 2
    assert 'robot YAML file not found' in proc.log() and 'Traceback' not in proc.log()


def test_pendulum_has_no_preview(tmp_path: Path) -> None:
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions
    from trpo_ros.nodes.train_node import TrainNode

    context = Context()
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = TrainNode(context=context, start=False, parameter_overrides=[
            Parameter('env', value='Pendulum-v1'), Parameter('run_dir', value=str(tmp_path)),
            Parameter('tensorboard', value=False), Parameter('hidden_sizes', value=[16, 16])])
        topics = {name for name, _ in node.get_publisher_names_and_types_by_node(
            'train_node', '/')}
        assert '/trpo/kl' in topics and '/diagnostics' in topics
        assert not topics & {'/joint_states', '/robot_description', '/trpo/markers'}
        assert node.trainer.config.hidden_sizes == (16, 16)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_launch_robot_description(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from trpo_ros.nodes.launch_support import launch_robot_description

    text = launch_robot_description(env="''", resume="''")  # launch defaults: KukaReach
    root = ET.fromstring(text.encode())
    joint = next(j for j in root.iter('joint') if j.find('parent').get('link') == 'world')
    assert joint.get('type') == 'fixed' and joint.find('child').get('link') == 'lbr_iiwa_link_0'
    (tmp_path / 'config.json').write_text('{"env_id": "trpo_ros/PandaReach-v0"}')
    assert 'panda_link0' in launch_robot_description(resume=str(tmp_path))
    assert launch_robot_description(env='Pendulum-v1') == ''
