"""Typer's parameter coercion, without pydantic for the values that need no coercion.

Typer coerces every parameter value but a flag's through a pydantic TypeAdapter, built the
first time the parameter is processed: every command run, even with no option given, imports
pydantic and builds adapters — about as long as all of `sqlite-utils --help` takes. Most
values a run meets need nothing done: an option left unset (None), a default of the declared
type, a string for a `str` parameter. For those the adapter returns the value itself, so that
is returned without it. Anything else (a number typed on the command line, a list, a value
out of range) goes to typer's own adapter, built then: conversions and error messages stay
typer's. (tests/test_startup.py checks both give the same for every parameter's default.)

`install()` (called by zos_cli.cli) changes nothing when typer's internals are not the ones
expected (another release): typer then works as it always does, only slower to start.
"""

from __future__ import annotations

from typing import Any

_INSTALLED = False


def install() -> bool:
    """Make typer's parameters build their pydantic coercion only when a value needs it;
    whether that is in place."""
    global _INSTALLED
    if _INSTALLED:
        return True
    try:
        from typer import _coercion
        from typer.core import _TyperParameter
    except ImportError:
        return False
    if not (hasattr(_TyperParameter, "get_runtime_param")
            and hasattr(_coercion, "build_runtime_param")
            and hasattr(_coercion, "TypeDescriptor")):
        return False
    build = _coercion.build_runtime_param

    def get_runtime_param(self):
        if self._runtime_param is None:
            self._runtime_param = _Deferred(self.type_descriptor, build)
        return self._runtime_param

    _TyperParameter.get_runtime_param = get_runtime_param
    _INSTALLED = True
    return True


def installed() -> bool:
    return _INSTALLED


class _Deferred:
    """Stands for typer's RuntimeParam of one parameter; builds it on the first value that
    needs it."""

    __slots__ = ("descriptor", "_build", "_real")

    def __init__(self, descriptor, build) -> None:
        self.descriptor = descriptor
        self._build = build
        self._real = None

    def coerce(self, value: Any, param, ctx) -> Any:
        if value is None:  # (as typer's RuntimeParam.coerce, before it uses the adapter)
            return () if (param.multiple or param.nargs == -1) else None
        if unchanged_by_coercion(self.descriptor, value, param):
            return value
        return self.real().coerce(value, param=param, ctx=ctx)

    def real(self):
        if self._real is None:
            self._real = self._build(self.descriptor)
        return self._real


def unchanged_by_coercion(descriptor, value: Any, param) -> bool:
    """Whether typer's adapter would return `value` itself: a single value of exactly the
    declared str, int or float (not a bool for an int), no custom parser or file, and a
    number within the declared min/max (out of range, typer says so in its words)."""
    if param.multiple or param.nargs != 1 or descriptor.file_annotation is not None:
        return False
    info = descriptor.parameter_info
    annotation = descriptor.annotation
    if info.parser is not None or annotation not in (str, int, float):
        return False
    if type(value) is not annotation:
        return False
    if annotation is str:
        return True
    if getattr(info, "clamp", None):
        return False
    low, high = getattr(info, "min", None), getattr(info, "max", None)
    if value != value:  # NaN: left to typer
        return False
    return (low is None or value >= low) and (high is None or value <= high)
