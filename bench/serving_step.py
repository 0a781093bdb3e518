"""
Cost of one inference_node control decision against the bare ONNX call, in the same run.

Times `PolicyServer.step` (joint state by name -> observation -> policy -> safety mode ->
command filter) on the demo's exported KUKA policy, in active after the hand-over, in standby
and in hold, against `Policy.act` on the same observation (the baseline). Prints µs per call
and the ratio to the baseline.

    .venv/bin/python bench/serving_step.py [--model demo_out/run/policy.onnx] [--calls 20000]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import timeit

import numpy as np
from trpo_ros.safety_modes import SafetyLimits, SafetyModes
from trpo_ros.serving import PolicyServer, ServedModel


def main() -> None:
    """Time the four calls and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', type=Path, default=Path('demo_out/run/policy.onnx'))
    parser.add_argument('--calls', type=int, default=20000)
    args = parser.parse_args()
    model = ServedModel(str(args.model))
    joints = model.policy.joint_names
    home = np.array([0.0, 0.5, 0.0, -1.3, 0.0, 0.9, 0.0])[:len(joints)]
    velocity = np.zeros(len(joints))
    goal = np.array([0.55, 0.1, 0.45])
    server = PolicyServer()
    server.configure(model)
    server.set_goal(lambda: goal)
    server.step(joints, home, velocity, 0.0)  # reads the state into the layout
    obs = model.layout.fill(goal).copy()

    def timed(fn) -> float:
        fn()
        return min(timeit.repeat(fn, number=args.calls, repeat=3)) / args.calls * 1e6

    rows = [('Policy.act (baseline)', timed(lambda: model.policy.act(obs)))]
    for mode in ('active', 'standby', 'hold'):
        server.modes = SafetyModes(mode if mode != 'hold' else 'standby',
                                   SafetyLimits(handover_rate=1e6))
        if mode == 'hold':
            server.request_mode('hold')
        server.step(joints, home, velocity, 0.0)
        rows.append((f'PolicyServer.step, {mode}',
                     timed(lambda: server.step(joints, home, velocity, 0.0))))
    base = rows[0][1]
    print(f'{os.cpu_count()} CPUs, {args.calls} calls, best of 3')
    print('| call | µs per call | × baseline |\n| --- | --- | --- |')
    for name, us in rows:
        print(f'| {name} | {us:.1f} | {us / base:.2f} |')


if __name__ == '__main__':
    main()
