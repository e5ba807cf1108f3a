"""The HTTP API of ``durapod.web`` through httpx against a real uvicorn (tests/web_fixtures.py)."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Mount

import durapod.web
from durapod import Client, DurableAgent, SQLiteStore, StepRecord
from durapod.web._views import PREVIEW_LIMIT, step_timeline
from tests.web_fixtures import SSE, WAIT, LiveServer, Options, free_port, iter_sse
from tests.workers.stream_worker import expected_text

ROOT = Path(__file__).parent.parent
STREAM_WORKER = ROOT / "tests" / "workers" / "stream_worker.py"
HIDDEN = {"version", "epoch", "lease_until", "run_attempts_base", "resuming", "paused_running"}

Serve = Callable[..., LiveServer]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start servers on a SQLite file in ``tmp_path``; every one is stopped after the test."""
    started: list[LiveServer] = []

    def start(**options: Any) -> LiveServer:
        server = LiveServer(tmp_path / f"web{len(started)}.db", Options(**options)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(serve: Serve) -> LiveServer:
    return serve()


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        yield client


def submit(http: httpx.Client, job_id: str, **input: Any) -> dict[str, Any]:
    response = http.post("/api/jobs", json={"id": job_id, "input": {"topic": job_id, **input}})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def events_until(http: httpx.Client, job_id: str, stop: Callable[[SSE], bool], **params: Any) -> list[SSE]:
    """Read the job's stream until ``stop`` holds for an event (or the stream ends); return its events."""
    seen: list[SSE] = []
    headers = params.pop("headers", {})
    with http.stream("GET", f"/api/jobs/{job_id}/events", params=params, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for item in iter_sse(response):
            if isinstance(item, SSE):
                seen.append(item)
                if stop(item):
                    break
    return seen


def ended(event: SSE) -> bool:
    return event.event in ("end", "shutdown", "error")


def settled_as(status: str) -> Callable[[SSE], bool]:
    return lambda event: event.event == "job_status" and event.data["job"]["status"] == status


def wait_status(http: httpx.Client, job_id: str, status: str) -> dict[str, Any]:
    """The job once it reaches ``status``: read from its event stream, so nothing is polled."""
    events_until(http, job_id, lambda event: settled_as(status)(event) or ended(event))
    job: dict[str, Any] = http.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == status, job
    return job


# -- the app and its package -------------------------------------------------------------------------


def test_importing_durapod_does_not_import_starlette() -> None:
    code = "import sys, durapod; assert 'starlette' not in sys.modules and 'durapod.web' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_create_app_refuses_what_is_not_a_store_or_client() -> None:
    with pytest.raises(TypeError, match="store_or_client"):
        durapod.web.create_app("sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="token"):
        durapod.web.create_app(SQLiteStore(":memory:"), token="")


# -- jobs ---------------------------------------------------------------------------------------------


def test_submit_returns_201_then_the_same_job_and_409_for_another_input(http: httpx.Client) -> None:
    created = submit(http, "job-1")
    assert created["id"] == "job-1"
    assert created["status"] in ("pending", "running", "completed")
    again = http.post("/api/jobs", json={"id": "job-1", "input": {"topic": "job-1"}})
    assert again.status_code == 200
    assert again.json()["id"] == "job-1"
    conflict = http.post("/api/jobs", json={"id": "job-1", "input": {"topic": "other"}})
    assert conflict.status_code == 409
    assert "job-1" in conflict.json()["error"]


def test_submit_refuses_bad_ids_inputs_and_fields_with_422(http: httpx.Client) -> None:
    assert http.post("/api/jobs", json={"id": "has space"}).status_code == 422
    assert http.post("/api/jobs", json={"id": "x", "metadata": [1]}).status_code == 422
    assert http.post("/api/jobs", json={"id": "x", "colour": "red"}).status_code == 422
    assert http.post("/api/jobs", json=[1, 2]).status_code == 422
    bad_json = http.post("/api/jobs", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 422


def test_a_job_view_hides_leases_epochs_and_versions(http: httpx.Client) -> None:
    submit(http, "job-view")
    job = wait_status(http, "job-view", "completed")
    assert not HIDDEN & set(job)
    assert job["result"] == "plan for job-view; answer=None"
    assert job["owner"]  # the worker that ran it is shown
    assert job["attempts"] == 1
    listed = http.get("/api/jobs").json()["jobs"]
    assert listed
    assert not HIDDEN & set(listed[0])
    events = events_until(http, "job-view", ended)
    statuses = [event.data["job"] for event in events if event.event == "job_status"]
    assert statuses
    assert all(not HIDDEN & set(job) for job in statuses)


def test_an_unknown_job_is_404_and_a_bad_id_422(http: httpx.Client) -> None:
    assert http.get("/api/jobs/nope").status_code == 404
    assert http.get("/api/jobs/nope/steps").status_code == 404
    assert http.post("/api/jobs/nope/pause", json={}).status_code == 404
    assert http.post("/api/jobs/nope/resume", json={}).status_code == 404
    assert http.post("/api/jobs/nope/cancel", json={}).status_code == 404
    assert http.get("/api/jobs/%20bad").status_code == 422


def test_list_filters_by_status_agent_and_metadata_and_pages_with_a_cursor(http: httpx.Client) -> None:
    for index in range(3):
        response = http.post(
            "/api/jobs",
            json={"id": f"list-{index}", "input": {"topic": "t"}, "metadata": {"team": "a" if index else "b"}},
        )
        assert response.status_code == 201
    for index in range(3):
        wait_status(http, f"list-{index}", "completed")
    everything = http.get("/api/jobs", params={"status": "completed"}).json()
    assert [job["id"] for job in everything["jobs"]] == ["list-2", "list-1", "list-0"]  # newest first
    assert http.get("/api/jobs", params={"status": "running,paused"}).json()["jobs"] == []
    team_a = http.get("/api/jobs", params={"metadata.team": "a"}).json()["jobs"]
    assert sorted(job["id"] for job in team_a) == ["list-1", "list-2"]
    assert http.get("/api/jobs", params={"agent": "writer"}).json()["jobs"]
    assert http.get("/api/jobs", params={"agent": "someone-else"}).json()["jobs"] == []
    first = http.get("/api/jobs", params={"limit": 2}).json()
    assert len(first["jobs"]) == 2
    assert first["cursor"]
    second = http.get("/api/jobs", params={"limit": 2, "cursor": first["cursor"]}).json()
    assert [job["id"] for job in second["jobs"]] == ["list-0"]
    assert second["cursor"] is None
    assert http.get("/api/jobs", params={"status": "sleeping"}).status_code == 422
    assert http.get("/api/jobs", params={"limit": "0"}).status_code == 422


def test_steps_are_a_timeline_with_durations_and_capped_previews(http: httpx.Client) -> None:
    submit(http, "steps-1")
    wait_status(http, "steps-1", "completed")
    timeline = http.get("/api/jobs/steps-1/steps").json()["steps"]
    assert [step["name"] for step in timeline] == ["plan"]
    step = timeline[0]
    assert step["index"] == 0
    assert step["result_preview"] == '"plan for steps-1"'
    assert step["result_truncated"] is False
    assert step["finished_at"]
    assert step["started_at"] is not None
    assert step["duration"] >= 0


# -- control ------------------------------------------------------------------------------------------


def test_pause_resume_cancel_return_the_job_and_409_when_the_lifecycle_refuses(http: httpx.Client) -> None:
    submit(http, "ctl", hold=True)
    events_until(http, "ctl", lambda event: event.event == "token")
    paused = http.post("/api/jobs/ctl/pause", json={})
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    again = http.post("/api/jobs/ctl/pause", json={})
    assert again.status_code == 409
    assert again.json()["status"] == "paused"
    assert again.json()["request"] == "pause"
    nan = http.post("/api/jobs/ctl/resume", content=b'{"input": NaN}', headers={"Content-Type": "application/json"})
    assert nan.status_code == 422, nan.text
    resumed = http.post("/api/jobs/ctl/resume", json={"input": "more please"})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] in ("pending", "running")
    assert resumed.json()["inputs"] == ["more please"]
    cancelled = http.post("/api/jobs/ctl/cancel", json={})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    refused = http.post("/api/jobs/ctl/cancel", json={})
    assert refused.status_code == 409
    assert refused.json()["status"] == "cancelled"
    assert http.post("/api/jobs/ctl/resume", json={}).status_code == 409


def test_write_endpoints_refuse_form_posts(http: httpx.Client) -> None:
    submit(http, "csrf", hold=True)
    form = http.post("/api/jobs/csrf/cancel", data={"x": "1"})
    assert form.status_code == 415
    plain = http.post("/api/jobs", content=b'{"id": "csrf-2"}', headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    assert http.get("/api/jobs/csrf").json()["status"] != "cancelled"
    assert http.get("/api/jobs/csrf-2").status_code == 404


# -- streams -------------------------------------------------------------------------------------------


def test_a_stream_of_an_unknown_job_is_refused_before_any_header(http: httpx.Client) -> None:
    with http.stream("GET", "/api/jobs/ghost/events") as response:
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert response.read()  # a JSON body, not an event stream
    assert http.get("/api/jobs/ghost/events", headers={"Last-Event-ID": "x"}).status_code == 422


def test_a_stream_has_seq_ids_and_types_and_reconnects_with_last_event_id(http: httpx.Client) -> None:
    submit(http, "sse")
    everything = events_until(http, "sse", ended)
    assert everything[-1].event == "end"
    assert everything[-1].data["reason"] == "completed"
    numbered = everything[:-1]
    assert [int(event.id or -1) for event in numbered] == list(range(len(numbered)))
    assert [event.event for event in numbered] == [event.data["type"] for event in numbered]
    assert "".join(event.data["token"] for event in numbered if event.event == "token") == "Hello durable world"
    cut = numbered[2]
    rest = events_until(http, "sse", ended, headers={"Last-Event-ID": cut.id})
    assert [event.id for event in rest[:-1]] == [event.id for event in numbered[3:]]
    after = events_until(http, "sse", ended, after=cut.id)
    assert [event.id for event in after[:-1]] == [event.id for event in numbered[3:]]


def test_a_stream_follows_the_job_through_pause_and_resume(http: httpx.Client) -> None:
    submit(http, "ask", ask=True)
    with http.stream("GET", "/api/jobs/ask/events") as response:
        seen: list[SSE] = []
        for item in iter_sse(response):
            if not isinstance(item, SSE):
                continue
            seen.append(item)
            if item.event == "interrupt":
                # still streaming while paused: answer it through the API
                answered = http.post("/api/jobs/ask/resume", json={"input": "yes"})
                assert answered.status_code == 200, answered.text
            if ended(item):
                break
    kinds = [event.event for event in seen]
    assert "interrupt" in kinds
    assert seen[-1].event == "end"
    assert seen[-1].data["status"] == "completed"
    statuses = [event.data["job"]["status"] for event in seen if event.event == "job_status"]
    assert "paused" in statuses
    assert statuses[-1] == "completed"
    ids = [int(event.id) for event in seen if event.id is not None]
    assert ids == list(range(len(ids)))
    assert http.get("/api/jobs/ask").json()["result"] == "plan for ask; answer=yes"


def test_until_settled_ends_the_stream_at_the_next_settle(http: httpx.Client) -> None:
    submit(http, "settle", ask=True)
    seen = events_until(http, "settle", ended, until="settled")
    assert seen[-1].event == "end"
    assert seen[-1].data == {"reason": "settled", "status": "paused", "last_seq": int(seen[-2].id or -1)}
    assert http.get("/api/jobs/settle/events", params={"until": "later"}).status_code == 422


def test_a_quiet_stream_sends_keep_alive_comments(serve: Serve) -> None:
    server = serve(keep_alive=0.05)
    with httpx.Client(base_url=server.url, timeout=WAIT) as http:
        submit(http, "quiet", gate=True)
        comments = 0
        with http.stream("GET", "/api/jobs/quiet/events") as response:
            for item in iter_sse(response):
                if isinstance(item, str):
                    assert item == ": keep-alive"
                    comments += 1
                    if comments == 2:
                        server.open_gate("quiet")
                elif ended(item):
                    break
        assert comments >= 2
        assert http.get("/api/jobs/quiet").json()["status"] == "completed"


def test_a_server_shutting_down_ends_its_streams_with_a_final_event(serve: Serve) -> None:
    server = serve()
    with httpx.Client(base_url=server.url, timeout=WAIT) as http:
        submit(http, "long", hold=True)
        with http.stream("GET", "/api/jobs/long/events") as response:
            seen: list[SSE] = []
            for item in iter_sse(response):
                if isinstance(item, SSE):
                    seen.append(item)
                    if item.event == "token" and item.data["token"] == " world":
                        server.stop()  # returns once uvicorn stopped, so the stream must have ended
    assert seen[-1].event == "shutdown"
    assert seen[-1].id is None  # a reconnect resumes after the last real event


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_stream_reconnects_with_no_gap_after_its_worker_is_killed(serve: Serve, tmp_path: Path) -> None:
    server = serve(use_agent=False)
    url = f"sqlite:///{server.db}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start_worker(worker_id: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(STREAM_WORKER), url, worker_id], stdout=subprocess.PIPE, text=True, env=env
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        return process

    with httpx.Client(base_url=server.url, timeout=WAIT) as http:
        queued = http.post("/api/jobs", json={"id": "story", "input": "tell me", "agent": "storyteller"})
        assert queued.status_code == 201
        first = start_worker("first")
        second: subprocess.Popen[str] | None = None
        try:
            tokens: list[SSE] = []

            def enough(event: SSE) -> bool:
                if event.event == "token":
                    tokens.append(event)
                return len(tokens) >= 25

            seen = events_until(http, "story", enough)
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=30)
            second = start_worker("second")
            rest = events_until(http, "story", ended, headers={"Last-Event-ID": seen[-1].id})
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.communicate(timeout=30)
        assert rest[-1].event == "end"
        assert rest[-1].data["status"] == "completed"
        events = seen + rest[:-1]
        assert [int(event.id or -1) for event in events] == list(range(len(events)))  # no gap, no duplicate
        assert rest[0].id == str(int(seen[-1].id or -1) + 1)  # the reconnect starts right after the last seen
        assert any(event.event == "step" for event in rest)  # the second worker's work came through
        assert http.get("/api/jobs/story").json()["result"] == expected_text()


# -- schedules and health -------------------------------------------------------------------------------


def test_schedules_list_their_next_fire_times(server: LiveServer, http: httpx.Client) -> None:
    assert http.get("/api/schedules").json() == {"schedules": []}

    async def add_schedule() -> None:
        async def digest(request: object) -> str:
            return "digest"

        scheduled = DurableAgent(digest, SQLiteStore(server.db), name="digest", schedule="0 8 * * *")
        await scheduled.open()
        await scheduled.aclose()
        await scheduled.store.close()

    server.call(add_schedule)
    schedules = http.get("/api/schedules").json()["schedules"]
    assert [(item["agent"], item["name"], item["cron"]) for item in schedules] == [("digest", "default", "0 8 * * *")]
    assert schedules[0]["next_fire"]
    assert "version" not in schedules[0]


def test_health_reports_the_store_the_live_workers_and_the_busy_ones(http: httpx.Client) -> None:
    idle = http.get("/api/health")
    assert idle.status_code == 200
    assert idle.json()["ok"] is True
    assert idle.json()["workers"] == []
    # the server's worker is live while idle: its id, host and pid, never the token that proves its claim
    (live,) = idle.json()["live_workers"]
    assert set(live) == {"id", "host", "pid", "lease_until"}
    assert live["host"] == socket.gethostname() and live["pid"] == os.getpid()
    submit(http, "busy", gate=True)
    events_until(http, "busy", lambda event: event.event == "token")
    busy = http.get("/api/health").json()
    assert busy["workers"] == [http.get("/api/jobs/busy").json()["owner"]] == [live["id"]]
    assert [worker["id"] for worker in busy["live_workers"]] == [live["id"]]


# -- security -----------------------------------------------------------------------------------------


def test_a_token_is_required_on_every_api_request(serve: Serve) -> None:
    server = serve(token="s3cret")
    with httpx.Client(base_url=server.url, timeout=WAIT) as http:
        for method, path in [("GET", "/api/jobs"), ("GET", "/api/health"), ("GET", "/api/jobs/x/events")]:
            assert http.request(method, path).status_code == 401
            assert http.request(method, path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        refused = http.post("/api/jobs", json={"id": "t1"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert http.get("/api/jobs/t1", headers={"Authorization": "Bearer s3cret"}).status_code == 404
        authorized = {"Authorization": "Bearer s3cret"}
        assert http.post("/api/jobs", json={"id": "t1"}, headers=authorized).status_code == 201
        assert http.get("/api/jobs", headers=authorized).json()["jobs"][0]["id"] == "t1"
        # the dashboard's own files hold no data: a browser loads them, then asks for the token
        page = http.get("/")
        assert page.status_code == 200
        assert "<title>durapod</title>" in page.text
        assert http.get("/static/app.js").status_code == 200


def test_request_bodies_over_the_cap_are_413(serve: Serve) -> None:
    server = serve(max_body=1000)
    with httpx.Client(base_url=server.url, timeout=WAIT) as http:
        big = {"id": "big", "input": "x" * 2000}
        assert http.post("/api/jobs", json=big).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"id": "big", "input": "'
            for _ in range(20):
                yield b"x" * 100
            yield b'"}'

        streamed = http.post("/api/jobs", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        assert http.get("/api/jobs/big").status_code == 404
        assert http.post("/api/jobs", json={"id": "small", "input": "x" * 100}).status_code == 201


def test_a_read_only_app_serves_no_write_endpoint(serve: Serve) -> None:
    server = serve(read_only=True)
    with httpx.Client(base_url=server.url, timeout=WAIT) as http:
        assert http.post("/api/jobs", json={"id": "ro"}).status_code == 405
        for action in ("pause", "resume", "cancel"):
            assert http.post(f"/api/jobs/ro/{action}", json={}).status_code in (404, 405)
        assert http.get("/api/jobs").status_code == 200
        assert http.get("/api/jobs/ro").status_code == 404


def test_durapod_web_documents_every_public_name() -> None:
    assert list(durapod.web.__all__) == sorted(durapod.web.__all__)
    for name in durapod.web.__all__:
        value = getattr(durapod.web, name)
        assert inspect.getdoc(value), name
        for attribute, member in vars(value).items() if inspect.isclass(value) else ():
            if not attribute.startswith("_") and inspect.isfunction(member):
                assert inspect.getdoc(member), f"{name}.{attribute}"


# -- durapod ui ----------------------------------------------------------------------------------------


def start_ui(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """``durapod ui`` in a process; returns it once uvicorn listens, with what it wrote to stderr so far."""
    process = subprocess.Popen(
        [sys.executable, "-m", "durapod", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
    )
    assert process.stderr is not None
    said = ""
    for line in process.stderr:
        said += line
        if "Uvicorn running on" in line or "Application startup complete" in line:
            return process, said
    process.wait(timeout=WAIT)
    raise AssertionError(f"durapod ui did not start: {said}")


def stop_ui(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=WAIT)
    return out + err


def test_durapod_ui_serves_the_store_on_localhost(tmp_path: Path) -> None:
    db = tmp_path / "ui.db"

    async def queue_one() -> None:
        async with Client(SQLiteStore(db)) as client:
            await client.submit("queued-1", "hello", agent="nobody-runs-it")

    asyncio.run(queue_one())
    port = free_port()
    process, said = start_ui("--store", f"sqlite:///{db}", "ui", "--port", str(port), "--log-level", "info")
    try:
        assert "without a token" not in said
        jobs = httpx.get(f"http://127.0.0.1:{port}/api/jobs", timeout=WAIT).json()["jobs"]
        assert [job["id"] for job in jobs] == ["queued-1"]
        assert "<title>durapod</title>" in httpx.get(f"http://127.0.0.1:{port}/", timeout=WAIT).text
    finally:
        said = stop_ui(process)
    assert process.returncode == 0, said
    assert "durapod ui: stopped" in said


def test_durapod_ui_warns_when_bound_elsewhere_without_a_token_and_honours_one(tmp_path: Path) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'ui.db'}"
    process, said = start_ui("--store", url, "ui", "--host", "0.0.0.0", "--port", str(port), "--log-level", "info")
    stop_ui(process)
    assert "binds 0.0.0.0 without a token" in said
    port = free_port()
    process, said = start_ui(
        "--store",
        url,
        "ui",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--log-level",
        "info",
        env={"DURAPOD_UI_TOKEN": "t0k"},
    )
    try:
        assert "without a token" not in said
        assert httpx.get(f"http://127.0.0.1:{port}/api/jobs", timeout=WAIT).status_code == 401
        authorized = httpx.get(f"http://127.0.0.1:{port}/api/jobs", headers={"Authorization": "Bearer t0k"})
        assert authorized.status_code == 200
    finally:
        stop_ui(process)


def test_the_timeline_leaves_time_spent_paused_out_and_caps_previews() -> None:
    began = datetime(2026, 1, 1, tzinfo=UTC)

    def at(seconds: float) -> datetime:
        return began + timedelta(seconds=seconds)

    steps = [
        StepRecord(job_id="j", index=0, name="fetch", result="ok", attempt=1, recorded_at=at(2)),
        StepRecord(job_id="j", index=1, name="big", result="x" * 2000, attempt=1, recorded_at=at(5)),
        # paused at 5 for an hour, resumed at 3605: the step took 1 s, not an hour
        StepRecord(job_id="j", index=2, name="send", result=None, attempt=1, recorded_at=at(3606)),
    ]
    timeline = step_timeline(steps, [at(0), at(3605)])
    assert [step["duration"] for step in timeline] == [2.0, 3.0, 1.0]
    assert timeline[2]["started_at"] == at(3605).isoformat()
    assert timeline[1]["result_truncated"] is True
    assert len(str(timeline[1]["result_preview"])) == PREVIEW_LIMIT
    assert step_timeline(steps[:1], [])[0]["duration"] is None  # no known start


async def test_mounted_under_a_prefix_the_page_links_there_and_the_token_still_guards_the_api(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "mounted.db")
    host = Starlette(routes=[Mount("/durapod", app=durapod.web.create_app(store, token="t"))])
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        page = await http.get("/durapod/")
        assert page.status_code == 200
        assert '<base href="/durapod/">' in page.text
        assert (await http.get("/durapod/static/app.css")).status_code == 200
        assert (await http.get("/durapod/api/jobs")).status_code == 401
        listed = await http.get("/durapod/api/jobs", headers={"Authorization": "Bearer t"})
        assert listed.json() == {"jobs": [], "cursor": None}
    await store.close()


class Receipt(BaseModel):
    """A typed agent's result."""

    order: int
    paid_at: datetime


async def test_a_typed_agents_jobs_are_served_as_json(tmp_path: Path) -> None:
    """``create_app(durable)`` of an agent annotated with a pydantic result: the API shows the result's
    JSON form (pytest turns a serializer warning into an error, so none is raised either)."""

    async def pay(order: int) -> Receipt:
        return Receipt(order=order, paid_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC))

    async with DurableAgent(pay, SQLiteStore(tmp_path / "jobs.db"), name="pay") as durable:
        done = await durable.run("o-1", 7)
        assert isinstance(done.result, Receipt)
        transport = httpx.ASGITransport(app=durapod.web.create_app(durable))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            shown = (await http.get("/api/jobs/o-1")).json()
    assert shown["result"] == {"order": 7, "paid_at": "2026-01-02T03:04:00Z"}
