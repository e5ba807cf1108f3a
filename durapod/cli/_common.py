"""What every ``durapod`` command shares: the program's name, where the store is (``--store``, else
``$DURAPOD_STORE``, else the default) and a :class:`durapod.Client` on it, a ``--timeout`` turned into a
one-line failure, the parsing of INPUT and ``--metadata``, and :class:`CommandError` with the one-line
``error:``/``warning:`` messages on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from pydantic import JsonValue

from durapod.cli._output import _truncate
from durapod.client import Client
from durapod.models import MAX_JSON_DEPTH, Job
from durapod.stores import open_store

#: The store used when neither ``--store`` nor ``DURAPOD_STORE`` names one.
DEFAULT_STORE = "sqlite:///durapod.db"
#: The environment variable that names the store.
STORE_ENV = "DURAPOD_STORE"

_PROG = "durapod"


class CommandError(Exception):
    """A failure the CLI reports as one line on stderr, with an exit code (1: failed, 2: bad input)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _store_url(args: argparse.Namespace) -> str:
    url: str = args.store or os.environ.get(STORE_ENV) or DEFAULT_STORE
    return url


@contextlib.asynccontextmanager
async def _client(args: argparse.Namespace) -> AsyncIterator[Client]:
    store = open_store(_store_url(args))
    async with Client(store) as client:
        yield client


async def _with_timeout(awaitable: Coroutine[Any, Any, Job], job_id: str, what: str, timeout: float | None) -> Job:
    try:
        return await awaitable
    except TimeoutError:
        raise CommandError(f"timed out after {timeout:g}s: job {job_id!r} {what}") from None


def _parse_value(text: str) -> JsonValue:
    """``text`` as JSON if it parses as JSON (and is finite), else the string itself."""
    try:
        value: JsonValue = json.loads(text)
    except ValueError:
        return text
    except RecursionError:
        raise CommandError(f"invalid input: JSON nested more than {MAX_JSON_DEPTH} deep", 2) from None
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value


def _parse_metadata(text: str | None) -> dict[str, JsonValue] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"invalid --metadata {_truncate(text, 60)!r}: not JSON ({exc})", 2) from None
    except RecursionError:
        raise CommandError(f"invalid --metadata: JSON nested more than {MAX_JSON_DEPTH} deep", 2) from None
    if not isinstance(value, dict):
        raise CommandError(f"invalid --metadata {text!r}: expected a JSON object", 2)
    return value


def _error(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"{_PROG}: error: {message}", file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"{_PROG}: warning: {message}", file=sys.stderr, flush=True)
