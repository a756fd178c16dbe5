-- Stored once whatever the provider's clock says. store_events' probe starts at the event's own
-- occurred_at less an hour (nothing is stored before it happened), so an event dated more than
-- an hour after it arrived (a provider clock running fast; a source sending unix milliseconds
-- read as seconds) was stored before the probe's start, and a retry of it past the JetStream
-- dedup window was stored again. Such events are rare: each is also noted here when stored, and
-- the probe looks here too (one primary-key lookup per event). `hookline maintain` removes notes
-- as old as the event log's retention.

CREATE TABLE future_dated_events (
    provider    text        NOT NULL,
    event_id    text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX future_dated_events_by_received ON future_dated_events (received_at);

-- Whoever may store events (store_events runs with the caller's rights) may note them; whoever
-- may delete or read events may do the same here.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT a.privilege_type, r.rolname
        FROM pg_class c, aclexplode(c.relacl) a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = 'delivery_events'::regclass
          AND a.grantee <> c.relowner
          AND a.privilege_type IN ('SELECT', 'INSERT', 'DELETE')
    LOOP
        EXECUTE format('GRANT %s ON future_dated_events TO %I', g.privilege_type, g.rolname);
        IF g.privilege_type = 'INSERT' THEN
            EXECUTE format('GRANT SELECT, UPDATE ON future_dated_events TO %I', g.rolname);
        END IF;
    END LOOP;
END;
$$;

-- store_events (migration 20261202000003) with the note and its lookup; otherwise unchanged.
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
    WITH stored AS (
        INSERT INTO delivery_events AS d
            (occurred_at, provider, event_id, provider_message_id, event_type, status,
             engagement, error_code, error_description, provider_status, payload)
        SELECT u.occurred_at, u.provider, u.event_id, u.message_id, u.event_type, u.status,
               u.engagement, u.error_code, u.error_description, u.provider_status,
               u.payload::json
        FROM (
            SELECT DISTINCT ON (a.provider, a.event_id) a.*
            FROM unnest(p_provider, p_event_id, p_message_id, p_event_type, p_status,
                        p_engagement, p_occurred_at, p_error_code, p_error_description,
                        p_provider_status, p_payload)
                 WITH ORDINALITY
                 AS a (provider, event_id, message_id, event_type, status, engagement,
                       occurred_at, error_code, error_description, provider_status, payload, nth)
            ORDER BY a.provider, a.event_id, a.nth
        ) AS u
        WHERE NOT EXISTS (SELECT 1 FROM delivery_events x
                          WHERE x.event_id = u.event_id AND x.provider = u.provider
                            AND x.received_at >= seen_since AND x.received_at < seen_until
                            -- Stored no earlier than the event happened (an hour of clock skew
                            -- allowed): a fresh event probes today's partition only, a retry of
                            -- an old one the days since, pruned per event as the probe runs.
                            AND x.received_at >= u.occurred_at - interval '1 hour'
                          OFFSET 0)
          -- ... or, dated further ahead than that when it came, noted here.
          AND NOT EXISTS (SELECT 1 FROM future_dated_events f
                          WHERE f.provider = u.provider AND f.event_id = u.event_id
                            AND f.received_at >= seen_since)
        RETURNING d.provider, d.provider_message_id, d.event_id, d.occurred_at
    ), noted AS (
        INSERT INTO future_dated_events AS f (provider, event_id)
        SELECT s.provider, s.event_id FROM stored s
        WHERE s.occurred_at > now() + interval '1 hour'
        ON CONFLICT (provider, event_id) DO UPDATE SET received_at = excluded.received_at
    )
    SELECT s.provider, s.provider_message_id FROM stored s;
END;
$$;
