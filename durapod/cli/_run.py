"""The ``durapod`` commands that run something in this process: ``worker`` (an agent loaded from
``MODULE:ATTR``), ``ui`` (the HTTP API and dashboard) and ``demo``, with what they need: running until
SIGINT/SIGTERM, loading the agent, and the command's own output of the library's logs on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO, TypeVar, cast

from durapod.agent import DurableAgent
from durapod.cli._common import CommandError, _store_url, _warn
from durapod.errors import DurapodError
from durapod.stores import open_store

T = TypeVar("T")

#: The environment variable that holds the token ``durapod ui`` requires when ``--token`` is not given.
_UI_TOKEN_ENV = "DURAPOD_UI_TOKEN"
_UI_HOST = "127.0.0.1"


async def _cmd_worker(args: argparse.Namespace) -> int:
    durable = await _load_agent(args.target)
    if args.store is not None:
        _warn(f"--store is ignored by `worker`: the agent uses the store it was built with ({durable.store!r})")
    started: list[bool] = []

    async def serve_until_cancelled() -> None:
        try:
            await durable.open()
            started.append(True)
            print(
                f"durapod worker {durable.worker_id}: running agent {durable.name!r} on {durable.store!r} "
                "(Ctrl-C or SIGTERM to stop)",
                flush=True,
            )
            await durable.serve()
        finally:
            await durable.aclose()

    try:
        await _until_signalled(serve_until_cancelled())
    finally:
        with contextlib.suppress(DurapodError):
            await durable.store.close()
    if started:
        print(f"durapod worker {durable.worker_id}: stopped (unfinished jobs were handed back)", flush=True)
    return 0


async def _cmd_ui(args: argparse.Namespace) -> int:
    try:
        from durapod.web import create_app, serve
    except ImportError as exc:
        raise CommandError(f"`durapod ui` needs the web extra: pip install 'durapod[web]' ({exc})") from None
    token = args.token or os.environ.get(_UI_TOKEN_ENV) or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and token is None:
        logging.getLogger("durapod.web").warning(
            "durapod ui binds %s without a token: anyone who reaches this address can read, start, pause and "
            "cancel jobs (pass --token or set $%s)",
            args.host,
            _UI_TOKEN_ENV,
        )
    store = open_store(_store_url(args))
    try:
        app = create_app(store, token=token, read_only=args.read_only)
        print(f"durapod ui: http://{args.host}:{args.port}/ on {store!r} (Ctrl-C to stop)", flush=True)
        await serve(app, host=args.host, port=args.port, log_level=args.log_level)
        print("durapod ui: stopped", flush=True)
    finally:
        with contextlib.suppress(DurapodError):
            await store.close()
    return 0


async def _cmd_demo(args: argparse.Namespace) -> int:
    from durapod._demo import run_demo

    if not (args.step_delay >= 0 and math.isfinite(args.step_delay)):
        raise CommandError(f"invalid --step-delay {args.step_delay}: expected seconds >= 0", 2)
    outcome = await _until_signalled(
        run_demo(
            _store_url(args),
            assume_yes=args.yes,
            fresh=args.fresh,
            step_delay=args.step_delay,
            out=sys.stdout,
        )
    )
    if outcome is None:
        print("\ninterrupted — run `make demo` again to resume", flush=True)
        return 130
    return outcome


async def _until_signalled(coro: Coroutine[Any, Any, T]) -> T | None:
    """Run ``coro`` until it returns or SIGINT/SIGTERM arrives; on a signal cancel it and return None.

    The coroutine's ``finally`` blocks (leaving ``async with durable:``) run before this returns.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no support
            continue
        installed.append(signum)
    work = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            return work.result()
        work.cancel()
        await asyncio.wait({work})
        error = None if work.cancelled() else work.exception()
        if error is not None:
            raise error
        return None
    finally:
        stopper.cancel()
        if not work.done():
            work.cancel()
            await asyncio.wait({work})
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _load_agent(target: str) -> DurableAgent:
    """Import ``MODULE:ATTR`` (ATTR may be dotted) and return the DurableAgent it names or makes."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise CommandError(f"invalid worker target {target!r}: expected MODULE:ATTR (e.g. myapp.agents:durable)", 2)
    # like `python -m`, find modules in the current directory even when run as the `durapod` script
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise
        raise CommandError(f"cannot import {module_name!r}: {exc}", 2) from None
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CommandError(f"{target!r}: {module_name!r} has no attribute {attribute!r}", 2) from None
    if not isinstance(value, DurableAgent) and callable(value):
        try:
            inspect.signature(value).bind()
        except TypeError:
            raise CommandError(
                f"{target!r} is not a DurableAgent, nor a zero-argument function making one", 2
            ) from None
        except ValueError:  # no signature to inspect (a builtin): just try the call
            pass
        value = value()
        if inspect.isawaitable(value):
            value = await value
    if not isinstance(value, DurableAgent):
        raise CommandError(f"{target!r} is not a DurableAgent (nor a function returning one): {value!r}", 2)
    return value


def _configure_logging(level: int) -> Callable[[], None]:
    """The command's own output of the library's logs: ``level`` and above, to stderr.

    Only the ``durapod`` logger is touched (the command may run inside a program that configured
    logging its own way, as the tests do); returns what undoes it.
    """
    logger = logging.getLogger("durapod")
    handler = logging.StreamHandler(cast(TextIO, _QuietStderr()))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S"))
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]

    return restore


class _QuietStderr:
    """``sys.stderr`` for log lines, dropping what cannot be written (a closed pipe): a log line must
    never raise inside the library."""

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            return sys.stderr.write(text)
        return 0

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
