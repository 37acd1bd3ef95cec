"""The cluster's tables in PostgreSQL (docs/cluster.md), made by the first instance to connect.

The lease invariant is the database's own: a constraint trigger checks, in the transaction that
grows an instance's share of a limit, that the allowances of every instance plus the reserves of
the live leases stay within the limit. Writers lock the limit's row first, so they take turns.
"""

from __future__ import annotations

#: Bumped when a table changes shape; an instance refuses a database made by another version.
VERSION = 1

DDL = """
CREATE TABLE IF NOT EXISTS fp_meta (
    name text PRIMARY KEY,
    value text NOT NULL
);

-- A limit the instances share: key is <field>|<scope> (fixproxy/core/cluster.py).
CREATE TABLE IF NOT EXISTS fp_limit (
    key text PRIMARY KEY,
    value numeric NOT NULL CHECK (value >= 0),
    set_by text NOT NULL,
    set_at timestamptz NOT NULL DEFAULT now(),
    -- An instance short of headroom (it refused an order that did not fit) says so until short_until:
    -- the others give up their reserves and unused allowance meanwhile, so the instances can reach
    -- the limit together.
    short_by text NOT NULL DEFAULT '',
    short_until timestamptz NOT NULL DEFAULT '-infinity'
);

-- One instance's share of one limit. bound: the most it may use, committed before it uses it
-- (counted whatever becomes of the instance: it is an upper bound of its orders and positions).
-- reserve: headroom kept for it, counted only while the lease lives (expires_at).
-- used: what it used at its last report (shown; never trusted for the invariant).
CREATE TABLE IF NOT EXISTS fp_lease (
    key text NOT NULL REFERENCES fp_limit (key) ON DELETE CASCADE,
    instance text NOT NULL,
    bound numeric NOT NULL DEFAULT 0 CHECK (bound >= 0),
    reserve numeric NOT NULL DEFAULT 0 CHECK (reserve >= 0),
    used numeric NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (key, instance)
);

CREATE OR REPLACE FUNCTION fp_lease_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lim numeric;
    total numeric;
    grew boolean;
BEGIN
    grew := TG_OP = 'INSERT'
        OR NEW.bound > OLD.bound
        OR (NEW.reserve > OLD.reserve AND NEW.expires_at > now())
        OR (OLD.expires_at <= now() AND NEW.expires_at > now() AND NEW.reserve > 0);
    IF NOT grew THEN
        RETURN NULL;  -- giving back, or renewing no more than was held, is always allowed
    END IF;
    SELECT value INTO lim FROM fp_limit WHERE key = NEW.key FOR UPDATE;
    SELECT coalesce(sum(bound + CASE WHEN expires_at > now() THEN reserve ELSE 0 END), 0)
        INTO total FROM fp_lease WHERE key = NEW.key;
    IF total > lim THEN
        RAISE EXCEPTION 'fixproxy lease: shares of % would reach %, above its limit %', NEW.key, total, lim
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

DO $$ BEGIN
    CREATE CONSTRAINT TRIGGER fp_lease_within_limit AFTER INSERT OR UPDATE ON fp_lease
        DEFERRABLE INITIALLY IMMEDIATE FOR EACH ROW EXECUTE FUNCTION fp_lease_check();
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

-- Each instance's heartbeat and what it shows of itself (sessions, usage, health) for the firm-wide view.
CREATE TABLE IF NOT EXISTS fp_instance (
    instance text PRIMARY KEY,
    started_at timestamptz NOT NULL,
    heartbeat timestamptz NOT NULL,
    status jsonb NOT NULL DEFAULT '{}'
);

-- Risk-desk commands (halt, resume, reducing, limit and mode changes, reference prices) made on one
-- instance, for every other to apply (NOTIFY fp_command carries the id).
CREATE TABLE IF NOT EXISTS fp_command (
    id bigserial PRIMARY KEY,
    origin text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    event jsonb NOT NULL
);

-- Positions and fills of each instance, from its journal (fixproxy/cluster/mirror.py).
CREATE TABLE IF NOT EXISTS fp_position (
    instance text NOT NULL,
    account text NOT NULL,
    symbol text NOT NULL,
    qty numeric NOT NULL,
    avg_cost numeric NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, account, symbol)
);

CREATE TABLE IF NOT EXISTS fp_fill (
    instance text NOT NULL,
    exec_id text NOT NULL,
    session text NOT NULL,
    account text NOT NULL,
    symbol text NOT NULL,
    side text NOT NULL,
    qty numeric NOT NULL,
    price numeric NOT NULL,
    ts_ns bigint NOT NULL,
    active boolean NOT NULL DEFAULT true,  -- false once the venue busted it (ExecType H)
    PRIMARY KEY (instance, exec_id)
);

-- How far each instance's mirror has read its journal (segment, byte offset).
CREATE TABLE IF NOT EXISTS fp_mirror (
    instance text PRIMARY KEY,
    segment integer NOT NULL,
    "offset" bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""


def ensure(conn: object) -> None:
    """Make the tables (idempotent; serialised by an advisory lock so two instances starting together
    do not race), and check the schema version. ``conn``: a psycopg connection in autocommit mode."""
    import psycopg

    assert isinstance(conn, psycopg.Connection)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7263540011)")
        conn.execute(DDL)
        conn.execute(
            "INSERT INTO fp_meta (name, value) VALUES ('schema_version', %s) ON CONFLICT (name) DO NOTHING",
            (str(VERSION),),
        )
        row = conn.execute("SELECT value FROM fp_meta WHERE name = 'schema_version'").fetchone()
    if row is None or row[0] != str(VERSION):
        raise RuntimeError(
            f"the cluster database has schema version {row[0] if row else '?'}; this fixproxy uses {VERSION}"
        )
