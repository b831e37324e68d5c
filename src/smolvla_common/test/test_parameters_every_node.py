"""Issue 10, defect 5, on the real nodes (installed executables, real rclpy/DDS): every parameter of every
node, given as an integer where a double is declared, out of its range, or of a wrong type, at start-up and at
run time -> accepted (integers for doubles, stored as doubles) or refused with an error naming the parameter
(and at start-up the allowed values), never a traceback, and a running node stays alive.

The cases are derived from each node's parameter table (smolvla_common.parameters), so a parameter added to a
node is covered without touching this file. Before the fix ``fps:=30`` killed policy_server and
``real_time_factor:=1`` killed sim_node with a traceback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from ros_harness import wait_for
from smolvla_common.parameters import Param, ParameterTable, load_table

pytestmark = pytest.mark.slow
rclpy = pytest.importorskip("rclpy")
from rcl_interfaces.srv import GetParameters, SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402


@dataclass
class NodeUnderTest:
    package: str
    executable: str
    node: str  # the node's name (its parameter services are /<node>/...)
    table: str
    base: dict[str, Any] = field(default_factory=dict)  # what it needs to start here


NODES = [
    NodeUnderTest(
        "so_arm_driver",
        "so_arm_driver",
        "so_arm_driver",
        "so_arm_driver.nodes.driver_node:PARAMETERS",
        {"port": "emulated"},
    ),
    NodeUnderTest(
        "so_arm_driver",
        "camera_node",
        "camera_node",
        "so_arm_driver.nodes.camera_node:PARAMETERS",
        {"source": "/nonexistent/video.avi", "reconnect_period": 5.0},
    ),
    NodeUnderTest("so_arm_driver", "teleop", "teleop", "so_arm_driver.nodes.teleop_node:PARAMETERS"),
    NodeUnderTest(
        "smolvla_sim",
        "sim_node",
        "sim_node",
        "smolvla_sim.nodes.sim_node:PARAMETERS",
        {"cameras": ["top"], "image_width": 32, "image_height": 32, "camera_rate": 5.0},
    ),
    NodeUnderTest(
        "smolvla_policy",
        "policy_server",
        "policy_server",
        "smolvla_policy.server.config:TABLE",
        {"backend": "scripted", "warmup": False},
    ),
    NodeUnderTest(
        "smolvla_policy", "action_queue", "action_queue", "smolvla_policy.nodes.action_queue:PARAMETERS"
    ),
    NodeUnderTest(
        "smolvla_train",
        "episode_recorder",
        "episode_recorder",
        "smolvla_train.nodes.episode_recorder:PARAMETERS",
        {"out_dir": "<tmp>"},  # replaced by a temporary directory
    ),
    NodeUnderTest(
        "smolvla_train",
        "viewer",
        "viewer",
        "smolvla_train.nodes.viewer:PARAMETERS",
        {"serve": False},  # no web server (ports) needed to check parameters
    ),
]
IDS = [n.executable for n in NODES]


def _table(spec: NodeUnderTest) -> ParameterTable:
    pytest.importorskip(spec.package)
    try:
        return load_table(spec.table)
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"{spec.table}: {exc}")


# -- values derived from the declarations ------------------------------------------------------------------
def _int_inside(p: Param, x: float) -> int | None:
    """An integer near ``x`` inside ``p``'s range (None if there is none)."""
    lo = -math.inf if p.low is None else p.low
    hi = math.inf if p.high is None else p.high
    for cand in (round(x), math.ceil(lo), math.floor(hi)):
        if lo <= cand <= hi:
            return int(cand)
    return None


def ints_for_doubles(table: ParameterTable, base: dict[str, Any]) -> dict[str, Any]:
    """Every double (and double list) as integers, jointly valid."""
    values: dict[str, Any] = {}
    for p in table:
        if p.kind == "double":
            v = _int_inside(p, base.get(p.name, p.default))
            if v is not None:
                values[p.name] = v
        elif p.kind == "double_array":
            values[p.name] = [int(round(x)) for x in p.default]
    # keep only what the table accepts together (its cross checks), dropping offenders one by one
    for name in list(values):
        try:
            table.coerce_all({**base, **values})
            break
        except ValueError:
            values.pop(name)
    table.coerce_all({**base, **values})
    return values


def out_of_range(p: Param) -> Any:
    if p.kind in ("int", "double") and (p.low is not None or p.high is not None):
        span = (p.high or 0) - (p.low or 0) if p.low is not None and p.high is not None else 10
        bad = p.high + max(1, span) if p.high is not None else p.low - max(1, span)
        return int(bad) if p.kind == "int" else float(bad)
    if p.kind == "string" and p.choices:
        return "no_such_choice"
    return None


def wrong_type(p: Param) -> Any:
    if p.kind in ("int", "double", "bool"):
        return "abc"
    if p.kind == "string":
        return True
    return "abc"  # arrays


# -- a parameter client in the test process ----------------------------------------------------------------
class Client:
    def __init__(self, context, executor, node: str) -> None:  # type: ignore[no-untyped-def]
        self.ros = rclpy.create_node("param_probe", context=context)
        executor.add_node(self.ros)
        self.set_cli = self.ros.create_client(SetParameters, f"/{node}/set_parameters")
        self.get_cli = self.ros.create_client(GetParameters, f"/{node}/get_parameters")

    def ready(self, timeout: float) -> bool:
        return self.set_cli.wait_for_service(timeout_sec=timeout) and self.get_cli.wait_for_service(
            timeout_sec=5
        )

    def _call(self, cli, request):  # type: ignore[no-untyped-def]
        future = cli.call_async(request)
        assert wait_for(future.done, timeout=30.0), "no reply"
        return future.result()

    def set(self, name: str, value: Any):  # type: ignore[no-untyped-def]
        msg = Parameter(name, value=value).to_parameter_msg()
        return self._call(self.set_cli, SetParameters.Request(parameters=[msg])).results[0]

    def get(self, names: list[str]) -> dict[str, Any]:
        res = self._call(self.get_cli, GetParameters.Request(names=names))
        return {n: Parameter.from_parameter_msg(_msg(n, v)) for n, v in zip(names, res.values)}


def _msg(name: str, value):  # type: ignore[no-untyped-def]
    from rcl_interfaces.msg import Parameter as ParameterMsg

    return ParameterMsg(name=name, value=value)


def _base(spec: NodeUnderTest, tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {k: (str(tmp_path / "out") if v == "<tmp>" else v) for k, v in spec.base.items()}


def _no_traceback(node) -> None:  # type: ignore[no-untyped-def]
    assert "Traceback" not in node.output(), node.output()


@pytest.mark.parametrize("spec", NODES, ids=IDS)
def test_integers_for_doubles_at_start_up_and_bad_values_at_run_time(
    spec, run_node, ros_context, ros_executor, tmp_path
):
    table = _table(spec)
    base = _base(spec, tmp_path)
    ints = ints_for_doubles(table, base)
    node = run_node(spec.package, spec.executable, parameters={**base, **ints})
    client = Client(ros_context, ros_executor, spec.node)
    assert client.ready(60.0) and node.alive(), node.output()
    # start-up: every integer given for a double is accepted and stored as a double
    got = client.get(list(ints))
    for name, value in ints.items():
        assert got[name].type_ in (Parameter.Type.DOUBLE, Parameter.Type.DOUBLE_ARRAY), name
        assert got[name].value == pytest.approx(value), name
    started = client.get(list(table.params))
    # run time
    for p in table:
        if p.read_only:
            res = client.set(p.name, p.default)
            assert not res.successful and f"'{p.name}'" in res.reason and "restart" in res.reason, res.reason
            continue
        if p.kind == "double":
            v = _int_inside(p, started[p.name].value)
            res = client.set(p.name, v)
            assert res.successful, (p.name, v, res.reason)
            now = client.get([p.name])[p.name]
            assert now.type_ == Parameter.Type.DOUBLE and now.value == float(v), p.name
            assert client.set(p.name, started[p.name].value).successful  # back to the start value
        bad = out_of_range(p)
        if bad is not None:
            res = client.set(p.name, bad)
            assert not res.successful and p.name in res.reason, (p.name, bad, res.reason)
        res = client.set(p.name, wrong_type(p))
        assert not res.successful and f"'{p.name}'" in res.reason, (p.name, res.reason)
    after = client.get(list(table.params))
    assert {n: v.value for n, v in after.items()} == {
        n: v.value for n, v in started.items()
    }  # nothing applied
    assert node.alive(), node.output()
    _no_traceback(node)


@pytest.mark.parametrize("spec", NODES, ids=IDS)
@pytest.mark.parametrize("kind", ["out_of_range", "wrong_type"])
def test_bad_values_at_start_up_are_named_errors_without_traceback(spec, kind, run_node, tmp_path):
    table = _table(spec)
    make = out_of_range if kind == "out_of_range" else wrong_type
    bad = {p.name: make(p) for p in table if make(p) is not None}
    node = run_node(spec.package, spec.executable, parameters={**_base(spec, tmp_path), **bad})
    assert wait_for(lambda: not node.alive(), timeout=60.0), f"{spec.executable} did not stop"
    out = node.output()
    assert node.proc.returncode not in (0, None), out
    for name in bad:  # every problem at once, each with what is allowed
        p = table[name]
        assert f"parameter '{name}' must be {p.allowed()}" in out, (name, out)
    _no_traceback(node)


@pytest.mark.parametrize(
    ("package", "executable", "node", "params"),
    [
        (
            "smolvla_policy",
            "policy_server",
            "policy_server",
            {"fps": 30, "backend": "scripted", "warmup": False},
        ),
        (
            "smolvla_sim",
            "sim_node",
            "sim_node",
            {"real_time_factor": 1, "cameras": ["top"], "camera_rate": 0},
        ),
    ],
    ids=["policy_server_fps_30", "sim_node_real_time_factor_1"],
)
def test_integer_for_double_no_longer_kills_the_node(
    package, executable, node, params, run_node, ros_context, ros_executor
):
    """Regression (issue 10, defect 5): ``fps:=30`` killed policy_server and ``real_time_factor:=1`` killed
    sim_node with an InvalidParameterTypeException traceback."""
    pytest.importorskip(package)
    proc = run_node(package, executable, parameters=params)
    client = Client(ros_context, ros_executor, node)
    assert client.ready(60.0) and proc.alive(), proc.output()
    name = next(iter(params))
    got = client.get([name])[name]
    assert got.type_ == Parameter.Type.DOUBLE and got.value == float(params[name])
    _no_traceback(proc)
