"""Running the app with uvicorn so that open event streams end with a final event on shutdown."""

from __future__ import annotations

import asyncio
import socket

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
    """

    def __init__(self, config: uvicorn.Config, app: DurapodApp) -> None:
        super().__init__(config)
        self.durapod_app = app
        self.startup_done = asyncio.Event()

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
    """Serve ``app`` with uvicorn until SIGINT or SIGTERM."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on")
    await Server(config, app).serve()
