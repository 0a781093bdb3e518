"""trpo_ros.runtime: loading/validating exported policies and acting (numpy + onnxruntime)."""

from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
from trpo_ros.runtime import Policy, PolicyError

pytestmark = pytest.mark.unit


def _pendulum_bundle():
    import torch
    from trpo_ros.core.checkpoint import PolicyBundle
    from trpo_ros.core.config import TRPOConfig
    from trpo_ros.core.policy import PolicyModel

    torch.manual_seed(1)
    config = TRPOConfig(env_id='Pendulum-v1')
    policy = PolicyModel.build(config, 3, np.array([-2.0]), np.array([2.0]))
    norm, actor = policy.normalizer, policy.actor
    for p in actor.parameters():
        p.data.normal_(0.0, 0.3)
    norm.merge(torch.tensor([0.2, -0.1, 0.5], dtype=torch.float64),
               torch.tensor([0.4, 0.3, 4.0], dtype=torch.float64), 500)
    return PolicyBundle(config, policy.eval(), {}, 1, 100)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    from trpo_ros.export import export_onnx

    bundle = _pendulum_bundle()
    path = export_onnx(bundle, tmp_path_factory.mktemp('runtime') / 'policy.onnx', n_verify=64)
    return bundle, path


def _rewrite(src: Path, dst: Path, edit) -> Path:
    import onnx

    model = onnx.load(str(src))
    edit(model)
    onnx.save(model, str(dst))
    return dst


def _set_meta(model, key, value):
    for entry in model.metadata_props:
        if entry.key == key:
            entry.value = value


def test_load_fields(exported):
    _, path = exported
    policy = Policy.load(path)
    assert policy.path == Path(path)
    assert policy.input_names == ['obs/0', 'obs/1', 'obs/2']
    assert policy.joint_names == ['action/0']
    assert policy.obs_dim == 3 and policy.action_dim == 1
    assert policy.action_low.dtype == np.float32 and policy.action_high.dtype == np.float32
    np.testing.assert_array_equal(policy.action_low, [-2.0])
    np.testing.assert_array_equal(policy.action_high, [2.0])
    assert policy.control_mode == 'torque'
    assert isinstance(policy.control_rate_hz, float)
    assert policy.env_id == 'Pendulum-v1'
    assert policy.metadata['trpo_ros_format'] == 1
    assert policy.metadata['config']['env_id'] == 'Pendulum-v1'


def test_act_shapes_and_values(exported):
    from trpo_ros.export import reference_action

    bundle, path = exported
    policy = Policy.load(path)
    obs = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    single = policy.act(obs[0])
    assert single.shape == (1,) and single.dtype == np.float32
    batch = policy.act(obs)
    assert batch.shape == (64, 1)
    np.testing.assert_allclose(batch, reference_action(bundle, obs), atol=1e-5)
    np.testing.assert_allclose(single, batch[0], atol=1e-6)
    assert policy.act([0.0, 1.0, 2.0]).shape == (1,)  # lists and float64 are accepted
    assert policy.act(np.ones((5, 6))[:, ::2]).shape == (5, 1)  # non-contiguous input


@pytest.mark.parametrize('obs, message', [
    ([0.0, 1.0], 'observation has 2 entries, policy expects 3'),
    ([[0.0, 1.0, 2.0, 3.0]], 'observation batch has 4 columns, policy expects 3'),
    (np.zeros((2, 2, 3)), 'observation must be 1-D or 2-D'),
    ([0.0, np.nan, 1.0], 'observation contains NaN or Inf (first at obs/1)'),
    ([np.inf, 0.0, 1.0], 'observation contains NaN or Inf (first at obs/0)'),
    ([[0.0, 0.0, 0.0], [0.0, 0.0, -np.inf]], 'observation contains NaN or Inf (first at obs/2)'),
])
def test_act_rejects_bad_observations(exported, obs, message):
    policy = Policy.load(exported[1])
    with pytest.raises(PolicyError) as info:
        policy.act(np.asarray(obs))
    assert str(info.value).startswith(message)


def test_huge_finite_observation_is_accepted(exported):
    policy = Policy.load(exported[1])
    out = policy.act(np.array([3e38, -3e38, 3e38], np.float32))
    assert np.all(np.abs(out) <= 2.0)


def test_missing_file(tmp_path):
    with pytest.raises(PolicyError, match='policy file not found'):
        Policy.load(tmp_path / 'nope.onnx')


def test_directory(tmp_path):
    with pytest.raises(PolicyError, match='not a file'):
        Policy.load(tmp_path)


def test_not_onnx(tmp_path):
    path = tmp_path / 'junk.onnx'
    path.write_bytes(b'this is not a protobuf \x00\x01\x02' * 10)
    with pytest.raises(PolicyError, match='is not a loadable ONNX model') as info:
        Policy.load(path)
    assert '\n' not in str(info.value)


def test_onnx_without_trpo_metadata(exported, tmp_path):
    path = _rewrite(exported[1], tmp_path / 'plain.onnx', lambda m: m.metadata_props.clear())
    with pytest.raises(PolicyError, match='not a trpo_ros policy'):
        Policy.load(path)


def test_unsupported_format(exported, tmp_path):
    path = _rewrite(exported[1], tmp_path / 'v99.onnx',
                    lambda m: _set_meta(m, 'trpo_ros_format', '99'))
    with pytest.raises(PolicyError, match='trpo_ros_format 99 is not supported'):
        Policy.load(path)


def test_input_size_mismatch(exported, tmp_path):
    path = _rewrite(exported[1], tmp_path / 'in.onnx',
                    lambda m: _set_meta(m, 'input_names', '["a", "b"]'))
    with pytest.raises(PolicyError, match='graph input has 3 entries but metadata input_names '
                                          'lists 2'):
        Policy.load(path)


def test_output_size_mismatch(exported, tmp_path):
    path = _rewrite(exported[1], tmp_path / 'out.onnx',
                    lambda m: _set_meta(m, 'joint_names', '["j1", "j2"]'))
    with pytest.raises(PolicyError, match='graph output has 1 entries but metadata joint_names '
                                          'lists 2'):
        Policy.load(path)


def test_bad_metadata_json(exported, tmp_path):
    path = _rewrite(exported[1], tmp_path / 'json.onnx',
                    lambda m: _set_meta(m, 'action_low', '[oops'))
    with pytest.raises(PolicyError, match="metadata 'action_low' is not valid JSON"):
        Policy.load(path)


def test_bounds_length_mismatch(exported, tmp_path):
    path = _rewrite(exported[1], tmp_path / 'bounds.onnx',
                    lambda m: _set_meta(m, 'action_high', '[1.0, 2.0]'))
    with pytest.raises(PolicyError, match='action_high has 2 entries, expected 1'):
        Policy.load(path)


def test_import_does_not_import_torch():
    code = ('import sys, trpo_ros.runtime; '
            'bad = [m for m in ("torch", "rclpy", "onnx") if m in sys.modules]; '
            'print(bad); sys.exit(1 if bad else 0)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
