"""Closed loop in one process: sim_node (lockstep) + inference_node under one executor."""

from __future__ import annotations

import math
from pathlib import Path
import time
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from trpo_ros.errors import UserError
from trpo_ros.nodes.inference_node import InferenceNode
from trpo_ros.nodes.runner import drain, spin_until, StopFlag
from trpo_ros.nodes.sim_node import SimNode
from trpo_ros.runtime import Policy


def deploy_sim(model_path: str | Path, episodes: int = 10, *, env: str | None = None,
               urdf: str | None = None, seed: int = 0, timeout: float | None = None,
               stop: StopFlag | None = None) -> dict[str, Any]:
    """
    Serve `model_path` to a simulated robot over ROS 2 for `episodes` episodes.

    Both nodes run in this process under one executor, talking over DDS like two
    processes would; the sim advances one step per command (lockstep), so the result does not
    depend on machine speed. Episode k starts from seed + k (as offline evaluation does).

    Parameters
    ----------
    model_path
        exported policy (.onnx).
    episodes
        episodes to run.
    env
        Gymnasium id of the sim (default: the robot the policy was trained on, rebuilt from
        the robot/task YAML and URDF the model carries).
    urdf
        robot override for the sim (default: the env's robot).
    seed
        base seed of the episodes.
    timeout
        give up after this many seconds (default: 60 s + 2 s per episode).
    stop
        stop early when set (e.g. from a signal handler).

    Returns
    -------
        dict with episodes, successes, success_rate, mean_final_distance, results (per
        episode), latency_p50_ms / latency_p99_ms (state received -> command published in
        inference_node), commands, seconds, steps_per_second, completed (False on timeout).

    """
    policy = Policy.load(model_path)  # fail early with the runtime's message
    env_id = env or policy.env_id
    robot = Parameter('env', value=env) if env else Parameter('model_path', value=str(model_path))
    timeout = timeout if timeout is not None else 60.0 + 2.0 * episodes
    context = Context()
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    nodes: list[Any] = []
    executor = None
    try:
        sim_params = [robot, Parameter('mode', value='lockstep'),
                      Parameter('seed', value=int(seed)),
                      Parameter('max_episodes', value=int(episodes))]
        if urdf:
            sim_params.append(Parameter('urdf', value=str(urdf)))
        sim = SimNode(context=context, parameter_overrides=sim_params)
        nodes.append(sim)
        inference = InferenceNode(context=context, parameter_overrides=[
            Parameter('model_path', value=str(model_path)),
            Parameter('publish_on_state', value=True),
            Parameter('obs_timeout', value=5.0),
            # A simulation asks for the policy itself; its resets teleport the arm, which
            # would look like a jump of the command.
            Parameter('start_mode', value='active'),
            Parameter('estop_command_step', value=0.0)])
        nodes.append(inference)
        if inference.model_error:
            raise UserError(f'inference_node cannot serve: {inference.model_error}')
        # One thread: every callback is short; more threads only add wake-up stalls.
        executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            executor.add_node(node)
        start = time.perf_counter()
        deadline = start + timeout
        spin_until(executor, lambda: sim.done or time.perf_counter() > deadline
                   or (stop is not None and stop.is_set()))
        seconds = time.perf_counter() - start
        results = list(sim.results)[:episodes]
        p50, p99 = inference.latency_ms()
        successes = sum(r['success'] for r in results)
        return {
            'model': str(model_path), 'env': env_id, 'episodes': len(results),
            'successes': successes,
            'success_rate': successes / len(results) if results else math.nan,
            'mean_final_distance': (sum(r['final_distance'] for r in results) / len(results)
                                    if results else math.nan),
            'results': results, 'latency_p50_ms': p50, 'latency_p99_ms': p99,
            'commands': inference.commands_published, 'seconds': seconds,
            'steps_per_second': sim.steps / max(seconds, 1e-9),
            'completed': len(results) >= episodes,
        }
    finally:
        if executor is not None:
            drain(executor)
        for node in nodes:
            node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
