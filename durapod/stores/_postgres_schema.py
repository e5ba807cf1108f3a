"""The Postgres schema a PostgresStore lives in: its name filled into the statements, its NOTIFY channels,
and its migration to the version this durapod knows (the migrations are in
:mod:`durapod.stores._postgres_sql`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from durapod.errors import StoreError
from durapod.stores._postgres_sql import _MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    import asyncpg

_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,40}")


class _Schema:
    """The schema ``name``: statements with its quoted name for ``{s}`` (each made once), its channels.

    Raises:
        ValueError: ``name`` is not a valid schema name (naming it).
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
            raise ValueError(f"invalid schema {name!r}: expected [a-z_][a-z0-9_]*, at most 41 characters")
        self.name = name
        #: NOTIFY channel of writes that make a job claimable (payload: the agent)
        self.wake_channel = f"{name}_wake"
        #: NOTIFY channel of control requests (payload: the job id)
        self.control_channel = f"{name}_control"
        self._sql_cache: dict[str, str] = {}

    def sql(self, template: str) -> str:
        """``template`` with the quoted schema name for ``{s}``."""
        sql = self._sql_cache.get(template)
        if sql is None:
            sql = self._sql_cache[template] = template.replace("{s}", f'"{self.name}"')
        return sql

    async def migrate(self, connection: asyncpg.pool.PoolConnectionProxy[Any], label: str) -> None:
        """Create the schema's tables, or bring them to :data:`SCHEMA_VERSION`; ``label`` names the store
        in errors.

        Raises:
            StoreError: the schema is newer than this durapod knows.
        """
        # one migrator at a time across processes: a transaction-scoped advisory lock on the schema's name
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"durapod:{self.name}")
            await connection.execute(self.sql("CREATE SCHEMA IF NOT EXISTS {s}"))
            await connection.execute(
                self.sql("CREATE TABLE IF NOT EXISTS {s}.migrations (version integer PRIMARY KEY)")
            )
            version = await connection.fetchval(self.sql("SELECT coalesce(max(version), 0) FROM {s}.migrations"))
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{label} has schema version {version}, newer than the version {SCHEMA_VERSION} this"
                    " durapod knows; upgrade durapod"
                )
            for number, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    await connection.execute(self.sql(statement))
                await connection.execute(self.sql("INSERT INTO {s}.migrations (version) VALUES ($1)"), number)
