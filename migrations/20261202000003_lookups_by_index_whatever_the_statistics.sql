-- The event log's lookups by index, whatever the partitions' statistics say. A day's partition
-- has none from midnight until autovacuum first analyses it, and one vacuumed while empty
-- (`vacuumdb --all` over the days ahead) says it holds nothing; the planner then chose, for
-- lookups made for every batch:
--   * in store_events (migration 20261202000001), an anti-join hashing a sequential scan of the
--     window's partitions: per batch, a read of everything stored today. Measured on a fresh
--     database, 100 events per call: 2 ms at first, 19 ms after 100,000 events, 43 ms after
--     200,000; 1.2 ms flat now;
--   * in refresh_recipients, a sequential scan per key, or the received_at index over the key's
--     whole received window instead of the message index (a registration of 10,000 early events
--     received in one transaction took 1.2 s at commit, each key reading all 10,000 rows).
--
-- So:
--   * the replay index is on (received_at AT TIME ZONE 'UTC'), an expression only replay's own
--     query names: a lookup's received_at bounds prune partitions but cannot pick that index, so
--     the hash indexes on event_id and provider_message_id are the only ones left to it;
--   * sequential scans are off inside store_events and refresh_recipients;
--   * store_events' probe is fenced (OFFSET 0 keeps the EXISTS a subplan, one hash-index lookup
--     per event and partition, instead of a join), and its window is bounded a day past now (a
--     concurrent transaction that began after this one stamps its rows a little later than this
--     one's now()), so the empty partitions created ahead are pruned instead of probed;
--   * and each event's probe starts at the event's own time (less an hour for the provider's
--     clock): an event cannot have been stored before it happened, so a fresh one is looked up
--     in today's partition only, not in every day of the window. Measured with 50 million rows
--     over 30 days: a worker's batch cost 2 ms more with three full days to probe.
-- Building the new index reads every partition once; the old one is dropped.

DROP INDEX delivery_events_by_received;
CREATE INDEX delivery_events_by_received_utc ON delivery_events ((received_at AT TIME ZONE 'UTC'));

CREATE OR REPLACE FUNCTION store_events(
    p_provider text[], p_event_id text[], p_message_id text[], p_event_type text[],
    p_status text[], p_engagement text[], p_occurred_at timestamptz[], p_error_code text[],
    p_error_description text[], p_provider_status text[], p_payload text[],
    p_window interval
)
RETURNS TABLE (stored_provider text, stored_message_id text)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    -- Constants when the insert is planned, so it is pruned to the window's partitions.
    seen_since timestamptz := coalesce(now() - p_window, '-infinity');
    seen_until timestamptz := CASE WHEN p_window IS NULL THEN 'infinity'
                                   ELSE now() + interval '1 day' END;
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
                        AND x.received_at >= seen_since AND x.received_at < seen_until
                        -- Stored no earlier than the event happened (an hour of clock skew
                        -- allowed): a fresh event probes today's partition only, a retry of an
                        -- old one the days since, pruned per event as the probe runs.
                        AND x.received_at >= u.occurred_at - interval '1 hour'
                      OFFSET 0)
    RETURNING d.provider, d.provider_message_id;
END;
$$;

-- As in migration 20261202000001, with sequential scans off in both modes.
CREATE OR REPLACE FUNCTION refresh_recipients(
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
    seqscan_was text := current_setting('enable_seqscan');
    k_provider text[];
    k_message text[];
    k_from timestamptz[];
    k_to timestamptz[];
BEGIN
    -- Each key's events are looked up by the message index, whatever the partitions' statistics
    -- say (see the top of this migration).
    PERFORM set_config('enable_seqscan', 'off', true);
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
        PERFORM set_config('enable_seqscan', seqscan_was, true);
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
    PERFORM set_config('enable_seqscan', seqscan_was, true);

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
