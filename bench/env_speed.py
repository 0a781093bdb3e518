"""
Steps/s of each trpo_ros.sim env in one process, and the share of time in p.stepSimulation.

Usage: .venv/bin/python bench/env_speed.py [--steps 5000]

The physics share is measured by wrapping `Robot.physics_step` (the function the env calls for
every physics sub-step) with a timer; "wrapper" is the rest of the env step (Python, motor
commands, state reads, self-collision check, reward). Rows: the gym.make env (with
TimeLimit/OrderEnforcing/PassiveEnvChecker) and the bare env (`env.unwrapped`), plus the same
with self_collision=False.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import gymnasium as gym
import numpy as np
import pybullet as p
import trpo_ros.sim


class TimedStep:
    """Callable that forwards to p.stepSimulation and accumulates its wall time."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, physicsClientId: int) -> None:  # noqa: N803 - pybullet's name
        start = time.perf_counter()
        p.stepSimulation(physicsClientId=physicsClientId)
        self.seconds += time.perf_counter() - start
        self.calls += 1


def measure(env_id: str, steps: int, unwrapped: bool, **kwargs: object) -> dict:
    env = gym.make(env_id, **kwargs)
    bare = env.unwrapped
    target = bare if unwrapped else env
    rng = np.random.default_rng(0)
    low, high = bare.action_space.low, bare.action_space.high
    actions = rng.uniform(low, high, size=(steps, low.size))
    target.reset(seed=0)
    for a in actions[:200]:  # warm-up
        target.step(a)
    timer = TimedStep()
    bare.robot.physics_step = timer
    target.reset(seed=1)
    episode_steps = bare.episode_steps
    start = time.perf_counter()
    for i, a in enumerate(actions):
        _, _, terminated, truncated, _ = target.step(a)
        if terminated or truncated or (unwrapped and (i + 1) % episode_steps == 0):
            target.reset()
    total = time.perf_counter() - start
    env.close()
    # Timer overhead (two perf_counter calls per sub-step) is charged to the physics share.
    return {'steps_per_s': steps / total, 'physics_share': timer.seconds / total,
            'us_per_step': 1e6 * total / steps,
            'physics_us_per_substep': 1e6 * timer.seconds / max(timer.calls, 1),
            'substeps': bare.substeps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=5000)
    args = parser.parse_args()
    print(f'# trpo_ros env speed, {datetime.datetime.now().isoformat(timespec="seconds")}')
    print(f'# machine: {platform.platform()}, {platform.processor() or platform.machine()}, '
          f'cpu_count={os.cpu_count()}, python {platform.python_version()}, '
          f'pybullet API {p.getAPIVersion()}')
    print(f'# {args.steps} random-action steps per row, one process, resets included')
    header = (f'{"env":<26} {"variant":<26} {"steps/s":>9} {"us/step":>8} {"substeps":>8} '
              f'{"us/substep":>10} {"physics %":>9} {"wrapper %":>9}')
    print(header)
    print('-' * len(header))
    for env_id in trpo_ros.sim.ENV_IDS:
        for unwrapped in (False, True):
            for self_collision in (True, False):
                row = measure(env_id, args.steps, unwrapped, self_collision=self_collision)
                variant = ('env.unwrapped' if unwrapped else 'gym.make') + \
                    (', self-coll' if self_collision else ', no self-coll')
                print(f'{env_id:<26} {variant:<26} {row["steps_per_s"]:>9.0f} '
                      f'{row["us_per_step"]:>8.1f} {row["substeps"]:>8d} '
                      f'{row["physics_us_per_substep"]:>10.1f} '
                      f'{100 * row["physics_share"]:>8.1f}% '
                      f'{100 * (1 - row["physics_share"]):>8.1f}%')


if __name__ == '__main__':
    main()
