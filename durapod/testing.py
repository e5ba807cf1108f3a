"""Fakes for tests and examples: a scripted LLM and a clock that tests advance by hand.

Only the LLM is faked: stores, processes and Redis are always real in durapod's own tests.

Example:
    >>> llm = ScriptedLLM(["Hello!", "Goodbye."])
    >>> import asyncio
    >>> asyncio.run(llm.complete("hi"))
    'Hello!'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from durapod.lowlevel.clock import FakeClock

__all__ = ["FakeClock", "LLMCall", "ScriptExhausted", "ScriptedLLM", "capture_logs"]


class ScriptExhausted(RuntimeError):
    """A :class:`ScriptedLLM` was asked for more replies than its script holds."""


@dataclass(frozen=True, slots=True)
class LLMCall:
    """One call made to a :class:`ScriptedLLM`: the prompt and the reply it got."""

    prompt: str
    reply: str


class ScriptedLLM:
    """An offline stand-in for a chat model: it answers from a script.

    Args:
        script: the replies in order, or a function from the prompt to the reply.
        repeat: when the list runs out, start again from the first reply (else raise ScriptExhausted).
        token_delay: seconds between streamed tokens (0: yield to the event loop only).

    Every call is recorded in :attr:`calls`, so tests can check what the agent asked.
    """

    def __init__(
        self,
        script: Sequence[str] | Callable[[str], str],
        *,
        repeat: bool = False,
        token_delay: float = 0.0,
    ) -> None:
        if not callable(script):
            if isinstance(script, str) or not all(isinstance(reply, str) for reply in script):
                raise TypeError(f"script must be a list of str replies or a function, got {script!r}")
            if not script:
                raise ValueError("script must hold at least one reply")
        self._script = script
        self._repeat = repeat
        self._next = 0
        self.token_delay = token_delay
        self.calls: list[LLMCall] = []
        """Every call, in order."""

    def _reply(self, prompt: str) -> str:
        if callable(self._script):
            reply = self._script(prompt)
        else:
            if self._next >= len(self._script):
                if not self._repeat:
                    raise ScriptExhausted(f"the script has {len(self._script)} replies; call {self._next + 1} asked")
                self._next = 0
            reply = self._script[self._next]
            self._next += 1
        self.calls.append(LLMCall(prompt, reply))
        return reply

    async def complete(self, prompt: str) -> str:
        """The next scripted reply to ``prompt``."""
        await asyncio.sleep(0)
        return self._reply(prompt)

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        """The next scripted reply, token by token (words with their following space)."""
        reply = self._reply(prompt)
        words = reply.split(" ")
        for index, word in enumerate(words):
            await asyncio.sleep(self.token_delay)
            yield word if index == len(words) - 1 else word + " "


class _Capture(logging.Handler):
    def __init__(self, entries: list[dict[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self.entries = entries

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "durapod_fields", None)
        entry: dict[str, Any] = dict(fields) if isinstance(fields, dict) else {}
        entry["event"] = getattr(record, "durapod_event", record.getMessage())
        entry["log_level"] = record.levelname.lower()
        entry["logger"] = record.name
        self.entries.append(entry)


@contextlib.contextmanager
def capture_logs(level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """Collect the records of the ``durapod`` logger (``level`` and above) while the block runs.

    Each record becomes a dict of its fields plus ``event`` (the event name), ``log_level`` and
    ``logger``. The logger's level is lowered for the block and restored after it.

    Example:
        >>> with capture_logs() as logs:
        ...     pass
        >>> logs
        []
    """
    logger = logging.getLogger("durapod")
    entries: list[dict[str, Any]] = []
    handler = _Capture(entries)
    handler.setLevel(level)
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level, logger.getEffectiveLevel()))
    try:
        yield entries
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
