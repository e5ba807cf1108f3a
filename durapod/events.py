"""Stream events: what ``run_stream`` and ``stream`` yield, and what a job's event log holds.

Every event carries ``job_id`` and ``seq``, a sequence number that rises by one within the job. The
``type`` field tells them apart (a pydantic discriminated union, :data:`Event`); an event of a type
durapod does not define (``ctx.emit({"type": "progress", ...})``) is a :class:`CustomEvent`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, JsonValue, Tag, TypeAdapter, field_validator
from pydantic_core import from_json

from durapod.models import Job

__all__ = [
    "CustomEvent",
    "DoneEvent",
    "ErrorEvent",
    "Event",
    "InterruptEvent",
    "JobStatusEvent",
    "StepEvent",
    "StepRestartedEvent",
    "TokenEvent",
    "ToolCallEvent",
    "ToolResultEvent",
    "parse_event",
]


class _BaseEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = ""
    """The job that produced it."""
    seq: int = -1
    """Its position in the job's event log, from 0 (-1 until logged)."""
    replayed: bool = False
    """True for an event re-emitted by an execution that replays work done before a crash."""


class JobStatusEvent(_BaseEvent):
    """The job changed status (at start, at the end and on errors). ``job`` is the job at that moment."""

    type: Literal["job_status"] = "job_status"
    job: Job


class TokenEvent(_BaseEvent):
    """A piece of the agent's streamed output."""

    type: Literal["token"] = "token"
    token: str


class ToolCallEvent(_BaseEvent):
    """The agent calls a tool."""

    type: Literal["tool_call"] = "tool_call"
    name: str
    arguments: dict[str, JsonValue] = Field(default_factory=dict)
    tool_call_id: str | None = None


class ToolResultEvent(_BaseEvent):
    """A tool returned."""

    type: Literal["tool_result"] = "tool_result"
    name: str
    result: JsonValue = None
    tool_call_id: str | None = None


class StepEvent(_BaseEvent):
    """A step was journaled."""

    type: Literal["step"] = "step"
    name: str
    index: int
    result: JsonValue = None


class StepRestartedEvent(_BaseEvent):
    """The output streamed since the last journaled step is void: an execution stopped before journaling
    step ``index`` (a crash, a failed attempt that is retried, a pause or a drain), and the next one runs
    that step again, streaming its output anew (a real LLM may not say the same thing twice).

    A consumer drops the agent events (tokens, tool calls, custom events) it holds with ``seq`` from
    ``from_seq`` up to this event's ``seq``. Logged at the start of the execution that re-runs the step.
    """

    type: Literal["step_restarted"] = "step_restarted"
    index: int
    """The position of the step run again (the first one not journaled)."""
    from_seq: int
    """The ``seq`` of the first abandoned event."""


class InterruptEvent(_BaseEvent):
    """The agent waits for a human: resume the job to answer ``prompt``."""

    type: Literal["interrupt"] = "interrupt"
    prompt: str


class DoneEvent(_BaseEvent):
    """The agent finished; ``content`` is the job's result."""

    type: Literal["done"] = "done"
    content: JsonValue = None


class ErrorEvent(_BaseEvent):
    """An execution failed. ``will_retry`` tells whether another attempt follows."""

    type: Literal["error"] = "error"
    error: str
    error_type: str = "Exception"
    will_retry: bool = False


_BUILT_IN = (
    JobStatusEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    StepEvent,
    StepRestartedEvent,
    InterruptEvent,
    DoneEvent,
    ErrorEvent,
)
#: The event types durapod defines; any other ``type`` is a custom event.
BUILT_IN_TYPES = frozenset(model.model_fields["type"].default for model in _BUILT_IN)
_COMMON_FIELDS = frozenset(_BaseEvent.model_fields)


class CustomEvent(_BaseEvent):
    """An event of a type durapod does not define, emitted by the agent: ``ctx.emit({"type": "progress",
    "done": 3})`` streams as ``CustomEvent(type="progress", data={"done": 3})``.

    The log holds it flat, as emitted; ``data`` holds its fields other than ``type``, ``job_id``, ``seq``
    and ``replayed``. ``ctx.emit(CustomEvent(type=..., data=...))`` logs the same flat event.
    """

    type: str
    data: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _not_built_in(cls, value: str) -> str:
        if value in BUILT_IN_TYPES:
            raise ValueError(f"{value!r} is a built-in event type: use its own event class")
        return value


def _tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) and kind in BUILT_IN_TYPES else "custom"


Event = Annotated[
    Annotated[JobStatusEvent, Tag("job_status")]
    | Annotated[TokenEvent, Tag("token")]
    | Annotated[ToolCallEvent, Tag("tool_call")]
    | Annotated[ToolResultEvent, Tag("tool_result")]
    | Annotated[StepEvent, Tag("step")]
    | Annotated[StepRestartedEvent, Tag("step_restarted")]
    | Annotated[InterruptEvent, Tag("interrupt")]
    | Annotated[DoneEvent, Tag("done")]
    | Annotated[ErrorEvent, Tag("error")]
    | Annotated[CustomEvent, Tag("custom")],
    Discriminator(_tag),
]
"""Any stream event, told apart by ``type`` (a type durapod does not define gives a :class:`CustomEvent`)."""

_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)


def parse_event(data: dict[str, JsonValue] | str | bytes) -> Event:
    """Decode one logged event (a dict or JSON text, flat as logged). Raises ``pydantic.ValidationError``
    if it is not one (a built-in type with wrong fields, or no string ``type``)."""
    if isinstance(data, str | bytes):
        data = from_json(data)
    kind = data.get("type") if isinstance(data, dict) else None
    if isinstance(data, dict) and isinstance(kind, str) and kind not in BUILT_IN_TYPES:
        data = {
            **{key: value for key, value in data.items() if key in _COMMON_FIELDS},
            "type": kind,
            "data": {key: value for key, value in data.items() if key not in _COMMON_FIELDS and key != "type"},
        }
    return _EVENT_ADAPTER.validate_python(data)  # type: ignore[no-any-return]


def custom_event_data(event: CustomEvent) -> dict[str, JsonValue]:
    """A custom event as the log holds it: flat, its ``data`` beside its ``type``."""
    return {**event.data, "type": event.type}
