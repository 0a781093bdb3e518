"""Export of really trained policies: parity, bounds, and the torch-free runtime."""

import json
import subprocess
import sys

import numpy as np
import pytest
from trpo_ros.core.checkpoint import load_policy
from trpo_ros.core.config import TRPOConfig
from trpo_ros.core.rollout import make_env
from trpo_ros.core.trainer import Trainer
from trpo_ros.export import env_obs_to_input, export_onnx, reference_action
from trpo_ros.runtime import Policy

pytestmark = pytest.mark.integration


@pytest.fixture(scope='module', params=['Pendulum-v1', 'trpo_ros/KukaReach-v0'])
def trained(request, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp('trained') / 'run'
    config = TRPOConfig(env_id=request.param, n_steps=512, total_steps=1536, eval_every=0,
                        seed=7)
    trainer = Trainer(config, run_dir, tensorboard=False, exporter=export_onnx)
    trainer.train()
    trainer.close()
    return run_dir


def rollout_observations(env_id: str, bundle, steps: int = 200) -> np.ndarray:
    env = make_env(env_id)
    obs, _ = env.reset(seed=1)
    observations = []
    for _ in range(steps):
        observations.append(obs)
        obs, _, terminated, truncated, _ = env.step(bundle.act(obs))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.array(observations, np.float32)


def test_exported_policy_matches_torch_on_real_states(trained):
    bundle = load_policy(trained)
    assert bundle.iteration == 3
    policy = Policy.load(trained / 'policy.onnx')
    obs = rollout_observations(bundle.config.env_id, bundle)
    expected = reference_action(bundle, obs)
    batch = policy.act(env_obs_to_input(bundle, obs))
    assert np.abs(batch - expected).max() <= 1e-5
    for i in (0, 57, 199):  # batch 1
        single = policy.act(env_obs_to_input(bundle, obs[i]))
        assert np.abs(single - expected[i]).max() <= 1e-5


def test_far_out_of_range_observations_give_bounded_actions(trained):
    bundle = load_policy(trained)
    policy = Policy.load(trained / 'policy.onnx')
    obs = rollout_observations(bundle.config.env_id, bundle, steps=20)
    wild = obs * 1e3 + np.random.default_rng(0).normal(0, 1e4, obs.shape).astype(np.float32)
    actions = policy.act(env_obs_to_input(bundle, wild))
    assert np.all(actions >= policy.action_low - 1e-6)
    assert np.all(actions <= policy.action_high + 1e-6)


def test_runtime_without_torch_equals_eval_actions(trained, tmp_path):
    bundle = load_policy(trained)
    obs = rollout_observations(bundle.config.env_id, bundle, steps=50)
    inputs = env_obs_to_input(bundle, obs)
    np.save(tmp_path / 'inputs.npy', inputs)
    script = (
        'import json, sys\n'
        'import numpy as np\n'
        'from trpo_ros.runtime import Policy\n'
        f'policy = Policy.load({str(trained / "policy.onnx")!r})\n'
        f'actions = policy.act(np.load({str(tmp_path / "inputs.npy")!r}))\n'
        'print(json.dumps({"torch": "torch" in sys.modules, "actions": actions.tolist()}))\n')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=60, check=True)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out['torch'] is False
    # `trpo-ros eval` acts with bundle.act; in command units that is reference_action.
    np.testing.assert_allclose(np.array(out['actions']), reference_action(bundle, obs),
                               atol=1e-5)
