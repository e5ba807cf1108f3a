"""PostgresStore's SQL: the schema's migrations and the statements it runs.

``{s}`` stands for the quoted schema name in every statement (the store fills it in). Times are integer
microseconds since the Unix epoch; the status sets come from the lifecycle table in :mod:`durapod.models`.
"""

from __future__ import annotations

from typing import Final

from durapod.models import CLAIMABLE, TERMINAL, JobStatus

_CLAIMABLE: Final = sorted(str(status.value) for status in CLAIMABLE)
_EXPIRING: Final = sorted(str(status.value) for status in (TERMINAL | {JobStatus.FAILED}))
# ``{s}`` is the quoted schema name in every statement below
_STEPS: Final = "(SELECT count(*) FROM {s}.steps WHERE steps.job_id = jobs.id)::int"
_JOB_COLUMNS: Final = "id, record, owner, lease_until, epoch, version, " + _STEPS

#: ``_MIGRATIONS[n]`` takes a schema from version ``n`` to ``n + 1``; append, never edit.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE {s}.jobs (
            id text PRIMARY KEY,
            agent text NOT NULL,
            status text NOT NULL,
            created_at bigint NOT NULL,
            owner text,
            lease_until bigint,
            epoch bigint NOT NULL,
            version bigint NOT NULL,
            finished_at bigint,
            record text NOT NULL
        )""",
        "CREATE INDEX jobs_status ON {s}.jobs (status, created_at, id)",
        "CREATE INDEX jobs_agent ON {s}.jobs (agent, status, created_at, id)",
        "CREATE INDEX jobs_created ON {s}.jobs (created_at, id)",
        "CREATE INDEX jobs_finished ON {s}.jobs (finished_at) WHERE finished_at IS NOT NULL",
        "CREATE TABLE {s}.steps (job_id text NOT NULL, idx integer NOT NULL, record text NOT NULL,"
        " PRIMARY KEY (job_id, idx))",
        "CREATE TABLE {s}.events (job_id text NOT NULL, seq bigint NOT NULL, record text NOT NULL,"
        " PRIMARY KEY (job_id, seq))",
        """CREATE TABLE {s}.controls (
            id bigserial PRIMARY KEY,
            job_id text NOT NULL,
            kind text NOT NULL,
            payload text NOT NULL,
            requested_at bigint NOT NULL
        )""",
        "CREATE INDEX controls_job ON {s}.controls (job_id)",
        "CREATE TABLE {s}.schedules (agent text NOT NULL, name text NOT NULL, version bigint NOT NULL,"
        " record text NOT NULL, PRIMARY KEY (agent, name))",
        "CREATE TABLE {s}.workers (id text PRIMARY KEY, token text NOT NULL, info text NOT NULL,"
        " lease_until bigint NOT NULL)",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

# a job created with a status_seq ($11, NULL for none) logs its job_status event: its status_head ($12), the
# record written, '}' (the record is sent once); only the jobs inserted log one, and a seq already logged
# keeps its first event. $13: the claimable statuses, $14: the wake channel; a claimable job with no lease
# wakes its agent's workers (NOTIFY is sent on commit, once per agent)
_CREATE_ALL_SQL: Final = """
    WITH created AS (
        INSERT INTO {s}.jobs (id, agent, status, created_at, owner, lease_until, epoch, version, finished_at,
            record)
        SELECT id, agent, status, created_at, owner, lease_until, epoch, version, finished_at, record
        FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
            $7::bigint[], $8::bigint[], $9::bigint[], $10::text[])
            AS c(id, agent, status, created_at, owner, lease_until, epoch, version, finished_at, record)
        ON CONFLICT (id) DO NOTHING RETURNING id, agent, status, lease_until, record
    ), logged AS (
        INSERT INTO {s}.events (job_id, seq, record)
        SELECT created.id, l.status_seq, l.status_head || created.record || '}'
        FROM unnest($1::text[], $11::bigint[], $12::text[]) AS l(id, status_seq, status_head)
        JOIN created ON created.id = l.id
        WHERE l.status_seq IS NOT NULL
        ON CONFLICT DO NOTHING
    )
    SELECT id, CASE WHEN status = ANY($13::text[]) AND lease_until IS NULL THEN pg_notify($14, agent) END
    FROM created"""
# events ($15-$17: job id, seq, record) are logged for the jobs saved, then a job's job_status event when
# it has a status_seq: its status_head, the record written, '}' (the record is sent once); in that order,
# so that the first of a seq stays. A job saved claimable with no lease wakes its agent's workers ($18: the
# claimable statuses, $19: the wake channel)
_SAVE_ALL_SQL: Final = """
    WITH saved AS (
        UPDATE {s}.jobs SET
            agent = u.agent, status = u.status, created_at = u.created_at, epoch = u.epoch, version = u.version,
            record = u.record,
            lease_until = CASE WHEN u.settled THEN NULL WHEN jobs.owner IS NOT DISTINCT FROM u.owner
                AND jobs.epoch = u.epoch THEN jobs.lease_until ELSE u.lease_until END,
            owner = u.owner,
            finished_at = u.finished_at
        FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[],
            $8::bigint[], $9::bigint[], $10::boolean[], $11::text[], $12::bigint[], $13::bigint[], $14::text[])
            AS u(id, expected, agent, status, created_at, owner, epoch, version, lease_until, settled, record,
                finished_at, status_seq, status_head)
        WHERE jobs.id = u.id AND jobs.version = u.expected
        RETURNING jobs.id, jobs.agent, jobs.status, jobs.owner, jobs.lease_until, u.status_seq,
            u.status_head || u.record || '}' AS status_event
    ), logged AS (
        INSERT INTO {s}.events (job_id, seq, record)
        SELECT l.job_id, l.seq, l.record FROM (
            SELECT e.job_id, e.seq, e.record, e.n
            FROM unnest($15::text[], $16::bigint[], $17::text[]) WITH ORDINALITY AS e(job_id, seq, record, n)
            WHERE e.job_id IN (SELECT id FROM saved)
            UNION ALL
            SELECT id, status_seq, status_event, NULL FROM saved WHERE status_seq IS NOT NULL
        ) AS l ORDER BY l.n NULLS LAST
        ON CONFLICT DO NOTHING
    )
    SELECT id, lease_until, (SELECT count(*) FROM {s}.steps WHERE steps.job_id = saved.id)::int,
        CASE WHEN status = ANY($18::text[]) AND lease_until IS NULL THEN pg_notify($19, agent) END
    FROM saved"""
# a step is journaled only if its job is running with its epoch (the row share-locked, so a concurrent
# claim waits or wins); events ($5-$7: job id, seq, record) are logged for the steps journaled. A step's
# own step event (its record's event_seq) is not logged: _READ_LOG_SQL derives it
_APPEND_STEPS_SQL: Final = """
    WITH fenced AS (
        SELECT a.job_id, a.idx, a.record FROM unnest($1::text[], $2::integer[], $3::text[], $4::bigint[])
            AS a(job_id, idx, record, epoch)
        JOIN {s}.jobs ON jobs.id = a.job_id AND jobs.status = 'running' AND jobs.epoch = a.epoch
        FOR SHARE OF jobs
    ), added AS (
        INSERT INTO {s}.steps (job_id, idx, record) SELECT job_id, idx, record FROM fenced
        ON CONFLICT DO NOTHING RETURNING job_id
    ), logged AS (
        INSERT INTO {s}.events (job_id, seq, record)
        SELECT e.job_id, e.seq, e.record FROM unnest($5::text[], $6::bigint[], $7::text[]) AS e(job_id, seq, record)
        WHERE e.job_id IN (SELECT job_id FROM added)
        ON CONFLICT DO NOTHING
    )
    SELECT job_id FROM added"""
_INSERT_EVENTS_SQL: Final = (
    "INSERT INTO {s}.events (job_id, seq, record) SELECT $1, seq, record"
    " FROM unnest($2::bigint[], $3::text[]) AS e(seq, record) ON CONFLICT DO NOTHING"
)
_CLAIMABLE_SQL: Final = "status = ANY($2::text[]) AND (lease_until IS NULL OR lease_until < $3 OR ($4 AND owner = $5))"
_WRITE_CLAIM_SQL: Final = (
    "UPDATE {s}.jobs SET owner = $2, lease_until = $3, epoch = $4, version = $5, record = $6 WHERE id = $1"
)
