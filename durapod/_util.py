"""Small internal helpers."""

from __future__ import annotations

import asyncio
import math
from typing import Any, TypeVar

__all__ = ["NoPublicConstructor", "cancel_and_wait", "seconds"]

T = TypeVar("T")


class NoPublicConstructor(type):
    """Metaclass for handles the runtime owns: calling the class raises ``TypeError``.

    The runtime builds instances with ``Class._create(...)`` (the pattern of trio's ``_util.py``).
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} has no public constructor; the runtime makes it")

    def _create(cls: type[T], *args: Any, **kwargs: Any) -> T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc,no-any-return]


def seconds(name: str, value: float, *, allow_zero: bool = True) -> float:
    """``value`` as a float if it is a finite number of seconds, >= 0 (> 0 without ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, however it ends (its error, if it had one, is dropped:
    it was being stopped).

    Unlike ``with suppress(CancelledError): await task``, a cancellation of the caller while it waits is
    not swallowed: it propagates, and the task has been asked to stop.
    """
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved, so that asyncio does not report it as never retrieved
