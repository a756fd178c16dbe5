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
--     received in one transaction took 1.2–4 s at commit, each key reading all 10,000 rows; about
--     0.1 s of it now).
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
--     in today's partition only, not in every day of the window (a retry of an old event still
--     reaches back to the day it happened).
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

-- refresh_recipients (migration 20261202000001) unchanged but for this: sequential scans off
-- while it runs, in both modes (restored when it returns, however it returns).
ALTER FUNCTION refresh_recipients(text[], text[], boolean, timestamptz[], timestamptz[])
    SET enable_seqscan = off;
