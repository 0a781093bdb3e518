"""
Test trpo_ros.export.

One ONNX graph (FK, normalizer, actor, scaling, delta -> absolute), parity with the torch
reference, metadata, and atomic verified writes.
"""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from trpo_ros import export
from trpo_ros.core.checkpoint import PolicyBundle, save_checkpoint
from trpo_ros.core.config import TRPOConfig
from trpo_ros.core.policy import PolicyModel
from trpo_ros.export import export_onnx, ExportError, reference_action
from trpo_ros.robot import kinematics
from trpo_ros.runtime import Policy

pytestmark = pytest.mark.unit


def make_bundle(info, obs_dim, low, high, env_id, seed=0, weight_std=0.3):
    torch.manual_seed(seed)
    config = TRPOConfig(env_id=env_id)
    policy = PolicyModel.build(config, obs_dim, np.asarray(low), np.asarray(high))
    norm, actor = policy.normalizer, policy.actor
    for p in actor.parameters():
        p.data.normal_(0.0, weight_std)
    rng = np.random.default_rng(seed)
    norm.merge(torch.tensor(rng.normal(0.0, 0.5, obs_dim)),
               torch.tensor(rng.uniform(0.05, 3.0, obs_dim)), 1000)
    return PolicyBundle(config, policy.eval(), info, 7, 1234)


@pytest.fixture(scope='module')
def pendulum(tmp_path_factory):
    bundle = make_bundle({}, 3, [-2.0], [2.0], 'Pendulum-v1')
    path = export_onnx(bundle, tmp_path_factory.mktemp('pendulum') / 'policy.onnx')
    return bundle, path


@pytest.fixture(scope='module')
def kuka_env():
    gymnasium = pytest.importorskip('gymnasium')
    pytest.importorskip('trpo_ros.sim')
    env = gymnasium.make('trpo_ros/KukaReach-v0').unwrapped
    yield env
    env.close()


@pytest.fixture(scope='module')
def kuka(kuka_env, tmp_path_factory):
    info = kuka_env.spec_info()
    bundle = make_bundle(info, len(info['obs_names']), info['action_low'], info['action_high'],
                         'trpo_ros/KukaReach-v0')
    path = export_onnx(bundle, tmp_path_factory.mktemp('kuka') / 'policy.onnx')
    return bundle, path


def _max_diff(policy, bundle, inputs):
    reference = reference_action(bundle, export.input_to_env_obs(bundle, inputs))
    batch = max(float(np.abs(policy.act(inputs[i:i + 64]) - reference[i:i + 64]).max())
                for i in range(0, len(inputs), 64))
    single = max(float(np.abs(policy.act(row) - reference[i]).max())
                 for i, row in enumerate(inputs[:50]))
    return batch, single


def test_pendulum_parity_and_metadata(pendulum):
    bundle, path = pendulum
    policy = Policy.load(path)
    inputs = export.verification_inputs(bundle, 256, seed=5)
    batch, single = _max_diff(policy, bundle, inputs)
    assert batch <= 1e-5 and single <= 1e-5
    meta = policy.metadata
    assert meta['input_names'] == meta['obs_names'] == ['obs/0', 'obs/1', 'obs/2']
    assert meta['joint_names'] == ['action/0']
    assert meta['control_mode'] == 'torque' and meta['env_control_mode'] == 'raw'
    assert meta['action_low'] == [-2.0] and meta['action_high'] == [2.0]
    assert meta['config'] == bundle.config.to_dict()
    assert meta['ee_link'] is None and meta['success_threshold'] is None
    assert meta['control_rate_hz'] == pytest.approx(20.0)  # 1 / Pendulum dt
    assert meta['env_id'] == 'Pendulum-v1' and meta['trpo_ros_format'] == 1
    model = onnx.load(str(path))
    assert [o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')] == [18]
    shape = model.graph.input[0].type.tensor_type.shape.dim
    assert model.graph.input[0].name == 'obs' and shape[0].dim_param and shape[1].dim_value == 3
    assert model.graph.output[0].name == 'action'
    for entry in model.metadata_props:
        json.loads(entry.value)  # every value is JSON


def test_pendulum_far_out_of_range_is_bounded(pendulum):
    bundle, path = pendulum
    policy = Policy.load(path)
    far = np.array([[1e6, -1e6, 1e6], [-1e30, 1e30, 0.0], [3e38, 3e38, -3e38]], np.float32)
    actions = policy.act(far)
    assert np.all(np.isfinite(actions)) and np.all(np.abs(actions) <= 2.0)
    np.testing.assert_allclose(actions, reference_action(bundle, far), atol=1e-5)


def test_kuka_parity_and_metadata(kuka, kuka_env):
    bundle, path = kuka
    info = kuka_env.spec_info()
    policy = Policy.load(path)
    names = info['obs_names']
    assert policy.input_names == [n for n in names if not n.startswith('ee_pos/')]
    assert policy.obs_dim == len(names) - 3
    assert policy.joint_names == info['joint_names']
    assert policy.control_mode == 'position'
    meta = policy.metadata
    assert meta['env_control_mode'] == 'position_delta'
    assert meta['obs_names'] == names and meta['ee_link'] == info['ee_link']
    assert meta['success_threshold'] == info['success_threshold']
    assert policy.control_rate_hz == info['control_rate_hz']
    np.testing.assert_allclose(policy.action_low, info['joint_lower'], rtol=1e-6)
    np.testing.assert_allclose(policy.action_high, info['joint_upper'], rtol=1e-6)
    batch, single = _max_diff(policy, bundle, export.verification_inputs(bundle, 256, seed=3))
    assert batch <= 1e-5 and single <= 1e-5


def test_kuka_actions_are_absolute_targets_within_limits(kuka, kuka_env):
    bundle, path = kuka
    info = kuka_env.spec_info()
    policy = Policy.load(path)
    x = export.verification_inputs(bundle, 64, seed=9)
    x[:8] *= 1e4  # far outside the training range, joint positions beyond the limits
    actions = policy.act(x)
    low = np.float32(info['joint_lower'])
    high = np.float32(info['joint_upper'])
    assert np.all(actions >= low) and np.all(actions <= high)
    # inside the limits the target is the current position plus a delta of at most max_delta
    x[8:, :7] = np.random.default_rng(2).uniform(0.8 * low, 0.8 * high, (56, 7))
    step = np.abs(policy.act(x[8:]) - x[8:, :7])
    assert np.all(step <= np.float32(info['action_high'][0]) + 1e-6)
    assert np.any(step > 1e-3)


def test_graph_fk_matches_pybullet_and_numpy(kuka, kuka_env):
    from trpo_ros.robot.kinematics import forward_kinematics

    bundle, path = kuka
    info = kuka_env.spec_info()
    rng = np.random.default_rng(0)
    q = rng.uniform(info['joint_lower'], info['joint_upper'], (20, 7))
    names = export.input_names(bundle)
    x = np.zeros((20, len(names)), np.float32)
    x[:, :7] = q
    graph = export.PolicyGraph(bundle)
    with torch.no_grad():
        ee_graph = graph.fk(torch.from_numpy(x)).numpy()
    for row in range(20):
        kuka_env.set_joint_state(x[row, :7].astype(np.float64))
        ee_bullet = kuka_env.ee_position()
        ee_numpy = forward_kinematics(info['fk_chain'], x[row, :7].astype(np.float64),
                                      info['base_position'], info['base_orientation'])
        np.testing.assert_allclose(ee_graph[row], ee_numpy, atol=1e-12)
        np.testing.assert_allclose(ee_graph[row], ee_bullet, atol=1e-5)
    # and in onnxruntime: the env observation with pybullet's ee_pos gives the same action
    policy = Policy.load(path)
    kuka_env.set_joint_state(q[0])
    env_obs = np.asarray(kuka_env._observe(), np.float32)
    np.testing.assert_allclose(policy.act(export.env_obs_to_input(bundle, env_obs)),
                               reference_action(bundle, env_obs), atol=1e-5)


def test_fk_handles_fixed_prismatic_and_unlisted_joints():
    from trpo_ros.robot.kinematics import forward_kinematics, KinematicChain

    chain = [
        {'joint_name': 'a', 'type': 'revolute', 'xyz': [0.1, 0.0, 0.3], 'rpy': [0.2, 0.0, 0.1],
         'axis': [0.0, 0.0, 1.0]},
        {'joint_name': 'f', 'type': 'fixed', 'xyz': [0.0, 0.2, 0.0], 'rpy': [0.0, 0.5, 0.0],
         'axis': [1.0, 0.0, 0.0]},
        {'joint_name': 'p', 'type': 'prismatic', 'xyz': [0.0, 0.0, 0.1], 'rpy': [0.0, 0.0, 0.0],
         'axis': [0.6, 0.0, 0.8]},
        {'joint_name': 'held', 'type': 'revolute', 'xyz': [0.3, 0.0, 0.0],
         'rpy': [0.0, 0.0, 0.0], 'axis': [0.0, 1.0, 0.0]},
        {'joint_name': 'c', 'type': 'continuous', 'xyz': [0.0, 0.1, 0.2], 'rpy': [1.0, 0.0, 0.0],
         'axis': [0.0, 1.0, 0.0]},
        {'joint_name': 'tip', 'type': 'fixed', 'xyz': [0.05, 0.0, 0.1], 'rpy': [0.0, 0.0, 0.0],
         'axis': [1.0, 0.0, 0.0]},
    ]
    base = ([0.5, -0.2, 0.1], [0.0, 0.0, 0.38268343, 0.92387953])
    # The graph takes (p, c, a) from input columns (0, 1, 2); 'held' is not an input: held at 0.
    fk = export.ForwardKinematics(KinematicChain(chain, ['p', 'c', 'a'], *base), [0, 1, 2])
    q = np.random.default_rng(1).uniform(-3, 3, (10, 3)).astype(np.float32)
    with torch.no_grad():
        got = fk(torch.from_numpy(q)).numpy()
    for row in range(10):
        values = {'a': q[row, 2], 'p': q[row, 0], 'c': q[row, 1]}
        want = forward_kinematics(chain, values, *base)
        np.testing.assert_allclose(got[row], want, atol=1e-12)
        np.testing.assert_allclose(want, plain_product_fk(chain, values, *base), atol=1e-12)


def plain_product_fk(chain, q_by_name, base_position, base_orientation):
    """T_base @ T_origin_1 @ T_motion_1(q_1) @ ..., written as plainly as the URDF spec."""
    t = kinematics.homogeneous(kinematics.quaternion_to_matrix(base_orientation), base_position)
    for joint in chain:
        t = t @ kinematics.homogeneous(kinematics.rpy_to_matrix(joint['rpy']), joint['xyz'])
        value = float(q_by_name.get(joint['joint_name'], 0.0))
        if joint['type'] in ('revolute', 'continuous'):
            t = t @ kinematics.homogeneous(kinematics.axis_angle_to_matrix(joint['axis'], value))
        elif joint['type'] == 'prismatic':
            t = t @ kinematics.homogeneous(np.eye(3), value * np.asarray(joint['axis']))
    return t[:3, 3]


def test_failed_verification_leaves_existing_file(pendulum, tmp_path, monkeypatch):
    bundle, _ = pendulum
    target = tmp_path / 'policy.onnx'
    target.write_bytes(b'previous policy')
    monkeypatch.setattr(export, 'TOLERANCE', -1.0)
    with pytest.raises(ExportError, match='differs from torch by') as info:
        export_onnx(bundle, target, n_verify=16)
    assert '\n' not in str(info.value)
    assert target.read_bytes() == b'previous policy'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['policy.onnx']  # no temp file left


def test_corrupted_graph_fails_verification(pendulum, tmp_path, monkeypatch):
    bundle, _ = pendulum
    other = make_bundle({}, 3, [-2.0], [2.0], 'Pendulum-v1', seed=1)  # different weights
    real_build = export.build_onnx
    monkeypatch.setattr(export, 'build_onnx', lambda _bundle: real_build(other))
    target = tmp_path / 'policy.onnx'
    with pytest.raises(ExportError, match='differs from torch'):
        export_onnx(bundle, target, n_verify=32)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_export_from_checkpoint_and_errors(pendulum, tmp_path):
    bundle, _ = pendulum
    state = {'config': bundle.config.to_dict(), 'iteration': 3, 'env_steps': 99, 'obs_dim': 3,
             'action_low': [-2.0], 'action_high': [2.0], 'env_info': json.dumps({}),
             'actor': bundle.policy.actor.state_dict(),
             'normalizer': bundle.policy.normalizer.state_dict()}
    run = tmp_path / 'run'
    save_checkpoint(state, run / 'checkpoints', 3)
    path = export_onnx(run, run / 'policy.onnx', n_verify=32)
    policy = Policy.load(path)
    assert policy.metadata['iteration'] == 3
    obs = np.array([0.3, -0.4, 1.0], np.float32)
    np.testing.assert_allclose(policy.act(obs), bundle.act(obs), atol=1e-5)
    with pytest.raises(ExportError, match='no such run directory'):
        export_onnx(tmp_path / 'missing', tmp_path / 'x.onnx')
    with pytest.raises(ExportError, match='not a trpo_ros run'):
        export_onnx(tmp_path, tmp_path / 'x.onnx')
    assert not (tmp_path / 'x.onnx').exists()


@pytest.mark.filterwarnings('ignore:invalid value encountered:RuntimeWarning')
def test_unbounded_dimensions_pass_through(tmp_path):
    bundle = make_bundle({}, 4, [-1.0, -np.inf], [1.0, np.inf], 'Custom-v0')
    policy = Policy.load(export_onnx(bundle, tmp_path / 'p.onnx', n_verify=32))
    assert policy.metadata['action_low'] == [-1.0, None]
    assert policy.action_low[1] == -np.inf and policy.action_high[1] == np.inf
    assert policy.metadata['control_rate_hz'] == 0.0  # unknown env: rate unknown


def test_reference_action_delta(kuka):
    bundle, _ = kuka
    env_obs = export.input_to_env_obs(bundle, export.verification_inputs(bundle, 8))
    delta = bundle.act(env_obs)
    want = np.clip(env_obs[:, :7] + delta, np.float32(bundle.env_info['joint_lower']),
                   np.float32(bundle.env_info['joint_upper']))
    np.testing.assert_array_equal(reference_action(bundle, env_obs), want)
    assert reference_action(bundle, env_obs[0]).shape == (7,)


def test_default_file_is_written_atomically(pendulum):
    _, path = pendulum
    assert Path(path).is_file()
    assert [p.name for p in Path(path).parent.iterdir()] == ['policy.onnx']


def test_push_policy_exports_with_its_sources(tmp_path):
    import gymnasium

    env = gymnasium.make('trpo_ros/KukaPush-v0').unwrapped
    info = env.spec_info()
    env.close()
    bundle = make_bundle(info, len(info['obs_names']), info['action_low'], info['action_high'],
                         'trpo_ros/KukaPush-v0')
    policy = Policy.load(export_onnx(bundle, tmp_path / 'push.onnx'))
    assert 'object_quat/w' in policy.input_names and 'ee_pos/x' not in policy.input_names
    sources = {s['name']: s for s in policy.metadata['sources']}
    assert sources['object']['type'] == 'geometry_msgs/PoseStamped'
    assert sources['object']['frame'] == 'world'
    assert sorted(c for s in sources.values() for c in s['columns']) == sorted(policy.input_names)
    batch, single = _max_diff(policy, bundle, export.verification_inputs(bundle, 128, seed=4))
    assert batch <= 1e-5 and single <= 1e-5
