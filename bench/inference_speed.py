"""
Per-call latency of trpo_ros.runtime.Policy.act (batch 1) against torch eager.

Both sides run the same modules in the same process: a PolicyBundle with the default 64x64
actor on the KUKA reach layout (20 env observations, 7 joints), random weights and a
non-trivial normalizer. Two graphs are timed:

- network: normalizer -> actor mean -> action scaler (the 20 -> 64 -> 64 -> 7 MLP), exported as
  a plain env; torch side = the bundle's modules (what `PolicyBundle.act` runs).
- robot graph: the real KUKA export (17 inputs; FK for ee_pos in the graph, delta -> absolute
  position target, clip to joint limits); torch side = the same `PolicyGraph` module in eager.

Targets (issue 4): network <= 20 us per call and <= 0.5x torch eager.

    .venv/bin/python bench/inference_speed.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import timeit

import numpy as np
import torch
from trpo_ros.core.checkpoint import PolicyBundle
from trpo_ros.core.config import TRPOConfig
from trpo_ros.core.policy import PolicyModel
from trpo_ros.export import env_obs_to_input, export_onnx, PolicyGraph
from trpo_ros.runtime import Policy

KUKA_OBS, KUKA_ACT = 20, 7


def kuka_info() -> dict:
    try:
        import gymnasium
        import trpo_ros.sim  # noqa: F401

        env = gymnasium.make('trpo_ros/KukaReach-v0').unwrapped
        info = env.spec_info()
        env.close()
        return info
    except ImportError:
        return {}


def make_bundle(info: dict, obs_dim: int, low: np.ndarray, high: np.ndarray) -> PolicyBundle:
    torch.manual_seed(0)
    config = TRPOConfig(env_id='trpo_ros/KukaReach-v0' if info else 'bench/Plain-v0')
    policy = PolicyModel.build(config, obs_dim, low, high)
    policy.normalizer.merge(torch.linspace(-0.5, 0.5, obs_dim, dtype=torch.float64),
                            torch.linspace(0.1, 2.0, obs_dim, dtype=torch.float64), 1000)
    return PolicyBundle(config, policy.eval(), info, 0, 0)


def per_call_us(fn, calls: int) -> float:
    fn()
    return min(timeit.repeat(fn, number=calls, repeat=5)) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--calls', type=int, default=20000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f'date {datetime.datetime.now().isoformat(timespec="seconds")}  '
          f'machine {platform.node()} {platform.machine()} {platform.processor() or ""} '
          f'cpus {os.cpu_count()}  torch {torch.__version__}  '
          f'onnxruntime {__import__("onnxruntime").__version__}')
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bound = np.ones(KUKA_ACT)
        net = make_bundle({}, KUKA_OBS, -bound, bound)
        policy = Policy.load(export_onnx(net, os.path.join(tmp, 'net.onnx')))
        obs = np.random.default_rng(0).standard_normal(KUKA_OBS).astype(np.float32)

        @torch.no_grad()
        def torch_net() -> torch.Tensor:
            x = torch.from_numpy(obs).reshape(1, -1)
            return net.scaler(net.actor(net.normalizer(x)))[0].numpy()

        rows.append(('network 20->64->64->7', per_call_us(lambda: policy.act(obs), args.calls),
                     per_call_us(torch_net, args.calls)))
        info = kuka_info()
        if info:
            low, high = np.array(info['action_low']), np.array(info['action_high'])
            bundle = make_bundle(info, len(info['obs_names']), low, high)
            robot = Policy.load(export_onnx(bundle, os.path.join(tmp, 'kuka.onnx')))
            graph = PolicyGraph(bundle).eval()
            env_obs = np.zeros(len(info['obs_names']), np.float32)
            x_robot = env_obs_to_input(bundle, env_obs) + 0.1

            @torch.no_grad()
            def torch_graph() -> torch.Tensor:
                return graph(torch.from_numpy(x_robot).reshape(1, -1))[0].numpy()

            rows.append(('KUKA robot graph (FK+delta)',
                         per_call_us(lambda: robot.act(x_robot), args.calls),
                         per_call_us(torch_graph, args.calls)))
        else:
            print('trpo_ros.sim not available: KUKA robot graph skipped')
    print(f'{"graph":30s} {"onnxruntime us":>15s} {"torch eager us":>15s} {"ratio":>7s}')
    for name, ort_us, torch_us in rows:
        print(f'{name:30s} {ort_us:15.2f} {torch_us:15.2f} {ort_us / torch_us:7.2f}')
    ort_us, torch_us = rows[0][1], rows[0][2]
    ok = ort_us <= 20.0 and ort_us / torch_us <= 0.5
    print(f'target (network): <= 20 us and <= 0.5x torch: {"met" if ok else "NOT met"}')


if __name__ == '__main__':
    main()
