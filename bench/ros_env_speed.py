"""
Steps/s of RosReachEnv (lockstep over ROS 2 against sim_node) vs the in-process PyBullet env.

    .venv/bin/python bench/ros_env_speed.py               # 2000 steps each
    .venv/bin/python bench/ros_env_speed.py --steps 500

Same run, same machine: the anchor is `trpo_ros/KukaReach-v0` stepped in this process with
random actions; the target is `trpo_ros/RosReach-v0` stepped against sim_node in lockstep in
another process (one PyBullet step per command, the state published right after), as shipped
(single-threaded executor).
Prints steps/s, per-step p50/p99 (ms) and the ratio ROS / in-process, with date and machine.
"""

from __future__ import annotations

import os

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'  # only loopback here, always
os.environ.setdefault('ROS_DOMAIN_ID', '213')

import argparse  # noqa: E402, I100
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

SIM_ARGS = ['--ros-args', '-p', 'mode:=lockstep', '-p', 'episode_steps:=0',
            '-p', 'follow_goal_topic:=true']


def serve_sim(threads: int) -> int:
    """sim_node with a chosen executor (0 = run_nodes default, MultiThreadedExecutor)."""
    from trpo_ros.nodes.runner import run_nodes
    from trpo_ros.nodes.sim_node import SimNode

    return run_nodes(lambda context: SimNode(context=context), args=['sim_node', *SIM_ARGS],
                     num_threads=threads or None)


def time_steps(env, steps: int, seed: int) -> np.ndarray:
    """Per-step wall times (s) with random actions, resetting at episode ends (not timed)."""
    from trpo_ros.nodes.ros_env import RosEnvTimeout

    env.reset(seed=seed)
    env.action_space.seed(seed)
    times = np.zeros(steps)
    for i in range(steps):
        action = env.action_space.sample()
        start = time.perf_counter()
        try:
            _, _, terminated, truncated, _ = env.step(action)
        except RosEnvTimeout as exc:  # counted as a step of state_timeout, then go on
            print(f'step {i}: {exc}', file=sys.stderr)
            terminated = True
        times[i] = time.perf_counter() - start
        if terminated or truncated:
            env.reset()
    return times


def summary(times: np.ndarray) -> dict[str, float]:
    p50, p99 = np.percentile(times, [50, 99]) * 1e3
    return {'steps_per_s': round(len(times) / float(times.sum()), 1), 'p50_ms': round(p50, 3),
            'p99_ms': round(p99, 3), 'max_ms': round(float(times.max()) * 1e3, 2),
            'steps_over_100ms': int((times > 0.1).sum())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=2000)
    parser.add_argument('--serve-sim', type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sim is not None:
        return serve_sim(args.serve_sim)

    import gymnasium as gym
    import trpo_ros.nodes.ros_env  # noqa: F401 - registers trpo_ros/RosReach-v0

    local = gym.make('trpo_ros/KukaReach-v0')
    results = {'in_process': summary(time_steps(local, args.steps, 0))}
    local.close()
    for label, threads in (('ros_lockstep', 1),):
        sim = subprocess.Popen([sys.executable, __file__, '--serve-sim', str(threads)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = gym.make('trpo_ros/RosReach-v0', state_timeout=2.0)
        print(label, file=sys.stderr)
        try:
            time_steps(env, 100, 1)  # warm-up (discovery, first episode)
            results[label] = summary(time_steps(env, args.steps, 0))
        finally:
            env.close()
            sim.terminate()
            sim.wait(timeout=10)
    base = results['in_process']['steps_per_s']
    for label in ('ros_lockstep',):
        results[label]['ratio_to_in_process'] = round(results[label]['steps_per_s'] / base, 4)
    print(json.dumps({
        'date': datetime.datetime.now().isoformat(timespec='seconds'),
        'machine': f'{platform.node()} {platform.machine()} {os.cpu_count()} cpus '
                   f'{platform.processor() or ""}'.strip(),
        'python': platform.python_version(), 'steps': args.steps, **results}, indent=2))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
