"""The ``durapod`` commands that only query and control the store through :class:`durapod.Client`:
``submit``, ``fork``, ``ls``, ``show``, ``watch``, ``schedules``, ``pause``, ``cancel``, ``resume`` and
``wait``. None of them runs a job.
"""

from __future__ import annotations

import argparse
import json

from durapod._waiting import parse_statuses
from durapod.children import child_ids
from durapod.cli._common import CommandError, _client, _parse_metadata, _parse_value, _with_timeout
from durapod.cli._output import (
    _describe,
    _json,
    _long_time,
    _outcome,
    _print_table,
    _short_time,
    _step_row,
    _truncate,
)
from durapod.events import TokenEvent
from durapod.idempotency import keyed_job_id
from durapod.models import JobStatus, validate_job_id

_RESULT_WIDTH = 40


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
