"""The codec the stores share: times, JSON (Redis too), and jobs decoded from SQL rows (SQLite, Postgres).

Times are integer microseconds since the Unix epoch (UTC) so that they sort and compare exactly. A job's
JSON record is the truth for everything except ``owner``, ``lease_until``, ``epoch`` and ``version``
(columns the store maintains: a lease renewal updates the column only) and ``steps`` (the journal's
length, counted), which are applied onto the decoded job on every read: a row read for a job is
``(id, record, owner, lease_until, epoch, version, steps)``.

A record that cannot be decoded raises :class:`CorruptRecord` naming its key, with a one-line reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeGuard
from urllib.parse import urlsplit

import pydantic_core
from pydantic import BaseModel, JsonValue

from durapod._log import Logger
from durapod.errors import CorruptRecord, InvalidInput
from durapod.models import SETTLED, Job, StepRecord
from durapod.schedules import ScheduleState
from durapod.stores.base import matches

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _moment(micros: int) -> datetime:
    """The UTC datetime ``micros`` microseconds after the Unix epoch."""
    return _EPOCH + timedelta(microseconds=micros)


def _optional_micros(moment: datetime | None) -> int | None:
    return None if moment is None else _micros(moment)


def _reason(exc: Exception) -> str:
    """An exception's message on one line, short enough for a log."""
    reason = " ".join(str(exc).split())
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _decode_job(row: Sequence[Any]) -> Job:
    """Decode a job's row ``(id, record, owner, lease_until, epoch, version, steps)`` and apply the
    columns the store maintains onto its record."""
    job_id, record, owner, lease_micros, epoch, version, steps = row
    try:
        job = Job.model_validate_json(record)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise CorruptRecord(job_id, _reason(exc)) from None
    if job.id != job_id:
        raise CorruptRecord(job_id, f"the record is of job {job.id!r}")
    lease_until = None if lease_micros is None else _moment(lease_micros)
    if (job.owner, job.lease_until, job.epoch, job.version, job.steps) != (
        owner,
        lease_until,
        epoch,
        version,
        steps,
    ):
        job = job.model_copy(
            update={"owner": owner, "lease_until": lease_until, "epoch": epoch, "version": version, "steps": steps}
        )
    return job


def _is_seq(value: object) -> TypeGuard[int]:
    """True for an event's ``seq``: an int, not a bool (the plain int every runtime event has is tested first)."""
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def _record_json(record: BaseModel) -> str:
    """``record.model_dump_json()`` without its Python wrapper (a step, on every write)."""
    return record.__pydantic_serializer__.to_json(record).decode()


_JOB_SERIALIZER: Final = Job.__pydantic_serializer__


def _job_json(job: Job) -> str:
    """A job's record as the SQL stores write it: its fields that differ from their defaults.

    About 250 bytes instead of 550 for a job just started: less to write and to read back, in its row and
    in the ``job_status`` events made of the same text. Reading it gives the same job (the missing
    fields take their defaults).
    """
    return _JOB_SERIALIZER.to_json(job, exclude_defaults=True).decode()


#: A worker id's registration whose lease ended this long ago is deleted by the next registration (as
#: RedisStore's expire a day after their last renewal): each process start has an id of its own, and the
#: ids of processes that died without closing would otherwise pile up.
_WORKER_FORGOTTEN_AFTER: Final = timedelta(days=1)


def _create_columns(job: Job) -> tuple[Any, ...]:
    """The maintained columns a new job's row starts with in the SQL stores: id, agent, status,
    created_at, owner, lease_until, epoch, version (each store adds its own, then the record)."""
    return (
        job.id,
        job.agent,
        str(job.status),
        _micros(job.created_at),
        job.owner,
        _optional_micros(job.lease_until),
        job.epoch,
        job.version,
    )


def _save_columns(job: Job, expected_version: int) -> tuple[Any, ...]:
    """What a compare-and-set save of ``job`` binds, in the order the SQL stores' statements number it:
    id, expected version, agent, status, created_at, owner, epoch, version, lease_until, settled, record."""
    return (
        job.id,
        expected_version,
        job.agent,
        str(job.status),
        _micros(job.created_at),
        job.owner,
        job.epoch,
        job.version,
        _optional_micros(job.lease_until),
        job.status in SETTLED,
        _job_json(job),
    )


def _encode_json(value: object, what: str, job_id: str) -> str:
    """``value`` as compact JSON text; :class:`InvalidInput` naming ``what`` if it is not JSON.

    pydantic-core encodes (several times faster than ``json.dumps``: every event and step goes through
    here); what it cannot encode as strict JSON (a NaN, a lone surrogate, an unknown type) goes to
    ``json.dumps``, which refuses it or escapes it.
    """
    try:
        data = pydantic_core.to_json(value)
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError):
        data = b""
    if data and b"NaN" not in data and b"Infinity" not in data:
        return data.decode()
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(what, value, str(exc), job_id) from None


def _encode_events(job_id: str, events: Sequence[Mapping[str, JsonValue]]) -> list[tuple[int, str]]:
    """Each event's ``(seq, JSON text)``; :class:`InvalidInput` for an event without an int ``seq`` or that
    is not JSON (checked for the whole batch before anything is written)."""
    encoded: list[tuple[int, str]] = []
    for event in events:
        seq = event.get("seq")
        if not _is_seq(seq):
            raise InvalidInput("event", event, "no int 'seq'", job_id)
        # a plain dict (every event the runtime makes) is encoded as it is; another mapping is copied
        encoded.append((seq, _encode_json(event if type(event) is dict else dict(event), "event", job_id)))
    return encoded


def _status_seq(job_id: str, status_seq: int | None) -> int | None:
    """A save's ``status_seq`` (None: no ``job_status`` event), checked before anything is written.

    Raises:
        InvalidInput: it is not an int.
    """
    if status_seq is None:
        return None
    if not _is_seq(status_seq):
        raise InvalidInput("status_seq", status_seq, "not an int", job_id)
    return int(status_seq)


def _status_head(job_id: str, status_seq: int) -> str:
    """The JSON text of the ``job_status`` event a save logs at ``status_seq``, up to its ``job``: the
    store logs ``head + record + "}"``, the job's record text as written, so the job is serialised once."""
    return f'{{"type":"job_status","job_id":{json.dumps(job_id)},"seq":{status_seq},"job":'


def _with_step_events(
    logged: list[tuple[int, dict[str, JsonValue]]], steps: Iterable[StepRecord], after: int
) -> list[dict[str, JsonValue]]:
    """A job's event log above ``after``, in ``seq`` order: the appended events ``logged`` (``(seq, event)``,
    in ``seq`` order) and the ``step`` events of the journaled ``steps`` whose ``event_seq`` is above
    ``after`` and not the ``seq`` of an appended event (at one ``seq``, the step of the lowest index).
    The stores that derive step events in Python share this (SQLite merges in its query)."""
    derived = [step for step in steps if step.event_seq is not None and step.event_seq > after]
    if not derived:
        return [event for _, event in logged]
    derived.sort(key=_event_position)
    taken = {seq for seq, _ in logged}
    merged = list(logged)
    for step in derived:
        seq = step.event_seq
        if seq is not None and seq not in taken:
            taken.add(seq)
            merged.append((seq, step.step_event()))
    merged.sort(key=_seq_of)  # stable: the appended events keep their order
    return [event for _, event in merged]


def _event_position(step: StepRecord) -> tuple[int, int]:
    return (step.event_seq or 0, step.index)


def _seq_of(pair: tuple[int, dict[str, JsonValue]]) -> int:
    return pair[0]


def _listed_job(row: Sequence[Any], metadata: Mapping[str, JsonValue] | None, log: Logger) -> Job | None:
    """A listing's job from its row (as :func:`_decode_job` takes it), or None when its metadata does not
    match ``metadata`` or its record cannot be decoded: that one is logged (a warning naming the job) and
    skipped, so that one bad record never hides the others."""
    try:
        job = _decode_job(row)
    except CorruptRecord as exc:
        log.warning("corrupt job record skipped in a listing", job_id=row[0], error=str(exc))
        return None
    if metadata and not matches(job, None, None, metadata):
        return None
    return job


def _decode_event(job_id: str, seq: int, record: str | bytes) -> dict[str, JsonValue]:
    """An event's JSON record; :class:`CorruptRecord` naming ``<job id>/events/<seq>`` if it is bad."""
    try:
        event = json.loads(record)
    except (ValueError, TypeError) as exc:
        raise CorruptRecord(f"{job_id}/events/{seq}", _reason(exc)) from None
    if not isinstance(event, dict):
        raise CorruptRecord(f"{job_id}/events/{seq}", "not a JSON object")
    return event


def _redact(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for reprs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _decode_schedule(agent: str, name: str, record: str) -> ScheduleState:
    """A schedule's JSON record; :class:`CorruptRecord` naming ``schedules/<agent>/<name>`` if it is bad."""
    try:
        return ScheduleState.model_validate_json(record)
    except (ValueError, TypeError) as exc:
        raise CorruptRecord(f"schedules/{agent}/{name}", _reason(exc)) from None
