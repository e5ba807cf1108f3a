"""Supervision: restart policies, backoff, restart intensity and ordered shutdown."""

from durapod.supervisor.clock import SYSTEM_CLOCK, Clock, FakeClock, SystemClock
from durapod.supervisor.policy import Backoff, ChildSpec, RestartDecision, RestartType, Strategy
from durapod.supervisor.supervisor import ChildInfo, Supervisor

__all__ = [
    "SYSTEM_CLOCK",
    "Backoff",
    "ChildInfo",
    "ChildSpec",
    "Clock",
    "FakeClock",
    "RestartDecision",
    "RestartType",
    "Strategy",
    "Supervisor",
    "SystemClock",
]
