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
-- The next migration's refresh_recipients copies the winning event's provider_status to it.

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
