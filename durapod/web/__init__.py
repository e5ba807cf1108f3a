"""The HTTP API and dashboard of durapod's jobs: an ASGI app (Starlette), installed with ``durapod[web]``.

``create_app(store_or_client, token=None, read_only=False)`` returns it: mount it in FastAPI with
``app.mount("/durapod", create_app(store))`` or run it alone with ``durapod ui --store URL``.

JSON API (every job view leaves out lease tokens, epochs and versions):

- ``GET /api/jobs?status=running,paused&agent=NAME&metadata.KEY=VALUE&limit=N&cursor=C`` -> ``{"jobs",
  "cursor"}``, newest first; ``GET /api/jobs/{id}``; ``GET /api/jobs/{id}/steps`` (the step timeline);
- ``POST /api/jobs`` ``{"id", "input", "agent", "metadata"}`` -> 201 (409 for an id with another input);
- ``POST /api/jobs/{id}/pause``, ``/resume`` ``{"input": ...}``, ``/cancel`` -> 200 with the job; 404 for
  an unknown job, 409 for a request the job's status refuses, 422 for bad input;
- ``GET /api/jobs/{id}/events`` -> ``text/event-stream`` (``id:`` = seq, ``event:`` = type; resumes after
  ``Last-Event-ID`` or ``?after=``; ``?until=settled`` ends at the next settle);
- ``GET /api/schedules``; ``GET /api/health``.

Importing ``durapod`` never imports this package (nor Starlette).
"""

from durapod.web._app import DurapodApp, create_app
from durapod.web._serve import Server, serve

__all__ = ["DurapodApp", "Server", "create_app", "serve"]
