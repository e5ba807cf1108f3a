"""Schedules: cron expressions, their fire times, and the schedule state kept in the store.

A schedule fires at the ticks of a cron expression in a timezone. Each fire creates the job
``<schedule name>:<fire time in UTC ISO>`` only if it is absent, so any number of schedulers on one
store create exactly one job per tick.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from pydantic import BaseModel, ConfigDict, Field

from durapod.errors import InvalidJobId
from durapod.models import MAX_JOB_ID_LENGTH, validate_job_id

__all__ = [
    "MAX_SCHEDULE_NAME_LENGTH",
    "CatchUp",
    "CronSchedule",
    "Overlap",
    "ScheduleState",
    "fire_job_id",
    "parse_timezone",
    "validate_schedule_name",
]

Overlap = Literal["skip", "allow", "queue"]
CatchUp = Literal["none", "latest", "all"]

_OVERLAPS = ("skip", "allow", "queue")
_CATCH_UPS = ("none", "latest", "all")

#: The longest schedule name: a fire's job id (``<name>:<UTC time>``, at most 28 characters after the
#: name) must be a valid job id.
MAX_SCHEDULE_NAME_LENGTH: Final = MAX_JOB_ID_LENGTH - len(":2026-01-05T08:00:00.000000Z")
# where a new expression is asked for its next fire (fixed, so that the check is the same every day)
_PROBE_MOMENT: Final = datetime(2000, 1, 1, tzinfo=UTC)


def validate_schedule_name(name: object) -> str:
    """Return ``name`` if it is a valid schedule name, else raise ``ValueError`` naming it.

    A valid name is what a job id may be (non-empty, no whitespace or control characters), without
    ``':'`` and at most :data:`MAX_SCHEDULE_NAME_LENGTH` (172) characters, so that every fire's job id
    ``<name>:<UTC time>`` is valid.
    """
    if not isinstance(name, str):
        raise TypeError(f"schedule name must be a str, got {name!r}")
    try:
        validate_job_id(name)
    except InvalidJobId as exc:
        raise ValueError(f"invalid schedule name {name!r}: {str(exc).rsplit(': ', 1)[-1]}") from None
    if len(name) > MAX_SCHEDULE_NAME_LENGTH:
        raise ValueError(
            f"invalid schedule name {name[:20]!r}...: {len(name)} characters, longer than"
            f" {MAX_SCHEDULE_NAME_LENGTH} (a fire's job id adds its time to the name)"
        )
    if ":" in name:
        raise ValueError(f"invalid schedule name {name!r}: ':' separates the name from the fire time")
    return name


def parse_timezone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``; ``ValueError`` naming it if unknown."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"invalid timezone {name!r}: expected an IANA name such as 'Europe/Paris'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"invalid timezone {name!r}: {exc}") from None


class CronSchedule:
    """A cron expression in a timezone: standard 5 fields, an optional leading seconds field (6 fields),
    or an alias (``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``, ``@midnight``).

    Fire times are correct across DST changes: a time that does not exist (spring forward) fires at the
    first valid moment after it; a wall-clock time that happens twice (fall back) fires once for
    expressions with fixed hours, twice for hourly and finer ones (they are two different hours).

    Raises:
        ValueError: an invalid expression or timezone, or an expression that never fires (such as
            ``0 0 30 2 *``, February 30th), naming it.

    Example:
        >>> schedule = CronSchedule("0 9 * * MON", "Europe/Paris")
        >>> schedule.next_after(datetime(2026, 1, 1, tzinfo=UTC)).isoformat()
        '2026-01-05T08:00:00+00:00'
    """

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        if not isinstance(expression, str) or not expression.strip():
            raise ValueError(f"invalid cron expression {expression!r}")
        expression = " ".join(expression.split())
        fields = expression.split(" ")
        self.has_seconds = len(fields) == 6
        if not croniter.is_valid(expression, second_at_beginning=self.has_seconds) or len(fields) not in (1, 5, 6):
            raise ValueError(
                f"invalid cron expression {expression!r}: expected 5 fields (minute hour day month weekday), "
                "6 with a leading seconds field, or an alias such as @hourly"
            )
        self.expression = expression
        self.timezone = timezone
        self.zone = parse_timezone(timezone)
        hour_field = fields[2 if self.has_seconds else 1] if len(fields) > 1 else ""
        aliases_with_fixed_hours = ("@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
        self._fixed_hours = hour_field not in ("", "*") or expression in aliases_with_fixed_hours
        self.next_after(_PROBE_MOMENT)  # one that never fires is refused now, not at its first tick

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r}, {self.timezone!r})"

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment``, as a UTC datetime."""
        local = moment.astimezone(self.zone)
        iterator = croniter(self.expression, local, second_at_beginning=self.has_seconds)
        previous = local
        for _ in range(4):
            try:
                fire: datetime = iterator.get_next(datetime)
            except CroniterError as exc:  # croniter searches a bounded number of years
                raise ValueError(f"cron expression {self.expression!r} never fires: {exc}") from None
            # (aware datetimes in one zone compare by wall time, so compare the instants in UTC)
            repeated_wall_time = fire.replace(tzinfo=None) == previous.replace(tzinfo=None) and fire.astimezone(
                UTC
            ) != previous.astimezone(UTC)
            if not (self._fixed_hours and repeated_wall_time):
                return fire.astimezone(UTC)
            previous = fire
        return fire.astimezone(UTC)  # pragma: no cover - a wall time repeats at most once

    def fires_between(self, start: datetime, end: datetime, limit: int = 100_000) -> list[datetime]:
        """Fire times ``t`` with ``start < t <= end``, oldest first (at most ``limit``)."""
        fires: list[datetime] = []
        moment = start
        while len(fires) < limit:
            moment = self.next_after(moment)
            if moment > end:
                break
            fires.append(moment)
        return fires

    def interval_hint(self, after: datetime) -> timedelta:
        """The gap between the next two fires after ``after`` (the grace for a late fire)."""
        first = self.next_after(after)
        return self.next_after(first) - first


def fire_job_id(schedule: str, fire_time: datetime) -> str:
    """The job id of one fire: ``<schedule>:<UTC ISO time>``, e.g. ``nightly:2026-01-05T08:00:00Z``."""
    stamp = fire_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if fire_time.microsecond:
        stamp += f".{fire_time.microsecond:06d}"
    return f"{schedule}:{stamp}Z"


class ScheduleState(BaseModel):
    """A schedule as the store keeps it (shared by every scheduler of the agent).

    Attributes:
        agent: the agent whose jobs it creates.
        name: unique per agent; ``default`` for the constructor's ``schedule=``.
        cron: the cron expression; ``timezone`` its IANA timezone.
        overlap: ``skip`` (no new run while the previous is unfinished), ``allow``, or ``queue`` (run
            after the previous finishes).
        catch_up: for ticks missed while no scheduler ran: ``none``, ``latest`` (one run for the latest),
            or ``all`` (every one within ``catch_up_window`` seconds).
        paused: a paused schedule does not fire.
        last_fire / next_fire: UTC times.
        last_job_id: the job of the last fire.
        last_error: why the last fire failed (``on_schedule`` raised), or None.
        queued: fire times waiting for the previous run to finish (overlap ``queue``).
        version: compare-and-set version.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent: str
    name: str
    cron: str
    timezone: str = "UTC"
    overlap: Overlap = "skip"
    catch_up: CatchUp = "none"
    catch_up_window: float = 86_400.0
    paused: bool = False
    last_fire: datetime | None = None
    next_fire: datetime | None = None
    last_job_id: str | None = None
    last_error: str | None = None
    queued: list[datetime] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    version: int = 1


def check_policy(overlap: str, catch_up: str, catch_up_window: float) -> None:
    """``ValueError`` naming a bad overlap, catch-up policy or window."""
    if overlap not in _OVERLAPS:
        raise ValueError(f"invalid overlap policy {overlap!r}; expected one of {', '.join(_OVERLAPS)}")
    if catch_up not in _CATCH_UPS:
        raise ValueError(f"invalid catch-up policy {catch_up!r}; expected one of {', '.join(_CATCH_UPS)}")
    if (
        isinstance(catch_up_window, bool)
        or not isinstance(catch_up_window, int | float)
        or not math.isfinite(catch_up_window)
        or catch_up_window < 0
    ):
        raise ValueError(f"catch_up_window must be a finite number of seconds >= 0, got {catch_up_window!r}")
