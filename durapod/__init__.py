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

from durapod.agent import DurableAgent
from durapod.budget import Budget
from durapod.children import ChildHandle
from durapod.client import Client
from durapod.context import JobContext
from durapod.errors import (
    AskTimeout,
    BudgetExceeded,
    ChildFailed,
    CorruptRecord,
    DurapodError,
    InvalidInput,
    InvalidJobId,
    JobConflictError,
    JobNotFound,
    JobStateError,
    MailboxFull,
    NonRetryableError,
    StaleOwnerError,
    StepMismatch,
    StoreError,
    StoreUnavailable,
    VersionConflict,
    WorkerIdInUse,
)
from durapod.events import (
    CustomEvent,
    DoneEvent,
    ErrorEvent,
    Event,
    InterruptEvent,
    JobStatusEvent,
    StepEvent,
    StepRestartedEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
)
from durapod.lowlevel.clock import Clock, FakeClock
from durapod.models import Job, JobStatus, StepRecord
from durapod.schedules import ScheduleState
from durapod.step_policy import StepOptions
from durapod.stores import MemoryStore, Page, Store, open_store
from durapod.stores.postgres import PostgresStore
from durapod.stores.redis import RedisStore
from durapod.stores.sqlite import SQLiteStore

__version__ = "0.1.0"

__all__ = [
    "AskTimeout",
    "Budget",
    "BudgetExceeded",
    "ChildFailed",
    "ChildHandle",
    "Client",
    "Clock",
    "CorruptRecord",
    "CustomEvent",
    "DoneEvent",
    "DurableAgent",
    "DurapodError",
    "ErrorEvent",
    "Event",
    "FakeClock",
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
    "MailboxFull",
    "MemoryStore",
    "NonRetryableError",
    "Page",
    "PostgresStore",
    "RedisStore",
    "SQLiteStore",
    "ScheduleState",
    "StaleOwnerError",
    "StepEvent",
    "StepMismatch",
    "StepOptions",
    "StepRecord",
    "StepRestartedEvent",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TokenEvent",
    "ToolCallEvent",
    "ToolResultEvent",
    "VersionConflict",
    "WorkerIdInUse",
    "__version__",
    "open_store",
]
