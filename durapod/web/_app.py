"""The ASGI app: the JSON API under ``/api``, the event streams, and the dashboard's files at ``/``."""

from __future__ import annotations

import asyncio
import html
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, Protocol

from pydantic import JsonValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from durapod._waiting import parse_statuses
from durapod.client import ALL_AGENTS, Client
from durapod.errors import InvalidJobId, JobConflictError
from durapod.events import Event
from durapod.lowlevel.clock import Clock
from durapod.models import Job, JobStatus, StepRecord, validate_job_id
from durapod.schedules import ScheduleState
from durapod.stores.base import Page, Store
from durapod.web._http import REFUSALS, Guard, HTTPProblem, json_response, problem_response, read_json
from durapod.web._sse import KEEP_ALIVE_INTERVAL, OpenStreams, job_events
from durapod.web._views import job_view, run_starts, schedule_view, step_timeline, worker_view

__all__ = ["DEFAULT_MAX_BODY", "DurapodApp", "JobSource", "create_app"]

#: The largest request body a write endpoint reads (bytes); larger ones get 413.
DEFAULT_MAX_BODY: Final = 1024 * 1024
#: The most jobs one page of ``GET /api/jobs`` returns, and how many it returns by default.
MAX_PAGE: Final = 500
DEFAULT_PAGE: Final = 50
#: How long a pause or cancel request waits for the job to reach its new status before answering.
CONTROL_WAIT: Final = 10.0
#: How long the health check waits for the store.
HEALTH_TIMEOUT: Final = 3.0

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
#: The dashboard loads nothing from elsewhere, runs no inline script, and is framed by no other site.
PAGE_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'self'; form-action 'none'; frame-ancestors 'none'"
)


class JobSource(Protocol):
    """What the app serves jobs from: a :class:`durapod.Client` or a :class:`durapod.DurableAgent`."""

    @property
    def store(self) -> Store: ...

    @property
    def clock(self) -> Clock: ...

    async def status(self, job_id: str) -> Job | None: ...

    async def steps(self, job_id: str) -> list[StepRecord]: ...

    async def page(
        self,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        *,
        limit: int | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        agent: str | None = None,
        cursor: str | None = None,
    ) -> Page: ...

    async def schedules(self, agent: str | None = None) -> list[ScheduleState]: ...

    def stream(self, job_id: str, *, after: int = -1) -> AsyncIterator[Event]: ...

    async def submit(
        self,
        job_id: str,
        input: JsonValue = None,
        *,
        agent: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
    ) -> Job: ...

    async def pause(self, job_id: str, *, wait: bool = True, timeout: float | None = None) -> Job: ...

    async def cancel(self, job_id: str, *, wait: bool = True, timeout: float | None = None) -> Job: ...

    async def resume(
        self, job_id: str, new_input: JsonValue = None, *, wait: bool = True, timeout: float | None = None
    ) -> Job: ...


class DurapodApp(Starlette):
    """The durapod ASGI app (a Starlette app) that :func:`create_app` returns.

    Attributes:
        source: the client (or DurableAgent) it serves jobs from.
        read_only: True when it serves no write endpoint.
    """

    source: JobSource
    read_only: bool
    streams: OpenStreams

    def close_streams(self) -> None:
        """End every open event stream with a final ``shutdown`` event (and refuse to follow new ones).

        ``durapod ui`` calls it when uvicorn starts shutting down; a host app that runs its own server
        calls it before stopping that server, or its open streams hold the shutdown up.
        """
        self.streams.close()


# -- request helpers -----------------------------------------------------------------------------


def _source(request: Request) -> JobSource:
    app = request.app
    assert isinstance(app, DurapodApp)
    return app.source


def _job_id(request: Request) -> str:
    job_id = request.path_params["job_id"]
    try:
        return validate_job_id(job_id)
    except InvalidJobId as exc:
        raise HTTPProblem(422, str(exc)) from None


def _json_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HTTPProblem(422, f"{what} must be a JSON object")
    return value


def _query_value(text: str) -> JsonValue:
    """A metadata filter value from the query string: JSON if it parses as JSON, else the string."""
    try:
        value: JsonValue = json.loads(text)
    except ValueError:
        return text
    return value


# -- endpoints -------------------------------------------------------------------------------------


async def list_jobs(request: Request) -> Response:
    """``GET /api/jobs?status=a,b&agent=&metadata.k=v&limit=&cursor=``: one page, newest first."""
    params = request.query_params
    statuses = [part for value in params.getlist("status") for part in value.split(",") if part.strip()]
    try:
        status = parse_statuses(statuses) if statuses else None
    except ValueError as exc:
        raise HTTPProblem(422, str(exc)) from None
    limit_text = params.get("limit", str(DEFAULT_PAGE))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
        raise HTTPProblem(422, f"limit must be an integer from 1 to {MAX_PAGE}")
    metadata = {
        key[len("metadata.") :]: _query_value(value) for key, value in params.items() if key.startswith("metadata.")
    }
    agent = params.get("agent") or ALL_AGENTS
    try:
        page = await _source(request).page(
            status, limit=int(limit_text), metadata=metadata or None, agent=agent, cursor=params.get("cursor") or None
        )
    except ValueError as exc:  # a cursor that is not one of ours
        raise HTTPProblem(422, str(exc)) from None
    return json_response({"jobs": [job_view(job) for job in page.jobs], "cursor": page.next_cursor})


async def get_job(request: Request) -> Response:
    """``GET /api/jobs/{id}``: the job's public view."""
    job_id = _job_id(request)
    job = await _source(request).status(job_id)
    if job is None:
        raise HTTPProblem(404, f"job {job_id!r} not found", job_id=job_id)
    return json_response(job_view(job))


async def get_steps(request: Request) -> Response:
    """``GET /api/jobs/{id}/steps``: the journal as a timeline."""
    job_id = _job_id(request)
    source = _source(request)
    if await source.status(job_id) is None:
        raise HTTPProblem(404, f"job {job_id!r} not found", job_id=job_id)
    steps = await source.steps(job_id)
    starts = run_starts(await source.store.read_events(job_id)) if steps else []
    return json_response({"job_id": job_id, "steps": step_timeline(steps, starts)})


async def job_stream(request: Request) -> Response:
    """``GET /api/jobs/{id}/events``: Server-Sent Events, 404 before any header for an unknown job."""
    job_id = _job_id(request)
    app = request.app
    assert isinstance(app, DurapodApp)
    after_text = request.headers.get("last-event-id") or request.query_params.get("after") or "-1"
    try:
        after = int(after_text)
    except ValueError:
        after = -2
    if after < -1:
        raise HTTPProblem(422, "Last-Event-ID and after must be an event seq (an integer >= -1)")
    until = request.query_params.get("until", "terminal")
    if until not in ("terminal", "settled"):
        raise HTTPProblem(422, "until must be 'terminal' or 'settled'")
    if await app.source.status(job_id) is None:
        raise HTTPProblem(404, f"job {job_id!r} not found", job_id=job_id)
    keep_alive = float(app.state.keep_alive)
    body = job_events(
        app.source, job_id, after=after, until_settled=until == "settled", streams=app.streams, keep_alive=keep_alive
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


async def submit_job(request: Request) -> Response:
    """``POST /api/jobs`` ``{"id", "input", "agent", "metadata"}``: 201 with the queued job (200 if it
    existed with the same input), 409 if it exists with a different one."""
    body = _json_object(await read_json(request, request.app.state.max_body), "the body")
    unknown = set(body) - {"id", "input", "agent", "metadata"}
    if unknown:
        raise HTTPProblem(422, f"unknown fields: {sorted(unknown)}")
    job_id = body.get("id") or f"job-{uuid.uuid4().hex[:12]}"
    agent = body.get("agent")
    if agent is not None and not isinstance(agent, str):
        raise HTTPProblem(422, "agent must be a string")
    metadata = _json_object(body.get("metadata") or {}, "metadata")
    source = _source(request)
    try:
        existed = await source.status(validate_job_id(job_id)) is not None
        job = await source.submit(job_id, body.get("input"), agent=agent or None, metadata=metadata)
    except JobConflictError as exc:
        raise HTTPProblem(409, str(exc), job_id=job_id) from None
    return json_response(job_view(job), 200 if existed else 201)


async def _control(request: Request, action: str) -> Response:
    job_id = _job_id(request)
    source = _source(request)
    if action == "resume":
        body = _json_object(await read_json(request, request.app.state.max_body), "the body")
        job = await source.resume(job_id, body.get("input"), wait=False)
        return json_response(job_view(job))
    await read_json(request, request.app.state.max_body)  # a JSON body (may be empty): no form posts
    control = source.pause if action == "pause" else source.cancel
    try:
        job = await control(job_id, timeout=CONTROL_WAIT)
    except TimeoutError:
        # recorded; the job's owner has not acted on it yet: answer with the job as it is now
        current = await source.status(job_id)
        if current is None:
            raise HTTPProblem(404, f"job {job_id!r} not found", job_id=job_id) from None
        return json_response(job_view(current), 202)
    return json_response(job_view(job))


async def pause_job(request: Request) -> Response:
    """``POST /api/jobs/{id}/pause``: 200 with the job once paused (or settled otherwise)."""
    return await _control(request, "pause")


async def resume_job(request: Request) -> Response:
    """``POST /api/jobs/{id}/resume`` ``{"input": ...}``: 200 with the job, queued for a worker."""
    return await _control(request, "resume")


async def cancel_job(request: Request) -> Response:
    """``POST /api/jobs/{id}/cancel``: 200 with the job once cancelled."""
    return await _control(request, "cancel")


async def list_schedules(request: Request) -> Response:
    """``GET /api/schedules?agent=``: the schedules with their next fire times."""
    agent = request.query_params.get("agent") or ALL_AGENTS
    schedules = await _source(request).schedules(agent)
    return json_response({"schedules": [schedule_view(schedule) for schedule in schedules]})


async def health(request: Request) -> Response:
    """``GET /api/health``: 200 when the store answers, 503 when not.

    ``workers``: the ids of the workers holding a live job lease (busy); ``live_workers``: every worker
    whose registration is live (busy or idle), with its host and pid; ``running_jobs``: how many run.
    """
    source = _source(request)
    store, now = source.store, source.clock.utcnow()
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            page = await store.list(status=frozenset({JobStatus.RUNNING}), limit=MAX_PAGE)
            registered = await store.list_workers(now=now)
    except Exception as exc:  # any failure of the store is the answer here
        return json_response({"ok": False, "store": "unreachable", "error": f"{type(exc).__name__}: {exc}"}, 503)
    busy = sorted(
        {job.owner for job in page.jobs if job.owner and job.lease_until is not None and job.lease_until > now}
    )
    return json_response(
        {
            "ok": True,
            "store": "reachable",
            "workers": busy,
            "live_workers": [worker_view(record) for record in registered],
            "running_jobs": len(page.jobs),
        }
    )


async def index(request: Request) -> Response:
    """``GET /``: the dashboard page (its base URL set so that it works mounted under any prefix)."""
    root = request.scope.get("root_path", "").rstrip("/")
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff"}
    return HTMLResponse(page.replace("{{BASE}}", html.escape(f"{root}/", quote=True)), headers=headers)


async def favicon(request: Request) -> Response:
    """``GET /favicon.ico``: the dashboard's icon."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


# -- guard: token, errors --------------------------------------------------------------------------


# -- assembly --------------------------------------------------------------------------------------


def create_app(
    store_or_client: Store | Client | JobSource,
    *,
    token: str | None = None,
    read_only: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    keep_alive: float = KEEP_ALIVE_INTERVAL,
) -> DurapodApp:
    """The HTTP API and dashboard of a store's jobs, as an ASGI app (Starlette).

    Serve it alone (``uvicorn.run(app)``, or ``durapod ui``) or mount it in a FastAPI or Starlette app
    (``app.mount("/durapod", create_app(store))``). The JSON API lives under ``/api`` and the dashboard
    at ``/``; see the README's "HTTP API and dashboard" for every endpoint.

    Args:
        store_or_client: a store (the app makes a :class:`durapod.Client` of it and never closes it), a
            ``Client``, or a ``DurableAgent`` (its own worker's events then stream live, not polled).
        token: when set, every request but the dashboard's static files needs
            ``Authorization: Bearer <token>``.
        read_only: serve no write endpoint (submit, pause, resume, cancel).
        max_body: the largest request body a write endpoint reads, in bytes (413 beyond).
        keep_alive: seconds between keep-alive comments on a quiet event stream.

    Raises:
        TypeError: ``store_or_client`` is none of those.
        ValueError: an empty token, or a non-positive ``max_body`` or ``keep_alive``.

    Example:
        >>> app = create_app(SQLiteStore("jobs.db"), token=os.environ["DURAPOD_TOKEN"])  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)                                 # doctest: +SKIP
    """
    source: JobSource
    if isinstance(store_or_client, Store):
        source = Client(store_or_client)
    elif isinstance(store_or_client, Client) or all(
        callable(getattr(store_or_client, name, None)) for name in ("status", "page", "stream", "submit", "resume")
    ):
        source = store_or_client
    else:
        raise TypeError(f"store_or_client must be a durapod store, Client or DurableAgent, got {store_or_client!r}")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError("token must be a non-empty str or None")
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body <= 0:
        raise ValueError(f"max_body must be a positive int, got {max_body!r}")
    if isinstance(keep_alive, bool) or not isinstance(keep_alive, int | float) or not keep_alive > 0:
        raise ValueError(f"keep_alive must be a positive number of seconds, got {keep_alive!r}")

    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        Route("/api/health", health, methods=["GET"]),
        Route("/api/schedules", list_schedules, methods=["GET"]),
        Route("/api/jobs", list_jobs, methods=["GET"]),
        Route("/api/jobs/{job_id:path}/steps", get_steps, methods=["GET"]),
        Route("/api/jobs/{job_id:path}/events", job_stream, methods=["GET"]),
    ]
    if not read_only:
        routes += [
            Route("/api/jobs", submit_job, methods=["POST"]),
            Route("/api/jobs/{job_id:path}/pause", pause_job, methods=["POST"]),
            Route("/api/jobs/{job_id:path}/resume", resume_job, methods=["POST"]),
            Route("/api/jobs/{job_id:path}/cancel", cancel_job, methods=["POST"]),
        ]
    routes.append(Route("/api/jobs/{job_id:path}", get_job, methods=["GET"]))
    streams = OpenStreams()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        streams.close()

    app = DurapodApp(
        routes=routes,
        exception_handlers=dict.fromkeys(REFUSALS, problem_response),
        lifespan=lifespan,
    )
    app.source = source
    app.read_only = read_only
    app.streams = streams
    app.state.max_body = max_body
    app.state.keep_alive = float(keep_alive)
    app.add_middleware(Guard, token=token)
    return app
