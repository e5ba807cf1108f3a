"""The ``durapod`` command: run a worker, submit, list, show and control jobs, and run the demo.

Usage::

    durapod [--store URL] worker MODULE:ATTR
    durapod [--store URL] submit ID INPUT [--agent NAME] [--metadata JSON] [--json]
    durapod [--store URL] fork ID NEW_ID --from-step K [--input INPUT] [--json]
    durapod [--store URL] ls [--status S ...] [--limit N] [--agent NAME] [--version V] [--json]
    durapod [--store URL] show ID [--json]
    durapod [--store URL] pause ID | cancel ID | resume ID [INPUT] | wait ID [--timeout S]
    durapod [--store URL] watch ID [--after SEQ] [--json]
    durapod [--store URL] schedules [--agent NAME] [--json]
    durapod [--store URL] demo [--yes] [--fresh]
    durapod [--store URL] ui [--host 127.0.0.1] [--port 8000] [--token TOKEN] [--read-only] [--log-level L]

The store comes from ``--store``, else the ``DURAPOD_STORE`` environment variable, else
``sqlite:///durapod.db``. Every command but ``worker`` and ``demo`` only reads and writes the store
(through :class:`durapod.Client`): it runs no job.

Exit codes: 0 on success; 2 for bad usage or bad input (an invalid id, an unknown status, input that is
not JSON); 1 when the request fails (no such job, a request the job's status does not allow, a store
error, a timeout); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import json
import logging
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TextIO, TypeVar, cast

from pydantic import JsonValue

from durapod._waiting import parse_statuses
from durapod.agent import DurableAgent
from durapod.children import child_ids
from durapod.client import Client
from durapod.errors import DurapodError
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
from durapod.idempotency import keyed_job_id
from durapod.models import MAX_JSON_DEPTH, Job, JobStatus, StepRecord, validate_job_id
from durapod.stores import open_store

__all__ = ["DEFAULT_STORE", "STORE_ENV", "build_parser", "main"]

T = TypeVar("T")

#: The store used when neither ``--store`` nor ``DURAPOD_STORE`` names one.
DEFAULT_STORE = "sqlite:///durapod.db"
#: The environment variable that names the store.
STORE_ENV = "DURAPOD_STORE"

#: The environment variable that holds the token ``durapod ui`` requires when ``--token`` is not given.
_UI_TOKEN_ENV = "DURAPOD_UI_TOKEN"
_UI_HOST = "127.0.0.1"

_PROG = "durapod"
_RESULT_WIDTH = 40
#: How often a worker without ``serve()`` looks for queued jobs (seconds).
_WORKER_POLL_INTERVAL = 1.0


class CommandError(Exception):
    """A failure the CLI reports as one line on stderr, with an exit code (1: failed, 2: bad input)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- entry point -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``durapod`` command with ``argv`` (default: ``sys.argv[1:]``) and return its exit code.

    Example:
        >>> main(["--store", "memory://", "ls"])  # doctest: +SKIP
        no jobs
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    restore_logging = _configure_logging(logging.INFO if args.command == "worker" else logging.WARNING)
    try:
        exit_code: int = asyncio.run(args.handler(args))
        return exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # the reader went away (`durapod ls | head`): stop quietly, and keep Python from complaining at exit
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CommandError as exc:
        _error(str(exc))
        return exc.exit_code
    except DurapodError as exc:
        # InvalidJobId and InvalidInput are also ValueErrors: bad input, not a failed request
        _error(str(exc))
        return 2 if isinstance(exc, ValueError) else 1
    except ValueError as exc:
        _error(str(exc))
        return 2
    except OSError as exc:
        _error(str(exc))
        return 1
    finally:
        restore_logging()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``durapod`` command."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Durable LLM agents: run workers, and submit, inspect and control their jobs.",
        epilog=f"The store is --store, else ${STORE_ENV}, else {DEFAULT_STORE}.",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help=f"memory://, sqlite:///relative.db, sqlite:////abs.db or redis://host:port/0 (default: ${STORE_ENV} "
        f"or {DEFAULT_STORE})",
    )
    # `--store` is also accepted after the subcommand: `durapod ls --store URL`
    store_after = argparse.ArgumentParser(add_help=False)
    store_after.add_argument("--store", metavar="URL", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], Any], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[store_after])
        sub.set_defaults(handler=handler)
        return sub

    worker = command("worker", _cmd_worker, "run a worker until SIGINT/SIGTERM, then stop it gracefully")
    worker.add_argument("target", metavar="MODULE:ATTR", help="a DurableAgent, or a zero-argument function making one")

    submit = command("submit", _cmd_submit, "queue a job for a worker (runs nothing here)")
    submit.add_argument("job_id", metavar="ID", help="the job's id; - with --idempotency-key: derived from the key")
    submit.add_argument("input", metavar="INPUT", help="JSON if it parses as JSON, else taken as a string")
    submit.add_argument("--agent", metavar="NAME", help="the agent that should run it (default: any worker)")
    submit.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="for a caller that cannot choose ids: the job's id is derived from KEY (pass - as ID), so the"
        " same key submits the job once",
    )
    submit.add_argument("--metadata", metavar="JSON", help="a JSON object stored with the job")
    submit.add_argument("--json", action="store_true", help="print the job as JSON")

    fork = command("fork", _cmd_fork, "queue a copy of a job that replays its steps before --from-step")
    fork.add_argument("job_id", metavar="ID")
    fork.add_argument("new_id", metavar="NEW_ID")
    fork.add_argument("--from-step", type=int, required=True, metavar="K", help="run again from step K (from 0)")
    fork.add_argument("--input", metavar="INPUT", help="a new input (JSON if it parses, else a string)")
    fork.add_argument("--json", action="store_true", help="print the new job as JSON")

    ls = command("ls", _cmd_ls, "list jobs, newest first")
    ls.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="S",
        help="only jobs in status S (repeatable, or comma-separated: --status running,paused)",
    )
    ls.add_argument("--limit", type=int, default=20, metavar="N", help="at most N jobs (default: 20)")
    ls.add_argument("--agent", metavar="NAME", help="only jobs of this agent")
    ls.add_argument("--version", metavar="V", help="only jobs created by this version of the agent's code")
    ls.add_argument("--json", action="store_true", help="print a JSON array of jobs")

    show = command("show", _cmd_show, "show a job and its step timeline")
    show.add_argument("job_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print the job and its steps as JSON")

    pause = command("pause", _cmd_pause, "pause a pending or running job and wait until it is paused")
    pause.add_argument("job_id", metavar="ID")
    pause.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")

    cancel = command("cancel", _cmd_cancel, "cancel a pending, running or paused job")
    cancel.add_argument("job_id", metavar="ID")
    cancel.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")

    resume = command("resume", _cmd_resume, "queue a paused job to continue (a worker runs it)")
    resume.add_argument("job_id", metavar="ID")
    resume.add_argument(
        "input", metavar="INPUT", nargs="?", help="new input, or the answer to the interrupt the job waits on"
    )

    wait = command("wait", _cmd_wait, "wait until a job settles; exit 1 if it failed or was cancelled")
    wait.add_argument("job_id", metavar="ID")
    wait.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (exit 1)")

    watch = command("watch", _cmd_watch, "print a job's events as they come (tokens inline) until it settles")
    watch.add_argument("job_id", metavar="ID")
    watch.add_argument("--after", type=int, default=-1, metavar="SEQ", help="start after this sequence number")
    watch.add_argument("--json", action="store_true", help="print one JSON event per line")

    schedules = command("schedules", _cmd_schedules, "list schedules with their next fire time")
    schedules.add_argument("--agent", metavar="NAME", help="only this agent's schedules")
    schedules.add_argument("--json", action="store_true", help="print a JSON array")

    ui = command("ui", _cmd_ui, "serve the HTTP API and dashboard of the store's jobs (needs durapod[web])")
    ui.add_argument("--host", default=_UI_HOST, help=f"the address to bind (default: {_UI_HOST}, this machine only)")
    ui.add_argument("--port", type=int, default=8000, help="the port (default: 8000)")
    ui.add_argument(
        "--token", default=None, help=f"require 'Authorization: Bearer TOKEN' (default: ${_UI_TOKEN_ENV}, else none)"
    )
    ui.add_argument("--read-only", action="store_true", help="serve no write endpoint (no submit, pause, cancel)")
    ui.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"], help="uvicorn's log level"
    )

    demo = command("demo", _cmd_demo, "a support-ticket agent that survives Ctrl-C and crashes")
    demo.add_argument("--yes", "-y", action="store_true", help="approve every reply without asking")
    demo.add_argument("--fresh", action="store_true", help="forget the demo's jobs and start over")
    demo.add_argument("--step-delay", type=float, default=0.4, metavar="S", help="seconds each step takes (pacing)")
    return parser


# -- commands --------------------------------------------------------------------------------------


async def _cmd_worker(args: argparse.Namespace) -> int:
    durable = await _load_agent(args.target)
    if args.store is not None:
        _warn(f"--store is ignored by `worker`: the agent uses the store it was built with ({durable.store!r})")
    started: list[bool] = []

    async def serve_until_cancelled() -> None:
        try:
            await durable.open()
            started.append(True)
            print(
                f"durapod worker {durable.worker_id}: running agent {durable.name!r} on {durable.store!r} "
                "(Ctrl-C or SIGTERM to stop)",
                flush=True,
            )
            serve = getattr(durable, "serve", None)
            if callable(serve):
                await serve()
            else:
                await _poll_for_jobs(durable)
        finally:
            await durable.aclose()

    try:
        await _until_signalled(serve_until_cancelled())
    finally:
        with contextlib.suppress(DurapodError):
            await durable.store.close()
    if started:
        print(f"durapod worker {durable.worker_id}: stopped (unfinished jobs were handed back)", flush=True)
    return 0


async def _cmd_ui(args: argparse.Namespace) -> int:
    try:
        from durapod.web import create_app, serve
    except ImportError as exc:
        raise CommandError(f"`durapod ui` needs the web extra: pip install 'durapod[web]' ({exc})") from None
    token = args.token or os.environ.get(_UI_TOKEN_ENV) or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and token is None:
        logging.getLogger("durapod.web").warning(
            "durapod ui binds %s without a token: anyone who reaches this address can read, start, pause and "
            "cancel jobs (pass --token or set $%s)",
            args.host,
            _UI_TOKEN_ENV,
        )
    store = open_store(_store_url(args))
    try:
        app = create_app(store, token=token, read_only=args.read_only)
        print(f"durapod ui: http://{args.host}:{args.port}/ on {store!r} (Ctrl-C to stop)", flush=True)
        await serve(app, host=args.host, port=args.port, log_level=args.log_level)
        print("durapod ui: stopped", flush=True)
    finally:
        with contextlib.suppress(DurapodError):
            await store.close()
    return 0


async def _poll_for_jobs(durable: DurableAgent) -> None:
    """Stand-in for ``DurableAgent.serve()``: take queued and orphaned jobs of the agent now and then."""
    while True:
        await asyncio.sleep(_WORKER_POLL_INTERVAL)
        await durable.recover()


async def _cmd_fork(args: argparse.Namespace) -> int:
    job_id = validate_job_id(args.job_id)
    new_id = validate_job_id(args.new_id)
    new_input = _parse_value(args.input) if args.input is not None else None
    async with _client(args) as client:
        job = await client.fork(job_id, new_id, from_step=args.from_step, input=new_input)
    if args.json:
        print(job.model_dump_json())
    else:
        who = f"a worker of agent {job.agent!r}" if job.agent else "any worker"
        print(
            f"forked job {job_id} as {job.id} from step {args.from_step} ({job.steps} steps copied), queued for {who}"
        )
    return 0


async def _cmd_submit(args: argparse.Namespace) -> int:
    key: str | None = args.idempotency_key
    if key is not None and args.job_id != "-":
        raise CommandError("with --idempotency-key pass - as ID: the job's id is derived from the key", 2)
    job_id = keyed_job_id(None, key) if key is not None else validate_job_id(args.job_id)
    metadata = _parse_metadata(args.metadata)
    async with _client(args) as client:
        existed = await client.status(job_id) is not None
        if key is not None:
            job = await client.submit(
                None, _parse_value(args.input), agent=args.agent, metadata=metadata, idempotency_key=key
            )
        else:
            job = await client.submit(job_id, _parse_value(args.input), agent=args.agent, metadata=metadata)
    if args.json:
        print(job.model_dump_json())
    elif existed:
        print(f"job {job.id} already exists with that input: {job.status}")
    else:
        who = f"a worker of agent {job.agent!r}" if job.agent else "any worker"
        print(f"submitted job {job.id}: {job.status}, queued for {who}")
    return 0


async def _cmd_ls(args: argparse.Namespace) -> int:
    statuses = parse_statuses([part.strip() for value in args.status for part in value.split(",") if part.strip()])
    if args.limit < 0:
        raise CommandError(f"invalid --limit {args.limit}: expected an int >= 0", 2)
    async with _client(args) as client:
        page = await client.page(status=statuses or None, limit=args.limit, agent=args.agent, version=args.version)
    if args.json:
        print(json.dumps([job.model_dump(mode="json") for job in page.jobs]))
        return 0
    if not page.jobs:
        print("no jobs")
        return 0
    rows = [["ID", "AGENT", "STATUS", "ATTEMPTS", "STEPS", "UPDATED", "RESULT/ERROR"]]
    rows += [
        [
            job.id,
            job.agent or "-",
            job.status.value,
            str(job.attempts),
            str(job.steps),
            _short_time(job.updated_at),
            _truncate(_outcome(job), _RESULT_WIDTH),
        ]
        for job in page.jobs
    ]
    _print_table(rows)
    if page.next_cursor is not None:
        print(f"(the {len(page.jobs)} newest shown; --limit N shows more)")
    return 0


async def _cmd_show(args: argparse.Namespace) -> int:
    job_id = validate_job_id(args.job_id)
    async with _client(args) as client:
        job = await client.status(job_id)
        if job is None:
            raise CommandError(f"job {job_id!r} not found")
        steps = await client.steps(job_id)
    if args.json:
        shown = {"job": job.model_dump(mode="json"), "steps": [step.model_dump(mode="json") for step in steps]}
        print(json.dumps({**shown, "children": child_ids(steps)}))
        return 0
    fields: list[tuple[str, str]] = [
        ("id", job.id),
        ("agent", job.agent or "- (any worker)"),
        ("status", job.status.value),
    ]
    if job.status is JobStatus.PAUSED and job.waiting_for is not None:
        fields.append(("waiting for", f"{job.waiting_for}  (answer: durapod resume {job.id} INPUT)"))
    fields += [
        ("attempts", f"{job.attempts} (recoveries: {job.recoveries})"),
        ("input", _json(job.input)),
        ("result", _json(job.result) if job.status is JobStatus.COMPLETED else "-"),
        ("error", f"{job.error_type}: {job.error}" if job.error else "-"),
        ("metadata", _json(job.metadata) if job.metadata else "-"),
        ("inputs", _json(job.inputs) if job.inputs else "-"),
        ("created", _long_time(job.created_at)),
        ("updated", _long_time(job.updated_at)),
        ("completed", _long_time(job.completed_at) if job.completed_at else "-"),
        ("owner", job.owner or "-"),
    ]
    if job.parent_id is not None:
        fields.append(("parent", job.parent_id))
    if children := child_ids(steps):
        fields.append(("children", ", ".join(children)))
    if job.sleeping_until is not None:
        fields.append(("sleeping until", _long_time(job.sleeping_until)))
    elif job.next_attempt_at is not None and job.status is JobStatus.PENDING:
        fields.append(("next attempt", _long_time(job.next_attempt_at)))
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name:<{width}}  {value}")
    print()
    if not steps:
        print("no steps journaled")
        return 0
    print(f"steps ({len(steps)} journaled):")
    _print_table(
        [["#", "STEP", "ATTEMPT", "RECORDED", "RESULT"]] + [_step_row(step) for step in steps],
        indent="  ",
    )
    return 0


async def _cmd_watch(args: argparse.Namespace) -> int:
    job_id = validate_job_id(args.job_id)
    in_tokens = False
    async with _client(args) as client:
        async for event in client.stream(job_id, after=args.after):
            if args.json:
                print(event.model_dump_json(), flush=True)
                continue
            if isinstance(event, TokenEvent):
                print(event.token, end="", flush=True)
                in_tokens = True
                continue
            if in_tokens:
                print()
                in_tokens = False
            print(f"[{event.seq}] {_describe(event)}", flush=True)
    if in_tokens:
        print()
    return 0


def _describe(event: Event) -> str:
    replayed = " (replayed)" if event.replayed else ""
    if isinstance(event, JobStatusEvent):
        job = event.job
        detail = f" attempt {job.attempts}" if job.attempts else ""
        if job.status is JobStatus.FAILED or (job.error and job.status is JobStatus.PENDING):
            detail += f": {job.error_type}: {job.error}"
        return f"status {job.status.value}{detail}{replayed}"
    if isinstance(event, ToolCallEvent):
        return f"tool call {event.name}({_json(event.arguments)}){replayed}"
    if isinstance(event, ToolResultEvent):
        return f"tool result {event.name}: {_truncate(_json(event.result), 60)}{replayed}"
    if isinstance(event, StepEvent):
        return f"step #{event.index} {event.name}: {_truncate(_json(event.result), 60)}{replayed}"
    if isinstance(event, StepRestartedEvent):
        return f"step #{event.index} restarted: output from [{event.from_seq}] on is void"
    if isinstance(event, CustomEvent):
        return f"{event.type} {_truncate(_json(event.data), 60)}{replayed}"
    if isinstance(event, InterruptEvent):
        return f"waiting for: {event.prompt}"
    if isinstance(event, DoneEvent):
        return f"done: {_truncate(_json(event.content), 60)}"
    if isinstance(event, ErrorEvent):
        retry = " (will retry)" if event.will_retry else ""
        return f"error {event.error_type}: {event.error}{retry}"
    return event.type  # pragma: no cover - every event type is handled above


async def _cmd_schedules(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        states = await client.schedules(args.agent)
    if args.json:
        print(json.dumps([state.model_dump(mode="json") for state in states]))
        return 0
    if not states:
        print("no schedules")
        return 0
    rows = [["AGENT", "NAME", "CRON", "TIMEZONE", "STATE", "NEXT FIRE", "LAST FIRE", "LAST ERROR"]]
    rows += [
        [
            state.agent,
            state.name,
            state.cron,
            state.timezone,
            "paused" if state.paused else "active",
            _long_time(state.next_fire) if state.next_fire else "-",
            _long_time(state.last_fire) if state.last_fire else "-",
            _truncate(state.last_error or "-", 40),
        ]
        for state in states
    ]
    _print_table(rows)
    return 0


async def _cmd_pause(args: argparse.Namespace) -> int:
    job_id = validate_job_id(args.job_id)
    async with _client(args) as client:
        job = await _with_timeout(
            client.pause(job_id, timeout=args.timeout), job_id, "has not paused yet", args.timeout
        )
    if job.status is JobStatus.PAUSED:
        print(f"job {job.id}: paused (durapod resume {job.id} continues it)")
    else:
        print(f"job {job.id}: {job.status} before it could pause")
    return 0


async def _cmd_cancel(args: argparse.Namespace) -> int:
    job_id = validate_job_id(args.job_id)
    async with _client(args) as client:
        job = await _with_timeout(
            client.cancel(job_id, timeout=args.timeout), job_id, "is not cancelled yet", args.timeout
        )
    if job.status is JobStatus.CANCELLED:
        print(f"job {job.id}: cancelled")
    else:
        print(f"job {job.id}: {job.status} before it could be cancelled")
    return 0


async def _cmd_resume(args: argparse.Namespace) -> int:
    job_id = validate_job_id(args.job_id)
    new_input = None if args.input is None else _parse_value(args.input)
    async with _client(args) as client:
        before = await client.status(job_id)
        job = await client.resume(job_id, new_input, wait=False)
    answered = before is not None and before.waiting_for is not None
    given = (
        f" with answer {_json(new_input)}" if answered else (f" with input {_json(new_input)}" if args.input else "")
    )
    print(f"job {job.id} resumed{given}: {job.status}, queued for a worker (a running worker picks it up)")
    return 0


async def _cmd_wait(args: argparse.Namespace) -> int:
    job_id = validate_job_id(args.job_id)
    async with _client(args) as client:
        job = await _with_timeout(
            client.wait(job_id, timeout=args.timeout), job_id, "has not settled yet", args.timeout
        )
    line = f"job {job.id}: {job.status}"
    if job.status is JobStatus.COMPLETED:
        line += f": {_truncate(_json(job.result), 200)}"
    elif job.status is JobStatus.FAILED:
        line += f": {job.error_type}: {job.error}"
    elif job.status is JobStatus.PAUSED and job.waiting_for is not None:
        line += f", waiting for: {job.waiting_for}"
    print(line)
    return 1 if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) else 0


async def _cmd_demo(args: argparse.Namespace) -> int:
    from durapod._demo import run_demo

    if not (args.step_delay >= 0 and math.isfinite(args.step_delay)):
        raise CommandError(f"invalid --step-delay {args.step_delay}: expected seconds >= 0", 2)
    outcome = await _until_signalled(
        run_demo(
            _store_url(args),
            assume_yes=args.yes,
            fresh=args.fresh,
            step_delay=args.step_delay,
            out=sys.stdout,
        )
    )
    if outcome is None:
        print("\ninterrupted — run `make demo` again to resume", flush=True)
        return 130
    return outcome


# -- helpers ---------------------------------------------------------------------------------------


def _store_url(args: argparse.Namespace) -> str:
    url: str = args.store or os.environ.get(STORE_ENV) or DEFAULT_STORE
    return url


@contextlib.asynccontextmanager
async def _client(args: argparse.Namespace) -> AsyncIterator[Client]:
    store = open_store(_store_url(args))
    async with Client(store) as client:
        yield client


async def _with_timeout(awaitable: Coroutine[Any, Any, Job], job_id: str, what: str, timeout: float | None) -> Job:
    try:
        return await awaitable
    except TimeoutError:
        raise CommandError(f"timed out after {timeout:g}s: job {job_id!r} {what}") from None


async def _until_signalled(coro: Coroutine[Any, Any, T]) -> T | None:
    """Run ``coro`` until it returns or SIGINT/SIGTERM arrives; on a signal cancel it and return None.

    The coroutine's ``finally`` blocks (leaving ``async with durable:``) run before this returns.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no support
            continue
        installed.append(signum)
    work = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            return work.result()
        work.cancel()
        await asyncio.wait({work})
        error = None if work.cancelled() else work.exception()
        if error is not None:
            raise error
        return None
    finally:
        stopper.cancel()
        if not work.done():
            work.cancel()
            await asyncio.wait({work})
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _load_agent(target: str) -> DurableAgent:
    """Import ``MODULE:ATTR`` (ATTR may be dotted) and return the DurableAgent it names or makes."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise CommandError(f"invalid worker target {target!r}: expected MODULE:ATTR (e.g. myapp.agents:durable)", 2)
    # like `python -m`, find modules in the current directory even when run as the `durapod` script
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise
        raise CommandError(f"cannot import {module_name!r}: {exc}", 2) from None
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CommandError(f"{target!r}: {module_name!r} has no attribute {attribute!r}", 2) from None
    if not isinstance(value, DurableAgent) and callable(value):
        try:
            inspect.signature(value).bind()
        except TypeError:
            raise CommandError(
                f"{target!r} is not a DurableAgent, nor a zero-argument function making one", 2
            ) from None
        except ValueError:  # no signature to inspect (a builtin): just try the call
            pass
        value = value()
        if inspect.isawaitable(value):
            value = await value
    if not isinstance(value, DurableAgent):
        raise CommandError(f"{target!r} is not a DurableAgent (nor a function returning one): {value!r}", 2)
    return value


def _parse_value(text: str) -> JsonValue:
    """``text`` as JSON if it parses as JSON (and is finite), else the string itself."""
    try:
        value: JsonValue = json.loads(text)
    except ValueError:
        return text
    except RecursionError:
        raise CommandError(f"invalid input: JSON nested more than {MAX_JSON_DEPTH} deep", 2) from None
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value


def _parse_metadata(text: str | None) -> dict[str, JsonValue] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"invalid --metadata {_truncate(text, 60)!r}: not JSON ({exc})", 2) from None
    except RecursionError:
        raise CommandError(f"invalid --metadata: JSON nested more than {MAX_JSON_DEPTH} deep", 2) from None
    if not isinstance(value, dict):
        raise CommandError(f"invalid --metadata {text!r}: expected a JSON object", 2)
    return value


def _configure_logging(level: int) -> Callable[[], None]:
    """The command's own output of the library's logs: ``level`` and above, to stderr.

    Only the ``durapod`` logger is touched (the command may run inside a program that configured
    logging its own way, as the tests do); returns what undoes it.
    """
    logger = logging.getLogger("durapod")
    handler = logging.StreamHandler(cast(TextIO, _QuietStderr()))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S"))
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]

    return restore


class _QuietStderr:
    """``sys.stderr`` for log lines, dropping what cannot be written (a closed pipe): a log line must
    never raise inside the library."""

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            return sys.stderr.write(text)
        return 0

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()


def _error(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"{_PROG}: error: {message}", file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"{_PROG}: warning: {message}", file=sys.stderr, flush=True)


def _json(value: JsonValue) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _truncate(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line
    return text if len(text) <= width else text[: width - 1] + "…"


def _outcome(job: Job) -> str:
    if job.status is JobStatus.COMPLETED:
        return _json(job.result)
    if job.error:
        return f"{job.error_type}: {job.error}"
    if job.status is JobStatus.PAUSED and job.waiting_for is not None:
        return f"waiting for: {job.waiting_for}"
    return ""


def _short_time(moment: datetime) -> str:
    local = moment.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def _long_time(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _step_row(step: StepRecord) -> list[str]:
    return [
        str(step.index + 1),
        step.name,
        str(step.attempt),
        _short_time(step.recorded_at),
        _truncate(_json(step.result), 60),
    ]


def _print_table(rows: list[list[str]], indent: str = "") -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print((indent + "  ".join(cells)).rstrip())
