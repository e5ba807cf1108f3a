"""pydantic-ai agents made durable: every model request and every tool call is a journaled step.

``DurableAgent(agent, store)`` wraps a ``pydantic_ai.Agent`` in a :class:`PydanticAIAgent` by itself;
build one yourself to give options (``deps``, ``model``, ``name``). Install with ``durapod[pydantic-ai]``.

- The job's input is the user prompt (or ``{"user_prompt": ..., "message_history": [...]}``); its result
  is the agent's output, stored as JSON and returned typed by ``DurableAgent`` (by ``output_type``).
- The agent's model is wrapped so that each request is a step named ``model request`` whose
  ``ModelResponse`` is journaled; its tools so that each call (parallel calls too) is a step named
  ``tool <name>``. After a crash, a pause or a retry the run replays: nothing journaled runs again.
- Text deltas become ``token`` events, tool calls ``tool_call`` events and their results
  ``tool_result`` events.
- Tools that need approval (``requires_approval=True``, ``ApprovalRequired``) and deferred tools pause the
  job in ``ctx.interrupt``: resume with ``True``/``False`` (or a :class:`ToolApproval`) for an approval,
  with the tool's result for a deferred call; the run continues from there.
- The tokens and requests of every response are counted on the job (``job.usage``) and against its
  :class:`~durapod.Budget`.

This is how pydantic-ai's own durable integrations (``pydantic_ai.durable_exec``: Temporal, DBOS,
Prefect) work: a ``WrapperModel`` whose requests are durable units and wrapped toolsets whose calls are.
"""

from durapod.integrations._pydantic_ai import PydanticAIAgent as PydanticAIAgent
from durapod.integrations._pydantic_ai import ToolApproval as ToolApproval

__all__ = ["PydanticAIAgent", "ToolApproval"]
