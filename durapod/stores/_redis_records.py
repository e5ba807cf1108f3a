"""How RedisStore writes a job's record: the arguments the create and save scripts take (the JSON record
and the hash fields the store maintains, and the ``job_status`` event a create or save logs), and the job
as stored, from a save script's reply."""

from __future__ import annotations

from typing import Any

from durapod.errors import JobNotFound, VersionConflict
from durapod.models import Job
from durapod.stores._codec import _micros, _moment, _status_head, _status_seq
from durapod.stores._redis_codec import _member, _owner_arg


def _record_args(ttl_ms: str, job: Job) -> tuple[Any, ...]:
    """The arguments the create and save scripts take for a job record: TTL, JSON, then its fields."""
    return (
        ttl_ms,
        job.model_dump_json(),
        str(job.status),
        job.agent,
        _member(job.created_at, job.id),
        _owner_arg(job.owner),
        "" if job.lease_until is None else _micros(job.lease_until),
        job.epoch,
        job.version,
        job.recoveries,
        _micros(job.updated_at),  # the writer's clock: the lease lasts lease_until - updated_at
    )


def _status_args(job_id: str, status_seq: int | None) -> tuple[Any, str]:
    """The create and save scripts' ``status_seq, status_head`` arguments (``"", ""``: no ``job_status``
    event).

    The script logs ``status_head + record + "}"``: the event wraps the record sent for the write, so the
    job is serialised (and sent) once.

    Raises:
        InvalidInput: ``status_seq`` is not an int.
    """
    seq = _status_seq(job_id, status_seq)
    return ("", "") if seq is None else (seq, _status_head(job_id, seq))


def _saved(job: Job, expected_version: int, reply: Any) -> Job:
    """The job as stored by the save script whose ``reply`` this is (its lease and step count as the
    store rules keep them).

    Raises:
        JobNotFound: no job has that id.
        VersionConflict: the stored version is not ``expected_version``, or ``job.version`` is not one
            higher.
    """
    if isinstance(reply, int):
        return job if reply == job.steps else job.model_copy(update={"steps": reply})
    if reply[0] == 1:
        raise JobNotFound(job.id)
    if reply[0] == 2:
        raise VersionConflict(job.id, expected_version, int(reply[1]))
    lease, steps = reply[1], reply[2]
    changes: dict[str, Any] = {}
    if lease is None:
        if job.lease_until is not None:
            changes["lease_until"] = None
    elif job.lease_until is None or _micros(job.lease_until) != int(lease):
        changes["lease_until"] = _moment(int(lease))
    if steps != job.steps:
        changes["steps"] = steps
    return job.model_copy(update=changes) if changes else job
