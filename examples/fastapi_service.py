"""A FastAPI service that runs durable jobs in its own worker and serves durapod's API and dashboard.

The service's lifespan opens a :class:`~durapod.DurableAgent` worker for a plain agent and runs its
``serve()`` loop; ``durapod.web.create_app`` is mounted at ``/durapod`` (JSON API under
``/durapod/api``, dashboard at ``/durapod/``). The service's own endpoint, ``POST /tickets``, starts a job.

Needs ``pip install fastapi 'durapod[web]'`` (FastAPI is not a durapod dependency). Serve it with::

    uvicorn examples.fastapi_service:app

``python examples/fastapi_service.py`` runs it on a free local port, starts a ticket through the
service, follows the job's events through the mounted API, and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from durapod import DurableAgent, JobContext, MemoryStore
from durapod.testing import ScriptedLLM
from durapod.web import Server, create_app

llm = ScriptedLLM(["Thanks for the report: a refund of 25 EUR is on its way."], token_delay=0.01)


async def look_up(ticket: str) -> str:
    """A tool call the agent journals as a step (done once, even across crashes)."""
    return f"customer of {ticket}: premium plan, 1 open invoice"


async def support_agent(ticket: str, ctx: JobContext) -> str:
    """A plain agent: one journaled step, then the LLM's reply streamed token by token."""
    facts = await ctx.step("look_up", look_up, ticket)
    reply = ""
    async for token in llm.stream(f"Answer {ticket} knowing {facts}"):
        await ctx.emit_token(token)
        reply += token
    return reply


store = MemoryStore()
durable = DurableAgent(support_agent, store, name="support")
jobs = create_app(durable)  # the DurableAgent itself: its events stream live, without polling the store


@contextlib.asynccontextmanager
async def lifespan(service: FastAPI) -> AsyncIterator[None]:
    """Run the worker for as long as the service runs; hand unfinished jobs back when it stops.

    The task group owns the ``serve()`` task: if it fails, the service stops with its error instead of
    running on without a worker loop.
    """
    async with durable, asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(durable.serve())
        yield
        serving.cancel()


app = FastAPI(title="support desk", lifespan=lifespan)
app.mount("/durapod", jobs)


class Ticket(BaseModel):
    """A support ticket to answer."""

    id: str
    text: str


@app.post("/tickets", status_code=202)
async def open_ticket(ticket: Ticket) -> dict[str, str]:
    """Start answering a ticket; the job runs in this service's worker."""
    job = await durable.start(f"ticket-{ticket.id}", ticket.text)
    return {"job_id": job.id, "events": f"/durapod/api/jobs/{job.id}/events", "dashboard": "/durapod/"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def main() -> None:
    """Serve the app on a free port, open a ticket, follow its job over SSE, stop."""
    port = _free_port()
    # durapod's Server ends the mounted app's open event streams when uvicorn shuts down
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"), jobs)
    serving = asyncio.create_task(server.serve())
    await server.startup_done.wait()
    if not server.started:
        await serving
        raise SystemExit("the service could not listen (uvicorn said why)")
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        opened = (await http.post("/tickets", json={"id": "7", "text": "I was charged twice"})).json()
        print(f"ticket opened: job {opened['job_id']}")
        reply = ""
        async with http.stream("GET", opened["events"], params={"until": "settled"}) as stream:
            event = ""
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "token":
                    reply += json.loads(line.removeprefix("data: "))["token"]
                elif line.startswith("data: ") and event == "step":
                    print(f"step journaled: {json.loads(line.removeprefix('data: '))['name']}")
        print(f"streamed over SSE: {reply}")
        job = (await http.get(f"/durapod/api/jobs/{opened['job_id']}")).json()
        print(f"job {job['id']}: {job['status']} (no lease or epoch shown: {'epoch' not in job})")
        page = await http.get("/durapod/")
        print(f"dashboard at {base}/durapod/: HTTP {page.status_code}")
    server.should_exit = True
    await serving


if __name__ == "__main__":
    asyncio.run(main())
