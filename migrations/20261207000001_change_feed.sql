-- The change feed's transactional outbox. Every change of a recipient's delivery state that
-- hookline derives from provider events (its status, its first open, its first click) and every
-- batch becoming complete is written here by a trigger, in the transaction that makes the change:
-- a worker's batch commit, the commit pass of an application's registration, a replay. The
-- workers relay the rows, oldest first, to the JetStream stream WEBHOOK_CHANGES with the change's
-- id as Nats-Msg-Id, and delete what they relayed. So a change is on the feed exactly when it was
-- committed, whoever crashes where; a duplicate provider event or a replay that changes nothing
-- updates no row and writes nothing here.
--
-- A row holds what changed, as plain columns; the relay (crates/worker/src/feed.rs) makes the
-- change's id, its feed subject and its payload (schema hookline.change.v1, docs/feed.md) from
-- them. Building them here, in every worker's transaction, cost PostgreSQL three times as much.

CREATE TABLE change_outbox (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- status, opened, clicked or batch_completed.
    kind                text        NOT NULL,
    batch_id            uuid,
    -- A recipient's change: the row and its state when it changed.
    recipient_id        bigint,
    provider            text,
    provider_message_id text,
    address             text,
    old_status          text,
    new_status          text,
    provider_status     text,
    event_id            text,
    occurred_at         timestamptz,
    error_code          text,
    error_description   text,
    -- A batch's completion: its name, times and counts.
    batch               json,
    stored_at           timestamptz NOT NULL DEFAULT now()
);

-- When hookline decides a batch is complete: every recipient has a final status. Batches already
-- complete count as completed at their last update (no change is emitted for them).
ALTER TABLE batches ADD COLUMN completed_at timestamptz;
UPDATE batches SET completed_at = updated_at
WHERE total_count > 0 AND queued_count + sending_count + sent_count + delayed_count = 0;

-- RFC 3339 in UTC with microseconds, whatever the session's TimeZone.
CREATE FUNCTION feed_time(p timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_char(p AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

-- Without a feed: `ALTER DATABASE <name> SET hookline.feed = off` (sessions opened afterwards write
-- no changes here; batches.completed_at is kept all the same), and workers with
-- HOOKLINE_FEED_RELAY=false.

-- The recipients' changes of one UPDATE statement. Only refresh_recipients' own updates count
-- (hookline.refreshing): delivery state derived from stored events. An application's writes to
-- its own columns, and reconcile's bookkeeping, change no delivery state. Fired before the
-- counting trigger (recipients_20_*), whose batch completion follows the changes that caused it.
CREATE FUNCTION recipients_feed_changes() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    IF current_setting('hookline.refreshing', true) IS DISTINCT FROM 'on'
       OR current_setting('hookline.feed', true) = 'off' THEN
        RETURN NULL;
    END IF;
    INSERT INTO change_outbox
        (kind, batch_id, recipient_id, provider, provider_message_id, address, old_status,
         new_status, provider_status, event_id, occurred_at, error_code, error_description)
    SELECT c.kind, n.batch_id, n.id, n.provider, n.provider_message_id, n.address, c.old_status,
           c.new_status, n.provider_status, c.event_id, c.occurred_at, n.last_error_code,
           n.last_error_description
    FROM new_rows n
    JOIN old_rows o ON o.id = n.id
    CROSS JOIN LATERAL (
        VALUES ('status', o.status, n.status, n.status_event_id, n.status_at, 0,
                o.status IS DISTINCT FROM n.status),
               ('opened', n.status, n.status, NULL, n.opened_at, 1,
                o.opened_at IS NULL AND n.opened_at IS NOT NULL),
               ('clicked', n.status, n.status, NULL, n.clicked_at, 2,
                o.clicked_at IS NULL AND n.clicked_at IS NOT NULL)
    ) AS c (kind, old_status, new_status, event_id, occurred_at, nth, changed)
    WHERE c.changed
    -- Per recipient in the order they happened; a recipient changes once per statement.
    ORDER BY n.provider, n.provider_message_id, c.occurred_at, c.nth;
    RETURN NULL;
END;
$$;

CREATE TRIGGER recipients_15_feed_changes AFTER UPDATE ON recipients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recipients_feed_changes();

-- A batch is complete when it has recipients and none is queued, sending, sent or delayed (the
-- statuses that are not final in delivery_statuses). It can become incomplete again when
-- recipients are added; completing again is a new change.
CREATE FUNCTION batches_note_completion() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    first_sent timestamptz;
    last_final timestamptz;
BEGIN
    IF NEW.total_count > 0 AND NEW.queued_count + NEW.sending_count + NEW.sent_count
                               + NEW.delayed_count = 0 THEN
        IF NEW.completed_at IS NOT NULL THEN
            RETURN NEW;
        END IF;
        NEW.completed_at := now();
        IF current_setting('hookline.feed', true) = 'off' THEN
            RETURN NEW;
        END IF;
        SELECT min(coalesce(r.sent_at, r.status_at)), max(r.status_at)
        INTO first_sent, last_final
        FROM recipients r WHERE r.batch_id = NEW.id;
        INSERT INTO change_outbox (kind, batch_id, batch)
        VALUES ('batch_completed', NEW.id, json_build_object(
                    'name', NEW.name,
                    'created_at', feed_time(NEW.created_at),
                    'completed_at', feed_time(NEW.completed_at),
                    'first_sent_at', feed_time(first_sent),
                    'last_final_at', feed_time(last_final),
                    'counts', json_build_object(
                        'total', NEW.total_count,
                        'unconfirmed', NEW.unconfirmed_count,
                        'delivered', NEW.delivered_count,
                        'failed', NEW.failed_count,
                        'bounced', NEW.bounced_count,
                        'complained', NEW.complained_count,
                        'suppressed', NEW.suppressed_count)));
    ELSE
        NEW.completed_at := NULL;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER batches_note_completion BEFORE UPDATE OF total_count, queued_count, sending_count,
    sent_count, delayed_count, unconfirmed_count, delivered_count, failed_count, bounced_count,
    complained_count, suppressed_count ON batches
    FOR EACH ROW EXECUTE FUNCTION batches_note_completion();

-- Batches still waiting for their last recipients: how many are open and how long the oldest
-- has waited since it was registered. Reconcile's sweep asks providers about these recipients.
CREATE VIEW unfinished_batches AS
SELECT b.id AS batch_id, b.name, b.created_at, b.total_count,
       b.queued_count + b.sending_count + b.sent_count + b.delayed_count AS open_count,
       o.oldest_open_at,
       now() - o.oldest_open_at AS oldest_open_age
FROM batches b
CROSS JOIN LATERAL (
    SELECT min(r.created_at) AS oldest_open_at FROM recipients r
    WHERE r.batch_id = b.id AND r.status IN ('queued', 'sending', 'sent', 'delayed')
) AS o
WHERE b.completed_at IS NULL AND b.total_count > 0;

-- The relay (a worker's role: whoever may store events) reads and deletes relayed rows.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT r.rolname
        FROM pg_class c, aclexplode(c.relacl) a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = 'delivery_events'::regclass
          AND a.grantee <> c.relowner
          AND a.privilege_type = 'INSERT'
    LOOP
        EXECUTE format('GRANT SELECT, DELETE ON change_outbox TO %I', g.rolname);
    END LOOP;
END;
$$;
