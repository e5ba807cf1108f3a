"""How the ``durapod`` commands print: JSON values and one-line truncation, local times, a job's
outcome, a step's row, aligned tables, and the one-line description of an event (``durapod watch``).
"""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import JsonValue

from durapod.events import (
    CustomEvent,
    DoneEvent,
    ErrorEvent,
    Event,
    InterruptEvent,
    JobStatusEvent,
    StepEvent,
    StepRestartedEvent,
    ToolCallEvent,
    ToolResultEvent,
)
from durapod.models import Job, JobStatus, StepRecord


def _json(value: JsonValue) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _truncate(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line
    return text if len(text) <= width else text[: width - 1] + "…"


def _outcome(job: Job) -> str:
    if job.status is JobStatus.COMPLETED:
        return _json(job.result)
    if job.error:
        return f"{job.error_type}: {job.error}"
    if job.status is JobStatus.PAUSED and job.waiting_for is not None:
        return f"waiting for: {job.waiting_for}"
    return ""


def _short_time(moment: datetime) -> str:
    local = moment.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def _long_time(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _step_row(step: StepRecord) -> list[str]:
    return [
        str(step.index + 1),
        step.name,
        str(step.attempt),
        _short_time(step.recorded_at),
        _truncate(_json(step.result), 60),
    ]


def _print_table(rows: list[list[str]], indent: str = "") -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print((indent + "  ".join(cells)).rstrip())


def _describe(event: Event) -> str:
    replayed = " (replayed)" if event.replayed else ""
    if isinstance(event, JobStatusEvent):
        job = event.job
        detail = f" attempt {job.attempts}" if job.attempts else ""
        if job.status is JobStatus.FAILED or (job.error and job.status is JobStatus.PENDING):
            detail += f": {job.error_type}: {job.error}"
        return f"status {job.status.value}{detail}{replayed}"
    if isinstance(event, ToolCallEvent):
        return f"tool call {event.name}({_json(event.arguments)}){replayed}"
    if isinstance(event, ToolResultEvent):
        return f"tool result {event.name}: {_truncate(_json(event.result), 60)}{replayed}"
    if isinstance(event, StepEvent):
        return f"step #{event.index} {event.name}: {_truncate(_json(event.result), 60)}{replayed}"
    if isinstance(event, StepRestartedEvent):
        return f"step #{event.index} restarted: output from [{event.from_seq}] on is void"
    if isinstance(event, CustomEvent):
        return f"{event.type} {_truncate(_json(event.data), 60)}{replayed}"
    if isinstance(event, InterruptEvent):
        return f"waiting for: {event.prompt}"
    if isinstance(event, DoneEvent):
        return f"done: {_truncate(_json(event.content), 60)}"
    if isinstance(event, ErrorEvent):
        retry = " (will retry)" if event.will_retry else ""
        return f"error {event.error_type}: {event.error}{retry}"
    return event.type  # pragma: no cover - every event type is handled above
