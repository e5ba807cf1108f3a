"""Riding out a store that blinks: repeat an operation while the store is unreachable.

(Not the retry policy of jobs, which lives in :mod:`durapod.retry`.)
"""

from __future__ import annotations

import functools
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
    failed: StoreUnavailable | None = None,
    started: float | None = None,
) -> T:
    """Run ``operation``; while it raises :class:`StoreUnavailable`, wait (exponential backoff) and retry.

    Logs a warning (to the logger ``log()`` gives, built only then) on the first failure and once the
    store is back. Raises the last
    ``StoreUnavailable`` once ``give_up_after`` seconds have passed (None: never gives up).
    Other errors propagate at once. A caller that made the first try itself passes its error as
    ``failed`` and the clock's ``monotonic()`` from before that try as ``started``.
    """
    delay = first_delay
    if started is None:
        started = clock.monotonic()
    failures = 0
    error = failed
    while True:
        if error is None:
            try:
                result = await operation()
            except StoreUnavailable as exc:
                error = exc
            else:
                if failures:
                    log().warning("store is back", operation=what, retries=failures)
                return result
        failures += 1
        if failures == 1:
            log().warning("store unavailable; retrying", operation=what, error=str(error))
        if give_up_after is not None and clock.monotonic() - started + delay > give_up_after:
            raise error
        error = None
        await clock.sleep(delay)
        delay = min(delay * 2, max_delay)


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
        store = self._store

        async def patient(*args: Any, **kwargs: Any) -> Any:
            operation = getattr(store, name)  # looked up at every call, as the store holds it then
            started = self._clock.monotonic()
            try:  # the first try without a retry loop around it: a store that answers needs none
                return await operation(*args, **kwargs)
            except StoreUnavailable as exc:
                failed = exc
            return await retry_unavailable(
                functools.partial(operation, *args, **kwargs),  # a lambda would make cells on every call
                self._clock,
                lambda: self._log,
                what=name,
                give_up_after=self._timeout,
                failed=failed,
                started=started,
            )

        # made once per operation: later lookups find it here, without __getattr__
        setattr(self, name, patient)
        return patient
