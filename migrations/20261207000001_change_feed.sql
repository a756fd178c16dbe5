-- The change feed's transactional outbox. Every change of a recipient's delivery state that
-- hookline derives from provider events (its status, its first open, its first click) and every
-- batch becoming complete is written here by a trigger, in the transaction that makes the change:
-- a worker's batch commit, the commit pass of an application's registration, a replay. The
-- workers relay the rows, oldest first, to the JetStream stream WEBHOOK_CHANGES with the change's
-- id as Nats-Msg-Id, and delete what they relayed. So a change is on the feed exactly when it was
-- committed, whoever crashes where; a duplicate provider event or a replay that changes nothing
-- updates no row and writes nothing here.
--
-- Each row carries its feed subject and its payload (schema hookline.change.v1, docs/feed.md),
-- built here so that the relay only copies bytes.

CREATE TABLE change_outbox (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_id text        NOT NULL,
    subject   text        NOT NULL,
    payload   json        NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
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

-- A change's id: a hash of what changed, so the same change gets the same id however often it is
-- relayed (and, after a database restore and a replay, when it is derived again).
CREATE FUNCTION feed_change_id(VARIADIC p_parts text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN left(encode(sha256(convert_to(array_to_string(p_parts, E'\x1f', ''), 'UTF8')), 'hex'), 32);

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
    IF current_setting('hookline.refreshing', true) IS DISTINCT FROM 'on' THEN
        RETURN NULL;
    END IF;
    INSERT INTO change_outbox (change_id, subject, payload)
    SELECT k.id,
           format('hookline.changes.%s.%s.%s', coalesce(n.batch_id::text, 'none'), n.provider,
                  c.what),
           json_build_object(
               'schema', 'hookline.change.v1',
               'change_id', k.id,
               'kind', c.kind,
               'batch_id', n.batch_id,
               'recipient', json_build_object(
                   'id', n.id,
                   'provider', n.provider,
                   'message_id', n.provider_message_id,
                   'address', n.address),
               'old_status', c.old_status,
               'new_status', c.new_status,
               'provider_status', n.provider_status,
               'event_id', c.event_id,
               'occurred_at', k.occurred_at,
               'stored_at', feed_time(now()),
               'error', CASE WHEN n.last_error_code IS NULL AND n.last_error_description IS NULL
                             THEN NULL
                             ELSE json_build_object('code', n.last_error_code,
                                                    'description', n.last_error_description)
                        END)
    FROM new_rows n
    JOIN old_rows o ON o.id = n.id
    CROSS JOIN LATERAL (
        VALUES ('status', n.status, o.status, n.status, n.status_event_id, n.status_at, 0,
                o.status IS DISTINCT FROM n.status),
               ('opened', 'opened', n.status, n.status, NULL, n.opened_at, 1,
                o.opened_at IS NULL AND n.opened_at IS NOT NULL),
               ('clicked', 'clicked', n.status, n.status, NULL, n.clicked_at, 2,
                o.clicked_at IS NULL AND n.clicked_at IS NOT NULL)
    ) AS c (kind, what, old_status, new_status, event_id, occurred_at, nth, changed)
    CROSS JOIN LATERAL (
        SELECT feed_time(c.occurred_at) AS occurred_at,
               feed_change_id(c.kind, n.provider, n.provider_message_id, c.old_status,
                              c.new_status, c.event_id, feed_time(c.occurred_at)) AS id
    ) AS k
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
        SELECT min(coalesce(r.sent_at, r.status_at)), max(r.status_at)
        INTO first_sent, last_final
        FROM recipients r WHERE r.batch_id = NEW.id;
        INSERT INTO change_outbox (change_id, subject, payload)
        SELECT feed_change_id('batch_completed', NEW.id::text, NEW.total_count::text,
                              feed_time(NEW.completed_at)),
               format('hookline.changes.%s._batch.completed', NEW.id),
               json_build_object(
                   'schema', 'hookline.change.v1',
                   'change_id', feed_change_id('batch_completed', NEW.id::text,
                                               NEW.total_count::text, feed_time(NEW.completed_at)),
                   'kind', 'batch_completed',
                   'batch_id', NEW.id,
                   'batch', json_build_object(
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
                           'suppressed', NEW.suppressed_count)),
                   'stored_at', feed_time(now()));
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
