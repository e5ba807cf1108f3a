"""The ``durapod`` command: run a worker, submit, list, show and control jobs, and run the demo.

Usage::

    durapod [--store URL] worker MODULE:ATTR
    durapod [--store URL] submit ID INPUT [--agent NAME] [--metadata JSON] [--json]
    durapod [--store URL] fork ID NEW_ID --from-step K [--input INPUT] [--json]
    durapod [--store URL] ls [--status S ...] [--limit N] [--agent NAME] [--version V] [--json]
    durapod [--store URL] show ID [--json]
    durapod [--store URL] pause ID | cancel ID | resume ID [INPUT] | wait ID [--timeout S]
    durapod [--store URL] watch ID [--after SEQ] [--json]
    durapod [--store URL] schedules [--agent NAME] [--json]
    durapod [--store URL] demo [--yes] [--fresh]
    durapod [--store URL] ui [--host 127.0.0.1] [--port 8000] [--token TOKEN] [--read-only] [--log-level L]

The store comes from ``--store``, else the ``DURAPOD_STORE`` environment variable, else
``sqlite:///durapod.db``. Every command but ``worker`` and ``demo`` only reads and writes the store
(through :class:`durapod.Client`): it runs no job.

Exit codes: 0 on success; 2 for bad usage or bad input (an invalid id, an unknown status, input that is
not JSON); 1 when the request fails (no such job, a request the job's status does not allow, a store
error, a timeout); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from durapod.cli._common import _PROG, DEFAULT_STORE, STORE_ENV, CommandError, _error
from durapod.cli._jobs import (
    _cmd_cancel,
    _cmd_fork,
    _cmd_ls,
    _cmd_pause,
    _cmd_resume,
    _cmd_schedules,
    _cmd_show,
    _cmd_submit,
    _cmd_wait,
    _cmd_watch,
)
from durapod.cli._run import _UI_HOST, _UI_TOKEN_ENV, _cmd_demo, _cmd_ui, _cmd_worker, _configure_logging
from durapod.errors import DurapodError

__all__ = ["DEFAULT_STORE", "STORE_ENV", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``durapod`` command with ``argv`` (default: ``sys.argv[1:]``) and return its exit code.

    Example:
        >>> main(["--store", "memory://", "ls"])  # doctest: +SKIP
        no jobs
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    restore_logging = _configure_logging(logging.INFO if args.command == "worker" else logging.WARNING)
    try:
        exit_code: int = asyncio.run(args.handler(args))
        return exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # the reader went away (`durapod ls | head`): stop quietly, and keep Python from complaining at exit
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CommandError as exc:
        _error(str(exc))
        return exc.exit_code
    except DurapodError as exc:
        # InvalidJobId and InvalidInput are also ValueErrors: bad input, not a failed request
        _error(str(exc))
        return 2 if isinstance(exc, ValueError) else 1
    except ValueError as exc:
        _error(str(exc))
        return 2
    except OSError as exc:
        _error(str(exc))
        return 1
    finally:
        restore_logging()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``durapod`` command."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Durable LLM agents: run workers, and submit, inspect and control their jobs.",
        epilog=f"The store is --store, else ${STORE_ENV}, else {DEFAULT_STORE}.",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help=f"memory://, sqlite:///relative.db, sqlite:////abs.db or redis://host:port/0 (default: ${STORE_ENV} "
        f"or {DEFAULT_STORE})",
    )
    # `--store` is also accepted after the subcommand: `durapod ls --store URL`
    store_after = argparse.ArgumentParser(add_help=False)
    store_after.add_argument("--store", metavar="URL", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], Any], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[store_after])
        sub.set_defaults(handler=handler)
        return sub

    worker = command("worker", _cmd_worker, "run a worker until SIGINT/SIGTERM, then stop it gracefully")
    worker.add_argument("target", metavar="MODULE:ATTR", help="a DurableAgent, or a zero-argument function making one")

    submit = command("submit", _cmd_submit, "queue a job for a worker (runs nothing here)")
    submit.add_argument("job_id", metavar="ID", help="the job's id; - with --idempotency-key: derived from the key")
    submit.add_argument("input", metavar="INPUT", help="JSON if it parses as JSON, else taken as a string")
    submit.add_argument("--agent", metavar="NAME", help="the agent that should run it (default: any worker)")
    submit.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="for a caller that cannot choose ids: the job's id is derived from KEY (pass - as ID), so the"
        " same key submits the job once",
    )
    submit.add_argument("--metadata", metavar="JSON", help="a JSON object stored with the job")
    submit.add_argument("--json", action="store_true", help="print the job as JSON")

    fork = command("fork", _cmd_fork, "queue a copy of a job that replays its steps before --from-step")
    fork.add_argument("job_id", metavar="ID")
    fork.add_argument("new_id", metavar="NEW_ID")
    fork.add_argument("--from-step", type=int, required=True, metavar="K", help="run again from step K (from 0)")
    fork.add_argument("--input", metavar="INPUT", help="a new input (JSON if it parses, else a string)")
    fork.add_argument("--json", action="store_true", help="print the new job as JSON")

    ls = command("ls", _cmd_ls, "list jobs, newest first")
    ls.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="S",
        help="only jobs in status S (repeatable, or comma-separated: --status running,paused)",
    )
    ls.add_argument("--limit", type=int, default=20, metavar="N", help="at most N jobs (default: 20)")
    ls.add_argument("--agent", metavar="NAME", help="only jobs of this agent")
    ls.add_argument("--version", metavar="V", help="only jobs created by this version of the agent's code")
    ls.add_argument("--json", action="store_true", help="print a JSON array of jobs")

    show = command("show", _cmd_show, "show a job and its step timeline")
    show.add_argument("job_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print the job and its steps as JSON")

    pause = command("pause", _cmd_pause, "pause a pending or running job and wait until it is paused")
    pause.add_argument("job_id", metavar="ID")
    pause.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")

    cancel = command("cancel", _cmd_cancel, "cancel a pending, running or paused job")
    cancel.add_argument("job_id", metavar="ID")
    cancel.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")

    resume = command("resume", _cmd_resume, "queue a paused job to continue (a worker runs it)")
    resume.add_argument("job_id", metavar="ID")
    resume.add_argument(
        "input", metavar="INPUT", nargs="?", help="new input, or the answer to the interrupt the job waits on"
    )

    wait = command("wait", _cmd_wait, "wait until a job settles; exit 1 if it failed or was cancelled")
    wait.add_argument("job_id", metavar="ID")
    wait.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (exit 1)")

    watch = command("watch", _cmd_watch, "print a job's events as they come (tokens inline) until it settles")
    watch.add_argument("job_id", metavar="ID")
    watch.add_argument("--after", type=int, default=-1, metavar="SEQ", help="start after this sequence number")
    watch.add_argument("--json", action="store_true", help="print one JSON event per line")

    schedules = command("schedules", _cmd_schedules, "list schedules with their next fire time")
    schedules.add_argument("--agent", metavar="NAME", help="only this agent's schedules")
    schedules.add_argument("--json", action="store_true", help="print a JSON array")

    ui = command("ui", _cmd_ui, "serve the HTTP API and dashboard of the store's jobs (needs durapod[web])")
    ui.add_argument("--host", default=_UI_HOST, help=f"the address to bind (default: {_UI_HOST}, this machine only)")
    ui.add_argument("--port", type=int, default=8000, help="the port (default: 8000)")
    ui.add_argument(
        "--token", default=None, help=f"require 'Authorization: Bearer TOKEN' (default: ${_UI_TOKEN_ENV}, else none)"
    )
    ui.add_argument("--read-only", action="store_true", help="serve no write endpoint (no submit, pause, cancel)")
    ui.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"], help="uvicorn's log level"
    )

    demo = command("demo", _cmd_demo, "a support-ticket agent that survives Ctrl-C and crashes")
    demo.add_argument("--yes", "-y", action="store_true", help="approve every reply without asking")
    demo.add_argument("--fresh", action="store_true", help="forget the demo's jobs and start over")
    demo.add_argument("--step-delay", type=float, default=0.4, metavar="S", help="seconds each step takes (pacing)")
    return parser
