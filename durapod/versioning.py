"""Code versioning: ``ctx.patched`` lets jobs in flight keep the code path their journal recorded.

``ctx.patched(change_id)`` takes a journal position, like a step. At a position its journal already holds
something else (a step recorded by the code from before the change), it returns False and gives the
position back, so the replay continues on the old path. Everywhere else (a first execution, or a replay
past the end of what was recorded) it returns True, and a marker step named :data:`PATCH_STEP` (its
result the change id) is journaled with the next step the agent records. A position left empty (the job
crashed before the marker was written) reads as the marker: True again. This is Temporal's ``patched``.

Once no job that recorded the old path is left, replace ``patched`` with ``ctx.deprecate_patch(change_id)``
and drop the old path: it takes the marker's position where a journal holds it, and nothing otherwise.

``DurableAgent(version=...)`` records the code version in every job's metadata under :data:`VERSION_KEY`
(``Job.code_version``), so ``list(version=...)`` and ``durapod ls --version`` find the jobs an old version
started.
"""

from __future__ import annotations

from typing import Final

from durapod.models import StepRecord

__all__ = ["PATCH_STEP", "VERSION_KEY", "check_change_id", "is_marker"]

#: The journal name of a ``ctx.patched`` marker; its result is the change id.
PATCH_STEP: Final = "durapod.patch"
#: The metadata key that holds the version of the code that started a job (``DurableAgent(version=)``).
VERSION_KEY: Final = "durapod.version"


def check_change_id(change_id: object) -> str:
    """``change_id`` if it is a non-empty str, else ``ValueError``/``TypeError`` naming it."""
    if not isinstance(change_id, str):
        raise TypeError(f"a change id must be a str, not {change_id!r}")
    if not change_id:
        raise ValueError("a change id must not be empty")
    return change_id


def is_marker(record: StepRecord, change_id: str) -> bool:
    """True if ``record`` is the ``patched`` marker of ``change_id``."""
    return record.name == PATCH_STEP and record.result == change_id
