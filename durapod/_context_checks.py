"""What :class:`~durapod.context.JobContext` checks in what an agent hands it: a step's function (sync or
async) and its result, an event to emit, usage to report.

Each check raises the error the agent sees (``InvalidInput``, ``TypeError``, ``ValueError``) before
anything is journaled or logged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pydantic import JsonValue, ValidationError

from durapod.errors import InvalidInput
from durapod.events import CustomEvent, custom_event_data, parse_event
from durapod.models import check_json

__all__ = ["check_step_result", "check_usage", "event_data", "is_async"]


def is_async(fn: Callable[..., Any]) -> bool:
    """True if calling ``fn`` returns a coroutine (an async function, method, partial or ``__call__``)."""
    code = getattr(fn, "__code__", None)  # a function or a bound method: the common, cheap case
    if code is not None:
        return bool(code.co_flags & inspect.CO_COROUTINE)
    while True:
        if inspect.iscoroutinefunction(fn):
            return True
        inner = getattr(fn, "func", None)  # functools.partial
        if inner is None or not callable(inner):
            break
        fn = inner
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return not inspect.isfunction(fn) and not inspect.isbuiltin(fn) and inspect.iscoroutinefunction(call)


def check_step_result(result: Any, name: str, job_id: str) -> Any:
    """The result of step ``name`` as it is journaled (JSON); InvalidInput naming the step if it is not."""
    kind = type(result)
    if kind is str or kind is int or kind is bool or result is None:
        return result
    what = f"result of step {name!r}"
    try:
        return check_json(result, what, job_id)
    except InvalidInput:
        if isinstance(result, dict | list | float):
            raise
        raise InvalidInput(
            what, result, f"a {kind.__name__} is journaled only by the step function's return annotation", job_id
        ) from None


def check_usage(tokens: int, requests: int) -> None:
    """ValueError unless both counts are ints >= 0 (``ctx.record_usage``)."""
    for what, value in (("tokens", tokens), ("requests", requests)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{what} must be an int >= 0, got {value!r}")


def event_data(event: Any, job_id: str) -> dict[str, JsonValue]:
    """The event an agent emits (``ctx.emit``) as the log keeps it: a ``durapod.events`` model or a JSON
    object with a ``type``, checked to be JSON and, for a type durapod defines, a valid event of it.

    Raises:
        TypeError: not an event (or a built-in type with wrong fields).
        InvalidInput: not JSON.
    """
    if isinstance(event, CustomEvent):
        data = custom_event_data(event)
    elif hasattr(event, "model_dump"):
        data = event.model_dump(mode="json", exclude={"job_id", "seq", "replayed"})
    elif isinstance(event, dict):
        data = dict(event)
    else:
        raise TypeError(f"cannot emit {event!r}: expected a durapod.events model or a dict with a 'type'")
    if not isinstance(data.get("type"), str):
        raise TypeError(f"cannot emit {event!r}: an event needs a 'type'")
    check_json(data, "event", job_id)
    if data["type"] == "error":
        raise TypeError("agents report failure by raising (or by yielding an ErrorEvent from a generator)")
    try:
        parse_event(data)
    except ValidationError as exc:
        raise TypeError(f"cannot emit {event!r}: not a valid {data['type']!r} event: {exc}") from None
    return data
