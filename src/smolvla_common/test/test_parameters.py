"""The shared parameter scheme: plain declarations (no ROS) and their ROS adapter on a real rclpy node."""

from __future__ import annotations

import math

import pytest
import yaml

from smolvla_common.parameters import Param, ParameterError, ParameterTable

TABLE = ParameterTable(
    "demo",
    [
        Param("fps", 30.0, "Control rate [Hz].", "double", 0.1, 1000.0),
        Param("window", 20, "Samples averaged.", "int", 1, 10000),
        Param("mode", "fast", "Mode.", "string", choices=("fast", "slow")),
        Param("robot", "so101", "Arm (start-up only).", "string", choices=("so100", "so101"), read_only=True),
        Param("enabled", True, "Switch.", "bool"),
        Param("cameras", ["top", "wrist"], "Cameras.", "string_array"),
        Param("limits", [-1.0, 1.0], "Limits [rad].", "double_array", -4.0, 4.0),
        Param("source", "0", "Device index or path.", "string", accept_int=True),
        Param(
            "margin",
            0.1,
            "Margin.",
            "double",
            0.0,
            1.0,
            check=lambda v: "must not be 0.5" if v == 0.5 else None,
        ),
    ],
    check=lambda v: "window must be at least fps / 10" if v["window"] < v["fps"] / 10 else None,
)


def test_integers_are_accepted_for_doubles_and_stored_as_floats():
    """Regression (issue 10, defect 5): fps:=30 killed policy_server, real_time_factor:=1 killed sim_node."""
    values = TABLE.coerce_all({"fps": 30, "limits": [-2, 2], "source": 2})
    assert values["fps"] == 30.0 and isinstance(values["fps"], float)
    assert values["limits"] == [-2.0, 2.0] and all(isinstance(x, float) for x in values["limits"])
    assert values["source"] == "2"


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("fps", 5000.0, ["'fps'", "a number in [0.1, 1000]", "5000.0"]),
        ("fps", "abc", ["'fps'", "a number in [0.1, 1000]", "'abc' (a string)"]),
        ("fps", True, ["'fps'", "a number", "(a bool)"]),
        ("fps", math.nan, ["'fps'", "a number"]),
        ("window", 2.5, ["'window'", "an integer in [1, 10000]", "2.5 (a double)"]),
        ("window", 0, ["'window'", "[1, 10000]", "got 0"]),
        ("mode", "medium", ["'mode'", "one of fast, slow", "'medium'"]),
        ("enabled", 1, ["'enabled'", "true or false"]),
        ("cameras", "top", ["'cameras'", "a list whose items are each a string"]),
        ("limits", [0.0, 9.0], ["'limits'", "a number in [-4, 4]", "[0.0, 9.0]"]),
        ("margin", 0.5, ["'margin'", "must not be 0.5"]),
    ],
)
def test_problems_name_the_parameter_the_allowed_values_and_the_value(name, value, words):
    with pytest.raises(ParameterError) as info:
        TABLE.coerce_all({name: value})
    for w in words:
        assert w in str(info.value), str(info.value)


def test_every_problem_is_reported_at_once_and_the_cross_check_runs_last():
    with pytest.raises(ParameterError) as info:
        TABLE.coerce_all({"fps": -1, "window": "x"})
    assert "'fps'" in str(info.value) and "'window'" in str(info.value)
    with pytest.raises(ParameterError, match="at least fps / 10"):
        TABLE.coerce_all({"fps": 500, "window": 10})


def test_run_time_changes_refuse_read_only_and_check_the_whole_set():
    current = TABLE.defaults()
    assert TABLE.validate_change(current, {"fps": 40, "use_sim_time": True}) == {"fps": 40.0}
    with pytest.raises(ParameterError, match="read at start-up"):
        TABLE.validate_change(current, {"robot": "so100"})
    with pytest.raises(ParameterError, match="at least"):
        TABLE.validate_change(current, {"fps": 900.0})


def test_yaml_written_from_the_table_reads_back_as_the_declarations():
    text = TABLE.to_yaml()
    assert TABLE.check_yaml(yaml.safe_load(text)) == []
    bad = yaml.safe_load(text.replace("fps: 30.0", "fps: 30").replace("window: 20", "window: 21"))
    bad["/**"]["ros__parameters"]["extra"] = 1
    del bad["/**"]["ros__parameters"]["mode"]
    problems = TABLE.check_yaml(bad)
    assert any("'fps'" in p for p in problems)  # an integer in the file where a double is declared
    assert any("'window'" in p for p in problems)
    assert any("'extra'" in p for p in problems) and any("'mode'" in p for p in problems)


def test_a_default_that_breaks_its_declaration_is_refused():
    with pytest.raises(ParameterError):
        ParameterTable("bad", [Param("x", 5.0, "x", "double", 0.0, 1.0)])
    with pytest.raises(ValueError):
        Param("x", 1, "x", "float")


# -- the ROS adapter on a real rclpy node (in-process) ----------------------------------------------------
@pytest.fixture
def make_node(ros_context):  # type: ignore[no-untyped-def]
    rclpy = pytest.importorskip("rclpy")
    nodes = []

    def make(*overrides: str):  # type: ignore[no-untyped-def]
        args = ["--ros-args"] + [x for o in overrides for x in ("-p", o)]
        node = rclpy.create_node(f"params_{len(nodes)}", context=ros_context, cli_args=args)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()


def test_node_declares_descriptors_and_accepts_integers_for_doubles(make_node):
    from rcl_interfaces.msg import ParameterType

    from smolvla_common.node_parameters import NodeParameters

    node = make_node("fps:=25", "limits:=[-2, 2]", "source:=1", "cameras:=[]")
    params = NodeParameters(node, TABLE)
    assert params["fps"] == 25.0 and node.get_parameter("fps").value == 25.0
    assert node.get_parameter("fps").type_.value == ParameterType.PARAMETER_DOUBLE
    assert node.get_parameter("limits").value == [-2.0, 2.0] and node.get_parameter("source").value == "1"
    assert params["cameras"] == []  # an explicitly empty list (rcl reads it as "no value")
    d = node.describe_parameter("fps")
    assert d.type == ParameterType.PARAMETER_DOUBLE and d.description == "Control rate [Hz]."
    assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (0.1, 1000.0)
    assert "a number in [0.1, 1000]" in d.additional_constraints
    r = node.describe_parameter("window").integer_range[0]
    assert (r.from_value, r.to_value) == (1, 10000)
    assert "start-up only" in node.describe_parameter("robot").additional_constraints


@pytest.mark.parametrize("override", ["fps:=5000.0", "fps:=abc", "window:=2.5", "mode:=medium", "enabled:=1"])
def test_node_start_up_errors_are_named(make_node, override):
    from smolvla_common.node_parameters import NodeParameters

    node = make_node(override)
    with pytest.raises(ParameterError) as info:
        NodeParameters(node, TABLE)
    assert f"'{override.split(':=')[0]}'" in str(info.value)


def test_node_run_time_changes_are_validated_then_applied_after(make_node):
    from rclpy.parameter import Parameter

    from smolvla_common.node_parameters import NodeParameters

    seen: list[dict] = []
    node = make_node()
    params = NodeParameters(node, TABLE, on_change=lambda changes: seen.append(dict(changes)))
    # an integer for a double: accepted, stored as a float, applied after validation
    (res,) = node.set_parameters([Parameter("fps", value=40)])
    assert res.successful and node.get_parameter("fps").value == 40.0 and seen == [{"fps": 40.0}]
    assert params["fps"] == 40.0
    for name, value, words in [
        ("fps", 5000.0, "fps"),  # out of range (rclpy's range check names it too)
        ("fps", "abc", "'fps'"),  # wrong type
        ("window", 2.5, "'window'"),
        ("mode", "medium", "'mode'"),
        ("robot", "so100", "'robot' is read-only at run time (read at start-up): restart"),
        ("fps", 900.0, "at least"),  # the cross check
    ]:
        (res,) = node.set_parameters([Parameter(name, value=value)])
        assert not res.successful and words in res.reason, (name, value, res.reason)
    assert seen == [{"fps": 40.0}]  # nothing applied by rejected changes
    assert node.get_parameter("fps").value == 40.0 and params["fps"] == 40.0
    from rcl_interfaces.msg import ParameterType

    assert node.describe_parameter("fps").type == ParameterType.PARAMETER_DOUBLE  # not left as 'string'
