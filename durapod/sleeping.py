"""Durable sleep: the wake time is journaled as a step, and a sleeping job waits without a task.

``ctx.sleep`` journals the wake time at its step position (a step named :data:`SLEEP_STEP` whose result is
the ISO time), then stops the agent. The job actor writes the job ``pending`` with ``next_attempt_at`` =
the wake time, ``resuming`` set, no owner and a lease that ends as it wakes (:func:`sleep_lease_end`): no
worker holds it, and no worker can claim it before then. Each worker keeps one timer on the earliest
wake-up it knows of (of the jobs it put to sleep, and the store's ``next_wake``), and claims its agent's
due jobs when it fires; the lease keeper's periodic claim is the fallback. The woken agent replays its
journal; the journaled wake time is read back, so a restart never starts the sleep over, and the sleep
returns once that time has passed.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Final

from pydantic import JsonValue

__all__ = ["SLEEP_STEP", "decode_wake_time", "sleep_delay", "sleep_lease_end", "wake_time"]

#: The journal name of a ``ctx.sleep`` / ``ctx.sleep_until`` position.
SLEEP_STEP: Final = "durapod.sleep"


def sleep_delay(delay: float | timedelta, job_id: str) -> timedelta:
    """``delay`` as a ``timedelta``.

    Raises:
        TypeError: not seconds (int or float) nor a ``timedelta``.
        ValueError: negative, NaN or infinite.
    """
    if isinstance(delay, timedelta):
        span = delay
    elif isinstance(delay, (int, float)) and not isinstance(delay, bool) and math.isfinite(delay):
        span = timedelta(seconds=delay)
    elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
        raise ValueError(f"job {job_id!r}: sleep delay must be finite, not {delay!r}")
    else:
        raise TypeError(f"job {job_id!r}: sleep delay must be seconds or a timedelta, not {delay!r}")
    if span < timedelta(0):
        raise ValueError(f"job {job_id!r}: sleep delay must not be negative, not {delay!r}")
    return span


def wake_time(moment: datetime, job_id: str) -> datetime:
    """``moment`` checked to be a timezone-aware datetime (a naive one is ambiguous: refused).

    Raises:
        TypeError: not a datetime.
        ValueError: a naive datetime.
    """
    if not isinstance(moment, datetime):
        raise TypeError(f"job {job_id!r}: sleep_until needs a datetime, not {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"job {job_id!r}: sleep_until needs a timezone-aware datetime, not {moment!r}")
    return moment


def decode_wake_time(result: JsonValue, job_id: str) -> datetime:
    """The wake time a sleep step journaled."""
    if not isinstance(result, str):
        raise TypeError(f"job {job_id!r}: the journaled wake time {result!r} is not an ISO time")
    return datetime.fromisoformat(result)


def sleep_lease_end(wake_at: datetime) -> datetime:
    """The ``lease_until`` of a job asleep until ``wake_at``: a lease is free strictly after it ends, so it
    ends a microsecond (the stores' resolution) before, and any worker may claim the job from ``wake_at`` on."""
    return wake_at - timedelta(microseconds=1)
