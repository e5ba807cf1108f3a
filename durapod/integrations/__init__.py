"""Adapters that make agents of other frameworks durable. None is a dependency of durapod.

- :mod:`durapod.integrations.pydantic_ai`: ``DurableAgent(pydantic_ai_agent, store)`` (``durapod[pydantic-ai]``);
- :mod:`durapod.integrations.langchain`: chat models and tools as journaled steps (``durapod[langchain]``).

This package imports neither framework; each adapter module imports its own when it is used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["adapt"]


def adapt(agent: Any) -> Any:
    """The durapod agent for ``agent``: an adapter for a framework's agent object, else ``agent`` itself.

    Told apart by the module of the object's class, so a framework that is not installed is never
    imported.
    """
    module = type(agent).__module__
    if module == "pydantic_ai" or module.startswith("pydantic_ai."):
        from durapod.integrations.pydantic_ai import PydanticAIAgent

        return PydanticAIAgent(agent)
    return agent
