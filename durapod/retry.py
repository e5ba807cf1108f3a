"""The retry policy of jobs: which failures are retried, how often, and after what delay.

One module, one place. A job actor whose agent raises asks :meth:`RetryPolicy.decide`; it writes the
decision itself before it exits (the job's error, and either its durable retry timer ``next_attempt_at``
or its final failure), and the worker's job supervisor restarts the actor when that timer is due. The
timer is the only delay: nothing sleeps anywhere else.

    delay(n) = min(retry_delay * backoff ** (n - 1), max_retry_delay) * (1 + jitter * U(0, 1))

where ``n`` counts the failed executions of the current run (from 1). Total executions of a run are at
most ``max_retries + 1``.
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Callable
from dataclasses import dataclass

from durapod._util import seconds
from durapod.errors import InvalidInput, NonRetryableError, StepMismatch
from durapod.lowlevel.policy import Backoff

__all__ = ["RetryDecision", "RetryPolicy"]

#: Errors that no retry can fix: the job fails at once, whatever ``retry_on`` says.
NEVER_RETRY: tuple[type[BaseException], ...] = (NonRetryableError, InvalidInput, StepMismatch)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What happens after a failed execution.

    Attributes:
        retry: whether the job runs again.
        delay: seconds until it does (0 when it does not).
        reason: ``"retrying"``, ``"not retryable"`` or ``"retries exhausted"``.
    """

    retry: bool
    delay: float
    reason: str


class RetryPolicy:
    """Retries of failed executions, with exponential backoff and jitter.

    Args:
        max_retries: retries after the first execution of a run fails (>= 0).
        retry_delay: seconds before the first retry.
        max_retry_delay: the cap on the delay.
        backoff: the multiplier from one delay to the next (>= 1).
        jitter: each delay is multiplied by ``1 + jitter * U(0, 1)``.
        retry_on: a predicate on the error: False fails the job at once.
        random: the jitter source, uniform in [0, 1).

    Raises:
        ValueError: a bad value, named.

    Example:
        >>> policy = RetryPolicy(max_retries=3, retry_delay=1.0, jitter=0.0)
        >>> policy.decide(RuntimeError("boom"), failed_executions=2)
        RetryDecision(retry=True, delay=2.0, reason='retrying')
    """

    __slots__ = ("_random", "backoff", "max_retries", "retry_on")

    def __init__(
        self,
        *,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        max_retry_delay: float = 60.0,
        backoff: float = 2.0,
        jitter: float = 0.1,
        retry_on: Callable[[BaseException], bool] | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if retry_on is not None and not callable(retry_on):
            raise TypeError(f"retry_on must be a callable taking the exception, got {retry_on!r}")
        self.max_retries = max_retries
        self.backoff = Backoff(
            initial_delay=seconds("retry_delay", retry_delay),
            max_delay=seconds("max_retry_delay", max_retry_delay),
            multiplier=backoff,
            jitter=seconds("jitter", jitter),
        )
        self.retry_on = retry_on
        self._random = random or _random.random

    def __repr__(self) -> str:
        return f"RetryPolicy(max_retries={self.max_retries}, backoff={self.backoff!r})"

    def is_retryable(self, error: BaseException) -> bool:
        """False for errors no retry can fix, and for those ``retry_on`` refuses."""
        if isinstance(error, NEVER_RETRY):
            return False
        if not isinstance(error, Exception | asyncio.CancelledError):
            return False
        if self.retry_on is None:
            return True
        try:
            return bool(self.retry_on(error))
        except Exception:  # a broken predicate must not crash the job actor: do not retry
            return False

    def decide(self, error: BaseException, *, failed_executions: int) -> RetryDecision:
        """The decision after the ``failed_executions``-th failed execution of the current run (from 1)."""
        if not self.is_retryable(error):
            return RetryDecision(False, 0.0, "not retryable")
        if failed_executions > self.max_retries:
            return RetryDecision(False, 0.0, "retries exhausted")
        return RetryDecision(True, self.backoff.delay(failed_executions, self._random()), "retrying")
