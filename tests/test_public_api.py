"""The public surface: everything users import comes from ``durapod``, and all of it is documented."""

from __future__ import annotations

import inspect
import subprocess
import sys
from types import ModuleType

import pytest

import durapod
import durapod.integrations
import durapod.integrations.langchain
import durapod.integrations.pydantic_ai
import durapod.lowlevel
import durapod.stores
import durapod.testing
from durapod import JobContext
from durapod.lowlevel import ActorRef, Mailbox

#: What users of DurableAgent, Client, stores, events, schedules, the test clock and errors touch. A name
#: added to (or dropped from) ``durapod`` must be added here too: the surface changes on purpose only.
EXPECTED = {
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
}

#: The actor and supervisor framework lives in durapod.lowlevel, out of the namespace users read first.
LOWLEVEL = {"Actor", "ActorRef", "Backoff", "ChildSpec", "Mailbox", "Supervisor", "RestartType", "spawn"}


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's isort-style order: CONSTANTS, then Classes, then the rest, each alphabetically."""
    if name.isupper() and len(name) > 1:
        return (0, name)
    return (1 if name[:1].isupper() else 2, name)


def _public(module: ModuleType) -> set[str]:
    """Names defined by durapod and reachable without an underscore (imports of other packages aside)."""
    names = {name for name in dir(module) if not name.startswith("_")}
    return {
        name
        for name in names
        if not inspect.ismodule(getattr(module, name))
        and str(getattr(getattr(module, name), "__module__", "durapod")).startswith("durapod")
    }


#: Modules users import from besides ``durapod``: each has a complete ``__all__`` and documented names.
INTEGRATIONS = [durapod.integrations, durapod.integrations.langchain, durapod.integrations.pydantic_ai]
#: What a store's author imports besides ``durapod.Store``: the types its operations take and return.
STORE_LAYER = [durapod.stores]


@pytest.mark.parametrize(
    "module", [durapod, durapod.lowlevel, durapod.testing, *INTEGRATIONS, *STORE_LAYER], ids=lambda m: m.__name__
)
def test_all_lists_every_public_name_once_sorted(module: ModuleType) -> None:
    assert _public(module) - set(module.__all__) == set(), "public names missing from __all__"
    assert len(set(module.__all__)) == len(module.__all__), "a name is listed twice"
    assert list(module.__all__) == sorted(module.__all__, key=_isort_key), "__all__ is not sorted (ruff RUF022)"
    for name in module.__all__:
        assert hasattr(module, name), name


def test_the_top_level_surface_is_what_users_touch() -> None:
    assert set(durapod.__all__) == EXPECTED
    assert LOWLEVEL & set(durapod.__all__) == set()
    assert set(durapod.lowlevel.__all__) >= LOWLEVEL


def _documented_names() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for module in (durapod, durapod.lowlevel, durapod.testing, *INTEGRATIONS, *STORE_LAYER):
        out.extend((f"{module.__name__}.{name}", getattr(module, name)) for name in module.__all__)
    return [(name, value) for name, value in out if not name.rsplit(".", 1)[1].startswith("__")]


@pytest.mark.parametrize(("name", "value"), _documented_names(), ids=[name for name, _ in _documented_names()])
def test_every_public_name_has_a_docstring(name: str, value: object) -> None:
    if not (inspect.isclass(value) or inspect.isfunction(value)):
        return
    assert inspect.getdoc(value), f"{name} has no docstring"
    for attribute, member in vars(value).items() if inspect.isclass(value) else ():
        if attribute.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
            continue
        assert inspect.getdoc(member), f"{name}.{attribute} has no docstring"


def test_every_error_a_user_can_catch_derives_from_durapod_error() -> None:
    errors = [getattr(durapod, name) for name in durapod.__all__ if name.endswith(("Error", "Exceeded"))]
    errors += [durapod.JobNotFound, durapod.InvalidJobId, durapod.InvalidInput, durapod.StoreUnavailable]
    errors += [durapod.CorruptRecord, durapod.StepMismatch, durapod.AskTimeout, durapod.MailboxFull]
    errors += [durapod.WorkerIdInUse, durapod.VersionConflict, durapod.ChildFailed]
    for error in errors:
        assert issubclass(error, durapod.DurapodError), error


@pytest.mark.parametrize("handle", [ActorRef, JobContext, Mailbox, durapod.ChildHandle])
def test_runtime_handles_have_no_public_constructor(handle: type) -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        handle()


def test_records_built_without_validation_equal_validated_ones() -> None:
    """The runtime's fast constructors (new_job, new_step_record, Job.evolve) make what validation makes."""
    from datetime import UTC, datetime

    from durapod.models import Job, JobStatus, StepRecord, new_job, new_step_record

    now = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    fast = new_job(id="j", agent="a", input={"x": [1, None]}, metadata={"k": "v"}, created_at=now, updated_at=now)
    assert fast == Job(id="j", agent="a", input={"x": [1, None]}, metadata={"k": "v"}, created_at=now, updated_at=now)
    assert fast.inputs == [] and fast.inputs is not new_job(id="k", created_at=now, updated_at=now).inputs
    evolved = fast.evolve(status=JobStatus.RUNNING, attempts=1, updated_at=now)
    assert evolved == Job.model_validate({**fast.model_dump(), "status": "running", "attempts": 1, "version": 1})
    assert evolved.model_copy(update={"status": JobStatus.PAUSED}).status is JobStatus.PAUSED
    assert evolved.status is JobStatus.RUNNING  # a copy never changes the original
    record = new_step_record("j", 2, "s", {"r": [True]}, 1, 3, now)
    assert record == StepRecord(
        job_id="j", index=2, name="s", result={"r": [True]}, attempt=1, epoch=3, recorded_at=now
    )
    assert StepRecord.model_validate_json(record.model_dump_json()) == record
    with pytest.raises(TypeError, match="unknown Job fields"):
        new_job(id="j", created_at=now, updated_at=now, colour="red")


def test_the_core_imports_no_agent_framework() -> None:
    """Frameworks are imported only when an agent of theirs is used (a subprocess: a fresh import)."""
    code = (
        "import sys, durapod\n"
        "async def agent(x): return x\n"
        "durapod.DurableAgent(agent, durapod.MemoryStore())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic_ai', 'langchain_core')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_optional_extras_are_not_imported_by_the_package() -> None:
    """``import durapod`` (and building a PostgresStore) loads none of the optional extras."""
    import subprocess
    import sys

    code = (
        "import sys, durapod\n"
        "durapod.PostgresStore('postgresql://localhost/db')\n"
        "extras = ('asyncpg', 'starlette', 'uvicorn', 'pydantic_ai', 'langchain_core')\n"
        "loaded = [m for m in extras if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert out.stderr == ""
