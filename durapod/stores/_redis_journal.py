"""A job's journal and event log on Redis: the arguments of the scripts that append to them, what their
replies mean, and the steps and events decoded from them.

The journal (``P steps:{<id>}``) is a hash of one StepRecord JSON per step, by index; the event log
(``P events:{<id>}``) the appended events' JSON scored by their ``seq``. A step's ``step`` event (a record
with an ``event_seq``) is not in the event log: the read_events script returns the journal's records that
may give one with the events, and :func:`_merge_log` derives them (an appended event keeps its ``seq``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import JsonValue

from durapod.errors import CorruptRecord, JobNotFound, StaleOwnerError
from durapod.models import StepRecord
from durapod.stores._codec import _encode_events, _with_step_events
from durapod.stores._redis_codec import _first_line


def _event_args(job_id: str, events: Sequence[Mapping[str, JsonValue]]) -> list[Any]:
    """``seq, event JSON, seq, event JSON, ...`` for a script; InvalidInput for a bad event."""
    return [part for pair in _encode_events(job_id, events) for part in pair]


def _append_step_command(sha: str, keys: Sequence[str], record: StepRecord, event_args: list[Any]) -> tuple[Any, ...]:
    """The ``EVALSHA`` of the append_step script (whose ``sha`` this is) on the job's, journal's and event
    log's ``keys``."""
    return (
        "EVALSHA",
        sha,
        3,
        keys[0],
        keys[1],
        keys[2],
        record.index,
        record.epoch,
        record.model_dump_json(),
        *event_args,
    )


def _step_refused(record: StepRecord, reply: Any) -> None:
    """Raise what the append_step script's refusal (a reply other than 0) says.

    Raises:
        JobNotFound: no job has that id.
        StaleOwnerError: the job is not running with ``record.epoch``, or ``record.index`` is journaled.
    """
    if reply[0] == 1:
        raise JobNotFound(record.job_id)
    if reply[0] == 2:
        raise StaleOwnerError(record.job_id, record.epoch, int(reply[1]), reply[2].decode())


def _decode_step(job_id: str, field: bytes, raw: bytes) -> StepRecord:
    """The step of the journal's ``field`` (its index).

    Raises:
        CorruptRecord: it cannot be decoded (``.key`` is ``"<job id>/steps/<index>"``).
    """
    try:
        return StepRecord.model_validate_json(raw)
    except ValueError as exc:
        raise CorruptRecord(f"{job_id}/steps/{field.decode(errors='replace')}", _first_line(exc)) from None


def _decode_steps(job_id: str, journal: Any) -> list[StepRecord]:
    """The steps of a journal read by ``HGETALL``, in order.

    Raises:
        CorruptRecord: a step cannot be decoded (``.key`` is ``"<job id>/steps/<index>"``).
    """
    # a flat [field, value, ...] reply, or a map (the parser of some redis-py releases makes one)
    pairs = journal.items() if isinstance(journal, dict) else zip(journal[::2], journal[1::2], strict=True)
    steps = [_decode_step(job_id, field, raw) for field, raw in pairs]
    steps.sort(key=lambda record: record.index)
    return steps


def _decode_events(job_id: str, raws: Sequence[bytes]) -> list[dict[str, JsonValue]]:
    """The events of the logged JSON ``raws``, in their order.

    Raises:
        CorruptRecord: an event cannot be decoded (``.key`` is ``"<job id>/events/<position>"``).
    """
    events: list[dict[str, JsonValue]] = []
    for position, raw in enumerate(raws):
        try:
            event = json.loads(raw)
        except ValueError as exc:
            raise CorruptRecord(f"{job_id}/events/{position}", str(exc)) from None
        if not isinstance(event, dict):
            raise CorruptRecord(f"{job_id}/events/{position}", "not a JSON object")
        events.append(event)
    return events


def _read_events_command(sha: str, keys: Sequence[str], prefix: str, after: int) -> tuple[Any, ...]:
    """The ``EVALSHA`` of the read_events script (whose ``sha`` this is) on the job's ``keys`` (job, steps,
    events, controls): one round trip, one atomic read of the event log and the journal."""
    return ("EVALSHA", sha, 2, keys[1], keys[2], prefix, after)


def _merge_log(job_id: str, after: int, reply: Any) -> list[dict[str, JsonValue]]:
    """The event log above ``after``, in ``seq`` order, from the read_events script's reply: the appended
    events, and the ``step`` events of the journaled steps sent with them (see :func:`_with_step_events`).

    Raises:
        CorruptRecord: an event (``.key`` is ``"<job id>/events/<position>"``) or a step sent (``.key`` is
            ``"<job id>/steps/<index>"``) cannot be decoded.
    """
    logged, journal = reply
    events = _decode_events(job_id, logged[::2])
    if not journal:
        return events
    steps = [_decode_step(job_id, field, raw) for field, raw in zip(journal[::2], journal[1::2], strict=True)]
    seqs = [int(float(score)) for score in logged[1::2]]  # scores are the seqs: integers, sent as text
    return _with_step_events(list(zip(seqs, events, strict=True)), steps, after)
