"""Group commit: RedisStore's calls from many coroutines share one round trip.

Calls from many coroutines are sent together (group commit): a sender task writes every call queued
meanwhile in one pipeline (``transaction=False``: each call is its own atomic script) on the store's own
connection, and a reader task reads the replies in order, so one round trip carries the writes of many
jobs and each caller continues with its own result or exception. Two batches may be in flight, so that
the server runs one while Python prepares the next and handles the replies of the previous one.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import math
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal, Protocol

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from durapod._log import get_logger
from durapod.errors import StoreError, StoreUnavailable
from durapod.stores._redis_compat import _connection_getter, _is_stale

# the logger of the public module: the warnings are about the store
_log = get_logger("durapod.stores.redis")

_MAX_BATCH: Final = 2048  # commands per write
_MAX_IN_FLIGHT: Final = 2  # batches written whose replies are not read yet
_WAITAOF_TIMEOUT_MS: Final = 2000  # below the default socket timeout (5 s) of a batch


class _PipelineOwner(Protocol):
    """What the pipeline needs of its store (a :class:`~durapod.stores.redis.RedisStore`)."""

    client: Redis
    _where: str

    @property
    def durability(self) -> Literal["normal", "full"]: ...

    def _failure(self, exc: BaseException) -> BaseException: ...


def _lost(store: _PipelineOwner, exc: BaseException) -> BaseException:
    """The error of calls whose connection broke under them: their outcome is unknown, so it is always
    :class:`StoreUnavailable` (the caller tries again), whatever redis-py raised."""
    error = store._failure(exc)
    if isinstance(error, StoreUnavailable):
        return error
    lost = StoreUnavailable(f"{store._where}: the connection broke: {type(exc).__name__}: {exc}")
    lost.__cause__ = exc
    return lost


class _Call:
    """A queued command: its arguments, the script it runs (for the NOSCRIPT fallback) and its future.

    ``future`` is None for the pipeline's own commands (a ``SCRIPT LOAD`` before a retry).
    """

    __slots__ = ("args", "future", "retried", "script", "writes")

    def __init__(
        self, args: tuple[Any, ...], script: AsyncScript | None, future: asyncio.Future[Any] | None, writes: bool
    ) -> None:
        self.args = args
        self.script = script
        self.future = future
        self.writes = writes
        self.retried = False


class _Batch:
    """Calls sent in one write, whose replies are awaited in order (plus a WAITAOF reply if asked)."""

    __slots__ = ("calls", "connection", "dead", "waits_for_disk")

    def __init__(self, calls: list[_Call], connection: AbstractConnection, waits_for_disk: bool) -> None:
        self.calls = calls
        self.connection = connection
        self.waits_for_disk = waits_for_disk
        self.dead = False  # its connection broke: its callers have their StoreUnavailable already


class _Pipeline:
    """Group commit on one connection: a sender task and a reader task.

    The sender writes every call queued meanwhile in one write (a batch), with up to ``_MAX_IN_FLIGHT``
    batches awaiting their replies; the reader reads the replies in order and gives each call's future its
    own result, or its own exception (a ``ResponseError`` concerns one command only). So the server runs
    one batch while Python prepares the next and handles the replies of the previous one.

    A command refused with NOSCRIPT (the server's script cache was flushed, or it restarted) was not run:
    it is queued again behind a ``SCRIPT LOAD`` of its script, once. A broken connection fails the calls
    in flight with :class:`StoreUnavailable` (their outcome is unknown) and the next batch reconnects.
    """

    def __init__(self, store: _PipelineOwner) -> None:
        self._store = store
        self._queue: collections.deque[_Call] = collections.deque()
        self._in_flight: collections.deque[_Batch] = collections.deque()
        self._sender: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._sender_idle: asyncio.Future[None] | None = None
        self._reader_idle: asyncio.Future[None] | None = None
        self._connection: AbstractConnection | None = None
        self._closing = False
        self._waitaof: bool | None = None if store.durability == "full" else False
        self._get_connection = _connection_getter(store.client.connection_pool)
        kwargs = store.client.connection_pool.connection_kwargs
        self._encoding: tuple[str, str] = (kwargs.get("encoding", "utf-8"), kwargs.get("encoding_errors", "strict"))

    def submit(self, args: tuple[Any, ...], script: AsyncScript | None, writes: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Call(args, script, future, writes))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_loop(), name=f"durapod-redis-sender {self._store._where}")
        else:
            self._wake_sender()
        return future

    async def close(self) -> None:
        """Send what is queued, wait for the replies, then stop the tasks and give the connection back."""
        self._closing = True
        self._wake_sender()
        self._wake_reader()
        for task in (self._sender, self._reader):
            if task is not None:
                await asyncio.shield(task)
        await self._release()

    def _wake_sender(self) -> None:
        if self._sender_idle is not None and not self._sender_idle.done():
            self._sender_idle.set_result(None)

    def _wake_reader(self) -> None:
        if self._reader_idle is not None and not self._reader_idle.done():
            self._reader_idle.set_result(None)

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queue or len(self._in_flight) >= _MAX_IN_FLIGHT:
                    # in flight, a reply may still send a call again (NOSCRIPT): stop only when all is answered
                    if self._closing and not self._queue and not self._in_flight:
                        return
                    self._sender_idle = loop.create_future()
                    await self._sender_idle
                    self._sender_idle = None
                    continue
                count = min(len(self._queue), _MAX_BATCH)
                free = _MAX_IN_FLIGHT - len(self._in_flight)
                if free > 1 and count >= 16:
                    # split the callers into groups, so that the server runs one group's batch while Python
                    # handles another's replies: the groups then keep taking turns
                    count = -(-count // free)
                calls = [self._queue.popleft() for _ in range(count)]
                await self._send(calls)
        finally:
            self._fail(self._queue, StoreError(f"{self._store!r} is closed"))
            self._queue.clear()
            self._wake_reader()

    async def _send(self, calls: list[_Call]) -> None:
        waits_for_disk = self._waitaof is not False and any(call.writes for call in calls)
        commands = [call.args for call in calls]
        if waits_for_disk:
            commands.append(("WAITAOF", 1, 0, _WAITAOF_TIMEOUT_MS))
        try:
            packed = self._pack(commands)
        except Exception as exc:  # an argument that cannot be sent: these calls fail, the pipeline goes on
            self._fail(calls, self._store._failure(exc))
            return
        try:
            if self._connection is not None and not self._in_flight and await _is_stale(self._connection):
                await self._broken(RedisConnectionError("closed by the server while idle"))
            if self._connection is None:
                self._connection = await self._get_connection()
            connection = self._connection
            await connection.send_packed_command(packed, check_health=False)
        except Exception as exc:  # the connection broke (redis-py may say so with an AttributeError)
            lost = _lost(self._store, exc)
            self._fail(calls, lost)
            await self._broken(lost)
            return
        except BaseException as exc:
            self._fail(calls, self._store._failure(exc))
            await self._broken(exc)
            raise
        self._in_flight.append(_Batch(calls, connection, waits_for_disk))
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(
                self._read_loop(), name=f"durapod-redis-reader {self._store._where}"
            )
        else:
            self._wake_reader()

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._in_flight:
                if self._closing and not self._queue and (self._sender is None or self._sender.done()):
                    return
                self._reader_idle = loop.create_future()
                await self._reader_idle
                self._reader_idle = None
                continue
            batch = self._in_flight[0]
            replies = await self._read(batch)
            if batch.dead:
                continue  # _broken has failed it and emptied _in_flight
            self._in_flight.popleft()
            self._wake_sender()
            self._settle(batch, replies)

    async def _read(self, batch: _Batch) -> list[Any]:
        connection = batch.connection
        count = len(batch.calls) + batch.waits_for_disk
        replies: list[Any] = []
        try:
            # one deadline for the whole batch instead of a timer per reply
            async with asyncio.timeout(connection.socket_timeout):
                for _ in range(count):
                    try:
                        replies.append(await connection.read_response(disable_decoding=True, timeout=math.inf))
                    except ResponseError as exc:
                        replies.append(exc)
        except TimeoutError:
            if not batch.dead:
                await self._broken(RedisTimeoutError(f"no reply within {connection.socket_timeout} s"), replies)
        except Exception as exc:  # the connection broke (redis-py may say so with an AttributeError)
            if not batch.dead:
                await self._broken(_lost(self._store, exc), replies)
        except BaseException as exc:
            if not batch.dead:
                await self._broken(exc, replies)
            raise
        return replies

    def _settle(self, batch: _Batch, replies: list[Any]) -> None:
        if batch.waits_for_disk:
            replies = self._check_on_disk(replies)
        again: list[_Call] = []
        for call, reply in zip(batch.calls, replies, strict=True):
            if call.future is not None and call.future.done():
                continue  # a caller that was cancelled: its write is not sent again (it did not happen)
            if isinstance(reply, NoScriptError) and call.script is not None and not call.retried:
                call.retried = True
                again.append(call)
            elif call.future is None:
                continue  # the pipeline's own command
            elif isinstance(reply, BaseException):
                call.future.set_exception(self._store._failure(reply))
            else:
                call.future.set_result(reply)
        if again:
            # not run: load the scripts, then send them again (the connection keeps the order)
            scripts = {id(call.script): call.script for call in again if call.script is not None}
            self._queue.extendleft(reversed(again))
            self._queue.extendleft(
                _Call(("SCRIPT", "LOAD", script.script), None, None, False) for script in scripts.values()
            )
            self._wake_sender()

    async def _broken(self, exc: BaseException, replies: Sequence[Any] = ()) -> None:
        """The connection failed: fail every call in flight (keeping the replies already read) and drop it."""
        lost = self._store._failure(exc)
        batches = builtins.list(self._in_flight)
        self._in_flight.clear()
        for index, batch in enumerate(batches):
            batch.dead = True
            if index == 0 and replies:
                read = builtins.list(replies[: len(batch.calls)])
                self._settle(batch, read + [lost] * (len(batch.calls) + batch.waits_for_disk - len(read)))
            else:
                self._fail(batch.calls, lost)
        connection, self._connection = self._connection, None
        self._wake_sender()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect()
            with contextlib.suppress(Exception):
                await self._store.client.connection_pool.release(connection)

    @staticmethod
    def _fail(calls: Iterable[_Call], error: BaseException) -> None:
        for call in calls:
            if call.future is not None and not call.future.done():
                call.future.set_exception(error)

    def _pack(self, commands: list[tuple[Any, ...]]) -> bytes:
        """The commands in the Redis protocol, in one buffer (leaner than redis-py's general packer)."""
        encoding, errors = self._encoding
        out: list[bytes] = []
        append = out.append
        for args in commands:
            append(b"*%d\r\n" % len(args))
            for arg in args:
                kind = arg.__class__
                if kind is str:
                    arg = arg.encode(encoding, errors)
                elif kind is int:
                    arg = b"%d" % arg
                elif kind is not bytes:
                    arg = (str(int(arg)) if kind is bool else str(arg)).encode(encoding, errors)
                append(b"$%d\r\n%b\r\n" % (len(arg), arg))
        return b"".join(out)

    def _check_on_disk(self, replies: list[Any]) -> list[Any]:
        """Strip the WAITAOF reply; when it says the writes are not on disk, fail the calls."""
        synced, replies = replies[-1], replies[:-1]
        if isinstance(synced, ResponseError):
            # Redis before 7.2 has no WAITAOF, and it needs appendonly: the server's own fsync policy rules
            if self._waitaof is not False:
                self._waitaof = False
                _log.warning("WAITAOF unavailable: durability='full' relies on the server's fsync", error=str(synced))
        elif isinstance(synced, list) and synced and synced[0] == 0:
            lost = StoreUnavailable(f"{self._store!r}: writes not fsynced within {_WAITAOF_TIMEOUT_MS} ms")
            replies = [reply if isinstance(reply, BaseException) else lost for reply in replies]
        elif isinstance(synced, list):
            self._waitaof = True
        return replies

    async def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await self._store.client.connection_pool.release(connection)
