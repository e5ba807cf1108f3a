"""Per-step policies: a timeout and a retry policy for one step's function.

:class:`StepOptions` wraps a step function (``ctx.step("fetch", StepOptions(timeout=30)(fetch), url)``, or
as a decorator), so its settings never share a namespace with the function's own keyword arguments. The
retries happen inside the step: only the final result is journaled, and a step that times out or
exhausts its retries raises in the agent, which may catch it; the job's own retry policy applies only if
the agent lets the error through.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

from durapod._context_checks import is_async
from durapod.errors import NonRetryableError

__all__ = ["StepOptions"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class StepOptions:
    """A timeout and a retry policy for one step's function.

    Call it on the function (or use it as a decorator) and pass the result to ``ctx.step``. Each try is
    cut off after ``timeout`` seconds (``TimeoutError``); a try that raises (a timeout included) is made
    again up to ``retries`` more times, ``retry_delay * backoff**(n-1)`` seconds apart (at most
    ``max_retry_delay``), unless ``retry_on`` says no or the error is a
    :class:`~durapod.NonRetryableError`. The last error is raised in the agent. A sync function runs in
    a worker thread, as ``ctx.step`` runs it; its timeout stops the wait, not the thread.

    Example:
        >>> fetch_patiently = StepOptions(timeout=30, retries=5, retry_delay=1.0)(fetch)
        >>> page = await ctx.step("fetch", fetch_patiently, url)                 # doctest: +SKIP
        >>> @StepOptions(timeout=10)
        ... async def summarize(text: str) -> str: ...
    """

    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 1.0
    backoff: float = 2.0
    max_retry_delay: float = 60.0
    retry_on: Callable[[BaseException], bool] | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and not _positive(self.timeout):
            raise ValueError(f"StepOptions.timeout must be seconds > 0 or None, got {self.timeout!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"StepOptions.retries must be an int >= 0, got {self.retries!r}")
        for name in ("retry_delay", "max_retry_delay"):
            value = getattr(self, name)
            if not _positive(value) and value != 0:
                raise ValueError(f"StepOptions.{name} must be seconds >= 0, got {value!r}")
        if not _positive(self.backoff) or self.backoff < 1:
            raise ValueError(f"StepOptions.backoff must be >= 1, got {self.backoff!r}")
        if self.retry_on is not None and not callable(self.retry_on):
            raise TypeError(f"StepOptions.retry_on must be callable or None, got {self.retry_on!r}")

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, Awaitable[R]]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Awaitable[Any]]:
        """``fn`` with this timeout and retry policy: an async function to pass to ``ctx.step``."""
        if not callable(fn):
            raise TypeError(f"StepOptions applies to a function, not {fn!r}")
        options = self

        @functools.wraps(fn)
        async def with_options(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await options._run(fn, args, kwargs)

        return with_options

    async def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tries = 0
        while True:
            tries += 1
            try:
                async with asyncio.timeout(self.timeout):
                    return await _call(fn, args, kwargs)
            except Exception as error:
                if tries > self.retries or not self._may_retry(error):
                    if isinstance(error, TimeoutError) and not str(error):
                        name = getattr(fn, "__qualname__", repr(fn))
                        raise TimeoutError(f"step function {name} took longer than {self.timeout} s") from error
                    raise
            await asyncio.sleep(self._delay(tries))

    def _may_retry(self, error: Exception) -> bool:
        if isinstance(error, NonRetryableError):
            return False
        return self.retry_on is None or bool(self.retry_on(error))

    def _delay(self, failed: int) -> float:
        try:
            delay = self.retry_delay * self.backoff ** min(failed - 1, 1024)
        except OverflowError:
            delay = self.max_retry_delay
        return min(delay, self.max_retry_delay)


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


async def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if is_async(fn):
        return await fn(*args, **kwargs)
    result = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
