"""Restart policy: restart types, backoff between restarts, and the decision a supervisor takes."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from durapod.lowlevel.actor import Actor

__all__ = ["Backoff", "ChildSpec", "RestartDecision", "RestartType", "Strategy"]


class RestartType(StrEnum):
    """When a supervisor restarts a child that stopped (Erlang/OTP's names)."""

    PERMANENT = "permanent"
    """Always: a child that must run for as long as its supervisor does (scheduler, lease keeper)."""
    TRANSIENT = "transient"
    """Only after a crash: a child that finishes its work and stops normally (a job actor)."""
    TEMPORARY = "temporary"
    """Never."""


class Strategy(StrEnum):
    """Which children a supervisor restarts when one crashes."""

    ONE_FOR_ONE = "one_for_one"
    """Only the crashed child."""
    ONE_FOR_ALL = "one_for_all"
    """Every child: the others are stopped (in reverse order) and all start again in order."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter between restarts.

    The delay before restart ``n`` (1 for the first) is
    ``min(initial_delay * multiplier ** (n - 1), max_delay) * (1 + jitter * u)`` with ``u`` uniform in
    [0, 1). A child that ran ``reset_after`` seconds without crashing starts again from restart 1.

    Example:
        >>> Backoff(initial_delay=1.0, multiplier=2.0, jitter=0.0).delay(3)
        4.0
    """

    initial_delay: float = 1.0
    max_delay: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.1
    reset_after: float | None = None

    def __post_init__(self) -> None:
        for name in ("initial_delay", "max_delay", "jitter"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Backoff.{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.multiplier, int | float) or not math.isfinite(self.multiplier) or self.multiplier < 1:
            raise ValueError(f"Backoff.multiplier must be a finite number >= 1, got {self.multiplier!r}")
        if self.max_delay < self.initial_delay:
            raise ValueError(f"Backoff.max_delay ({self.max_delay!r}) is below initial_delay ({self.initial_delay!r})")
        if self.reset_after is not None and self.reset_after <= 0:
            raise ValueError(f"Backoff.reset_after must be > 0 or None, got {self.reset_after!r}")

    def delay(self, restart: int, random_value: float = 0.0) -> float:
        """Seconds to wait before restart number ``restart`` (from 1), given ``u = random_value``."""
        if restart < 1:
            raise ValueError(f"restart numbers start at 1, got {restart!r}")
        exponent = min(restart - 1, 1024)  # past this the cap has long applied; avoid float overflow
        try:
            base = self.initial_delay * self.multiplier**exponent
        except OverflowError:
            base = self.max_delay if self.initial_delay > 0 else 0.0  # zero times any growth stays zero
        return min(base, self.max_delay) * (1.0 + self.jitter * random_value)


@dataclass(frozen=True, slots=True)
class RestartDecision:
    """What a supervisor decided about a child that stopped.

    Attributes:
        restart: whether the child will be started again.
        delay: seconds before it is (0 when not restarting).
        restart_count: the number of this restart (from 1), or the restarts used so far if none.
        reason: why, in a word or two (``"crashed"``, ``"normal exit"``, ``"not retryable"``,
            ``"max restarts"``, ``"temporary"``, ``"shutting down"``).
    """

    restart: bool
    delay: float
    restart_count: int
    reason: str


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    Attributes:
        name: unique among the supervisor's children.
        factory: builds a fresh actor for every (re)start.
        restart: when to restart it (:class:`RestartType`).
        backoff: delays between restarts.
        max_restarts: restarts allowed to this child (None: no limit but the supervisor's intensity).
        restarts: restarts already used (a job recovered after a crash keeps counting).
        should_restart: a predicate on the crash error; False fails the child for good.
        on_exit: awaited with the error and the decision after every crash, and after a normal stop
            that leads to a restart (a permanent child), before any delay: where a job records its
            failure or its retry timer. A normal stop that ends the child does not call it.
        shutdown_timeout: seconds to wait for a graceful stop before the child's task is cancelled.
    """

    name: str
    factory: Callable[[], Actor[Any]]
    restart: RestartType = RestartType.PERMANENT
    backoff: Backoff = Backoff()
    max_restarts: int | None = None
    restarts: int = 0
    should_restart: Callable[[BaseException], bool] | None = None
    on_exit: Callable[[BaseException | None, RestartDecision], Awaitable[None]] | None = None
    shutdown_timeout: float = 5.0
