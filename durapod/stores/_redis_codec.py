"""How RedisStore encodes keys' members and arguments, and decodes the job records it reads (times and JSON
through the codec the stores share, :mod:`durapod.stores._codec`).

``<m>``, a job's index member, is ``<created_at as 18 zero-padded digits of microseconds>:<id>``: byte
order of the members is (created_at, id) order. Times are integers (microseconds since the Unix epoch) in
the hash fields the store maintains, so Lua compares them exactly; reads apply those fields onto the job
decoded from its JSON record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from durapod.errors import CorruptRecord
from durapod.models import Job
from durapod.stores._codec import _micros, _moment

# added to created_at's microseconds so that every datetime gives 18 non-negative digits
_MEMBER_OFFSET: Final = 10**17
_MEMBER_ID_START: Final = 19  # 18 digits and ":"

# the hash fields every job read takes, in the order _decode_job expects
_READ_FIELDS: Final = ("record", "owner", "lease_us", "epoch", "version", "steps", "recoveries", "updated_us")


def _member(created_at: datetime, job_id: str) -> str:
    """The job's entry in the indexes: byte order is (created_at, id) order."""
    return f"{_micros(created_at) + _MEMBER_OFFSET:018d}:{job_id}"


def _member_id(member: bytes) -> str:
    return member[_MEMBER_ID_START:].decode()


def _owner_arg(owner: str | None) -> str:
    return "" if owner is None else "=" + owner


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _decode_job(job_id: str, values: Sequence[Any]) -> Job:
    """Decode a job from its hash's ``_READ_FIELDS`` and apply the fields the store maintains."""
    record, owner, lease, epoch, version, steps, recoveries, updated = values
    if record is None:
        raise CorruptRecord(job_id, "the job hash has no record")
    try:
        job = Job.model_validate_json(record)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise CorruptRecord(job_id, _first_line(exc)) from None
    if job.id != job_id:
        raise CorruptRecord(job_id, f"the record is of job {job.id!r}")
    try:
        changes: dict[str, Any] = {}
        owner_text = _text(owner)
        if job.owner != owner_text:
            changes["owner"] = owner_text
        if lease is None:
            if job.lease_until is not None:
                changes["lease_until"] = None
        elif job.lease_until is None or _micros(job.lease_until) != int(lease):
            changes["lease_until"] = _moment(int(lease))
        for name, value in (("epoch", epoch), ("version", version), ("steps", steps), ("recoveries", recoveries)):
            if value is None or int(value) != getattr(job, name):
                changes[name] = int(value)  # None (a missing field) fails here: the hash is damaged
        if updated is not None and _micros(job.updated_at) != int(updated):
            changes["updated_at"] = _moment(int(updated))
    except (TypeError, ValueError) as exc:
        raise CorruptRecord(job_id, f"the job hash has a bad field: {exc}") from None
    return job.model_copy(update=changes) if changes else job
