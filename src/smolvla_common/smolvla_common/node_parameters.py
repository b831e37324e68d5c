"""Declare a :class:`smolvla_common.parameters.ParameterTable` on an rclpy node (the ROS side of the scheme).

- Every entry becomes a parameter with a ``ParameterDescriptor`` built from it: type, description, the allowed
  values in ``additional_constraints`` (also "start-up only"), ``floating_point_range``/``integer_range``.
- Start-up: the given values (``--ros-args -p``, parameter files, launch) are read with a permissive
  descriptor first, then checked all together; a problem raises :class:`ParameterError` naming the parameter,
  the allowed values and the value given (``run_node`` reports it and exits with code 1, no traceback). An
  integer for a double is accepted and stored as a float.
- Run time: a pre-set callback turns integers into floats for doubles; the on-set callback only validates
  (no state changes); the node's ``on_change(changes)`` runs in the post-set callback with the validated,
  coerced values, after rclpy stored them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from smolvla_common.parameters import Param, ParameterError, ParameterTable

__all__ = ["NodeParameters", "ParameterError", "descriptor"]

_TYPES = {
    "bool": ParameterType.PARAMETER_BOOL,
    "int": ParameterType.PARAMETER_INTEGER,
    "double": ParameterType.PARAMETER_DOUBLE,
    "string": ParameterType.PARAMETER_STRING,
    "bool_array": ParameterType.PARAMETER_BOOL_ARRAY,
    "int_array": ParameterType.PARAMETER_INTEGER_ARRAY,
    "double_array": ParameterType.PARAMETER_DOUBLE_ARRAY,
    "string_array": ParameterType.PARAMETER_STRING_ARRAY,
}
_PTYPES = {k: Parameter.Type(v) for k, v in _TYPES.items()}
_INT64 = 2**63 - 1


def descriptor(p: Param) -> ParameterDescriptor:
    """The descriptor of ``p``. Dynamically typed so that a value of the wrong type reaches our validation
    (and its named message) instead of rclpy's unnamed type error; ``type`` still says the declared type."""
    d = ParameterDescriptor(
        name=p.name,
        type=_TYPES[p.kind],
        description=p.description,
        additional_constraints=f"allowed: {p.allowed()}" + ("; start-up only" if p.read_only else ""),
        # start-up-only parameters are refused by our validation, whose reason says so ("restart the node"),
        # rather than by rclpy's read_only flag (its reason names neither the cause nor the remedy)
        read_only=False,
        dynamic_typing=True,
    )
    if p.kind == "double" and (p.low is not None or p.high is not None):
        lo = -math.inf if p.low is None else float(p.low)
        hi = math.inf if p.high is None else float(p.high)
        d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    elif p.kind == "int" and (p.low is not None or p.high is not None):
        lo_i = -_INT64 if p.low is None else int(p.low)
        hi_i = _INT64 if p.high is None else int(p.high)
        d.integer_range = [IntegerRange(from_value=lo_i, to_value=hi_i, step=0)]
    return d


def _typed(p: Param, value: Any) -> Parameter:
    return Parameter(p.name, _PTYPES[p.kind], value)


class NodeParameters:
    """The parameters of ``node`` declared from ``table``; ``values`` holds the validated current values.

    ``on_change(changes)`` is called after a successful run-time change with ``{name: coerced value}``.
    """

    def __init__(
        self,
        node: Node,
        table: ParameterTable,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.node = node
        self.table = table
        self.on_change = on_change
        given: dict[str, Any] = {}
        for p in table:
            permissive = ParameterDescriptor(
                name=p.name, description=p.description, dynamic_typing=True, type=_TYPES[p.kind]
            )
            value = node.declare_parameter(p.name, p.coerce(p.default), permissive).value
            # rcl reads an empty list (``cameras:=[]``, ``x: []``) as "no value": for arrays it means []
            given[p.name] = [] if value is None and p.is_array else value
        self.values: dict[str, Any] = table.coerce_all(given)  # ParameterError names every problem
        for p in table:
            # store the coerced value in its declared type (fps:=30 -> 30.0), then the full descriptor
            node.set_parameters([_typed(p, self.values[p.name])])
            node.set_descriptor(p.name, descriptor(p))
        node.add_pre_set_parameters_callback(self._pre_set)
        node.add_on_set_parameters_callback(self._validate)
        node.add_post_set_parameters_callback(self._apply)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    # -- callbacks ---------------------------------------------------------------------------------------
    def _pre_set(self, params: list[Parameter]) -> list[Parameter]:
        """Integers for doubles (and integer lists for double lists) become floats before validation."""
        out = []
        for param in params:
            p = self.table.params.get(param.name)
            if p is not None and param.type_ != _PTYPES[p.kind]:
                # a value that cannot be coerced is left as is: the on-set callback rejects it with the reason
                with contextlib.suppress(ParameterError, TypeError, ValueError):
                    param = _typed(p, p.coerce(param.value))
            out.append(param)
        return out

    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        """Validation only: nothing of the node changes here (that happens in :meth:`_apply`)."""
        ours = {p.name: p.value for p in params if p.name in self.table}
        try:
            self.table.validate_change(self.values, ours)
        except ParameterError as exc:
            self._restore_descriptor_types(ours)
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _restore_descriptor_types(self, names: Mapping[str, Any]) -> None:
        # rclpy set the (dynamically typed) descriptor's type to the rejected value's type: put it back
        for name in names:
            with contextlib.suppress(Exception):  # cosmetic only
                self.node.describe_parameter(name).type = _TYPES[self.table[name].kind]

    def _apply(self, params: list[Parameter]) -> None:
        changes = {}
        for param in params:
            p = self.table.params.get(param.name)
            if p is not None:
                changes[p.name] = p.coerce(param.value)
        if not changes:
            return
        self.values.update(changes)
        if self.on_change is not None:
            self.on_change(changes)
