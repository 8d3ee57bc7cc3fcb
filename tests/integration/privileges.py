"""Which statements a connection is refused: for the tests of what each role and edition may do."""

from collections.abc import Iterable
from typing import LiteralString

import psycopg


async def refused(
    conn: psycopg.AsyncConnection,
    statements: Iterable[LiteralString],
    *errors: type[psycopg.Error],
) -> list[LiteralString]:
    """The `statements` that `conn` (in autocommit) is refused with one of `errors` (by default
    InsufficientPrivilege), in order; any other error is raised."""
    caught = errors or (psycopg.errors.InsufficientPrivilege,)
    refusals = []
    for statement in statements:
        try:
            await conn.execute(statement)
        except caught:
            refusals.append(statement)
    return refusals


# What `role` holds, one line each: ownership of and privileges on the project's objects in
# schema public (the extension's own functions and tables left out: they check ownership
# themselves), CREATE and TEMPORARY on the database, CREATE on the schema, and EXECUTE on the
# system functions db/init.sql takes from PUBLIC (large objects, advisory locks).
HELD = """
WITH objects AS (
    SELECT c.oid, c.relname, c.relkind, c.relowner FROM pg_class AS c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p', 'S')
      AND NOT EXISTS (SELECT FROM pg_depend AS d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
),
privileges AS (
    SELECT 'owner of ' || o.relname AS held
    FROM objects AS o WHERE pg_has_role(%(role)s, o.relowner, 'USAGE')
    UNION ALL
    SELECT 'table ' || o.relname || ' ' || p.name
    FROM objects AS o,
         unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES',
                      'TRIGGER']) AS p (name)
    WHERE o.relkind <> 'S' AND has_table_privilege(%(role)s, o.oid, p.name)
    UNION ALL
    SELECT 'sequence ' || o.relname || ' ' || p.name
    FROM objects AS o, unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) AS p (name)
    WHERE o.relkind = 'S' AND has_sequence_privilege(%(role)s, o.oid, p.name)
    UNION ALL
    SELECT 'column ' || o.relname || '.' || a.attname || ' ' || p.name
    FROM objects AS o
    JOIN pg_attribute AS a ON a.attrelid = o.oid AND a.attnum > 0 AND NOT a.attisdropped,
         unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'REFERENCES']) AS p (name)
    WHERE o.relkind <> 'S' AND has_column_privilege(%(role)s, o.oid, a.attnum, p.name)
      AND NOT has_table_privilege(%(role)s, o.oid, p.name)
    UNION ALL
    SELECT 'function ' || f.oid::regprocedure::text
    FROM pg_proc AS f
    WHERE f.pronamespace = 'public'::regnamespace
      AND has_function_privilege(%(role)s, f.oid, 'EXECUTE')
      AND NOT EXISTS (SELECT FROM pg_depend AS d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = f.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'database ' || p.name
    FROM unnest(ARRAY['CREATE', 'TEMPORARY']) AS p (name)
    WHERE has_database_privilege(%(role)s, current_database(), p.name)
    UNION ALL
    SELECT 'schema public CREATE' WHERE has_schema_privilege(%(role)s, 'public', 'CREATE')
    UNION ALL
    SELECT 'function ' || f::text
    FROM unnest(ARRAY[
        'lo_creat(integer)', 'lo_create(oid)', 'lo_from_bytea(oid, bytea)', 'lo_import(text)',
        'lo_put(oid, bigint, bytea)', 'lowrite(integer, bytea)', 'lo_unlink(oid)',
        'pg_advisory_lock(bigint)', 'pg_advisory_lock_shared(bigint)',
        'pg_try_advisory_lock(bigint)', 'pg_advisory_xact_lock(bigint)',
        'pg_advisory_lock(integer, integer)', 'pg_try_advisory_xact_lock(integer, integer)'
    ]::regprocedure[]) AS f
    WHERE has_function_privilege(%(role)s, f, 'EXECUTE')
)
SELECT held FROM privileges ORDER BY held
"""


async def held_privileges(conn: psycopg.AsyncConnection, role: str) -> list[str]:
    """Every privilege `role` holds that HELD enumerates, one line each, sorted."""
    cursor = await conn.execute(HELD, {"role": role})
    return [row[0] for row in await cursor.fetchall()]
