"""Idempotency keys: dedup for callers that cannot choose job ids.

``submit(None, input, idempotency_key=key)`` and ``start(None, input, idempotency_key=key)`` use the job
id :func:`keyed_job_id` derives from the key (``"key-"`` and 40 hex digits of its SHA-256). Creation is
"create if absent" on every store, so a key seen before returns its existing job (and a different input
raises ``JobConflictError``, as for ids), atomically, with no extra index; the key is kept in the job's
metadata under :data:`IDEMPOTENCY_KEY`. A key lives as long as its job: a store that purges finished
jobs after ``ttl_seconds`` forgets the key with the job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final

from pydantic import JsonValue

from durapod.models import check_json, check_metadata, validate_job_id

__all__ = ["IDEMPOTENCY_KEY", "keyed_job_id", "with_key"]

#: The metadata key that holds a job's idempotency key.
IDEMPOTENCY_KEY: Final = "durapod.idempotency_key"


def keyed_job_id(job_id: str | None, idempotency_key: str | None) -> str:
    """The job id to use: ``job_id``, or the one derived from ``idempotency_key``.

    Raises:
        InvalidJobId: a bad ``job_id``, or neither is given.
        TypeError, ValueError: a key that is not a non-empty str, or both are given.
    """
    if idempotency_key is None:
        return validate_job_id(job_id)
    if not isinstance(idempotency_key, str):
        raise TypeError(f"idempotency_key must be a str, got {idempotency_key!r}")
    if not idempotency_key:
        raise ValueError("idempotency_key must not be empty")
    if job_id is not None:
        raise ValueError("give a job id or an idempotency_key, not both (the key's job id is derived from it)")
    check_json(idempotency_key, "idempotency_key")
    return "key-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def with_key(metadata: Mapping[str, JsonValue] | None, idempotency_key: str | None) -> Mapping[str, JsonValue] | None:
    """``metadata`` with the idempotency key recorded in it (unchanged without a key).

    Raises:
        TypeError: ``metadata`` is not a mapping.
    """
    if idempotency_key is None:
        return metadata
    return {**check_metadata(metadata), IDEMPOTENCY_KEY: idempotency_key}
