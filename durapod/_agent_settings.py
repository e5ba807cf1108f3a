"""The rules of DurableAgent's settings: each one checked, and refused with an error that names it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import JsonValue

from durapod._invoke import agent_name
from durapod._util import seconds
from durapod.budget import Budget
from durapod.models import check_metadata
from durapod.versioning import VERSION_KEY

__all__ = ["check_budget", "check_lease_ttl", "count", "jobs_metadata", "name_of"]


def count(name: str, value: int, minimum: int) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_lease_ttl(value: float) -> float:
    """The lease's length in seconds: at least 0.01."""
    checked = seconds("lease_ttl", value, allow_zero=False)
    if checked < 0.01:
        raise ValueError(f"lease_ttl must be at least 0.01 seconds, got {value!r}")
    return checked


def check_budget(budget: Budget | None) -> Budget | None:
    """``budget`` if it is a :class:`~durapod.Budget` or None."""
    if budget is not None and not isinstance(budget, Budget):
        raise TypeError(f"budget must be a durapod.Budget, got {budget!r}")
    return budget


def name_of(agent: Any, name: str | None) -> str:
    """The agent's name on its jobs: ``name``, else the agent's ``durapod_name`` or qualified name."""
    chosen = name if name is not None else getattr(agent, "durapod_name", None) or agent_name(agent)
    if not isinstance(chosen, str) or not chosen:
        raise ValueError(f"name must be a non-empty str, got {chosen!r}")
    return chosen


def jobs_metadata(metadata: Mapping[str, JsonValue] | None, version: str | None) -> dict[str, JsonValue]:
    """The metadata merged into every job: ``metadata`` checked, with the code's ``version`` if given."""
    merged = check_metadata(metadata)
    if version is not None:
        if not isinstance(version, str) or not version:
            raise ValueError(f"version must be a non-empty str or None, got {version!r}")
        merged[VERSION_KEY] = version
    return merged
