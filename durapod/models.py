"""Jobs, step records and the one transition table every writer obeys.

Nothing here does I/O. The JSON form of :class:`Job` and :class:`StepRecord` is the storage format.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from durapod.errors import InvalidInput, InvalidJobId, JobStateError

__all__ = [
    "CLAIMABLE",
    "MAX_JSON_DEPTH",
    "SETTLED",
    "TERMINAL",
    "TRANSITIONS",
    "ControlKind",
    "Job",
    "JobStatus",
    "Request",
    "StepRecord",
    "allowed_from",
    "check_json",
    "check_metadata",
    "check_transition",
    "error_text",
    "new_job",
    "new_step_record",
    "status_event",
    "utcnow",
    "validate_job_id",
]

MAX_JOB_ID_LENGTH: Final = 200

_Model = TypeVar("_Model", bound=BaseModel)


class JobStatus(StrEnum):
    """Where a job is in its lifecycle. A ``StrEnum``: ``JobStatus.COMPLETED == "completed"``."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for completed and cancelled: no request can change the job any more."""
        return self in TERMINAL

    @property
    def is_settled(self) -> bool:
        """True when nothing runs the job until someone asks: paused, completed, failed, cancelled."""
        return self in SETTLED


TERMINAL: Final = frozenset({JobStatus.COMPLETED, JobStatus.CANCELLED})
SETTLED: Final = frozenset({JobStatus.PAUSED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

#: What moves a job from one status to another.
Request = Literal["create", "claim", "retry", "pause", "resume", "complete", "fail", "cancel", "rerun"]

#: The transition table of DESIGN.md section 2, as ``(from, request) -> to``. ``None`` is a new job.
#: ``resume`` of a paused job goes to ``running`` when a worker resumes it in place and to ``pending``
#: when a client that runs nothing queues the resume for any worker.
TRANSITIONS: Final[Mapping[tuple[JobStatus | None, Request], frozenset[JobStatus]]] = {
    (None, "create"): frozenset({JobStatus.PENDING}),
    (JobStatus.PENDING, "claim"): frozenset({JobStatus.RUNNING}),
    (JobStatus.PENDING, "pause"): frozenset({JobStatus.PAUSED}),
    (JobStatus.PENDING, "cancel"): frozenset({JobStatus.CANCELLED}),
    # a pending job's retry timer may fail it for good (recovery limit) without running
    (JobStatus.PENDING, "fail"): frozenset({JobStatus.FAILED}),
    (JobStatus.RUNNING, "retry"): frozenset({JobStatus.PENDING}),
    (JobStatus.RUNNING, "pause"): frozenset({JobStatus.PAUSED}),
    (JobStatus.RUNNING, "complete"): frozenset({JobStatus.COMPLETED}),
    (JobStatus.RUNNING, "fail"): frozenset({JobStatus.FAILED}),
    (JobStatus.RUNNING, "cancel"): frozenset({JobStatus.CANCELLED}),
    # a crashed owner's running job is taken over by another worker: running -> running, new epoch
    (JobStatus.RUNNING, "claim"): frozenset({JobStatus.RUNNING}),
    (JobStatus.PAUSED, "resume"): frozenset({JobStatus.RUNNING, JobStatus.PENDING}),
    (JobStatus.PAUSED, "cancel"): frozenset({JobStatus.CANCELLED}),
    (JobStatus.FAILED, "rerun"): frozenset({JobStatus.PENDING}),
}


def allowed_from(request: Request) -> frozenset[JobStatus]:
    """The statuses from which ``request`` is legal (the table, read from the caller's side)."""
    return frozenset(source for source, asked in TRANSITIONS if asked == request and source is not None)


#: Statuses a worker may claim a job in (a queued job, or a running one whose owner's lease expired).
CLAIMABLE: Final = allowed_from("claim")


class ControlKind(StrEnum):
    """What a control request asks of a job's owner. Typed: an unknown kind is refused, never guessed."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


def check_transition(job_id: str, current: JobStatus | None, request: Request, target: JobStatus) -> None:
    """Raise :class:`JobStateError` unless ``request`` may move a job from ``current`` to ``target``."""
    allowed = TRANSITIONS.get((current, request))
    if allowed is None or target not in allowed:
        raise JobStateError(job_id, str(current) if current is not None else "new", request)


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def validate_job_id(job_id: object) -> str:
    """Return ``job_id`` if it is a valid job id, else raise :class:`InvalidJobId` naming it.

    A valid id is a non-empty ``str`` of at most 200 characters with no whitespace or control characters.
    """
    if not isinstance(job_id, str):
        raise InvalidJobId(job_id, f"must be a str, not {type(job_id).__name__}")
    if not job_id:
        raise InvalidJobId(job_id, "must not be empty")
    if len(job_id) > MAX_JOB_ID_LENGTH:
        raise InvalidJobId(job_id, f"longer than {MAX_JOB_ID_LENGTH} characters")
    # the common case in two C calls: the only whitespace that str.isprintable admits is the space
    if job_id.isprintable() and " " not in job_id:
        return job_id
    for char in job_id:  # which rule the id breaks first, for the message
        if char.isspace():
            raise InvalidJobId(job_id, "contains whitespace")
        if not char.isprintable():
            raise InvalidJobId(job_id, "contains a control character")
    return job_id


#: How deeply JSON values (inputs, metadata, results, events) may nest: ``[[1]]`` is 2 deep. Deeper
#: values are refused with :class:`InvalidInput` before anything is written, so that every record the
#: store holds reads back.
MAX_JSON_DEPTH: Final = 64


def check_json(value: Any, what: str, job_id: str | None = None) -> Any:
    """Return ``value`` if it is JSON that reads back equal (a container comes back as a fresh copy, so
    the caller's object is never shared with a record); else raise :class:`InvalidInput` naming ``what``.

    NaN and infinities are refused, as are non-string keys, tuples, strings holding lone surrogates
    (they cannot be encoded as UTF-8) and values nested more than :data:`MAX_JSON_DEPTH` deep.
    """
    kind = type(value)
    if kind is int or kind is bool or value is None:
        return value  # the common case, and always JSON
    if kind is str:
        if not value.isascii():
            _check_utf8(value, value, what, job_id)
        return value
    if (kind is dict or kind is list) and not value:
        return kind()  # empty (no metadata, say): a fresh one, as a round trip through JSON gives
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        raise InvalidInput(what, _Shown(value), f"nested more than {MAX_JSON_DEPTH} deep", job_id) from None
    except (TypeError, ValueError) as exc:
        raise InvalidInput(what, _Shown(value), str(exc), job_id) from None
    if not encoded.isascii():
        _check_utf8(encoded, value, what, job_id)
    # a value with at most MAX_JSON_DEPTH brackets in its text cannot nest deeper: most are never walked
    if encoded.count("[") + encoded.count("{") > MAX_JSON_DEPTH and _nests_deeper(value, MAX_JSON_DEPTH):
        raise InvalidInput(what, _Shown(value), f"nested more than {MAX_JSON_DEPTH} deep", job_id)
    copied = json.loads(encoded)
    if copied != value:
        # tuples, non-str keys and other values that json.dumps coerces would not read back the same
        raise InvalidInput(what, _Shown(value), "does not read back equal (tuple or non-str key?)", job_id)
    return copied


def check_metadata(metadata: object, what: str = "metadata", job_id: str | None = None) -> dict[str, Any]:
    """Return a fresh copy of ``metadata`` (None: ``{}``) if it is a mapping of str keys to JSON values.

    Raises:
        TypeError: it is not a mapping (naming ``what``).
        InvalidInput: a key or value is not JSON (see :func:`check_json`).
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"{what} must be a mapping of str keys to JSON values or None, got {_Shown(metadata)!r}")
    checked: dict[str, Any] = check_json(dict(metadata), what, job_id)
    return checked


def error_text(error: BaseException, redact: Callable[[BaseException], str] | None = None) -> str:
    """The text stored for ``error`` in ``job.error`` and in the job's ``error`` event.

    Without ``redact`` it is the exception's message verbatim (its class name if the message is empty):
    whatever an agent puts in a message (a URL with a token, a customer's data) is stored and shown. With
    ``redact`` (``DurableAgent(redact_errors=...)``) it is what ``redact`` returns; if that raises or
    returns something that is not a str, only the exception's class name is stored. Lone surrogates,
    which no store can encode, are replaced with ``?``.
    """
    if redact is None:
        text = str(error) or type(error).__name__
    else:
        try:
            text = redact(error)
        except Exception as exc:  # the unredacted message must not leak because the hook is broken
            text = f"{type(error).__name__} (redact_errors raised {type(exc).__name__})"
        if not isinstance(text, str):
            text = f"{type(error).__name__} (redact_errors returned {type(text).__name__}, not str)"
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text
    return text


def _has_surrogates(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


class _Shown:
    """A value as an error message shows it: its repr, cut short (a 10,000-deep list has no repr)."""

    __slots__ = ("text",)

    def __init__(self, value: object) -> None:
        try:
            text = repr(value)
        except RecursionError:
            text = f"<{type(value).__name__}>"
        self.text = text if len(text) <= 80 else text[:77] + "..."

    def __repr__(self) -> str:
        return self.text


def _check_utf8(text: str, value: object, what: str, job_id: str | None) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        reason = f"a lone surrogate {exc.object[exc.start]!r} cannot be stored as UTF-8"
        raise InvalidInput(what, _Shown(value), reason, job_id) from None


_CONTAINERS: Final = (dict, list, tuple)


def _nests_deeper(value: Any, levels: int) -> bool:
    """True if the container ``value`` nests more than ``levels`` deep (``[]`` is 1 deep).

    Recursive, and bounded: it never goes more than ``levels`` calls down.
    """
    if levels == 0:
        return True
    children = value.values() if isinstance(value, dict) else value
    for child in children:  # noqa: SIM110 - a loop: any() over a generator is three times slower here
        if isinstance(child, _CONTAINERS) and _nests_deeper(child, levels - 1):
            return True
    return False


class StepRecord(BaseModel):
    """One journaled step: its result is returned on replay instead of running the step again.

    Attributes:
        job_id: the job the step belongs to.
        index: its position in the journal, from 0.
        name: the name the agent gave it in ``ctx.step(name, ...)``.
        result: its JSON result.
        attempt: the execution (``Job.attempts``) that recorded it.
        epoch: the owner's fencing epoch when it was recorded.
        recorded_at: when it was committed.
        event_seq: the ``seq`` of the ``step`` event that the journal gives the job's event log for this
            step (:meth:`Store.read_events <durapod.stores.Store.read_events>` derives it from the
            record: the step is not logged a second time); None when no event is derived from it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    index: int = Field(ge=0)
    name: str
    result: JsonValue = None
    attempt: int = 0
    epoch: int = 0
    recorded_at: datetime
    event_seq: int | None = Field(default=None, ge=0)

    def step_event(self) -> dict[str, JsonValue]:
        """The ``step`` event derived from this record (at ``event_seq``), as the event log holds it."""
        return {
            "type": "step",
            "name": self.name,
            "index": self.index,
            "result": self.result,
            "job_id": self.job_id,
            "seq": self.event_seq,
        }


class Job(BaseModel):
    """A durable job: its identity, status, outcome and what durability needs.

    Jobs are immutable; every change is a new ``Job`` with ``version`` one higher, written with a
    compare-and-set on ``version``. The JSON form (``job.model_dump_json()``) is the storage format.

    Attributes:
        id: the job id.
        agent: the name of the agent that runs it.
        input: the JSON input it was started with.
        status: where it is in its lifecycle.
        result: the agent's return value once completed.
        error: the last error's message (cleared by a success).
        error_type: the last error's class name.
        attempts: how many times the agent has been executed for this job.
        recoveries: how many times the job was taken over after its owner died.
        metadata: free JSON metadata, filterable with ``list(metadata=...)``.
        created_at / updated_at / completed_at: timezone-aware UTC times.
        version: the compare-and-set version, one higher for every write.
        owner: the worker id that runs (or last ran) it.
        lease_until: when the owner's lease expires.
        epoch: the fencing token, one higher every time a worker claims the job.
        next_attempt_at: when a pending job may run (its durable retry timer, or the wake time of a job
            sleeping in ``ctx.sleep``: see :attr:`sleeping_until`).
        inputs: the inputs given on resume, oldest first.
        answers: the values that answered ``ctx.interrupt`` calls, in order.
        waiting_for: the prompt of the interrupt a paused job waits on.
        answer_type: ``module:qualname`` of the answer type that interrupt asked for, if any.
        usage: the model usage its agent reported (``tokens``, ``requests``...), summed over its journal.
        budget: the job's own :class:`~durapod.Budget` (its JSON form), if ``start`` was given one.
        steps: how many steps its journal holds.
        run_attempts_base: ``attempts`` when the current run began (a failed job run again gets a fresh
            retry budget while ``attempts`` keeps counting).
        resuming: a pending job that a client resumed: the worker that takes it continues the same
            execution (its journal replays) instead of counting a new attempt.
        paused_running: the job was paused in the middle of an execution (resume continues it), not
            before one started (resume then starts a new attempt).
        parent_id: the job that started this one with ``ctx.start_child`` / ``ctx.run_child``, if any.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    agent: str = ""
    input: JsonValue = None
    status: JobStatus = JobStatus.PENDING
    result: JsonValue = None
    error: str | None = None
    error_type: str | None = None
    attempts: int = 0
    recoveries: int = 0
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    version: int = 0
    owner: str | None = None
    lease_until: datetime | None = None
    epoch: int = 0
    next_attempt_at: datetime | None = None
    inputs: list[JsonValue] = Field(default_factory=list)
    answers: list[JsonValue] = Field(default_factory=list)
    waiting_for: str | None = None
    answer_type: str | None = None
    usage: dict[str, int] | None = None
    budget: dict[str, JsonValue] | None = None
    steps: int = 0
    run_attempts_base: int = 0
    resuming: bool = False
    paused_running: bool = False
    parent_id: str | None = None

    def evolve(self, **changes: Any) -> Job:
        """Return a copy with ``changes`` applied, ``version`` one higher, ``updated_at`` now (or as given).

        Used on the hot path: it skips validation, so callers pass values of the right types.
        """
        if "updated_at" not in changes:  # not setdefault: that would read the clock every time
            changes["updated_at"] = utcnow()
        changes["version"] = self.version + 1
        return _assemble(Job, {**self.__dict__, **changes}, _JOB_FIELDS)

    @property
    def code_version(self) -> str | None:
        """The version of the agent's code that created the job (``DurableAgent(version=...)``), kept in
        its metadata under ``"durapod.version"``."""
        value = self.metadata.get("durapod.version")
        return value if isinstance(value, str) else None

    @property
    def sleeping_until(self) -> datetime | None:
        """When a job sleeping in ``ctx.sleep`` wakes (None if it does not sleep).

        A sleeping job is ``pending`` with ``resuming`` set and ``next_attempt_at`` = its wake time; a job
        waiting for a retry has ``next_attempt_at`` without ``resuming``.
        """
        if self.status is JobStatus.PENDING and self.resuming:
            return self.next_attempt_at
        return None

    @property
    def run_attempts(self) -> int:
        """Executions in the current run (since it was created or last run again after failing)."""
        return self.attempts - self.run_attempts_base


# -- building trusted records without validation (the hot path) --------------------------------------

_object_setattr = object.__setattr__


def _assemble(cls: type[_Model], values: dict[str, Any], fields: set[str]) -> _Model:
    """An instance of ``cls`` with ``values`` as its fields, built the way ``BaseModel.model_construct``
    builds one, minus its per-field loop: for values the runtime made itself, every field given.

    ``fields`` is the model's set of field names, shared by every instance made here as its "fields set"
    (pydantic copies it before changing it).
    """
    instance = cls.__new__(cls)
    _object_setattr(instance, "__dict__", values)
    _object_setattr(instance, "__pydantic_fields_set__", fields)
    _object_setattr(instance, "__pydantic_extra__", None)
    _object_setattr(instance, "__pydantic_private__", None)
    return instance


_JOB_FIELDS: Final = set(Job.model_fields)
_STEP_FIELDS: Final = set(StepRecord.model_fields)


def status_event(job_id: str, seq: int, job: JsonValue) -> dict[str, JsonValue]:
    """The ``job_status`` event a write of a job logs at ``seq``, ``job`` being that job's JSON (as
    ``job.model_dump(mode="json")`` gives it): the shape every store derives from the write."""
    return {"type": "job_status", "job_id": job_id, "seq": seq, "job": job}


def new_step_record(
    job_id: str,
    index: int,
    name: str,
    result: JsonValue,
    attempt: int,
    epoch: int,
    recorded_at: datetime,
    event_seq: int | None = None,
) -> StepRecord:
    """A :class:`StepRecord` of values the runtime made (a checked JSON result), without validation."""
    values = {
        "job_id": job_id,
        "index": index,
        "name": name,
        "result": result,
        "attempt": attempt,
        "epoch": epoch,
        "recorded_at": recorded_at,
        "event_seq": event_seq,
    }
    return _assemble(StepRecord, values, _STEP_FIELDS)


#: every field of Job in order, with its default (None for the required ones and the containers, which
#: new_job sets): a copy of it keeps that order whatever is updated
_JOB_TEMPLATE: Final = {
    name: field.default if not field.is_required() and field.default_factory is None else None
    for name, field in Job.model_fields.items()
}


def new_job(*, id: str, created_at: datetime, updated_at: datetime, **values: Any) -> Job:
    """A new :class:`Job` of values the runtime checked (an id, JSON input and metadata), without
    validation: the fields not given take their defaults."""
    data = _JOB_TEMPLATE.copy()
    data["metadata"] = {}
    data["inputs"] = []
    data["answers"] = []
    data["id"] = id
    data["created_at"] = created_at
    data["updated_at"] = updated_at
    data.update(values)  # the template's keys keep their places: the fields stay in order
    if len(data) != len(_JOB_TEMPLATE):
        raise TypeError(f"unknown Job fields: {sorted(data.keys() - _JOB_FIELDS)}")
    return _assemble(Job, data, _JOB_FIELDS)
