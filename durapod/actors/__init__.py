"""The actor runtime: actors with mailboxes, and the job, scheduler and lease-keeper actors built on it."""

from durapod.actors.actor import Actor, ActorRef, ControlMessage, Stop, spawn
from durapod.actors.mailbox import Mailbox, MailboxStatistics, OverflowPolicy

__all__ = [
    "Actor",
    "ActorRef",
    "ControlMessage",
    "Mailbox",
    "MailboxStatistics",
    "OverflowPolicy",
    "Stop",
    "spawn",
]
