"""Stream events: what ``run_stream`` and ``stream`` yield, and what a job's event log holds.

Every event carries ``job_id`` and ``seq``, a sequence number that rises by one within the job. The
``type`` field tells them apart (a pydantic discriminated union, :data:`Event`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

from durapod.models import Job

__all__ = [
    "DoneEvent",
    "ErrorEvent",
    "Event",
    "InterruptEvent",
    "JobStatusEvent",
    "StepEvent",
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


Event = Annotated[
    JobStatusEvent | TokenEvent | ToolCallEvent | ToolResultEvent | StepEvent | InterruptEvent | DoneEvent | ErrorEvent,
    Field(discriminator="type"),
]
"""Any stream event, told apart by ``type``."""

_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)


def parse_event(data: dict[str, JsonValue] | str | bytes) -> Event:
    """Decode one logged event (a dict or JSON text). Raises ``pydantic.ValidationError`` if it is not one."""
    if isinstance(data, str | bytes):
        return _EVENT_ADAPTER.validate_json(data)  # type: ignore[no-any-return]
    return _EVENT_ADAPTER.validate_python(data)  # type: ignore[no-any-return]
