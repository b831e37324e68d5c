"""A stand-in for the subset of the ROS 2 launch API that this project's launch files use, with its semantics.

``launch`` / ``launch_ros`` are not installable from PyPI (no ``ros-launch``/``ros-launch-ros`` wheels exist
next to ``ros-rclpy``). This module provides stand-ins of ``LaunchDescription``, ``DeclareLaunchArgument``,
``LaunchConfiguration``, ``SetEnvironmentVariable``, ``UnsetEnvironmentVariable``, ``OpaqueFunction``,
``Shutdown``, ``IfCondition``/``UnlessCondition``, ``launch_ros.actions.Node``,
``launch_ros.parameter_descriptions.ParameterValue`` and ``launch_ros.utilities.evaluate_parameters`` so that

- tests can load every ``launch/*.launch.py`` and get the nodes, parameter values and environment that
  ``ros2 launch`` would give them (``describe``), and
- on machines without ``ros2 launch`` the same files can be run
  (``python tools/mini_launch.py FILE [name:=value ...]``): each Node becomes
  ``<prefix>/lib/<pkg>/<exe> --ros-args -r __node:=<name> --params-file ...`` (what ``ros2 launch`` runs),
  started in this process's process group under the project's network isolation.

The rules follow the launch documentation (and issue 18, where the files were run with the real libraries):

- arguments are ``name:=value`` strings; an argument the file does not declare is ignored (with a warning
  here; ``ros2 launch`` ignores it silently); a declared argument without default must be given; ``choices``
  are enforced;
- the entities are visited in order, as launch does: arguments, environment actions, opaque functions (their
  returned entities are visited in place) and nodes, each node "started" when visited. When a later entity
  fails, the nodes visited before it would already be running under ``ros2 launch``: :class:`LaunchError`
  lists them in ``started`` (this runner starts nothing when any entity fails);
- ``IfCondition``/``UnlessCondition`` accept only ``true``, ``1``, ``false``, ``0`` (any case, stripped);
  anything else (``yes``, ``''``) is an error;
- node parameters: a plain Python value keeps its type (a ``str`` stays a string); a substitution (e.g.
  ``LaunchConfiguration``) is read as YAML: ``'30'`` -> 30 (int), ``'yes'`` -> True, ``'007'`` -> 7,
  ``'pick: the red cube'`` -> a dict, which is refused (only bool, int, float, str, bytes and uniform lists
  are parameter values); an empty result is the empty string. ``ParameterValue(sub, value_type=T)`` converts
  the string instead: ``str`` keeps it as it is, ``int``/``float`` use Python's ``int()``/``float()``
  (``'30'`` -> 30.0 for float), ``bool`` reads ``1``/``0`` and YAML booleans;
- a node whose package or executable is not installed fails when it is visited (``package 'rviz2' not
  found``);
- running: Ctrl-C (SIGINT to the whole process group, so every node gets it from the terminal) makes this
  runner wait ``--sigterm-timeout`` seconds, then send SIGTERM to the nodes still running, then SIGKILL after
  ``--sigkill-timeout`` more; with ``--noninteractive`` (or on a stop that is not a Ctrl-C: ``--duration``, a
  node with ``on_exit=Shutdown()`` that exited) it first sends its own SIGINT to each node, as launch does.
  The exit code is 0 when every node exited with 0.

With a real ROS 2 install, use ``ros2 launch smolvla_policy <file>`` instead; the files use the real API.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ros_harness  # noqa: E402

TRUE_EXPRESSIONS, FALSE_EXPRESSIONS = ("true", "1"), ("false", "0")
SCALAR_TYPES = (bool, int, float, str, bytes)


class LaunchError(RuntimeError):
    """A launch that fails; ``started`` = the nodes ``ros2 launch`` would have started before the failure."""

    def __init__(self, message: str, started: Sequence[NodeSpec] = ()) -> None:
        super().__init__(message)
        self.started = list(started)


class InvalidConditionExpressionError(ValueError):
    pass


# -- context and substitutions -------------------------------------------------------------------------------
@dataclass
class LaunchContext:
    launch_configurations: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)


class Substitution:
    def perform(self, context: LaunchContext) -> str:  # pragma: no cover - interface
        raise NotImplementedError


class TextSubstitution(Substitution):
    def __init__(self, *, text: str) -> None:
        self.text = text

    def perform(self, context: LaunchContext) -> str:
        return self.text


class LaunchConfiguration(Substitution):
    def __init__(self, variable_name: str, default: Any = None) -> None:
        self.variable_name = variable_name
        self.default = default

    def perform(self, context: LaunchContext) -> str:
        if self.variable_name in context.launch_configurations:
            return context.launch_configurations[self.variable_name]
        if self.default is not None:
            return perform_substitutions(context, normalize_to_list_of_substitutions(self.default))
        raise LaunchError(f"launch configuration '{self.variable_name}' does not exist")


def normalize_to_list_of_substitutions(value: Any) -> list[Substitution]:
    if isinstance(value, Substitution):
        return [value]
    if isinstance(value, str):
        return [TextSubstitution(text=value)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [TextSubstitution(text=str(value))]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in normalize_to_list_of_substitutions(v)]
    raise TypeError(f"not a substitution: {value!r}")


def perform_substitutions(context: LaunchContext, substitutions: Sequence[Substitution]) -> str:
    return "".join(s.perform(context) for s in substitutions)


def _is_substitution(value: Any) -> bool:
    return isinstance(value, Substitution) or (
        isinstance(value, (list, tuple))
        and any(isinstance(v, Substitution) for v in value)
        and all(isinstance(v, (Substitution, str)) for v in value)
    )


# -- conditions ----------------------------------------------------------------------------------------------
class IfCondition:
    def __init__(self, predicate_expression: Any) -> None:
        self.predicate = normalize_to_list_of_substitutions(predicate_expression)

    def _value(self, context: LaunchContext) -> bool:
        text = perform_substitutions(context, self.predicate).strip().lower()
        if text in TRUE_EXPRESSIONS:
            return True
        if text in FALSE_EXPRESSIONS:
            return False
        raise InvalidConditionExpressionError(
            f"invalid condition expression '{text}': expected one of "
            f"[{', '.join(TRUE_EXPRESSIONS + FALSE_EXPRESSIONS)}]"
        )

    def evaluate(self, context: LaunchContext) -> bool:
        return self._value(context)


class UnlessCondition(IfCondition):
    def evaluate(self, context: LaunchContext) -> bool:
        return not self._value(context)


# -- actions -------------------------------------------------------------------------------------------------
class Action:
    def __init__(self, *, condition: Any = None) -> None:
        self.condition = condition


class DeclareLaunchArgument(Action):
    def __init__(
        self,
        name: str,
        *,
        default_value: Any = None,
        description: str | None = None,
        choices: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if choices is not None and len(choices) == 0:
            raise RuntimeError("choices must not be empty (use None)")
        self.name, self.default_value, self.choices = name, default_value, choices
        self.description = description if description is not None else "no description given"


class SetEnvironmentVariable(Action):
    def __init__(self, name: Any, value: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name, self.value = name, value


class UnsetEnvironmentVariable(Action):
    def __init__(self, name: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name


class OpaqueFunction(Action):
    def __init__(
        self,
        *,
        function: Callable[..., Any],
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **rest: Any,
    ) -> None:
        super().__init__(**rest)
        if not callable(function):
            raise TypeError("OpaqueFunction needs a callable")
        self.function, self.args, self.kwargs = function, list(args or []), dict(kwargs or {})


class Shutdown(Action):
    def __init__(self, *, reason: str = "reason not given", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason


class Node(Action):
    def __init__(
        self,
        *,
        executable: Any,
        package: Any = None,
        name: Any = None,
        namespace: Any = None,
        parameters: Sequence[Any] | None = None,
        remappings: Sequence[tuple[Any, Any]] | None = None,
        arguments: Sequence[Any] | None = None,
        output: str = "log",
        additional_env: Mapping[str, Any] | None = None,
        condition: Any = None,
        on_exit: Any = None,
        **unsupported: Any,
    ) -> None:
        if unsupported:
            raise TypeError(f"mini_launch Node does not support {sorted(unsupported)}")
        super().__init__(condition=condition)
        self.package, self.executable, self.name, self.namespace = package, executable, name, namespace
        self.parameters = list(parameters or [])
        self.remappings, self.arguments = list(remappings or []), list(arguments or [])
        self.output, self.additional_env, self.on_exit = output, dict(additional_env or {}), on_exit

    @property
    def node_package(self) -> Any:
        return self.package

    @property
    def node_executable(self) -> Any:
        return self.executable


class LaunchDescription:
    def __init__(self, initial_entities: Sequence[Any] | None = None) -> None:
        self.entities = list(initial_entities or [])


# -- parameters ----------------------------------------------------------------------------------------------
class ParameterValue:
    """launch_ros.parameter_descriptions.ParameterValue: a value whose substitution result is converted to
    ``value_type`` (str, int, float, bool or a list type; None = YAML rules with the type check)."""

    def __init__(self, value: Any, *, value_type: Any = None) -> None:
        self.value, self.value_type = value, value_type

    def evaluate(self, context: LaunchContext) -> Any:
        if not _is_substitution(self.value):
            if self.value_type in (int, float, str, bool) and not isinstance(self.value, self.value_type):
                raise TypeError(f"value {self.value!r} is not a {self.value_type.__name__}")
            return self.value
        return coerce_to_type(
            perform_substitutions(context, normalize_to_list_of_substitutions(self.value)), self.value_type
        )


def coerce_to_type(text: str, data_type: Any = None) -> Any:
    """A substitution result converted as ParameterValue(value_type=data_type) does."""
    if data_type is str:
        return text
    if data_type in (int, float):
        return data_type(text)  # ValueError names the text
    if data_type is bool:
        text = {"1": "true", "0": "false"}.get(text, text)
    elif data_type is not None:
        raise ValueError(f"unsupported value_type {data_type!r}")
    if text == "":
        value: Any = ""
    else:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"cannot read '{text}' as YAML: {exc}") from exc
    if data_type is bool and not isinstance(value, bool):
        raise ValueError(f"cannot convert '{text}' to bool")
    if data_type is None and not (isinstance(value, SCALAR_TYPES) or _uniform_list(value)):
        raise ValueError(f"'{text}' is read as {type(value).__name__}, which is not a parameter value")
    return value


def _uniform_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and type(value[0]) in (bool, int, float, str)
        and all(type(v) is type(value[0]) for v in value)
    )


def _yaml_parameter(name: str, text: str) -> Any:
    """The value of a parameter given by a substitution: the result read as YAML, type-checked."""
    try:
        value = yaml.safe_load(text if text != "" else "''")
    except yaml.YAMLError as exc:
        raise TypeError(
            f"parameter '{name}': '{text}' is not valid YAML; for a string, wrap the substitution in "
            "ParameterValue(..., value_type=str)"
        ) from exc
    if type(value) in SCALAR_TYPES:
        return value
    if isinstance(value, list):
        if not _uniform_list(value):
            raise TypeError(f"parameter '{name}': '{text}' is not a non-empty list of one type")
        return tuple(value)
    raise TypeError(
        f"parameter '{name}': '{text}' is read as YAML {type(value)}, and only bool, int, float, str, bytes "
        "and uniform lists are parameter values; for a string, wrap the substitution in "
        "ParameterValue(..., value_type=str)"
    )


def _evaluate_value(context: LaunchContext, name: str, value: Any) -> Any:
    if isinstance(value, ParameterValue):
        try:
            return value.evaluate(context)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"parameter '{name}': {exc}") from exc
    if _is_substitution(value):
        return _yaml_parameter(
            name, perform_substitutions(context, normalize_to_list_of_substitutions(value))
        )
    if isinstance(value, SCALAR_TYPES):
        return value
    if isinstance(value, (list, tuple)):
        items = [_evaluate_value(context, name, v) for v in value]
        kinds = {type(v) for v in items}
        if kinds <= {int, float} and float in kinds:
            return tuple(float(v) for v in items)
        if len(kinds) == 1:
            return tuple(items)
        return tuple(str(v) for v in items)
    raise TypeError(f"parameter '{name}': unexpected value {value!r}")


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def normalize_parameters(parameters: Sequence[Any]) -> list[Any]:
    if isinstance(parameters, str) or not isinstance(parameters, Sequence):
        raise TypeError(f"expected a list of parameters, got {parameters!r}")
    return list(parameters)


def evaluate_parameters(context: LaunchContext, parameters: Sequence[Any]) -> list[Any]:
    """Parameter files (as paths) and name -> value dicts, evaluated like launch_ros does."""
    out: list[Any] = []
    for item in parameters:
        if isinstance(item, Mapping):
            out.append({k: _evaluate_value(context, k, v) for k, v in _flatten(item).items()})
        else:
            out.append(Path(perform_substitutions(context, normalize_to_list_of_substitutions(item))))
    return out


# -- the stand-in modules ------------------------------------------------------------------------------------
def _stub_modules() -> dict[str, types.ModuleType]:
    def module(name: str, **attrs: Any) -> types.ModuleType:
        m = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(m, key, value)
        return m

    actions = module(
        "launch.actions",
        DeclareLaunchArgument=DeclareLaunchArgument,
        SetEnvironmentVariable=SetEnvironmentVariable,
        UnsetEnvironmentVariable=UnsetEnvironmentVariable,
        OpaqueFunction=OpaqueFunction,
        Shutdown=Shutdown,
    )
    subs = module(
        "launch.substitutions", LaunchConfiguration=LaunchConfiguration, TextSubstitution=TextSubstitution
    )
    conditions = module(
        "launch.conditions",
        IfCondition=IfCondition,
        UnlessCondition=UnlessCondition,
        InvalidConditionExpressionError=InvalidConditionExpressionError,
    )
    utilities = module(
        "launch.utilities",
        perform_substitutions=perform_substitutions,
        normalize_to_list_of_substitutions=normalize_to_list_of_substitutions,
    )
    launch = module(
        "launch",
        LaunchDescription=LaunchDescription,
        LaunchContext=LaunchContext,
        actions=actions,
        substitutions=subs,
        conditions=conditions,
        utilities=utilities,
    )
    ros_actions = module("launch_ros.actions", Node=Node)
    descriptions = module("launch_ros.parameter_descriptions", ParameterValue=ParameterValue)
    ros_utilities = module(
        "launch_ros.utilities",
        evaluate_parameters=evaluate_parameters,
        normalize_parameters=normalize_parameters,
    )
    launch_ros = module(
        "launch_ros", actions=ros_actions, parameter_descriptions=descriptions, utilities=ros_utilities
    )
    return {
        "launch": launch,
        "launch.actions": actions,
        "launch.substitutions": subs,
        "launch.conditions": conditions,
        "launch.utilities": utilities,
        "launch_ros": launch_ros,
        "launch_ros.actions": ros_actions,
        "launch_ros.parameter_descriptions": descriptions,
        "launch_ros.utilities": ros_utilities,
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


# -- describing a launch -------------------------------------------------------------------------------------
@dataclass
class NodeSpec:
    """A node of a launch file with everything resolved (parameter values typed as launch types them)."""

    package: str
    executable: str
    name: str | None
    params_files: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    required: bool = False  # on_exit=Shutdown(): its exit stops the whole launch


@dataclass
class LaunchPlan:
    arguments: dict[str, DeclareLaunchArgument]
    values: dict[str, str]
    nodes: list[NodeSpec]
    env: dict[str, str]  # variables the launch sets
    unset: set[str] = field(default_factory=set)  # variables the launch removes
    unknown: list[str] = field(default_factory=list)  # arguments given but not declared (ignored)


def load_launch_file(path: str | os.PathLike) -> LaunchDescription:
    with stub_launch_api():
        spec = importlib.util.spec_from_file_location(f"launchfile_{Path(path).stem.replace('.', '_')}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.generate_launch_description()


def parse_arguments(items: Sequence[str]) -> dict[str, str]:
    """``name:=value`` items as ``ros2 launch`` reads them (the value stays a string; the last one wins)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"malformed launch argument '{item}', expected the form 'name:=value'")
        out[name] = value
    return out


def describe(
    path: str | os.PathLike,
    overrides: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
) -> LaunchPlan:
    """Visit a launch file's entities in order against the stand-ins, like ``ros2 launch`` does, and return
    what it would start. Raises :class:`LaunchError` (``started``: the nodes launch would already run)."""
    ld = load_launch_file(path)
    overrides = dict(overrides or {})
    context = LaunchContext(dict(overrides), dict(os.environ if environment is None else environment))
    plan = LaunchPlan({}, context.launch_configurations, [], {})
    declared = [e for e in ld.entities if isinstance(e, DeclareLaunchArgument)]
    plan.unknown = sorted(set(overrides) - {e.name for e in declared})
    with stub_launch_api():  # opaque functions import the launch API while they run
        for entity in ld.entities:
            try:
                _visit(entity, context, plan)
            except LaunchError:
                raise
            except Exception as exc:  # noqa: BLE001 (any failure of an entity fails the launch, like launch)
                raise LaunchError(f"{type(exc).__name__}: {exc}", plan.nodes) from exc
    return plan


def _visit(entity: Any, context: LaunchContext, plan: LaunchPlan) -> None:
    if isinstance(entity, LaunchDescription):
        for e in entity.entities:
            _visit(e, context, plan)
        return
    if getattr(entity, "condition", None) is not None and not entity.condition.evaluate(context):
        return
    values = context.launch_configurations
    if isinstance(entity, DeclareLaunchArgument):
        plan.arguments[entity.name] = entity
        if entity.name not in values:
            if entity.default_value is None:
                raise LaunchError(f"required launch argument '{entity.name}' was not given", plan.nodes)
            default = normalize_to_list_of_substitutions(entity.default_value)
            values[entity.name] = perform_substitutions(context, default)
        if entity.choices is not None and values[entity.name] not in entity.choices:
            value = values[entity.name]
            raise LaunchError(
                f"launch argument '{entity.name}': '{value}' is not one of {list(entity.choices)}", plan.nodes
            )
    elif isinstance(entity, SetEnvironmentVariable):
        name = perform_substitutions(context, normalize_to_list_of_substitutions(entity.name))
        value = perform_substitutions(context, normalize_to_list_of_substitutions(entity.value))
        context.environment[name] = plan.env[name] = value
        plan.unset.discard(name)
    elif isinstance(entity, UnsetEnvironmentVariable):
        name = perform_substitutions(context, normalize_to_list_of_substitutions(entity.name))
        context.environment.pop(name, None)
        plan.env.pop(name, None)
        plan.unset.add(name)
    elif isinstance(entity, OpaqueFunction):
        for e in entity.function(context, *entity.args, **entity.kwargs) or []:
            _visit(e, context, plan)
    elif isinstance(entity, Node):
        plan.nodes.append(_node_spec(entity, context, plan))
    else:
        raise TypeError(f"mini_launch does not know the entity {entity!r}")


def _node_spec(node: Node, context: LaunchContext, plan: LaunchPlan) -> NodeSpec:
    def text(value: Any) -> str:
        return perform_substitutions(context, normalize_to_list_of_substitutions(value))

    package, executable = text(node.package), text(node.executable)
    try:
        ros_harness.find_executable(package, executable)
    except Exception as exc:  # noqa: BLE001 (PackageNotFoundError or FileNotFoundError)
        what = f"package '{package}' not found" if "PackageNotFound" in type(exc).__name__ else str(exc)
        raise LaunchError(what, plan.nodes) from exc
    spec = NodeSpec(package, executable, text(node.name) if node.name is not None else None)
    try:
        evaluated = evaluate_parameters(context, normalize_parameters(node.parameters))
    except (TypeError, ValueError) as exc:
        raise LaunchError(f"{spec.name or executable}: {exc}", plan.nodes) from exc
    for item in evaluated:
        if isinstance(item, dict):
            spec.parameters.update(item)
        else:
            spec.params_files.append(str(item))
    spec.remappings = [(text(a), text(b)) for a, b in node.remappings]
    spec.arguments = [text(a) for a in node.arguments]
    spec.env = {text(k): text(v) for k, v in node.additional_env.items()}
    exits = node.on_exit if isinstance(node.on_exit, (list, tuple)) else [node.on_exit]
    spec.required = any(isinstance(a, Shutdown) for a in exits)
    return spec


# -- running -------------------------------------------------------------------------------------------------
class LaunchedNode:
    """A node process in this process's group (as ``ros2 launch`` starts them); output to a log file."""

    def __init__(self, spec: NodeSpec, env: Mapping[str, str], params_file: Path | None, log_path: Path):
        self.spec, self.package, self.executable = spec, spec.package, spec.executable
        exe = ros_harness.find_executable(spec.package, spec.executable)
        files = [*spec.params_files, *([params_file] if params_file else [])]
        self.cmd = [
            str(exe),
            *spec.arguments,
            *ros_harness.ros_args(spec.name, None, files, spec.remappings),
        ]
        self._log_file = open(log_path, "w+")  # noqa: SIM115 (open for the process lifetime)
        self.proc = subprocess.Popen(self.cmd, env=dict(env), stdout=self._log_file, stderr=subprocess.STDOUT)

    @property
    def log_path(self) -> str:
        return self._log_file.name

    @property
    def label(self) -> str:
        return self.spec.name or self.executable

    def output(self) -> str:
        self._log_file.flush()
        return Path(self._log_file.name).read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: int) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL; returns the exit code."""
        stop_all([self], send_sigint=True, sigterm_timeout=timeout, sigkill_timeout=3.0)
        return self.proc.returncode


def _parameter_file_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def start_nodes(plan: LaunchPlan, env: Mapping[str, str] | None = None) -> list[LaunchedNode]:
    """Start every node of ``plan`` as ``ros2 launch`` would, under the project's network isolation."""
    base_env = ros_harness.ros_environment(base=env)
    base_env.update(plan.env)
    for name in plan.unset:
        base_env.pop(name, None)
    tmpdir = Path(tempfile.mkdtemp(prefix="mini_launch-", dir=ros_harness.log_dir()))
    procs = []
    try:
        for i, node in enumerate(plan.nodes):
            inline = None
            if node.parameters:
                inline = tmpdir / f"{i}_{node.executable}.yaml"
                params = {k: _parameter_file_value(v) for k, v in node.parameters.items()}
                inline.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
            log = tmpdir / f"{i}_{node.name or node.executable}.log"
            procs.append(LaunchedNode(node, {**base_env, **node.env}, inline, log))
    except BaseException:
        stop_all(procs, send_sigint=True)
        raise
    return procs


def stop_all(
    procs: Sequence[LaunchedNode],
    *,
    send_sigint: bool,
    sigterm_timeout: float = 5.0,
    sigkill_timeout: float = 5.0,
) -> None:
    """launch's shutdown of its processes: SIGINT (unless the terminal already sent it), SIGTERM after
    ``sigterm_timeout``, SIGKILL after ``sigkill_timeout`` more."""
    if send_sigint:
        for p in procs:
            p.send(signal.SIGINT)
    for sig, timeout in ((signal.SIGTERM, sigterm_timeout), (signal.SIGKILL, sigkill_timeout)):
        deadline = time.monotonic() + timeout
        while any(p.alive() for p in procs) and time.monotonic() < deadline:
            time.sleep(0.02)
        for p in procs:
            if p.alive():
                if sig == signal.SIGTERM and ros_harness.catches(p.proc.pid, signal.SIGUSR2):
                    # the project's nodes print every thread's stack on SIGUSR2: where it is stuck, in its log
                    p.send(signal.SIGUSR2)
                    time.sleep(0.3)
                print(f"[mini_launch] {p.label} still running: sending {sig.name}", flush=True)
                p.send(sig)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.proc.wait(5.0)
        p._log_file.close()


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
    parser.add_argument(
        "--noninteractive",
        action="store_true",
        help="on Ctrl-C also send SIGINT to each node (as ros2 launch --noninteractive does)",
    )
    parser.add_argument("--sigterm-timeout", type=float, default=5.0, help="seconds before SIGTERM on stop")
    parser.add_argument("--sigkill-timeout", type=float, default=5.0, help="seconds after SIGTERM to SIGKILL")
    args = parser.parse_args(argv)
    try:
        overrides = parse_arguments(args.arguments)
    except ValueError as exc:
        parser.error(str(exc))
    if args.show_args:
        ld = load_launch_file(args.launch_file)
        for e in ld.entities:
            if isinstance(e, DeclareLaunchArgument):
                print(f"{e.name} (default: {e.default_value!r})\n    {e.description}")
        return 0
    # the first Ctrl-C stops the launch; later ones are ignored while the nodes shut down
    stop = {"signal": 0}

    def on_signal(signum: int, frame: object) -> None:
        stop["signal"] = stop["signal"] or signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        plan = describe(args.launch_file, overrides)
    except LaunchError as exc:
        print(f"[mini_launch] launch failed, no node started: {exc}", file=sys.stderr, flush=True)
        if exc.started:
            names = ", ".join(n.name or n.executable for n in exc.started)
            print(f"[mini_launch] (ros2 launch would have left these running: {names})", file=sys.stderr)
        return 1
    if plan.unknown:
        declared = ", ".join(sorted(plan.arguments))
        print(
            f"[mini_launch] warning: {', '.join(plan.unknown)} not declared by "
            f"{Path(args.launch_file).name}: ignored (ros2 launch ignores them silently); "
            f"declared: {declared}",
            file=sys.stderr,
            flush=True,
        )
    ros_harness.apply_ros_environment()
    print(f"[mini_launch] ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, DDS profile {ros_harness.DDS_PROFILE}")
    procs = start_nodes(plan)
    for p in procs:
        print(f"[mini_launch] started {p.label} (pid {p.proc.pid}), log: {p.log_path}", flush=True)
    offsets = {p.log_path: 0 for p in procs}
    t0 = time.monotonic()
    send_sigint = True
    try:
        while not stop["signal"]:
            time.sleep(0.1)
            if args.tail:
                for p in procs:
                    text = p.output()
                    new = text[offsets[p.log_path] :]
                    offsets[p.log_path] = len(text)
                    for line in new.splitlines():
                        print(f"[{p.label}] {line}")
            dead = [p for p in procs if not p.alive() and p.spec.required]
            if dead:
                for p in dead:
                    tail = p.output()[-2000:]
                    print(f"[mini_launch] {p.label} exited with {p.proc.returncode}; last output:\n{tail}")
                break
            if args.duration and time.monotonic() - t0 >= args.duration:
                break
        if stop["signal"] == signal.SIGINT:
            print("[mini_launch] user interrupted with ctrl-c (SIGINT)", flush=True)
            send_sigint = args.noninteractive  # the terminal sent SIGINT to every node already
    finally:
        stop_all(
            procs,
            send_sigint=send_sigint,
            sigterm_timeout=args.sigterm_timeout,
            sigkill_timeout=args.sigkill_timeout,
        )
    for p in procs:
        print(f"[mini_launch] {p.label} (pid {p.proc.pid}) exited with {p.proc.returncode}", flush=True)
    return 0 if all(p.proc.returncode == 0 for p in procs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
