"""Turning what users pass as an agent into one call: ``invoke(job, ctx) -> result``.

Accepted agents: ``async def f(input)``, ``async def f(input, ctx)``, an async generator function of
either shape (it yields ``str`` tokens or event objects), and any object with ``async def run(input[,
ctx])`` (optionally ``stream(input[, ctx])``, an async generator, which is preferred when present).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import JsonValue

from durapod._typed import AgentTypes
from durapod.context import JobContext
from durapod.models import Job

__all__ = ["AgentInvoker", "ReportedError", "agent_name"]


def _positional_arity(fn: Callable[..., Any]) -> int:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    count = 0
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return 2
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def agent_name(agent: object) -> str:
    """The default name of an agent: its qualified name (its class's, for an object)."""
    qualname = getattr(agent, "__qualname__", None)
    if isinstance(qualname, str) and (inspect.isfunction(agent) or inspect.ismethod(agent)):
        return qualname
    return type(agent).__qualname__


class AgentInvoker:
    """Calls an agent of any accepted shape for a job.

    Raises ``TypeError`` naming the agent when it is none of the accepted shapes.
    """

    __slots__ = ("fn", "is_generator", "takes_context", "types")

    def __init__(self, agent: object) -> None:
        fn: Callable[..., Any] | None = None
        if inspect.iscoroutinefunction(agent) or inspect.isasyncgenfunction(agent):
            fn = agent
        else:
            stream = getattr(agent, "stream", None)
            run = getattr(agent, "run", None)
            if stream is not None and inspect.isasyncgenfunction(stream):
                fn = stream
            elif run is not None and (inspect.iscoroutinefunction(run) or inspect.isasyncgenfunction(run)):
                fn = run
            elif callable(agent) and inspect.iscoroutinefunction(getattr(agent, "__call__", None)):  # noqa: B004
                fn = agent.__call__
        if fn is None:
            raise TypeError(
                f"agent {agent!r} must be an async function, an async generator function, "
                "or an object with an async run(input[, ctx]) method"
            )
        arity = _positional_arity(fn)
        if arity < 1:
            raise TypeError(f"agent {agent!r} must accept its input as the first positional argument")
        self.fn = fn
        self.takes_context = arity >= 2
        self.is_generator = inspect.isasyncgenfunction(fn)
        self.types = AgentTypes(fn, is_generator=self.is_generator)

    async def __call__(self, job: Job, ctx: JobContext) -> JsonValue:
        return self.dump(await self.call(job, ctx), job.id)

    def call(self, job: Job, ctx: JobContext) -> Awaitable[Any]:
        """The agent's awaitable for ``job`` (what it returns goes through :meth:`dump`). Not a coroutine
        of its own: a parked job's task holds one frame less."""
        types = self.types
        if self.takes_context:
            args: tuple[Any, ...] = (types.load_input(job.input, job.id), ctx)
        else:
            # A plain agent cannot replay: on resume it is called with the newest input.
            args = (types.load_input(job.inputs[-1] if job.inputs else job.input, job.id),)
        if not self.is_generator:
            awaitable: Awaitable[Any] = self.fn(*args)
            return awaitable
        return _drain(self.fn(*args), ctx)

    def dump(self, value: Any, job_id: str) -> JsonValue:
        """The agent's return value as JSON (a generator agent's drained result is JSON already)."""
        return value if self.is_generator else self.types.dump_result(value, job_id)


async def _drain(stream: AsyncIterator[Any], ctx: JobContext) -> JsonValue:
    """Run an async generator agent: log what it yields; its result is its tokens joined, or its done."""
    tokens: list[str] = []
    done: Any = _NO_DONE
    async for item in stream:
        if isinstance(item, str):
            tokens.append(item)
            await ctx.emit_token(item)
            continue
        kind = item.get("type") if isinstance(item, dict) else getattr(item, "type", None)
        if kind == "done":
            done = item["content"] if isinstance(item, dict) else item.content
            continue  # the runtime logs the job's done event once it is completed
        if kind == "error":
            message = item.get("error") if isinstance(item, dict) else item.error
            error_type = item.get("error_type") if isinstance(item, dict) else item.error_type
            raise ReportedError(str(message), str(error_type or "ReportedError"))
        if kind == "token":
            tokens.append(item["token"] if isinstance(item, dict) else item.token)
        await ctx.emit(item)
    return "".join(tokens) if done is _NO_DONE else done


_NO_DONE = object()


class ReportedError(Exception):
    """An agent reported failure by yielding an ``error`` event; the job fails (and retries) with it.

    Attributes:
        error_type: the ``error_type`` the event gave, recorded on the job.
    """

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type
