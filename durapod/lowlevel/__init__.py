"""The actor runtime durapod is built on: actors, mailboxes, supervisors, backoff and clocks.

Advanced hooks, kept apart from the everyday API (like ``trio.lowlevel``): most users never import this.
It is public, documented and tested, for those who build their own services on durapod's runtime.

- :class:`Actor` runs in one task and handles messages one at a time; :func:`spawn` starts it and
  returns an :class:`ActorRef` once its ``on_start`` has loaded its state.
- :class:`Mailbox` is a bounded queue with an explicit :class:`OverflowPolicy` and a control lane
  (:class:`ControlMessage`) that is never full.
- :class:`Supervisor` starts children from :class:`ChildSpec`, restarts them by :class:`RestartType`
  with :class:`Backoff`, escalates when they flap, and stops them in reverse order.
- :class:`Clock` is what everything that waits waits on; ``durapod.testing.FakeClock`` moves by hand.
"""

from durapod.lowlevel.actor import Actor, ActorRef, ControlMessage, Stop, spawn
from durapod.lowlevel.clock import SYSTEM_CLOCK, Clock, FakeClock, SystemClock
from durapod.lowlevel.mailbox import Mailbox, MailboxClosed, MailboxStatistics, OverflowPolicy
from durapod.lowlevel.policy import Backoff, ChildSpec, RestartDecision, RestartType, Strategy
from durapod.lowlevel.supervisor import ChildInfo, Supervisor

__all__ = [
    "SYSTEM_CLOCK",
    "Actor",
    "ActorRef",
    "Backoff",
    "ChildInfo",
    "ChildSpec",
    "Clock",
    "ControlMessage",
    "FakeClock",
    "Mailbox",
    "MailboxClosed",
    "MailboxStatistics",
    "OverflowPolicy",
    "RestartDecision",
    "RestartType",
    "Stop",
    "Strategy",
    "Supervisor",
    "SystemClock",
    "spawn",
]
