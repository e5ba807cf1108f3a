"""Riding out a store that blinks: repeat an operation while the store is unreachable.

(Not the retry policy of jobs, which lives in :mod:`durapod.retry`.)
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from durapod._log import Logger
from durapod.errors import StoreUnavailable
from durapod.lowlevel.clock import Clock

__all__ = ["PatientStore", "retry_unavailable"]

T = TypeVar("T")


async def retry_unavailable(
    operation: Callable[[], Awaitable[T]],
    clock: Clock,
    log: Callable[[], Logger],
    *,
    what: str,
    give_up_after: float | None = None,
    first_delay: float = 0.05,
    max_delay: float = 2.0,
) -> T:
    """Run ``operation``; while it raises :class:`StoreUnavailable`, wait (exponential backoff) and retry.

    Logs a warning (to the logger ``log()`` gives, built only then) on the first failure and once the
    store is back. Raises the last
    ``StoreUnavailable`` once ``give_up_after`` seconds have passed (None: never gives up).
    Other errors propagate at once.
    """
    delay = first_delay
    started = clock.monotonic()
    failures = 0
    while True:
        try:
            result = await operation()
        except StoreUnavailable as exc:
            failures += 1
            if failures == 1:
                log().warning("store unavailable; retrying", operation=what, error=str(exc))
            if give_up_after is not None and clock.monotonic() - started + delay > give_up_after:
                raise
            await clock.sleep(delay)
            delay = min(delay * 2, max_delay)
            continue
        if failures:
            log().warning("store is back", operation=what, retries=failures)
        return result


class PatientStore:
    """A store whose operations ride out :class:`StoreUnavailable` for up to ``timeout`` seconds.

    What callers of ``run``, ``status`` and the other public calls use: a blink of the store is waited
    out, a longer outage raises ``StoreUnavailable`` after a clear, bounded time.
    """

    def __init__(self, store: Any, clock: Clock, timeout: float, log: Any) -> None:
        self._store = store
        self._clock = clock
        self._timeout = timeout
        self._log = log

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def patient(*args: Any, **kwargs: Any) -> Any:
            return await retry_unavailable(
                lambda: attribute(*args, **kwargs),
                self._clock,
                lambda: self._log,
                what=name,
                give_up_after=self._timeout,
            )

        return patient
