"""What the HTTP API shows of jobs, steps, events and schedules: JSON for browsers, without internals.

A public job view keeps what a person acts on (status, input, result, error, times, the worker that runs
it) and drops what only fencing needs: lease times, epochs, versions and the run bookkeeping flags.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import JsonValue

from durapod.events import Event, JobStatusEvent
from durapod.models import Job, JobStatus, StepRecord
from durapod.schedules import ScheduleState
from durapod.stores.base import WorkerRecord

__all__ = ["PREVIEW_LIMIT", "event_view", "job_view", "run_starts", "schedule_view", "step_timeline", "worker_view"]

#: The longest JSON preview of a step's result in the timeline (characters).
PREVIEW_LIMIT: Final = 500

#: The job fields a browser sees; everything else (lease, epoch, version, run flags) stays inside.
PUBLIC_JOB_FIELDS: Final = (
    "id",
    "agent",
    "status",
    "input",
    "result",
    "error",
    "error_type",
    "attempts",
    "recoveries",
    "metadata",
    "created_at",
    "updated_at",
    "completed_at",
    "next_attempt_at",
    "inputs",
    "answers",
    "waiting_for",
    "steps",
    "owner",
    "usage",
    "budget",
)


def job_view(job: Job) -> dict[str, JsonValue]:
    """The public JSON form of a job: :data:`PUBLIC_JOB_FIELDS`, times as ISO 8601 strings.

    A job a typed ``DurableAgent`` returned holds its result as the agent's type (a pydantic model, a
    dataclass...): pydantic turns it into its JSON form here, without a warning about the field's type.
    """
    data = job.model_dump(mode="json", include=set(PUBLIC_JOB_FIELDS), warnings=False)
    return {name: data[name] for name in PUBLIC_JOB_FIELDS}


def event_view(event: Event) -> dict[str, JsonValue]:
    """The public JSON form of a stream event: a ``job_status`` event carries the public job view."""
    data: dict[str, JsonValue] = event.model_dump(mode="json")
    if isinstance(event, JobStatusEvent):
        data["job"] = job_view(event.job)
    return data


def _preview(value: JsonValue) -> tuple[str, bool]:
    text = json.dumps(value, ensure_ascii=False)
    if len(text) <= PREVIEW_LIMIT:
        return text, False
    return text[: PREVIEW_LIMIT - 1] + "…", True


def step_timeline(steps: Sequence[StepRecord], run_starts: Sequence[datetime]) -> list[dict[str, JsonValue]]:
    """The journal as a timeline: each step's name, index, attempt, start and finish times, duration in
    seconds, and a preview of its result capped at :data:`PREVIEW_LIMIT` characters.

    A step starts when the step before it in the same execution ended or, if later, when the job last
    began running before it ended (``run_starts``: a start, a retry, a resume after a pause), so time
    spent paused is not counted. Unknown (None) when neither is known.
    """
    starts = sorted(run_starts)
    timeline: list[dict[str, JsonValue]] = []
    previous: StepRecord | None = None
    for step in steps:
        finished = step.recorded_at
        candidates = [start for start in starts if start <= finished]
        if previous is not None and previous.attempt == step.attempt:
            candidates.append(previous.recorded_at)
        started = max(candidates) if candidates else None
        preview, truncated = _preview(step.result)
        timeline.append(
            {
                "index": step.index,
                "name": step.name,
                "attempt": step.attempt,
                "started_at": started.isoformat() if started is not None else None,
                "finished_at": finished.isoformat(),
                "duration": (finished - started).total_seconds() if started is not None else None,
                "result_preview": preview,
                "result_truncated": truncated,
            }
        )
        previous = step
    return timeline


def run_starts(events: Iterable[Mapping[str, Any]]) -> list[datetime]:
    """When the job began running each time (its ``job_status`` events with status running)."""
    starts: list[datetime] = []
    for event in events:
        if event.get("type") != "job_status":
            continue
        job = event.get("job")
        if isinstance(job, Mapping) and job.get("status") == JobStatus.RUNNING:
            updated = job.get("updated_at")
            if isinstance(updated, str):
                starts.append(datetime.fromisoformat(updated))
            elif isinstance(updated, datetime):
                starts.append(updated)
    return starts


def schedule_view(schedule: ScheduleState) -> dict[str, JsonValue]:
    """The public JSON form of a schedule (its compare-and-set version left out)."""
    data: dict[str, JsonValue] = schedule.model_dump(mode="json", exclude={"version"})
    return data


def worker_view(record: WorkerRecord) -> dict[str, JsonValue]:
    """The public JSON form of a live worker: its id, host, pid and lease end (never the token that proves
    its claim on the id, which is in the same registration)."""
    try:
        info = json.loads(record.info)
    except ValueError:
        info = None
    details: dict[str, Any] = info if isinstance(info, dict) else {}
    host, pid = details.get("host"), details.get("pid")
    return {
        "id": record.worker_id,
        "host": host if isinstance(host, str) else None,
        "pid": pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        "lease_until": record.lease_until.isoformat(),
    }
