"""Fixed-seed learning checks (scaled down from the README numbers to fit CI)."""

import pytest
from trpo_ros.core.config import TRPOConfig
from trpo_ros.core.trainer import Trainer

pytestmark = pytest.mark.learning


def test_kuka_reach_learns_to_reach(tmp_path):
    # README: 200k steps -> >= 90 % success; here 150k steps must reach 70 %.
    config = TRPOConfig(env_id='trpo_ros/KukaReach-v0', total_steps=150_000, n_envs=2,
                        n_steps=2048, seed=0, eval_every=0, checkpoint_every=1000)
    trainer = Trainer(config, tmp_path / 'run', tensorboard=False)
    trainer.train()
    result = trainer.evaluate(50)
    trainer.close()
    assert result['success_rate'] >= 0.7, result
