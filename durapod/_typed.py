"""Typed values in a JSON journal: agent inputs and results, step results and interrupt answers.

A value of a declared type (a pydantic model, a dataclass, ``datetime``, ``Decimal``, ``UUID``, a tuple,
an enum...) is journaled as the JSON that pydantic's :class:`~pydantic.TypeAdapter` makes of it and read
back with the same adapter, so the first run and every replay see equal values of equal types. Nothing
is pickled. Annotations that already are JSON (``str``, ``int``, ``dict[str, Any]``...) take no detour.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import types
import typing
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

from pydantic import JsonValue, PydanticSchemaGenerationError, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from durapod.errors import InvalidInput
from durapod.models import check_json

__all__ = ["AgentTypes", "Codec", "answer_codec", "codec_for", "step_codec", "type_key"]

_PLAIN: Final[frozenset[Any]] = frozenset({str, int, float, bool, type(None), None, Any, object, JsonValue})
_UNION_TYPES: Final = (typing.Union, types.UnionType)


def _is_plain(annotation: Any) -> bool:
    """True if every value of ``annotation`` already is JSON that reads back the same."""
    try:
        if annotation in _PLAIN:
            return True
    except TypeError:  # an unhashable annotation
        return False
    if annotation is dict or annotation is list:
        return True
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in _UNION_TYPES:
        return all(_is_plain(argument) for argument in arguments)
    if origin is list:
        return all(_is_plain(argument) for argument in arguments)
    if origin is dict:
        return len(arguments) == 2 and arguments[0] is str and _is_plain(arguments[1])
    return False


def _describe(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else repr(annotation)


class Codec:
    """Turns values of one type into JSON for the journal and back.

    Attributes:
        annotation: the type.
        name: how messages name it.
    """

    __slots__ = ("adapter", "annotation", "name")

    def __init__(self, annotation: Any) -> None:
        self.annotation = annotation
        self.adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        self.name = _describe(annotation)

    def dump(self, value: Any, what: str, job_id: str | None = None) -> JsonValue:
        """The JSON form of ``value`` (an instance, or anything that validates as one).

        Raises:
            InvalidInput: naming ``what`` and the type, if ``value`` is not one or has no JSON form.
        """
        try:
            valid = self.adapter.validate_python(value)
            data = self.adapter.dump_python(valid, mode="json")
        except ValidationError as exc:
            raise InvalidInput(what, value, f"not a valid {self.name}: {_first_error(exc)}", job_id) from None
        except (PydanticSerializationError, PydanticSchemaGenerationError, TypeError, ValueError) as exc:
            raise InvalidInput(what, value, f"{self.name} has no JSON form: {exc}", job_id) from None
        checked: JsonValue = check_json(data, what, job_id)
        return checked

    def load(self, data: JsonValue, what: str = "value", job_id: str | None = None) -> Any:
        """The value that ``data`` (made by :meth:`dump`) stands for.

        Raises:
            InvalidInput: ``data`` is not a valid one (naming ``what`` and the type).
        """
        try:
            # through JSON text: strict models and JSON-only coercions (str -> datetime) read it as stored
            return self.adapter.validate_json(json.dumps(data, separators=(",", ":")))
        except ValidationError as exc:
            raise InvalidInput(what, data, f"not a valid {self.name}: {_first_error(exc)}", job_id) from None

    def round_trip(self, value: Any, what: str, job_id: str | None = None) -> tuple[JsonValue, Any]:
        """``value``'s JSON form and the value read back from it (what a replay returns)."""
        data = self.dump(value, what, job_id)
        return data, self.load(data, what, job_id)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def codec_for(annotation: Any) -> Codec | None:
    """The codec of ``annotation``, or None when its values already are JSON (or it has no schema)."""
    if annotation is inspect.Parameter.empty or _is_plain(annotation):
        return None
    try:
        return Codec(annotation)
    except (PydanticSchemaGenerationError, TypeError):
        return None


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation that names something not importable here: treat it as untyped
        return {}


def _unwrap(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.ismethod(fn):
        return fn.__func__
    if not (inspect.isfunction(fn) or inspect.isbuiltin(fn)) and callable(fn):
        call = getattr(type(fn), "__call__", None)  # noqa: B004 - an object with a __call__
        if call is not None:
            return call
    return fn


@functools.lru_cache(maxsize=2048)
def _return_codec(fn: Any) -> Codec | None:
    annotation = _hints(fn).get("return", inspect.Parameter.empty)
    if typing.get_origin(annotation) in (Awaitable, Coroutine):
        annotation = typing.get_args(annotation)[-1]
    return codec_for(annotation)


_PLAIN_NAMES: Final = frozenset({"str", "int", "float", "bool", "None", "dict", "list", "Any", "object", "JsonValue"})


def step_codec(fn: Callable[..., Any]) -> Codec | None:
    """The codec of a step function's return annotation (None: journal its result as plain JSON)."""
    target = fn.__func__ if type(fn) is types.MethodType else fn
    if type(target) is not types.FunctionType:
        target = _unwrap(fn)
    annotations = getattr(target, "__annotations__", None)
    if not annotations:
        return None  # a lambda or an unannotated function: the common, cheap case
    returns = annotations.get("return", inspect.Parameter.empty)
    if isinstance(returns, str) and returns in _PLAIN_NAMES:
        return None  # ``-> str`` under ``from __future__ import annotations``: the hot path
    try:
        return _return_codec(target)
    except TypeError:  # unhashable callable
        return None


def answer_codec(annotation: Any) -> Codec:
    """The codec of an interrupt's ``answer=`` type (plain JSON types too: a ``bool`` answer is checked)."""
    try:
        return _cached_codec(annotation)
    except TypeError:  # an unhashable annotation: build it each time
        return Codec(annotation)


@functools.lru_cache(maxsize=256)
def _cached_codec(annotation: Any) -> Codec:
    return Codec(annotation)


def type_key(annotation: Any) -> str | None:
    """``module:qualname`` of a class, by which another part of the same program finds it again."""
    if isinstance(annotation, type):
        return f"{annotation.__module__}:{annotation.__qualname__}"
    return None


def resolve_type_key(key: str | None) -> Any:
    """The class that :func:`type_key` named, if its module is loaded in this process (else None)."""
    if not key or ":" not in key:
        return None
    module_name, _, qualname = key.partition(":")
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        if found is None or part == "<locals>":
            return None
        found = getattr(found, part, None)
    return found if isinstance(found, type) else None


class AgentTypes:
    """An agent's declared input and result types: what ``DurableAgent`` validates and converts.

    Attributes:
        input: the codec of the agent's first parameter (None: JSON as given).
        result: the codec of its return annotation (None: JSON as returned).
    """

    __slots__ = ("input", "result")

    def __init__(self, fn: Callable[..., Any], *, is_generator: bool) -> None:
        hints = _hints(_unwrap(fn) if not inspect.ismethod(fn) else fn)
        try:
            parameters = [
                parameter
                for parameter in inspect.signature(fn).parameters.values()
                if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            ]
        except (TypeError, ValueError):
            parameters = []
        self.input = codec_for(hints.get(parameters[0].name, inspect.Parameter.empty)) if parameters else None
        declared = getattr(getattr(fn, "__self__", None), "durapod_result_type", None)  # an adapter's output
        if declared is None:
            declared = hints.get("return", inspect.Parameter.empty)
        self.result = None if is_generator else codec_for(declared)

    def dump_input(self, value: Any, job_id: str) -> JsonValue:
        """The JSON input of a job from what the caller gave (a typed value or its JSON form)."""
        if self.input is None:
            checked: JsonValue = check_json(value, "input", job_id)
            return checked
        return self.input.dump(value, "input", job_id)

    def load_input(self, data: JsonValue, job_id: str) -> Any:
        """The value the agent receives for the JSON input ``data``."""
        return data if self.input is None else self.input.load(data, "input", job_id)

    def dump_result(self, value: Any, job_id: str) -> JsonValue:
        """The JSON result of a job from what the agent returned."""
        return value if self.result is None else self.result.dump(value, "result", job_id)

    def load_result(self, data: JsonValue, job_id: str) -> Any:
        """The typed result for the JSON ``data`` the job holds."""
        return data if self.result is None else self.result.load(data, "result", job_id)
