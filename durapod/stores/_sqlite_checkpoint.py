"""The SQLite store's checkpointer: a thread that copies the write-ahead log into the database file, so
that no write waits for that copy.

In WAL mode SQLite appends every commit to the ``-wal`` file, and by default the connection whose commit
takes the log past 1,000 pages copies the log into the database file then and there, with an fsync of
each file: a stall of several milliseconds for whichever writes were in that commit (on a 3-step job, one
``run()`` in fifty). Here the writer connection leaves that copy to this thread's connection
(``PRAGMA wal_checkpoint(PASSIVE)``, which never blocks the writer nor a reader) and nudges it after a
commit, at most every :attr:`_Checkpointer.interval` seconds. A passive checkpoint can let the log grow
while writes keep coming (SQLite starts the log over only once a checkpoint has caught up before the next
commit), so the writer keeps SQLite's own checkpoint as a backstop, at :data:`BACKSTOP_PAGES` pages: by
then this thread has copied nearly all of it, and the backstop has little left to do.

A checkpoint that fails (the file is busy, or gone) is left for the next nudge or the backstop: it loses
nothing, since every commit is in the log already.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Final

from durapod._log import get_logger

#: the writer connection's ``wal_autocheckpoint``: SQLite checkpoints in the writer once the log holds this
#: many pages (about 16 MB), a backstop for when this thread never catches up
BACKSTOP_PAGES: Final = 4000

_log = get_logger("durapod.stores.sqlite")


class _Checkpointer:
    """A thread with its own connection that runs ``PRAGMA wal_checkpoint(PASSIVE)`` when nudged.

    Args:
        path: the store's path, as logs name it.
        conn: the thread's connection, opened by the writer next to its own (so that both are on the file
            the store opened, even if it is deleted or replaced later); closed when the thread stops.
    """

    #: a commit nudges this thread if the last nudge is at least this old (seconds): often enough
    #: that the backstop finds little left to copy, seldom enough that a page written again and again is
    #: copied once, whatever the load
    interval = 0.010

    def __init__(self, path: str, conn: sqlite3.Connection) -> None:
        self._path = path
        self._conn = conn
        self._wake = threading.Event()
        self._stopping = False
        self._nudged_at = time.monotonic()
        #: checkpoints run so far, failed ones included (a test waits on ``ran`` for one)
        self.runs = 0
        self.ran = threading.Condition()
        self._thread = threading.Thread(target=self._main, name="durapod-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """The writer committed: ask for a checkpoint if the last was asked for :attr:`interval` ago."""
        now = time.monotonic()
        if now - self._nudged_at >= self.interval:
            self._nudged_at = now
            self._wake.set()

    def stop(self) -> None:
        """Stop the thread once its checkpoint in progress (if any) is done, and close its connection."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _main(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # nothing is lost: the next nudge, or the backstop, copies it
                    _log.debug("background checkpoint failed", path=self._path, error=repr(exc))
                with self.ran:
                    self.runs += 1
                    self.ran.notify_all()
        finally:
            self._conn.close()
