"""Logging through the standard ``logging`` module, under the ``durapod`` logger.

durapod is a library: it never configures logging. Its records go to ``logging.getLogger("durapod")``
(children such as ``durapod.worker``), which carries a ``NullHandler`` so that a program that configures
nothing sees nothing from durapod, not even warnings through logging's last-resort handler. An
application that configures logging (with basicConfig or dictConfig at INFO, a
structlog stdlib setup...) gets every record with these attributes:

- ``job_id``, ``attempt`` and ``worker_id``: always present (None when a record is not about a job);
- ``durapod_event``: the event name (``"job failed"``), without the fields;
- ``durapod_fields``: every field of the record as a dict.

The message reads ``event key=value ...``. Level checks come first, so a disabled level costs one call.
"""

from __future__ import annotations

import logging
from typing import Any, Final

__all__ = ["Logger", "get_logger"]

_STANDARD: Final = ("job_id", "attempt", "worker_id")

logging.getLogger("durapod").addHandler(logging.NullHandler())


class Logger:
    """A logger with fields bound to it (``bind`` returns a new one), rendering ``event key=value``.

    Example:
        >>> log = get_logger("durapod.worker").bind(worker_id="w-1")
        >>> log.info("worker started", agent="triage")
    """

    __slots__ = ("_fields", "_logger")

    def __init__(self, logger: logging.Logger, fields: dict[str, Any] | None = None) -> None:
        self._logger = logger
        self._fields = fields or {}

    def bind(self, **fields: Any) -> Logger:
        """A logger whose records carry ``fields`` as well."""
        return Logger(self._logger, {**self._fields, **fields})

    def is_enabled_for(self, level: int) -> bool:
        """True if a record of ``level`` would be handled (cheap: check before building costly fields)."""
        return self._logger.isEnabledFor(level)

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` at DEBUG."""
        if self._logger.isEnabledFor(logging.DEBUG):
            self._emit(logging.DEBUG, event, fields, False)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at INFO."""
        if self._logger.isEnabledFor(logging.INFO):
            self._emit(logging.INFO, event, fields, False)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` at WARNING."""
        if self._logger.isEnabledFor(logging.WARNING):
            self._emit(logging.WARNING, event, fields, False)

    def error(self, event: str, **fields: Any) -> None:
        """Log ``event`` at ERROR."""
        if self._logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, event, fields, False)

    def exception(self, event: str, **fields: Any) -> None:
        """Log ``event`` at ERROR with the exception being handled."""
        if self._logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, event, fields, True)

    def _emit(self, level: int, event: str, fields: dict[str, Any], exc_info: bool) -> None:
        merged = {**self._fields, **fields} if fields else self._fields
        extra: dict[str, Any] = {name: merged.get(name) for name in _STANDARD}
        extra["durapod_event"] = event
        extra["durapod_fields"] = merged
        if merged:
            rendered = " ".join(f"{key}={value!r}" for key, value in merged.items())
            message = f"{event} {rendered}"
        else:
            message = event
        try:
            self._logger.log(level, "%s", message, extra=extra, exc_info=exc_info, stacklevel=3)
        except Exception:  # pragma: no cover - a broken handler must never break a job
            return


def get_logger(name: str = "durapod", **fields: Any) -> Logger:
    """The durapod logger ``name`` (a child of ``durapod``), with ``fields`` bound."""
    if name != "durapod" and not name.startswith("durapod."):
        raise ValueError(f"durapod loggers live under 'durapod', got {name!r}")
    return Logger(logging.getLogger(name), fields)
