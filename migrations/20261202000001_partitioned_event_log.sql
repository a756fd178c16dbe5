-- The event log is partitioned by day, so that old events go as whole partitions (never by
-- DELETE), and nothing a worker does per batch grows with the number of days kept.
--
-- Why by `received_at` (our clock), not by the provider's `occurred_at`:
--   * a replay selects a received window, and partitions by received day prune it exactly;
--   * a provider's clock (or a late retry of an old event) would put rows before the oldest or
--     after the newest partition, which then needs a DEFAULT partition, and a day's partition
--     cannot be created while the default holds rows of that day;
--   * retention means "events we received more than N days ago", the same rule for every
--     provider, whatever their clocks say.
-- The cost: a partitioned table cannot have a unique key without the partition key in it, so
-- UNIQUE (provider, event_id) cannot hold across days. Idempotency is kept by `store_events`
-- instead: it takes an advisory lock per event id (sorted), then inserts only the events no
-- partition of the dedup window holds (72 hours by default; Svix/Resend retries for ~27 hours,
-- Telnyx for less). A retry of an event stored yesterday at 23:59 is found in yesterday's
-- partition. Replayed events probe every partition. See README "Data lifecycle".
--
-- What else changed for size (bench/storage.sql, README "Storage per event"):
--   * no `id` column (PostgreSQL 15 cannot put an identity on a partitioned table, and nothing
--     needs it): rows are keyed by (provider, event_id, received_at);
--   * the two lookups are hash indexes (event id; message id), which are a third of the B-tree
--     size for these long text keys, and a B-tree on received_at for replay's keyset;
--   * timestamps first, so the row has no alignment padding.
--
-- `refresh_recipients` now merges only the events it is given a received window for (a worker:
-- its own transaction's rows, one partition) into the recipient's current state, by the same
-- monotonic rule as before. Events that arrive before their recipient is registered are noted
-- in `early_messages`, so registration reads only those messages, within their received window.

ALTER TABLE delivery_events RENAME TO delivery_events_before_partitioning;

CREATE TABLE delivery_events (
    received_at         timestamptz NOT NULL DEFAULT now(),
    occurred_at         timestamptz NOT NULL,
    provider            text NOT NULL,
    event_id            text NOT NULL,
    provider_message_id text,
    event_type          text NOT NULL,
    status              text REFERENCES delivery_statuses (status),
    engagement          text CHECK (engagement IN ('opened', 'clicked')),
    error_code          text,
    error_description   text,
    provider_status     text,
    -- The provider's body exactly as received (json keeps the text; jsonb would rewrite it).
    payload             json NOT NULL,
    CONSTRAINT delivery_events_status_or_engagement CHECK (status IS NULL OR engagement IS NULL)
) PARTITION BY RANGE (received_at);

CREATE INDEX delivery_events_by_event_id ON delivery_events USING hash (event_id);
CREATE INDEX delivery_events_by_message ON delivery_events USING hash (provider_message_id);
CREATE INDEX delivery_events_by_received ON delivery_events (received_at);

-- Messages whose events arrived before their recipient was registered; registration reads these
-- messages' events only, and only in [first_received_at, last_received_at]. Rows are written by
-- workers (a batch touching a message no recipient has yet), never by registration (which may
-- lack the privilege), and trimmed by `hookline maintain` once the message has a recipient or
-- its events are past retention.
CREATE TABLE early_messages (
    provider            text NOT NULL,
    provider_message_id text NOT NULL,
    first_received_at   timestamptz NOT NULL,
    last_received_at    timestamptz NOT NULL,
    PRIMARY KEY (provider, provider_message_id)
);

-- Whoever could read or write the old table can use the new one, and its early-event notes (which
-- workers write and registration reads).
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT a.privilege_type, r.rolname
        FROM pg_class c, aclexplode(c.relacl) a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = 'delivery_events_before_partitioning'::regclass
          AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON delivery_events TO %I', g.privilege_type, g.rolname);
        IF g.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE') THEN
            EXECUTE format('GRANT %s ON early_messages TO %I', g.privilege_type, g.rolname);
        END IF;
    END LOOP;
END;
$$;

-- The partition of one UTC day, named delivery_events_YYYYMMDD, if it is missing. Created apart
-- and then attached: ATTACH takes SHARE UPDATE EXCLUSIVE on the log, so workers writing to it
-- are not blocked (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE). Returns the name
-- of a partition it created, NULL if it existed.
CREATE FUNCTION create_event_partition(p_day date)
RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    name text := 'delivery_events_' || to_char(p_day, 'YYYYMMDD');
    lower_bound timestamptz := p_day::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(quote_ident(name)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE delivery_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING STORAGE INCLUDING COMPRESSION)', name);
    EXECUTE format('ALTER TABLE delivery_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, lower_bound, lower_bound + interval '1 day');
    RETURN name;
END;
$$;

-- Today's partition and the next `p_days_ahead` days' (UTC), those missing; returns the names
-- created. SECURITY DEFINER so that a worker, which holds no DDL privilege, can keep the days
-- ahead: it can only ever create the partitions this function names.
CREATE FUNCTION create_event_partitions(p_days_ahead integer DEFAULT 7)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    created text;
BEGIN
    -- One creator at a time (class "hkm", as hookline's other lock classes).
    PERFORM pg_advisory_xact_lock(1751870318, 1);
    FOR d IN 0 .. greatest(p_days_ahead, 0) LOOP
        created := create_event_partition(today + d);
        IF created IS NOT NULL THEN
            RETURN NEXT created;
        END IF;
    END LOOP;
END;
$$;

-- Partitions for every day the old table holds, and the week ahead; then the rows.
SELECT create_event_partition(d::date)
FROM generate_series((SELECT min(received_at) AT TIME ZONE 'UTC'
                      FROM delivery_events_before_partitioning)::date,
                     (now() AT TIME ZONE 'UTC')::date,
                     interval '1 day') AS d;
SELECT create_event_partitions(7);

INSERT INTO delivery_events
    (received_at, occurred_at, provider, event_id, provider_message_id, event_type, status,
     engagement, error_code, error_description, provider_status, payload)
SELECT received_at, occurred_at, provider, event_id, provider_message_id, event_type, status,
       engagement, error_code, error_description, provider_status, payload
FROM delivery_events_before_partitioning
ORDER BY id;

INSERT INTO early_messages (provider, provider_message_id, first_received_at, last_received_at)
SELECT d.provider, d.provider_message_id, min(d.received_at), max(d.received_at)
FROM delivery_events d
WHERE d.provider_message_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM recipients r
                  WHERE r.provider = d.provider AND r.provider_message_id = d.provider_message_id)
GROUP BY 1, 2;

DROP TABLE delivery_events_before_partitioning;
ALTER TABLE delivery_events RENAME CONSTRAINT delivery_events_engagement_check1
    TO delivery_events_engagement_check;
ALTER TABLE delivery_events RENAME CONSTRAINT delivery_events_status_fkey1
    TO delivery_events_status_fkey;

-- Stores events not already stored; returns (provider, message id) of each event stored.
-- Parallel arrays, one element per event; of events repeated in the arrays the first is kept.
-- An event counts as stored if a row with its (provider, event_id) was received within
-- `p_window` before now: a worker passes the dedup window, a replay NULL (any time).
--
-- Each event's advisory lock (class "hke", sorted) is taken in its own statement before the
-- insert: a second transaction storing the same event waits for the first to end, and its
-- insert, a later statement with a new snapshot, then sees the row. Lock order across hookline:
-- event locks, then message stripes, then message locks, then batch rows.
CREATE FUNCTION store_events(
    p_provider text[], p_event_id text[], p_message_id text[], p_event_type text[],
    p_status text[], p_engagement text[], p_occurred_at timestamptz[], p_error_code text[],
    p_error_description text[], p_provider_status text[], p_payload text[],
    p_window interval
)
RETURNS TABLE (stored_provider text, stored_message_id text)
LANGUAGE plpgsql AS $$
DECLARE
    -- A constant when the insert is planned, so it is pruned to the window's partitions.
    seen_since timestamptz := coalesce(now() - p_window, '-infinity');
BEGIN
    PERFORM pg_advisory_xact_lock(1751870317, k.h)
    FROM (SELECT DISTINCT hashtext(u.p || E'\x1f' || u.e) AS h
          FROM unnest(p_provider, p_event_id) AS u (p, e)
          ORDER BY 1) AS k;
    RETURN QUERY
    INSERT INTO delivery_events AS d
        (occurred_at, provider, event_id, provider_message_id, event_type, status, engagement,
         error_code, error_description, provider_status, payload)
    SELECT u.occurred_at, u.provider, u.event_id, u.message_id, u.event_type, u.status,
           u.engagement, u.error_code, u.error_description, u.provider_status, u.payload::json
    FROM (
        SELECT DISTINCT ON (a.provider, a.event_id) a.*
        FROM unnest(p_provider, p_event_id, p_message_id, p_event_type, p_status, p_engagement,
                    p_occurred_at, p_error_code, p_error_description, p_provider_status, p_payload)
             WITH ORDINALITY
             AS a (provider, event_id, message_id, event_type, status, engagement, occurred_at,
                   error_code, error_description, provider_status, payload, nth)
        ORDER BY a.provider, a.event_id, a.nth
    ) AS u
    WHERE NOT EXISTS (SELECT 1 FROM delivery_events x
                      WHERE x.event_id = u.event_id AND x.provider = u.provider
                        AND x.received_at >= seen_since)
    RETURNING d.provider, d.provider_message_id;
END;
$$;

-- As before (migration 20261201000002), except for which events it reads:
--   * `p_from`/`p_to` (parallel to the keys; NULL meaning now(), the caller's own rows) bound the
--     received window of each key's events. Several rows for one key merge into one window. A
--     worker passes its own transaction's rows, so the lookup reaches one partition however many
--     days are kept; a replay passes the re-derived rows' days.
--   * registering (`p_registering`), the window is the message's in `early_messages`; a message
--     not there has no stored event to apply.
--   * the events read are merged into the current row by the monotonic rule, which compares the
--     whole (rank, occurred_at, event_id): a recipient's state is the best of every event ever
--     merged into it, so merging only the new ones gives what recomputing from all gave.
--   * a worker notes in `early_messages` the keys no recipient has yet.
DROP FUNCTION refresh_recipients(text[], text[], boolean);
CREATE FUNCTION refresh_recipients(
    p_provider text[],
    p_message_id text[],
    p_registering boolean DEFAULT false,
    p_from timestamptz[] DEFAULT NULL,
    p_to timestamptz[] DEFAULT NULL
)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    changed integer;
    nestloop_was text := current_setting('enable_nestloop');
    jit_was text := current_setting('jit');
    k_provider text[];
    k_message text[];
    k_from timestamptz[];
    k_to timestamptz[];
BEGIN
    IF p_registering THEN
        -- The commit pass holds these already; taking them again costs a counter increment.
        -- Nested loops off: a bulk registration's row estimates are far off. The fenced event
        -- lookup stays a nested loop whatever the setting, which adds disable_cost to the plan,
        -- and that cost must not make PostgreSQL compile it with JIT (seconds, for nothing).
        PERFORM set_config('enable_nestloop', 'off', true);
        PERFORM set_config('jit', 'off', true);
        PERFORM lock_message_stripes(p_provider, p_message_id, true);
        SELECT array_agg(e.provider), array_agg(e.provider_message_id),
               array_agg(e.first_received_at), array_agg(e.last_received_at)
        INTO k_provider, k_message, k_from, k_to
        FROM (SELECT DISTINCT u.p, u.m FROM unnest(p_provider, p_message_id) AS u (p, m)) AS u
        JOIN early_messages e ON e.provider = u.p AND e.provider_message_id = u.m;
    ELSE
        PERFORM lock_message_stripes(p_provider, p_message_id, false);
        PERFORM pg_advisory_xact_lock(k.h)
        FROM (SELECT DISTINCT hashtextextended(u.p || E'\x1f' || u.m, 0) AS h
              FROM unnest(p_provider, p_message_id) AS u (p, m)
              WHERE u.m IS NOT NULL
              ORDER BY 1) AS k;
        SELECT array_agg(k.p), array_agg(k.m), array_agg(k.f), array_agg(k.t)
        INTO k_provider, k_message, k_from, k_to
        FROM (SELECT u.p, u.m, min(coalesce(u.f, now())) AS f, max(coalesce(u.t, now())) AS t
              FROM unnest(p_provider, p_message_id, p_from, p_to) AS u (p, m, f, t)
              WHERE u.m IS NOT NULL
              GROUP BY u.p, u.m
              ORDER BY u.p, u.m) AS k;
    END IF;
    IF k_provider IS NULL THEN
        PERFORM set_config('enable_nestloop', nestloop_was, true);
        PERFORM set_config('jit', jit_was, true);
        RETURN 0;
    END IF;

    PERFORM set_config('hookline.refreshing', 'on', true);
    WITH keys AS (
        SELECT * FROM unnest(k_provider, k_message, k_from, k_to)
                 AS u (provider, message_id, received_from, received_to)
    ),
    agg AS (
        SELECT k.provider, k.message_id,
               max(e.rank) AS rank,
               (array_agg(e.status ORDER BY e.rank DESC, e.occurred_at DESC, e.event_id DESC)
                   FILTER (WHERE e.status IS NOT NULL))[1] AS status,
               (array_agg(e.event_id ORDER BY e.rank DESC, e.occurred_at DESC, e.event_id DESC)
                   FILTER (WHERE e.status IS NOT NULL))[1] AS event_id,
               (array_agg(e.occurred_at ORDER BY e.rank DESC, e.occurred_at DESC, e.event_id DESC)
                   FILTER (WHERE e.status IS NOT NULL))[1] AS occurred_at,
               (array_agg(e.error_code ORDER BY e.rank DESC, e.occurred_at DESC, e.event_id DESC)
                   FILTER (WHERE e.status IS NOT NULL))[1] AS error_code,
               (array_agg(e.error_description ORDER BY e.rank DESC, e.occurred_at DESC, e.event_id DESC)
                   FILTER (WHERE e.status IS NOT NULL))[1] AS error_description,
               (array_agg(e.provider_status ORDER BY e.rank DESC, e.occurred_at DESC, e.event_id DESC)
                   FILTER (WHERE e.status IS NOT NULL))[1] AS provider_status,
               min(e.occurred_at) FILTER (WHERE e.status = 'sent')                 AS sent_at,
               min(e.occurred_at) FILTER (WHERE e.status = 'delivered')            AS delivered_at,
               min(e.occurred_at) FILTER (WHERE e.status IN ('failed', 'bounced')) AS failed_at,
               min(e.occurred_at) FILTER (WHERE e.status = 'complained')           AS complained_at,
               min(e.occurred_at) FILTER (WHERE e.engagement = 'opened')           AS opened_at,
               min(e.occurred_at) FILTER (WHERE e.engagement = 'clicked')          AS clicked_at,
               max(e.occurred_at)                                                  AS last_event_at
        FROM keys k
        CROSS JOIN LATERAL (
            SELECT d.status, d.engagement, d.event_id, d.occurred_at, d.error_code,
                   d.error_description, d.provider_status,
                   (SELECT s.rank FROM delivery_statuses s WHERE s.status = d.status) AS rank
            FROM delivery_events d
            WHERE d.provider_message_id = k.message_id AND d.provider = k.provider
              AND d.received_at >= k.received_from AND d.received_at <= k.received_to
            -- A fence: always a lookup per key, pruned at run time to the key's days, never a
            -- join of every partition (registration turns nested loops off for the rest).
            OFFSET 0
        ) AS e
        GROUP BY k.provider, k.message_id
    ),
    next AS (
        SELECT r.id, w.wins,
               CASE WHEN w.wins THEN a.status ELSE r.status END AS status,
               CASE WHEN w.wins THEN a.event_id ELSE r.status_event_id END AS status_event_id,
               CASE WHEN w.wins THEN a.occurred_at ELSE r.status_at END AS status_at,
               CASE WHEN w.wins THEN a.error_code ELSE r.last_error_code END AS last_error_code,
               CASE WHEN w.wins THEN a.error_description ELSE r.last_error_description END
                   AS last_error_description,
               CASE WHEN w.wins THEN a.provider_status ELSE r.provider_status END
                   AS provider_status,
               LEAST(r.sent_at, a.sent_at)             AS sent_at,
               LEAST(r.delivered_at, a.delivered_at)   AS delivered_at,
               LEAST(r.failed_at, a.failed_at)         AS failed_at,
               LEAST(r.complained_at, a.complained_at) AS complained_at,
               LEAST(r.opened_at, a.opened_at)         AS opened_at,
               LEAST(r.clicked_at, a.clicked_at)       AS clicked_at,
               GREATEST(r.last_event_at, a.last_event_at) AS last_event_at
        FROM agg a
        CROSS JOIN LATERAL (
            SELECT * FROM recipients x
            WHERE x.provider = a.provider AND x.provider_message_id = a.message_id
        ) AS r
        JOIN delivery_statuses cur ON cur.status = r.status
        CROSS JOIN LATERAL (
            SELECT coalesce((a.rank, a.occurred_at, a.event_id)
                            >= (cur.rank, coalesce(r.status_at, '-infinity'),
                                coalesce(r.status_event_id, '')), false) AS wins
        ) AS w
    )
    UPDATE recipients r
    SET status = n.status,
        status_event_id = n.status_event_id,
        status_at = n.status_at,
        last_error_code = n.last_error_code,
        last_error_description = n.last_error_description,
        provider_status = n.provider_status,
        sent_at = n.sent_at,
        delivered_at = n.delivered_at,
        failed_at = n.failed_at,
        complained_at = n.complained_at,
        opened_at = n.opened_at,
        clicked_at = n.clicked_at,
        last_event_at = n.last_event_at,
        updated_at = now()
    FROM next n
    WHERE r.id = n.id
      AND (r.status, r.status_event_id, r.status_at, r.last_error_code, r.last_error_description,
           r.provider_status, r.sent_at, r.delivered_at, r.failed_at, r.complained_at, r.opened_at, r.clicked_at,
           r.last_event_at)
          IS DISTINCT FROM
          (n.status, n.status_event_id, n.status_at, n.last_error_code, n.last_error_description,
           n.provider_status, n.sent_at, n.delivered_at, n.failed_at, n.complained_at, n.opened_at, n.clicked_at,
           n.last_event_at);
    GET DIAGNOSTICS changed = ROW_COUNT;
    PERFORM set_config('hookline.refreshing', 'off', true);
    PERFORM set_config('enable_nestloop', nestloop_was, true);
    PERFORM set_config('jit', jit_was, true);

    IF NOT p_registering THEN
        -- Sorted, and under the message locks: two workers never wait on each other here.
        INSERT INTO early_messages AS e
            (provider, provider_message_id, first_received_at, last_received_at)
        SELECT k.p, k.m, k.f, k.t
        FROM unnest(k_provider, k_message, k_from, k_to) AS k (p, m, f, t)
        WHERE NOT EXISTS (SELECT 1 FROM recipients x
                          WHERE x.provider = k.p AND x.provider_message_id = k.m)
        ORDER BY k.p, k.m
        ON CONFLICT (provider, provider_message_id) DO UPDATE
        SET first_received_at = least(e.first_received_at, EXCLUDED.first_received_at),
            last_received_at = greatest(e.last_received_at, EXCLUDED.last_received_at);
    END IF;
    RETURN changed;
END;
$$;
