"""The LangChain adapter (public names in :mod:`durapod.integrations.langchain`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ToolCall,
    ToolMessage,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.messages.utils import message_chunk_to_message
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import JsonValue

from durapod.context import JobContext, Suspend
from durapod.events import ToolCallEvent, ToolResultEvent

__all__ = ["DurableChatModel", "DurableTools"]


def _to_json(message: BaseMessage) -> JsonValue:
    data: JsonValue = messages_to_dict([message])[0]  # LangChain's own dict form: {"type": ..., "data": ...}
    return data


def _from_json(data: JsonValue) -> BaseMessage:
    return messages_from_dict([data])[0]  # type: ignore[list-item]


def _text(chunk: AIMessageChunk) -> str:
    content = chunk.content
    if isinstance(content, str):
        return content
    return "".join(
        block.get("text", "") if isinstance(block, dict) else str(block) for block in content if block is not None
    )


class DurableChatModel:
    """A LangChain chat model (``BaseChatModel``, tools bound or not) whose every call is a journaled step.

    Made inside an agent, for its job: ``llm = DurableChatModel(model.bind_tools(tools), ctx)``. Each
    ``ainvoke`` is a step (named ``name``) that streams the model's text as ``token`` events and journals
    the ``AIMessage`` in LangChain's dict form (``messages_to_dict``); a replay returns it without calling
    the model. The tokens it reports (``usage_metadata``) count on ``job.usage`` and against the job's
    :class:`~durapod.Budget`.

    Args:
        model: the chat model, or any runnable that takes messages and returns an ``AIMessage``.
        ctx: the job's context.
        name: the steps' name.
        stream: stream the response (``astream``) for ``token`` events; False calls ``ainvoke``.

    Example:
        >>> async def agent(question: str, ctx: JobContext) -> str:           # doctest: +SKIP
        ...     llm = DurableChatModel(chat.bind_tools([lookup]), ctx)
        ...     reply = await llm.ainvoke([HumanMessage(question)])
    """

    def __init__(
        self, model: Runnable[Any, Any], ctx: JobContext, *, name: str = "chat model", stream: bool = True
    ) -> None:
        if not isinstance(model, Runnable):
            raise TypeError(f"model must be a LangChain chat model (a Runnable), got {model!r}")
        self.model = model
        self.ctx = ctx
        self.name = name
        self.stream = stream

    async def ainvoke(self, messages: Sequence[BaseMessage]) -> AIMessage:
        """The model's reply to ``messages``: made once and journaled, replayed after that."""
        data = await self.ctx.step(self.name, self._call, list(messages))
        reply = _from_json(data)
        assert isinstance(reply, AIMessage)
        usage = reply.usage_metadata
        self.ctx._count_usage(tokens=int(usage["total_tokens"]) if usage else 0, requests=1)
        return reply

    async def _call(self, messages: list[BaseMessage]) -> JsonValue:
        if not self.stream:
            reply = await self.model.ainvoke(messages)
            return _to_json(reply)
        total: AIMessageChunk | None = None
        async for chunk in self.model.astream(messages):
            if not isinstance(chunk, AIMessageChunk):
                raise TypeError(f"{self.model!r} streamed {chunk!r}, not an AIMessageChunk")
            text = _text(chunk)
            if text:
                await self.ctx.emit_token(text)
            total = chunk if total is None else total + chunk
        if total is None:
            raise ValueError(f"{self.model!r} streamed nothing")
        return _to_json(message_chunk_to_message(total))


class DurableTools:
    """LangChain tools whose every call is a journaled step, logged as ``tool_call``/``tool_result`` events.

    ``await tools.run(reply.tool_calls)`` runs the calls of one model reply concurrently (each a step,
    placed in the journal in the reply's order) and returns their ``ToolMessage``s, journaled in
    LangChain's dict form; a replay returns them without running the tools.

    Args:
        tools: the tools, found by their ``name``.
        ctx: the job's context.
    """

    def __init__(self, tools: Sequence[BaseTool], ctx: JobContext) -> None:
        self.tools = {tool.name: tool for tool in tools}
        for tool in tools:
            if not isinstance(tool, BaseTool):
                raise TypeError(f"{tool!r} is not a LangChain tool (BaseTool)")
        self.ctx = ctx

    async def run(self, tool_calls: Sequence[ToolCall]) -> list[ToolMessage]:
        """Run the calls concurrently; their messages, in the calls' order.

        Every call finishes (and is journaled) before a failure, or a pause that one of them met, stops
        the agent: a pause never leaves a sibling call running on its own.
        """
        outcomes = await asyncio.gather(*(self.ainvoke(call) for call in tool_calls), return_exceptions=True)
        messages: list[ToolMessage] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            messages.append(outcome)
        return messages

    async def ainvoke(self, tool_call: ToolCall) -> ToolMessage:
        """Run one tool call (once) and return its ``ToolMessage``."""
        name = tool_call["name"]
        if name not in self.tools:
            raise KeyError(f"no tool named {name!r} (have {sorted(self.tools)})")
        ctx = self.ctx
        call_id = tool_call.get("id")
        index = ctx._next_index
        fresh = ctx._journal.get(index) is None
        pending = ctx.step(f"tool {name}", self._call, tool_call)  # takes its place in the journal now
        try:
            if fresh:
                await ctx.emit(ToolCallEvent(name=name, arguments=dict(tool_call["args"]), tool_call_id=call_id))
        except BaseException:
            pending.close()
            raise
        try:
            data = await pending
        except Suspend:  # a pause right after this call was journaled: log its result first
            record = ctx._journal.get(index)
            if fresh and record is not None:
                await self._emit_result(name, call_id, record.result)
            raise
        if fresh:
            await self._emit_result(name, call_id, data)
        message = _from_json(data)
        assert isinstance(message, ToolMessage)
        return message

    async def _emit_result(self, name: str, call_id: str | None, data: JsonValue) -> None:
        content = _from_json(data).content
        await self.ctx.emit(ToolResultEvent(name=name, result=content, tool_call_id=call_id))

    async def _call(self, tool_call: ToolCall) -> JsonValue:
        message = await self.tools[tool_call["name"]].ainvoke({**tool_call, "type": "tool_call"})
        if not isinstance(message, ToolMessage):
            message = ToolMessage(content=str(message), tool_call_id=tool_call.get("id") or "", name=tool_call["name"])
        return _to_json(message)
