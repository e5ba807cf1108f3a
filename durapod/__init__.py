"""durapod: durable LLM agents.

Jobs that survive crashes and restarts, checkpoint every step, can be paused, resumed with new input and
cancelled from any coroutine or process, retry with exponential backoff, and stream their events.

Example:
    >>> from durapod import DurableAgent, MemoryStore, JobContext
    >>> async def triage(ticket: str, ctx: JobContext) -> str:
    ...     facts = await ctx.step("lookup", str.upper, ticket)
    ...     return f"reply to {facts}"
    >>> durable = DurableAgent(triage, MemoryStore())
"""

from durapod.actors import Actor, ActorRef, ControlMessage, Mailbox, MailboxStatistics, OverflowPolicy
from durapod.agent import DurableAgent
from durapod.client import Client
from durapod.context import JobContext
from durapod.errors import (
    AskTimeout,
    CorruptRecord,
    DurapodError,
    InvalidInput,
    InvalidJobId,
    JobConflictError,
    JobNotFound,
    JobStateError,
    MailboxFull,
    NonRetryableError,
    RestartIntensityExceeded,
    StaleOwnerError,
    StepMismatch,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)
from durapod.events import (
    DoneEvent,
    ErrorEvent,
    Event,
    InterruptEvent,
    JobStatusEvent,
    StepEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
)
from durapod.models import Job, JobStatus, StepRecord
from durapod.stores import ControlRequest, MemoryStore, Page, Store, open_store
from durapod.stores.redis import RedisStore
from durapod.stores.sqlite import SQLiteStore
from durapod.supervisor import Backoff, ChildSpec, RestartDecision, RestartType, Strategy, Supervisor

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "ActorRef",
    "AskTimeout",
    "Backoff",
    "ChildSpec",
    "Client",
    "ControlMessage",
    "ControlRequest",
    "CorruptRecord",
    "DoneEvent",
    "DurableAgent",
    "DurapodError",
    "ErrorEvent",
    "Event",
    "InterruptEvent",
    "InvalidInput",
    "InvalidJobId",
    "Job",
    "JobConflictError",
    "JobContext",
    "JobNotFound",
    "JobStateError",
    "JobStatus",
    "JobStatusEvent",
    "Mailbox",
    "MailboxFull",
    "MailboxStatistics",
    "MemoryStore",
    "NonRetryableError",
    "OverflowPolicy",
    "Page",
    "RedisStore",
    "RestartDecision",
    "RestartIntensityExceeded",
    "RestartType",
    "SQLiteStore",
    "StaleOwnerError",
    "StepEvent",
    "StepMismatch",
    "StepRecord",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Strategy",
    "Supervisor",
    "TokenEvent",
    "ToolCallEvent",
    "ToolResultEvent",
    "VersionConflict",
    "__version__",
    "open_store",
]
