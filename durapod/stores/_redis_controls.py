"""How RedisStore stores control requests: the JSON entry of a request in a job's ``controls`` list, and
the requests decoded from the entries ``take_controls`` takes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from durapod._log import get_logger
from durapod.errors import CorruptRecord
from durapod.stores._codec import _encode_json
from durapod.stores.base import ControlRequest, control_kind

# the logger of the public module: the warnings are about the store
_log = get_logger("durapod.stores.redis")


def _control_entry(request: ControlRequest) -> str:
    """The entry ``request`` is stored as; InvalidInput if its payload is not JSON."""
    return json.dumps(
        {
            "kind": control_kind(request.kind, request.job_id).value,
            "requested_at": request.requested_at.isoformat(),
            "payload": json.loads(_encode_json(request.payload, "control payload", request.job_id)),
        },
        separators=(",", ":"),
    )


def _decode_controls(job_ids: Sequence[str], replies: Sequence[Any]) -> list[ControlRequest]:
    """The requests in the entries taken from each job of ``job_ids`` (``replies``, in the same order),
    oldest first. An entry of an unknown kind is dropped with a warning.

    Raises:
        CorruptRecord: an entry cannot be decoded (``.key`` is ``"<job id>/controls"``).
    """
    taken: list[ControlRequest] = []
    for job_id, entries in zip(job_ids, replies, strict=True):
        for raw in entries:
            try:
                entry = json.loads(raw)
                kind, moment, payload = (
                    entry["kind"],
                    datetime.fromisoformat(entry["requested_at"]),
                    entry["payload"],
                )
            except (ValueError, TypeError, KeyError) as exc:
                raise CorruptRecord(f"{job_id}/controls", str(exc)) from None
            try:
                taken.append(ControlRequest(job_id, kind, moment, payload))
            except ValueError as exc:  # an unknown kind: dropped, and said so
                _log.warning("control request ignored", job_id=job_id, kind=str(kind), error=str(exc))
    taken.sort(key=lambda request: request.requested_at)
    return taken
