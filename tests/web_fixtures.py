"""A real uvicorn serving ``durapod.web`` on a free port, with a worker on the same event loop, in a
background thread: what the HTTP API and dashboard tests drive through httpx and Chromium."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from durapod import Client, DurableAgent, JobContext, SQLiteStore
from durapod.web import DurapodApp, Server, create_app

T = TypeVar("T")

#: How long a test waits for the server thread to do something before failing (never a sleep).
WAIT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def plan(topic: str) -> str:
    return f"plan for {topic}"


async def wait_forever() -> None:
    await asyncio.sleep(3600)


class Gates:
    """Events on the server's loop that a held job waits on; the test opens them from its thread."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}

    def get(self, job_id: str) -> asyncio.Event:
        return self.events.setdefault(job_id, asyncio.Event())


def make_writer(gates: Gates) -> Callable[[dict[str, Any], JobContext], Coroutine[Any, Any, str]]:
    """The test agent: a step, three tokens, then (per input) a gate, a step that never ends, or an
    interrupt; returns a summary."""

    async def writer(request: dict[str, Any], ctx: JobContext) -> str:
        outline = await ctx.step("plan", plan, str(request.get("topic", "")))
        for word in ("Hello", " durable", " world"):
            await ctx.emit_token(word)
        if request.get("gate"):
            await gates.get(ctx.job_id).wait()
            await ctx.emit_token(" after-gate")
        if request.get("hold"):
            await ctx.step("hold", wait_forever)
        answer = await ctx.interrupt("Approve?") if request.get("ask") else None
        return f"{outline}; answer={answer}"

    return writer


class _NotifyingServer(Server):
    """Sets ``ready`` once listening."""

    def __init__(self, config: uvicorn.Config, app: DurapodApp, ready: threading.Event) -> None:
        super().__init__(config, app)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


@dataclass
class Options:
    token: str | None = None
    read_only: bool = False
    max_body: int = 1024 * 1024
    keep_alive: float = 15.0
    use_agent: bool = True  # serve the DurableAgent itself (live events), else a separate Client


class LiveServer:
    """uvicorn + a DurableAgent worker on one loop in a thread; ``url`` is where it listens."""

    def __init__(self, db: Path, options: Options | None = None) -> None:
        self.db = db
        self.options = options or Options()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.gates = Gates()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="durapod-web-test", daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(WAIT):
            raise TimeoutError("the server did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        store = SQLiteStore(self.db)
        durable = DurableAgent(
            make_writer(self.gates),
            store,
            name="writer",
            pause_timeout=0.2,
            lease_ttl=5.0,
            poll_interval=0.05,
            shutdown_grace=0.1,
        )
        options = self.options
        async with durable:
            serving = asyncio.create_task(durable.serve())
            source = durable if options.use_agent else Client(store, poll_interval=0.05)
            app = create_app(
                source,
                token=options.token,
                read_only=options.read_only,
                max_body=options.max_body,
                keep_alive=options.keep_alive,
            )
            config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
            self._server = _NotifyingServer(config, app, self._ready)
            await self._server.serve()
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
        await store.close()

    def call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the server's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(WAIT)

    def open_gate(self, job_id: str) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.gates.get(job_id).set)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the server did not stop"


@dataclass
class SSE:
    """One server-sent event as a client reads it."""

    event: str
    data: dict[str, Any]
    id: str | None = None


def iter_sse(response: httpx.Response) -> Iterator[SSE | str]:
    """The events of a ``text/event-stream`` response, and its comments (as ``str``)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data or fields:
                yield SSE(fields.get("event", "message"), json.loads("\n".join(data)) if data else {}, fields.get("id"))
            fields, data = {}, []
        elif line.startswith(":"):
            yield line
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name in ("event", "id"):
                fields[name] = value
