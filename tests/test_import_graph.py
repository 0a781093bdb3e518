"""The package's import graph: no cycles, and the ROS-free layers stay free of rclpy."""

from __future__ import annotations

import ast
from pathlib import Path
import subprocess
import sys

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'trpo_ros'


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph() -> dict[str, set[str]]:
    """Map each module to the trpo_ros modules it imports anywhere (function-local too)."""
    modules = {module_name(p): p for p in PACKAGE.rglob('*.py')}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from pkg import submodule` depends on the submodule itself
                targets = [f'{node.module}.{a.name}' if f'{node.module}.{a.name}' in modules
                           else node.module for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """Return one import cycle as a list of modules, or [] (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


@pytest.mark.unit
def test_no_import_cycles():
    graph = import_graph()
    assert 'trpo_ros.core.backends' in graph and graph['trpo_ros.demo']
    assert find_cycle(graph) == [], ' -> '.join(find_cycle(graph))
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']


def heavy_imports(modules: list[str], heavy: set[str], then: str = '') -> list[str]:
    """Return which `heavy` top-level packages importing `modules` (and running `then`) loads."""
    code = (f'import sys; import {", ".join(modules)}; {then or "pass"}; '
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(heavy)!r})))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, timeout=120)
    return eval(out.stdout)  # noqa: S307 - the list literal printed above


@pytest.mark.integration
def test_ros_free_layers_import_no_rclpy():
    assert heavy_imports(['trpo_ros.core.trainer', 'trpo_ros.core.backends', 'trpo_ros.export',
                          'trpo_ros.runtime', 'trpo_ros.sim', 'trpo_ros.errors'],
                         {'rclpy'}) == []


@pytest.mark.integration
def test_robot_contract_and_serving_stay_light():
    # The robot layer is numpy only; serving and the safety modes add onnxruntime, never
    # torch, pybullet or rclpy: what a robot computer needs.
    assert heavy_imports(['trpo_ros.robot.kinematics', 'trpo_ros.robot.observation',
                          'trpo_ros.robot.command_filter', 'trpo_ros.robot.spec',
                          'trpo_ros.robot.reach_task', 'trpo_ros.safety_modes',
                          'trpo_ros.serving'],
                         {'torch', 'pybullet', 'rclpy', 'gymnasium'},
                         then="trpo_ros.robot.reach_task.reach_task('panda_reach.yaml')") == []
    assert heavy_imports(['trpo_ros.serving'], {'onnxruntime'}) == ['onnxruntime']  # it works


@pytest.mark.integration
def test_ros_env_needs_no_pybullet():
    # A robot computer trains over ROS without the simulator installed.
    code = "env = trpo_ros.nodes.ros_env.RosReachEnv('panda_reach.yaml'); env.spec_info()"
    assert heavy_imports(['trpo_ros.nodes.ros_env'], {'pybullet', 'torch'}, then=code) == []


@pytest.mark.unit
def test_robot_layer_imports_only_from_below():
    graph = import_graph()
    robot = {m: edges for m, edges in graph.items() if m.startswith('trpo_ros.robot')}
    assert robot
    for module, edges in robot.items():
        above = {e for e in edges if not e.startswith(('trpo_ros.robot', 'trpo_ros.errors'))}
        assert not above, f'{module} imports {above}'


@pytest.mark.unit
def test_core_imports_nothing_above_it():
    # Export, serving, nodes and the CLI build on core; exporting is a hook handed in.
    below = ('trpo_ros.core', 'trpo_ros.errors', 'trpo_ros.robot', 'trpo_ros.envs')
    for module, edges in import_graph().items():
        if module.startswith('trpo_ros.core'):
            above = {e for e in edges if not e.startswith(below)}
            assert not above, f'{module} imports {above}'


@pytest.mark.unit
def test_node_modules_stay_thin():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / 'nodes').glob('*.py')}
    too_long = {name: n for name, n in sizes.items() if n > 400}
    assert not too_long, too_long
