"""A minimal stand-in for the subset of the ROS 2 launch API that this project's launch files use.

``launch`` / ``launch_ros`` are not installable from PyPI. This module provides small stand-ins of
``LaunchDescription``, ``DeclareLaunchArgument``, ``LaunchConfiguration``, ``SetEnvironmentVariable`` and
``launch_ros.actions.Node`` so that

- tests can load every ``launch/*.launch.py`` and check the nodes it declares (``describe``), and
- on machines without ``ros2 launch`` the same files can be run
  (``python tools/mini_launch.py FILE [name:=value ...]``): each Node becomes
  ``<prefix>/lib/<pkg>/<exe> --ros-args -r __node:=<name> --params-file ...`` (what ``ros2 launch`` runs),
  started under the project's network isolation and stopped with SIGINT.

With a real ROS 2 install, use ``ros2 launch smolvla_policy <file>`` instead; the files use the real API.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import sys
import tempfile
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ros_harness  # noqa: E402


class LaunchConfiguration:
    def __init__(self, variable_name: str, default: Any = None) -> None:
        self.variable_name = variable_name
        self.default = default

    def resolve(self, context: Mapping[str, str]) -> str:
        if self.variable_name in context:
            return context[self.variable_name]
        if self.default is not None:
            return resolve(self.default, context)
        raise KeyError(f"launch argument '{self.variable_name}' has no value and no default")


class DeclareLaunchArgument:
    def __init__(
        self,
        name: str,
        default_value: Any = None,
        description: str = "",
        choices: Sequence[str] | None = None,
    ):
        self.name, self.default_value, self.description, self.choices = (
            name,
            default_value,
            description,
            choices,
        )


class SetEnvironmentVariable:
    def __init__(self, name: str, value: Any) -> None:
        self.name, self.value = name, value


class Node:
    def __init__(
        self,
        *,
        package: str,
        executable: str,
        name: str | None = None,
        namespace: str | None = None,
        parameters: Sequence[Any] = (),
        remappings: Sequence[tuple[Any, Any]] = (),
        arguments: Sequence[Any] = (),
        output: str = "screen",
        additional_env: Mapping[str, Any] | None = None,
        condition: Any = None,
        **unsupported: Any,
    ) -> None:
        if unsupported:
            raise TypeError(f"mini_launch Node does not support {sorted(unsupported)}")
        self.package, self.executable, self.name, self.namespace = package, executable, name, namespace
        self.parameters, self.remappings, self.arguments = list(parameters), list(remappings), list(arguments)
        self.output, self.additional_env, self.condition = output, dict(additional_env or {}), condition


class ParameterValue:
    """launch_ros.parameter_descriptions.ParameterValue: keeps a value's type (e.g. a JSON string as str)."""

    def __init__(self, value: Any, value_type: type | None = None) -> None:
        self.value, self.value_type = value, value_type


class IfCondition:
    def __init__(self, predicate: Any) -> None:
        self.predicate = predicate

    def evaluate(self, context: Mapping[str, str]) -> bool:
        return str(resolve(self.predicate, context)).strip().lower() in ("true", "1", "yes")


class UnlessCondition(IfCondition):
    def evaluate(self, context: Mapping[str, str]) -> bool:
        return not super().evaluate(context)


class LaunchDescription:
    def __init__(self, entities: Sequence[Any] = ()) -> None:
        self.entities = list(entities)


def resolve(value: Any, context: Mapping[str, str]) -> Any:
    """Resolve substitutions (LaunchConfiguration or lists of them and strings) to plain values."""
    if isinstance(value, LaunchConfiguration):
        return value.resolve(context)
    if isinstance(value, ParameterValue):
        resolved = resolve(value.value, context)
        return _Typed(value.value_type(resolved)) if value.value_type else resolved
    if isinstance(value, (list, tuple)) and any(isinstance(v, LaunchConfiguration) for v in value):
        return "".join(str(resolve(v, context)) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v, context) for k, v in value.items()}
    return value


def _stub_modules() -> dict[str, types.ModuleType]:
    launch = types.ModuleType("launch")
    launch.LaunchDescription = LaunchDescription  # type: ignore[attr-defined]
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = DeclareLaunchArgument  # type: ignore[attr-defined]
    actions.SetEnvironmentVariable = SetEnvironmentVariable  # type: ignore[attr-defined]
    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = LaunchConfiguration  # type: ignore[attr-defined]
    conditions = types.ModuleType("launch.conditions")
    conditions.IfCondition = IfCondition  # type: ignore[attr-defined]
    conditions.UnlessCondition = UnlessCondition  # type: ignore[attr-defined]
    launch.actions, launch.substitutions, launch.conditions = actions, subs, conditions  # type: ignore[attr-defined]
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = Node  # type: ignore[attr-defined]
    descriptions = types.ModuleType("launch_ros.parameter_descriptions")
    descriptions.ParameterValue = ParameterValue  # type: ignore[attr-defined]
    launch_ros.actions = ros_actions  # type: ignore[attr-defined]
    launch_ros.parameter_descriptions = descriptions  # type: ignore[attr-defined]
    return {
        "launch": launch,
        "launch.actions": actions,
        "launch.substitutions": subs,
        "launch.conditions": conditions,
        "launch_ros": launch_ros,
        "launch_ros.actions": ros_actions,
        "launch_ros.parameter_descriptions": descriptions,
    }


@contextlib.contextmanager
def stub_launch_api() -> Iterator[None]:
    """Temporarily install the stand-in modules in sys.modules (restoring whatever was there)."""
    stubs = _stub_modules()
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


@dataclass
class NodeSpec:
    """A node of a launch file with everything resolved."""

    package: str
    executable: str
    name: str | None
    params_files: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class LaunchPlan:
    arguments: dict[str, DeclareLaunchArgument]
    values: dict[str, str]
    nodes: list[NodeSpec]
    env: dict[str, str]


def load_launch_file(path: str | os.PathLike) -> LaunchDescription:
    with stub_launch_api():
        spec = importlib.util.spec_from_file_location(f"launchfile_{Path(path).stem.replace('.', '_')}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.generate_launch_description()


def describe(path: str | os.PathLike, overrides: Mapping[str, str] | None = None) -> LaunchPlan:
    """Load a launch file against the stand-ins and resolve its nodes for the given argument values."""
    ld = load_launch_file(path)
    overrides = dict(overrides or {})
    declared = {e.name: e for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    unknown = set(overrides) - set(declared)
    if unknown:
        raise KeyError(f"unknown launch argument(s) {sorted(unknown)}; declared: {sorted(declared)}")
    values: dict[str, str] = {}
    for name, arg in declared.items():
        if name in overrides:
            values[name] = overrides[name]
        elif arg.default_value is not None:
            values[name] = str(resolve(arg.default_value, values))
        else:
            raise KeyError(f"launch argument '{name}' is required")
        if arg.choices and values[name] not in arg.choices:
            raise ValueError(f"launch argument '{name}'='{values[name]}' not in {list(arg.choices)}")
    env: dict[str, str] = {}
    nodes: list[NodeSpec] = []
    for e in ld.entities:
        if isinstance(e, SetEnvironmentVariable):
            env[str(resolve(e.name, values))] = str(resolve(e.value, values))
        elif isinstance(e, Node):
            if e.condition is not None and not e.condition.evaluate(values):
                continue
            spec = NodeSpec(e.package, e.executable, resolve(e.name, values))
            for p in e.parameters:
                if isinstance(p, dict):
                    spec.parameters.update(resolve(p, values))
                else:
                    spec.params_files.append(str(resolve(p, values)))
            spec.remappings = [(str(resolve(a, values)), str(resolve(b, values))) for a, b in e.remappings]
            spec.arguments = [str(resolve(a, values)) for a in e.arguments]
            spec.env = {k: str(resolve(v, values)) for k, v in e.additional_env.items()}
            nodes.append(spec)
    return LaunchPlan(declared, values, nodes, env)


class _Typed:
    """A parameter value whose type was fixed with ParameterValue(value_type=...): not YAML-parsed."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _typed(value: Any) -> Any:
    """Launch substitutions are strings; type 'true'/'1.5'/'3' as YAML like ros2 launch does."""
    if isinstance(value, _Typed):
        return value.value
    if isinstance(value, str):
        try:
            return yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            return value
    return value


def start_nodes(plan: LaunchPlan, env: Mapping[str, str] | None = None) -> list[ros_harness.NodeProcess]:
    """Start every node of ``plan`` as ``ros2 launch`` would, under the project's network isolation."""
    base_env = ros_harness.ros_environment(base=env)
    base_env.update(plan.env)
    tmpdir = Path(tempfile.mkdtemp(prefix="mini_launch-"))
    procs = []
    for i, node in enumerate(plan.nodes):
        files = list(node.params_files)
        if node.parameters:
            inline = tmpdir / f"{i}_{node.executable}.yaml"
            params = {k: _typed(v) for k, v in node.parameters.items()}
            inline.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
            files.append(str(inline))
        procs.append(
            ros_harness.NodeProcess(
                node.package,
                node.executable,
                name=node.name,
                params_file=files,
                remappings=node.remappings,
                extra_args=node.arguments,
                env={**base_env, **node.env},
                log_path=tmpdir / f"{i}_{node.name or node.executable}.log",
            )
        )
    return procs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a launch file of this project without ros2 launch (launch API stand-in).",
        epilog="Example: python tools/mini_launch.py launch/sim_demo.launch.py --duration 60",
    )
    parser.add_argument("launch_file")
    parser.add_argument("arguments", nargs="*", help="launch arguments as name:=value")
    parser.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)"
    )
    parser.add_argument("--show-args", action="store_true", help="list the launch arguments and exit")
    parser.add_argument("--tail", action="store_true", help="echo the nodes' output while running")
    args = parser.parse_args(argv)
    overrides = dict(a.split(":=", 1) for a in args.arguments)
    if args.show_args:
        ld = load_launch_file(args.launch_file)
        for e in ld.entities:
            if isinstance(e, DeclareLaunchArgument):
                print(f"{e.name} (default: {e.default_value!r})\n    {e.description}")
        return 0
    plan = describe(args.launch_file, overrides)
    ros_harness.apply_ros_environment()
    print(f"[mini_launch] ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, DDS profile {ros_harness.DDS_PROFILE}")
    procs = start_nodes(plan)
    for p in procs:
        print(f"[mini_launch] started {p.executable} (pid {p.proc.pid}), log: {p.log_path}")
    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    offsets = {p.log_path: 0 for p in procs}
    t0 = time.monotonic()
    code = 0
    try:
        while not stop["now"]:
            time.sleep(0.2)
            if args.tail:
                for p in procs:
                    text = p.output()
                    new = text[offsets[p.log_path] :]
                    offsets[p.log_path] = len(text)
                    for line in new.splitlines():
                        print(f"[{p.executable}] {line}")
            dead = [p for p in procs if not p.alive()]
            if dead:
                for p in dead:
                    tail = p.output()[-2000:]
                    print(
                        f"[mini_launch] {p.executable} exited with {p.proc.returncode}; last output:\n{tail}"
                    )
                code = 1
                break
            if args.duration and time.monotonic() - t0 >= args.duration:
                break
    finally:
        for p in reversed(procs):
            p.stop()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
