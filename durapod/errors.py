"""The exceptions durapod raises.

Misuse (a bad request from the caller) is kept apart from runtime failures (the store, the actors)::

    DurapodError
    ├── JobNotFound                 no job has that id
    ├── JobStateError               the request is illegal in the job's current status
    ├── JobConflictError            an existing id was given a different input
    ├── InvalidJobId (ValueError)   empty, too long, whitespace or control characters
    ├── InvalidInput (ValueError)   an input, result or metadata value that is not JSON
    ├── StepMismatch                the agent's steps no longer match its journal on replay
    ├── ChildFailed                 a child job (``ctx.run_child``) failed or was cancelled
    ├── StoreError                  the store failed
    │   ├── StoreUnavailable        the store cannot be reached (after retrying)
    │   ├── CorruptRecord           a stored record is not valid JSON of the expected shape
    │   └── VersionConflict         a compare-and-set write lost to a newer version
    ├── StaleOwnerError             this worker no longer owns the job (fencing epoch moved on)
    ├── WorkerIdInUse               a live worker process already runs under that worker id
    ├── AskTimeout (TimeoutError)   an actor did not answer an ask in time
    ├── MailboxFull                 a mailbox with the "reject" policy is at capacity
    ├── RestartIntensityExceeded    a supervisor restarted children too often and gave up
    └── NonRetryableError           raised by agents: fail the job at once, no retry
        └── BudgetExceeded          the job used up its Budget (tokens, model requests, steps)

Every exception carries the object it is about (``.job_id``, ``.status``, ``.key``) so that callers can
act on it without parsing messages.
"""

from __future__ import annotations

__all__ = [
    "AskTimeout",
    "BudgetExceeded",
    "ChildFailed",
    "CorruptRecord",
    "DurapodError",
    "InvalidInput",
    "InvalidJobId",
    "JobConflictError",
    "JobNotFound",
    "JobStateError",
    "MailboxFull",
    "NonRetryableError",
    "RestartIntensityExceeded",
    "StaleOwnerError",
    "StepMismatch",
    "StoreError",
    "StoreUnavailable",
    "VersionConflict",
    "WorkerIdInUse",
]


class DurapodError(Exception):
    """Base class of every error durapod raises."""


class JobNotFound(DurapodError, LookupError):
    """No job has the given id.

    Attributes:
        job_id: the id that was looked up.
    """

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class JobStateError(DurapodError):
    """A request is not allowed in the job's current status; nothing was written.

    Attributes:
        job_id: the job.
        status: its status when the request was refused.
        request: what was asked (``"pause"``, ``"cancel"``, ...).
    """

    def __init__(self, job_id: str, status: str, request: str, detail: str = "") -> None:
        message = f"cannot {request} job {job_id!r}: it is {status}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)
        self.job_id = job_id
        self.status = status
        self.request = request


class JobConflictError(DurapodError):
    """An existing job id was given an input that differs from the job's own.

    Attributes:
        job_id: the job.
    """

    def __init__(self, job_id: str, detail: str = "a different input") -> None:
        super().__init__(f"job {job_id!r} already exists with {detail}")
        self.job_id = job_id


class InvalidJobId(DurapodError, ValueError):
    """A job id is empty, over 200 characters, or holds whitespace or control characters.

    Attributes:
        job_id: the offending value.
    """

    def __init__(self, job_id: object, reason: str) -> None:
        super().__init__(f"invalid job id {job_id!r}: {reason}")
        self.job_id = job_id


class InvalidInput(DurapodError, ValueError):
    """A value that must be JSON (an input, a step result, metadata) is not.

    Attributes:
        what: which value (``"input"``, ``"result of step 'draft'"``...).
        job_id: the job it belongs to, if any.
    """

    def __init__(self, what: str, value: object, reason: str, job_id: str | None = None) -> None:
        where = f" of job {job_id!r}" if job_id is not None else ""
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{what}{where} is not JSON: {shown} ({reason})")
        self.what = what
        self.job_id = job_id


class ChildFailed(DurapodError):
    """A child job that the agent awaits (``ctx.run_child``, a ``start_child`` handle) failed or was
    cancelled. Raised in the parent's agent, which may catch it; else the parent's retry policy applies.

    Attributes:
        job_id: the parent job.
        child_id: the child job.
        status: the child's status (``"failed"`` or ``"cancelled"``).
        error_type: the child's error class name, if it failed.
        error: the child's error message, if it failed.
    """

    def __init__(self, job_id: str, child_id: str, status: str, error_type: str | None, error: str | None) -> None:
        cause = f": {error_type}: {error}" if error_type else ""
        super().__init__(f"child job {child_id!r} of job {job_id!r} {status}{cause}")
        self.job_id = job_id
        self.child_id = child_id
        self.status = status
        self.error_type = error_type
        self.error = error


class StepMismatch(DurapodError):
    """On replay, the agent asked for a step that differs from the one its journal recorded.

    Agents must call their steps in the same order on every execution; this error fails the job at once.
    A change of the agent's steps while jobs are in flight belongs behind ``ctx.patched(change_id)``.

    Attributes:
        job_id: the job.
        index: the position of the step in the journal.
        expected: the name recorded in the journal.
        actual: the name the agent asked for.
    """

    def __init__(self, job_id: str, index: int, expected: str, actual: str) -> None:
        super().__init__(
            f"job {job_id!r} step #{index}: the journal recorded {expected!r} but the agent asked for {actual!r}"
            " (if the agent's code changed while this job was in flight, guard the change with"
            " ctx.patched(change_id) so that jobs that recorded the old steps keep them)"
        )
        self.job_id = job_id
        self.index = index
        self.expected = expected
        self.actual = actual


class StoreError(DurapodError):
    """The store failed to carry out an operation."""


class StoreUnavailable(StoreError):
    """The store could not be reached, even after retrying."""


class CorruptRecord(StoreError):
    """A stored record could not be decoded into the expected model.

    Attributes:
        key: the store key (or job id) of the record.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"corrupt record {key!r}: {reason}")
        self.key = key


class VersionConflict(StoreError):
    """A compare-and-set write found a newer version of the job than the writer expected.

    Attributes:
        job_id: the job.
        expected: the version the writer read.
        actual: the version in the store (``None`` when the job is gone).
    """

    def __init__(self, job_id: str, expected: int, actual: int | None) -> None:
        super().__init__(f"job {job_id!r}: expected version {expected}, store has {actual}")
        self.job_id = job_id
        self.expected = expected
        self.actual = actual


class StaleOwnerError(DurapodError):
    """A write was fenced off: another worker (or a control request) has taken the job since.

    Attributes:
        job_id: the job.
        epoch: the epoch the writer held.
        current_epoch: the job's epoch in the store.
    """

    def __init__(self, job_id: str, epoch: int, current_epoch: int | None, detail: str = "") -> None:
        message = f"job {job_id!r}: writer holds epoch {epoch}, store has {current_epoch}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)
        self.job_id = job_id
        self.epoch = epoch
        self.current_epoch = current_epoch


class WorkerIdInUse(DurapodError):
    """A worker was started with an id that a live worker (another process, or another agent object)
    holds: two workers under one id would take each other's jobs and run steps twice.

    Attributes:
        worker_id: the id.
        holder: who holds it (host and process id, as the holder registered them).
    """

    def __init__(self, worker_id: str, holder: str) -> None:
        super().__init__(
            f"worker id {worker_id!r} is in use by a live worker ({holder}); give each worker process its own "
            "worker_id (or leave it unset for a unique one)"
        )
        self.worker_id = worker_id
        self.holder = holder


class AskTimeout(DurapodError, TimeoutError):
    """An actor did not answer an ``ask`` within its timeout.

    Attributes:
        actor: the name of the actor asked.
        timeout: the timeout in seconds.
    """

    def __init__(self, actor: str, timeout: float) -> None:
        super().__init__(f"actor {actor!r} did not answer within {timeout:g}s")
        self.actor = actor
        self.timeout = timeout


class MailboxFull(DurapodError):
    """A message was refused because the mailbox is at capacity (overflow policy ``reject``).

    Attributes:
        actor: the owner of the mailbox.
        capacity: its capacity.
    """

    def __init__(self, actor: str, capacity: int) -> None:
        super().__init__(f"mailbox of {actor!r} is full ({capacity} messages)")
        self.actor = actor
        self.capacity = capacity


class RestartIntensityExceeded(DurapodError):
    """A supervisor restarted more than ``max_restarts`` children within ``within`` seconds.

    Attributes:
        supervisor: its name.
        restarts: how many restarts were counted in the window.
        within: the window in seconds.
    """

    def __init__(self, supervisor: str, restarts: int, within: float) -> None:
        super().__init__(f"supervisor {supervisor!r}: {restarts} restarts within {within:g}s")
        self.supervisor = supervisor
        self.restarts = restarts
        self.within = within


class NonRetryableError(DurapodError):
    """Raised by an agent (or a step) to fail its job at once, without retrying."""


class BudgetExceeded(NonRetryableError):
    """A job used up its :class:`~durapod.Budget`: it stopped before its next step (a model request is
    one) and fails without retrying (with ``on_exceeded="pause"`` it pauses instead).

    Attributes:
        job_id: the job.
        limit: what ran out: ``"tokens"``, ``"requests"`` or ``"steps"``.
        used: how much of it the job used.
        allowed: its budget.
    """

    def __init__(self, job_id: str, limit: str, used: int, allowed: int) -> None:
        super().__init__(f"job {job_id!r} used {used} {limit} of its budget of {allowed}")
        self.job_id = job_id
        self.limit = limit
        self.used = used
        self.allowed = allowed
