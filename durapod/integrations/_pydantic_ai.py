"""The pydantic-ai adapter (public names in :mod:`durapod.integrations.pydantic_ai`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue, model_validator
from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults, ToolDenied
from pydantic_ai.agent import EventStreamHandler
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
)
from pydantic_ai.models import CompletedStreamedResponse, Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext
from pydantic_ai.toolsets import AbstractToolset, WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool
from pydantic_core import to_jsonable_python

from durapod.context import JobContext, Suspend
from durapod.errors import InvalidInput
from durapod.events import ToolCallEvent, ToolResultEvent

__all__ = ["PydanticAIAgent", "ToolApproval"]

#: The job context of the run in progress in this task (tool calls run in tasks that copy it).
_RUNNING: ContextVar[JobContext | None] = ContextVar("durapod_pydantic_ai_job", default=None)


class ToolApproval(BaseModel):
    """The answer to an approval interrupt: ``True``/``False`` will do, or a denial with a message.

    Example:
        >>> await durable.resume("job_1", ToolApproval(approved=False, message="too much"))  # doctest: +SKIP
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    approved: bool
    message: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        return {"approved": value} if isinstance(value, bool) else value


def _tokens(response: ModelResponse) -> int:
    usage = response.usage
    return int(usage.input_tokens or 0) + int(usage.output_tokens or 0)


def _streams(model: Model) -> bool:
    # A FunctionModel built without a stream_function cannot stream; every other model can.
    return getattr(model, "stream_function", True) is not None


class _DurableModel(WrapperModel):
    """Each request is one journaled step (a ``ModelResponse``); its text streams as ``token`` events."""

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        ctx = _RUNNING.get()
        if ctx is None:
            return await super().request(messages, model_settings, model_request_parameters)
        response = await ctx.step("model request", self._request, messages, model_settings, model_request_parameters)
        ctx._count_usage(tokens=_tokens(response), requests=1)
        return response

    @contextlib.asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        if _RUNNING.get() is None:
            async with super().request_stream(
                messages, model_settings, model_request_parameters, run_context
            ) as streamed:
                yield streamed
            return
        response = await self.request(messages, model_settings, model_request_parameters)
        yield CompletedStreamedResponse(response, model_request_parameters=model_request_parameters, replay_events=True)

    async def _request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        ctx = _RUNNING.get()
        assert ctx is not None
        if not _streams(self.wrapped):
            response = await self.wrapped.request(messages, model_settings, model_request_parameters)
            for part in response.parts:
                if isinstance(part, TextPart) and part.content:
                    await ctx.emit_token(part.content)
            return response
        async with self.wrapped.request_stream(messages, model_settings, model_request_parameters) as streamed:
            async for event in streamed:
                text = ""
                if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
                    text = event.part.content
                elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                    text = event.delta.content_delta
                if text:
                    await ctx.emit_token(text)
        return streamed.get()


@dataclass
class _DurableToolset(WrapperToolset[Any]):
    """Each tool call is one journaled step (its JSON result), logged as ``tool_call``/``tool_result``."""

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        job = _RUNNING.get()
        if job is None:
            return await super().call_tool(name, tool_args, ctx, tool)
        call_id = ctx.tool_call_id
        index = job._next_index
        fresh = job._journal.get(index) is None  # recorded calls were logged when they ran
        pending = job.step(f"tool {name}", self._call, name, tool_args, ctx, tool)  # takes its place now
        try:
            if fresh:
                arguments = to_jsonable_python(tool_args)
                await job.emit(ToolCallEvent(name=name, arguments=arguments, tool_call_id=call_id))
        except BaseException:
            pending.close()
            raise
        try:
            result = await pending
        except Suspend:  # a pause stops the run right after this call was journaled: log its result first
            record = job._journal.get(index)
            if fresh and record is not None:
                await job.emit(ToolResultEvent(name=name, result=record.result, tool_call_id=call_id))
            raise
        if fresh:
            await job.emit(ToolResultEvent(name=name, result=result, tool_call_id=call_id))
        return result

    async def _call(self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]) -> Any:
        result = await self.wrapped.call_tool(name, tool_args, ctx, tool)
        return to_jsonable_python(result)  # what a replay returns, so the first run sees the same


def _wrap_leaf(toolset: AbstractToolset[Any]) -> AbstractToolset[Any]:
    return _DurableToolset(toolset)


def _output_specs(output_type: Any) -> list[Any]:
    if isinstance(output_type, Sequence) and not isinstance(output_type, str):
        return list(output_type)
    return [output_type]


class PydanticAIAgent:
    """A ``pydantic_ai.Agent`` as a durapod agent: ``DurableAgent(PydanticAIAgent(agent, deps=...), store)``.

    ``DurableAgent(agent, store)`` builds one with the defaults by itself.

    Args:
        agent: the pydantic-ai agent.
        deps: the dependencies given to every run (not journaled: rebuilt by your code in each process).
        model: the model to run with, if the agent has none (or to replace its own).
        name: the agent's name on its jobs (default: the pydantic-ai agent's ``name``, else
            ``pydantic_ai.Agent``).
        event_stream_handler: given to every ``agent.run``: it sees each response's events (replayed from
            the journaled response, so also after a crash or a resume) and each tool call's.

    Example:
        >>> agent = Agent("openai:gpt-4o", output_type=Reply)               # doctest: +SKIP
        >>> durable = DurableAgent(PydanticAIAgent(agent, deps=Deps()), store)  # doctest: +SKIP
    """

    def __init__(
        self,
        agent: Agent[Any, Any],
        *,
        deps: Any = None,
        model: Model | str | None = None,
        name: str | None = None,
        event_stream_handler: EventStreamHandler[Any] | None = None,
    ) -> None:
        if not isinstance(agent, Agent):
            raise TypeError(f"agent must be a pydantic_ai.Agent, got {agent!r}")
        chosen = model if model is not None else agent.model
        if chosen is None:
            raise ValueError("the pydantic-ai agent has no model: give one with model=")
        self.agent = agent
        self.deps = deps
        self.event_stream_handler = event_stream_handler
        self.durapod_name = name or agent.name or "pydantic_ai.Agent"
        self._model = _DurableModel(chosen)
        self._toolsets = [toolset.visit_and_replace(_wrap_leaf) for toolset in agent.toolsets]
        specs = _output_specs(agent.output_type)
        self._output_type: Any = None if DeferredToolRequests in specs else [*specs, DeferredToolRequests]
        typed = [spec for spec in specs if spec is not DeferredToolRequests]
        self.durapod_result_type: Any = typed[0] if len(typed) == 1 and isinstance(typed[0], type) else None

    def __repr__(self) -> str:
        return f"PydanticAIAgent({self.durapod_name!r})"

    async def run(self, input: JsonValue, ctx: JobContext) -> Any:
        """Run the agent for a job: its model requests and tool calls are journaled steps.

        Raises:
            InvalidInput: the input is neither a prompt nor ``{"user_prompt": ..., "message_history": ...}``.
        """
        prompt, history = _prompt_and_history(input, ctx.job_id)
        token = _RUNNING.set(ctx)
        try:
            # Parallel tool calls, settled once all are done (as DBOS does): a pause that one call meets
            # lets its siblings finish and be journaled instead of cancelling them.
            with (
                self.agent.override(model=self._model, toolsets=self._toolsets, tools=[]),
                Agent.parallel_tool_call_execution_mode("parallel_ordered_events"),
            ):
                return await self._run(prompt, history, ctx)
        finally:
            _RUNNING.reset(token)

    async def _run(self, prompt: str | None, history: list[ModelMessage] | None, ctx: JobContext) -> Any:
        deferred: DeferredToolResults | None = None
        while True:
            options: dict[str, Any] = {
                "message_history": history,
                "deferred_tool_results": deferred,
                "event_stream_handler": self.event_stream_handler,
            }
            if self._output_type is not None:
                options["output_type"] = self._output_type
            result = await self.agent.run(prompt, deps=self.deps, **options)
            output = result.output
            if not isinstance(output, DeferredToolRequests):
                return output if self.durapod_result_type is not None else to_jsonable_python(output)
            deferred = await _answer(output, ctx)
            history = result.all_messages()
            prompt = None


async def _answer(requests: DeferredToolRequests, ctx: JobContext) -> DeferredToolResults:
    """Ask for each approval and each deferred call in turn (each an interrupt), in the model's order."""
    results = DeferredToolResults()
    for call in requests.approvals:
        approval = await ctx.interrupt(
            f"approve {call.tool_name}({call.args_as_json_str()})? [{call.tool_call_id}]", answer=ToolApproval
        )
        results.approvals[call.tool_call_id] = (
            True if approval.approved else ToolDenied(approval.message or "The tool call was denied.")
        )
    for call in requests.calls:
        results.calls[call.tool_call_id] = await ctx.interrupt(
            f"result of {call.tool_name}({call.args_as_json_str()})? [{call.tool_call_id}]"
        )
    return results


def _prompt_and_history(input: JsonValue, job_id: str) -> tuple[str | None, list[ModelMessage] | None]:
    if input is None or isinstance(input, str):
        return input, None
    if isinstance(input, dict) and set(input) <= {"user_prompt", "message_history"}:
        prompt = input.get("user_prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidInput("input", input, "user_prompt must be a str", job_id)
        raw = input.get("message_history")
        history = ModelMessagesTypeAdapter.validate_python(raw) if raw is not None else None
        return prompt, history
    raise InvalidInput("input", input, 'expected a prompt or {"user_prompt": ..., "message_history": [...]}', job_id)
