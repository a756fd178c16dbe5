-- Every event a provider signed is kept, and every documented status lands.
--
-- * `delivery_events` stores events that carry no delivery information (an inbound SMS, a Resend
--   contact or domain event) and events whose type or status hookline does not map yet: status and
--   engagement both NULL, and no message for events about none. They change no recipient; once a
--   mapping ships, `hookline replay` re-derives them. Before, such events were acknowledged
--   without being stored, and no later mapping could recover them.
-- * `provider_status`, on events and recipients: the provider's own value (Telnyx `to[].status`,
--   the Resend type without `email.`), so that a `failed` can be told apart as expired,
--   cancelled or failed. A recipient's is the one of the event that set its status.
-- * `suppressed` (Resend `email.suppressed`: the address is on the suppression list, nothing was
--   sent), final, with its own batch counter. Ranks are append-only, so it ranks last; no other
--   outcome can follow it for the same email.

INSERT INTO delivery_statuses (status, rank, is_final) VALUES ('suppressed', 100, true);

ALTER TABLE batches ADD COLUMN suppressed_count integer NOT NULL DEFAULT 0;

ALTER TABLE delivery_events
    ADD COLUMN provider_status text,
    ALTER COLUMN provider_message_id DROP NOT NULL,
    DROP CONSTRAINT delivery_events_check,
    ADD CONSTRAINT delivery_events_status_or_engagement
        CHECK (status IS NULL OR engagement IS NULL);

ALTER TABLE recipients ADD COLUMN provider_status text;

-- As in the previous migration, carrying the winning event's provider_status.
CREATE OR REPLACE FUNCTION refresh_recipients(
    p_provider text[],
    p_message_id text[],
    p_registering boolean DEFAULT false
)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    changed integer;
    nestloop_was text := current_setting('enable_nestloop');
BEGIN
    IF p_registering THEN
        -- The commit pass holds these already; taking them again costs a counter increment.
        PERFORM set_config('enable_nestloop', 'off', true);
        PERFORM lock_message_stripes(p_provider, p_message_id, true);
    ELSE
        PERFORM lock_message_stripes(p_provider, p_message_id, false);
        PERFORM pg_advisory_xact_lock(k.h)
        FROM (SELECT DISTINCT hashtextextended(u.p || E'\x1f' || u.m, 0) AS h
              FROM unnest(p_provider, p_message_id) AS u (p, m)
              WHERE u.m IS NOT NULL
              ORDER BY 1) AS k;
    END IF;

    PERFORM set_config('hookline.refreshing', 'on', true);
    WITH keys AS (
        SELECT DISTINCT u.p AS provider, u.m AS message_id
        FROM unnest(p_provider, p_message_id) AS u (p, m)
        WHERE u.m IS NOT NULL
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
                   d.error_description, d.provider_status, s.rank
            FROM delivery_events d
            LEFT JOIN delivery_statuses s ON s.status = d.status
            WHERE d.provider = k.provider AND d.provider_message_id = k.message_id
        ) AS e
        GROUP BY k.provider, k.message_id
    ),
    next AS (
        SELECT r.id,
               CASE WHEN a.rank >= cur.rank THEN a.status ELSE r.status END AS status,
               CASE WHEN a.rank >= cur.rank THEN a.event_id ELSE r.status_event_id END AS status_event_id,
               CASE WHEN a.rank >= cur.rank THEN a.occurred_at ELSE r.status_at END AS status_at,
               CASE WHEN a.rank >= cur.rank THEN a.error_code ELSE r.last_error_code END AS last_error_code,
               CASE WHEN a.rank >= cur.rank THEN a.error_description ELSE r.last_error_description END
                   AS last_error_description,
               CASE WHEN a.rank >= cur.rank THEN a.provider_status ELSE r.provider_status END
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
    RETURN changed;
END;
$$;

-- As in the first migration, with the suppressed counter.
CREATE OR REPLACE FUNCTION apply_batch_deltas(p_batch uuid[], p_status text[], p_delta integer[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM batches WHERE id = ANY (p_batch) ORDER BY id FOR NO KEY UPDATE;
    UPDATE batches b
    SET total_count       = b.total_count + d.total,
        queued_count      = b.queued_count + d.queued,
        sending_count     = b.sending_count + d.sending,
        sent_count        = b.sent_count + d.sent,
        delayed_count     = b.delayed_count + d.delayed,
        unconfirmed_count = b.unconfirmed_count + d.unconfirmed,
        delivered_count   = b.delivered_count + d.delivered,
        failed_count      = b.failed_count + d.failed,
        bounced_count     = b.bounced_count + d.bounced,
        complained_count  = b.complained_count + d.complained,
        suppressed_count  = b.suppressed_count + d.suppressed,
        updated_at        = now()
    FROM (
        SELECT u.b AS batch_id,
               sum(u.n) AS total,
               coalesce(sum(u.n) FILTER (WHERE u.s = 'queued'), 0)      AS queued,
               coalesce(sum(u.n) FILTER (WHERE u.s = 'sending'), 0)     AS sending,
               coalesce(sum(u.n) FILTER (WHERE u.s = 'sent'), 0)        AS sent,
               coalesce(sum(u.n) FILTER (WHERE u.s = 'delayed'), 0)     AS delayed,
               coalesce(sum(u.n) FILTER (WHERE u.s = 'unconfirmed'), 0) AS unconfirmed,
               coalesce(sum(u.n) FILTER (WHERE u.s = 'delivered'), 0)   AS delivered,
               coalesce(sum(u.n) FILTER (WHERE u.s = 'failed'), 0)      AS failed,
               coalesce(sum(u.n) FILTER (WHERE u.s = 'bounced'), 0)     AS bounced,
               coalesce(sum(u.n) FILTER (WHERE u.s = 'complained'), 0)  AS complained,
               coalesce(sum(u.n) FILTER (WHERE u.s = 'suppressed'), 0)  AS suppressed
        FROM unnest(p_batch, p_status, p_delta) AS u (b, s, n)
        WHERE u.b IS NOT NULL
        GROUP BY u.b
    ) d
    WHERE b.id = d.batch_id;
END;
$$;
