"""Running the app with uvicorn so that open event streams end with a final event on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from durapod.web._app import DurapodApp

__all__ = ["Server", "serve"]


class Server(uvicorn.Server):
    """A uvicorn server that ends the app's open event streams (``shutdown`` event) when it stops.

    Plain uvicorn waits for every open response before it stops, and an event stream never ends by
    itself while its job runs: without this, a shutdown would hang or cut the streams without a word.
    ``config.app`` may be another app that mounts ``app`` (a FastAPI service).

    Attributes:
        durapod_app: the app whose streams it ends.
        startup_done: set once startup has finished; ``started`` then tells whether it listens.
        reraise_signals: as uvicorn does, raise the SIGINT or SIGTERM that stopped it again once it has
            stopped (False: return normally, as ``durapod ui`` does).
    """

    def __init__(self, config: uvicorn.Config, app: DurapodApp, *, reraise_signals: bool = True) -> None:
        super().__init__(config)
        self.durapod_app = app
        self.startup_done = asyncio.Event()
        self.reraise_signals = reraise_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Handle SIGINT and SIGTERM as uvicorn does while serving; re-raise them after only if asked."""
        with super().capture_signals():
            try:
                yield
            finally:
                captured = getattr(self, "_captured_signals", None)
                if not self.reraise_signals and isinstance(captured, list):
                    captured.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then set :attr:`startup_done`."""
        try:
            await super().startup(sockets)
        finally:
            self.startup_done.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """End the event streams, then shut down as uvicorn does."""
        self.durapod_app.close_streams()
        await super().shutdown(sockets)


async def serve(app: DurapodApp, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn until SIGINT or SIGTERM, then return.

    Raises:
        OSError: uvicorn could not listen there (it logged why).
    """
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on")
    server = Server(config, app, reraise_signals=False)
    await server.serve()
    if not server.started:
        raise OSError(f"could not listen on {host}:{port}")
