"""Closed loop: a trained KukaReach policy served over ROS 2 does as well as offline evaluation."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from nodes_helpers import ACTIVE_AT_ONCE
import pytest

pytestmark = pytest.mark.integration

EPISODES = 20
SEED = 500


@pytest.fixture(scope='module')
def offline_success(trained_run):
    """Success rate of the checkpoint (torch, deterministic) over the same episodes."""
    from trpo_ros.core.checkpoint import load_policy
    from trpo_ros.core.rollout import evaluate, make_env

    bundle = load_policy(trained_run)
    env = make_env(bundle.config.env_id, bundle.config.env_kwargs)
    try:
        return evaluate(env, bundle.act, EPISODES, seed=SEED)['success_rate']
    finally:
        env.close()


def sim_status(diags):
    return [s for m in diags for s in m.status if s.name.startswith('sim_node')]


def test_separate_processes_match_offline_evaluation(trained_run, offline_success, probe,
                                                     node_process):
    diags = probe.listen(DiagnosticArray, '/diagnostics')
    sim = node_process('trpo_ros.nodes.sim_node', mode='lockstep', seed=SEED,
                       max_episodes=EPISODES, diagnostics_period=0.25)
    node_process('trpo_ros.nodes.inference_node', model_path=str(trained_run / 'policy.onnx'),
                 publish_on_state=True, **ACTIVE_AT_ONCE)

    def finished():
        for status in sim_status(diags):
            values = {kv.key: kv.value for kv in status.values}
            if int(values['episodes']) >= EPISODES:
                return values
        return None

    values = probe.wait_for(finished, timeout=90.0, period=0.1)
    online = int(values['successes']) / EPISODES
    print(f'closed loop over ROS: {online:.2f}, offline: {offline_success:.2f}')
    assert abs(online - offline_success) <= 0.10 + 1e-9, (online, offline_success, sim.log())


def test_deploy_sim_in_process(trained_run, offline_success):
    from trpo_ros.nodes.deploy_sim import deploy_sim

    result = deploy_sim(trained_run / 'policy.onnx', EPISODES, seed=SEED)
    assert result['completed'] and result['episodes'] == EPISODES
    assert abs(result['success_rate'] - offline_success) <= 0.10 + 1e-9, result
    assert result['latency_p50_ms'] < 5.0
