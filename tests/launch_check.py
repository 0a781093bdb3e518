"""
Static checks of ROS 2 Python launch files (the `launch` library cannot be installed here).

A launch file is parsed with `ast`; values are resolved symbolically: string constants, names
assigned in the file, ``os.path.join``, ``get_package_share_directory('pkg')`` /
``FindPackageShare('pkg')`` (-> ``<share:pkg>``), ``PathJoinSubstitution([...])`` and
``LaunchConfiguration('arg')`` (-> the default of ``DeclareLaunchArgument('arg', ...)``). A
parameter entry ``PythonExpression([...])`` that picks one of several files stands for each
file it names (all are checked).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SHARE_PREFIX = '<share:'


def share_marker(package: str) -> str:
    """Return the symbolic value of get_package_share_directory(package)."""
    return f'{SHARE_PREFIX}{package}>'


def split_share(path: str) -> tuple[str, str] | None:
    """('pkg', 'relative/path') for a resolved share path, else None."""
    if not path.startswith(SHARE_PREFIX):
        return None
    package, _, rest = path[len(SHARE_PREFIX):].partition('>')
    return package, rest.lstrip('/')


def _call_name(node: ast.AST) -> str:
    """Dotted name of a call's function ('os.path.join', 'Node', ...)."""
    func = node.func if isinstance(node, ast.Call) else node
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return '.'.join(reversed(parts))


@dataclass
class NodeSpec:
    """One `launch_ros.actions.Node(...)` of a launch file."""

    package: str | None
    executable: str | None
    name: str | None
    parameter_keys: list[str] = field(default_factory=list)   # keys of inline dicts
    parameter_files: list[str] = field(default_factory=list)  # resolved YAML paths
    unresolved: list[str] = field(default_factory=list)       # parameter entries not understood
    lineno: int = 0


class LaunchFile:
    """A parsed launch file with symbolic resolution of its values."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.tree = ast.parse(self.path.read_text(), filename=str(self.path))
        self.assignments: dict[str, ast.AST] = {}
        self.arguments: dict[str, ast.AST | None] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                    node.targets[0], ast.Name):
                self.assignments[node.targets[0].id] = node.value
            elif isinstance(node, ast.Call) and _call_name(node).endswith(
                    'DeclareLaunchArgument') and node.args:
                name = self.resolve(node.args[0])
                default = next((k.value for k in node.keywords if k.arg == 'default_value'),
                               None)
                if name is not None:
                    self.arguments[name] = default

    def resolve(self, expr: ast.AST | None, _depth: int = 0) -> str | None:
        """Return the string value of `expr` if it can be known statically, else None."""
        if expr is None or _depth > 20:
            return None
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.Name) and expr.id in self.assignments:
            return self.resolve(self.assignments[expr.id], _depth + 1)
        if not isinstance(expr, ast.Call):
            return None
        name = _call_name(expr).rsplit('.', 1)[-1]
        args = [self.resolve(a, _depth + 1) for a in expr.args]
        if name in ('get_package_share_directory', 'FindPackageShare') and args and args[0]:
            return share_marker(args[0])
        if _call_name(expr) in ('os.path.join', 'path.join', 'join') and args \
                and all(a is not None for a in args):
            return '/'.join(a.rstrip('/') for a in args)
        if name == 'PathJoinSubstitution' and expr.args and isinstance(expr.args[0], ast.List):
            parts = [self.resolve(e, _depth + 1) for e in expr.args[0].elts]
            return '/'.join(parts) if all(p is not None for p in parts) else None
        if name == 'LaunchConfiguration' and args and args[0] in self.arguments:
            return self.resolve(self.arguments[args[0]], _depth + 1)
        return None

    def nodes(self) -> list[NodeSpec]:
        """Every `Node(...)` call (anywhere in the file, OpaqueFunctions included)."""
        specs = []
        for call in ast.walk(self.tree):
            if not (isinstance(call, ast.Call) and _call_name(call).rsplit('.', 1)[-1] in (
                    'Node', 'LifecycleNode')):
                continue
            kw = {k.arg: k.value for k in call.keywords}
            spec = NodeSpec(self.resolve(kw.get('package')), self.resolve(kw.get('executable')),
                            self.resolve(kw.get('name')), lineno=call.lineno)
            params = kw.get('parameters')
            entries = params.elts if isinstance(params, (ast.List, ast.Tuple)) else \
                ([] if params is None else [params])
            for entry in entries:
                if isinstance(entry, ast.Dict):
                    for key in entry.keys:
                        value = self.resolve(key)
                        if value is None:
                            spec.unresolved.append(ast.unparse(entry))
                        else:
                            spec.parameter_keys.append(value)
                    continue
                value = self.resolve(entry)
                choices = self.file_choices(entry) if value is None else [value]
                if choices:
                    spec.parameter_files.extend(choices)
                else:
                    spec.unresolved.append(ast.unparse(entry))
            specs.append(spec)
        return specs

    def file_choices(self, expr: ast.AST) -> list[str]:
        """Return the share files a ``PythonExpression([...])`` parameter entry chooses from."""
        if isinstance(expr, ast.Name) and expr.id in self.assignments:
            expr = self.assignments[expr.id]
        if not (isinstance(expr, ast.Call) and _call_name(expr).endswith('PythonExpression')
                and expr.args and isinstance(expr.args[0], ast.List)):
            return []
        values = [self.resolve(e) for e in expr.args[0].elts]
        return [v for v in values if v is not None and split_share(v)]

    def share_paths(self) -> list[tuple[str, str]]:
        """(package, relative path) of every path under a package share directory it builds."""
        found = []
        for call in ast.walk(self.tree):
            if isinstance(call, ast.Call) and _call_name(call).rsplit('.', 1)[-1] in (
                    'join', 'PathJoinSubstitution'):
                value = self.resolve(call)
                parts = split_share(value) if value else None
                if parts and parts[1]:
                    found.append(parts)
        return sorted(set(found))


def console_scripts(setup_py: str | Path) -> dict[str, str]:
    """Name -> 'module:function' of the console_scripts entry points in a setup.py."""
    tree = ast.parse(Path(setup_py).read_text())
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and _call_name(call) == 'setup':
            for kw in call.keywords:
                if kw.arg == 'entry_points':
                    points = ast.literal_eval(kw.value)
                    out = {}
                    for line in points.get('console_scripts', []):
                        name, _, target = line.partition('=')
                        out[name.strip()] = target.strip()
                    return out
    return {}


def yaml_parameter_keys(path: str | Path, node_name: str) -> list[str]:
    """Parameter names a ROS params file sets for `node_name` (`/**` sections included)."""
    data: Any = yaml.safe_load(Path(path).read_text()) or {}
    keys: list[str] = []
    for section in (node_name, f'/{node_name}', '/**'):
        params = (data.get(section) or {}).get('ros__parameters') or {}
        keys += list(_flatten(params))
    return keys


def _flatten(params: dict[str, Any], prefix: str = '') -> list[str]:
    """Nested parameter dicts become dotted names (as rclpy declares them)."""
    out = []
    for key, value in params.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out += _flatten(value, name + '.')
        else:
            out.append(name)
    return out
