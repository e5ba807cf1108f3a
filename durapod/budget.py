"""Budgets: how many tokens, model requests and steps a job may use before it stops.

Usage is counted from the journal (each model request's usage is journaled with its response, and
``ctx.record_usage`` journals what other agents report), so it counts across retries, resumes and
recoveries, and a replay counts every journaled request exactly once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Budget"]


class Budget(BaseModel):
    """What a job may use: ``tokens`` and model ``requests`` reported by the agent, journaled ``steps``.

    A job that has used all of one of them stops before its next step (a model request is one): it
    fails with :class:`~durapod.BudgetExceeded`, or with ``on_exceeded="pause"`` it pauses waiting for a
    new budget: ``await durable.resume(job_id, Budget(tokens=20_000))`` raises it and the job continues.

    Args:
        tokens: input plus output tokens (None: no limit).
        requests: model requests.
        steps: journaled steps.
        on_exceeded: ``"fail"`` (default) or ``"pause"``.

    Example:
        >>> durable = DurableAgent(agent, store, budget=Budget(tokens=50_000, requests=20))  # doctest: +SKIP
        >>> await durable.start("job_1", "...", budget=Budget(tokens=5_000))  # doctest: +SKIP
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens: int | None = Field(default=None, ge=0)
    requests: int | None = Field(default=None, ge=0)
    steps: int | None = Field(default=None, ge=0)
    on_exceeded: Literal["fail", "pause"] = "fail"

    def exceeded(self, usage: dict[str, int], steps: int) -> tuple[str, int, int] | None:
        """What ran out, how much was used and allowed, or None while there is room for one more step."""
        if self.steps is not None and steps >= self.steps:
            return "steps", steps, self.steps
        for limit in ("tokens", "requests"):
            allowed = getattr(self, limit)
            used = usage.get(limit, 0)
            if allowed is not None and used >= allowed:
                return limit, used, allowed
        return None
