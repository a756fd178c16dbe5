-- The sending application's registrations are applied at COMMIT, in one sorted pass per
-- transaction, so that it can never deadlock with workers.
--
-- Before: every statement of the application (each INSERT, and each row of an UPDATE setting
-- provider_message_id) took its messages' stripe locks and its batches' counter locks as it ran.
-- A transaction registering recipients over several statements, in whatever order its code
-- produces them, took stripes out of order and held batch locks while asking for more stripes;
-- workers take stripes (sorted) before batch locks. Measured: 20 rounds of 1,000 recipients,
-- registered row by row in shuffled order while two workers applied their events, gave 101
-- deadlocks in the application and 107 in the workers.
--
-- Now the application's statements only note what they changed (messages to refresh, counter
-- deltas) in `recipients_pending`. At COMMIT one deferred trigger takes every stripe of the
-- transaction at once, exclusive, in sorted order, then the counters, then refreshes the
-- messages: the same lock order as a worker (stripes, then messages, then batches), taken in one
-- pass, so no cycle can form. Workers in flight on those messages finish first; workers arriving
-- later wait for the commit, then see the new rows.
--
-- Inside the application's transaction, recipient state and batch counters are therefore brought
-- up to date at COMMIT, not statement by statement.
--
-- Early events need the commit pass to see events committed while the transaction ran: that is
-- READ COMMITTED. At REPEATABLE READ or SERIALIZABLE the pass would read an old snapshot and
-- silently leave recipients `queued`, so registration there is refused with an error that says so.

-- What the application's statements changed, per transaction, until its commit pass. Unlogged: it
-- only ever holds rows of transactions in flight, which a crash aborts anyway.
CREATE UNLOGGED TABLE recipients_pending (
    xid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    -- a message to refresh ...
    provider   text,
    message_id text,
    -- ... or a counter delta
    batch_id   uuid,
    status     text,
    delta      integer
);
CREATE INDEX recipients_pending_xid ON recipients_pending (xid);

-- One row per transaction with pending work; its deferred trigger runs the commit pass once.
CREATE UNLOGGED TABLE recipients_commit_pass (
    xid xid8 PRIMARY KEY DEFAULT pg_current_xact_id()
);

-- Every stripe of the given messages, shared (workers) or exclusive (registration), in sorted
-- order: the one place the stripe of a message is defined.
CREATE FUNCTION lock_message_stripes(p_provider text[], p_message_id text[], p_exclusive boolean)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    -- Advisory lock class for the stripes ("hkl"), as in the first migration.
    stripe_class constant integer := 1751870316;
BEGIN
    IF p_exclusive THEN
        PERFORM pg_advisory_xact_lock(stripe_class, s.stripe)
        FROM (SELECT DISTINCT (hashtextextended(u.p || E'\x1f' || u.m, 0) & 1023)::integer AS stripe
              FROM unnest(p_provider, p_message_id) AS u (p, m)
              WHERE u.m IS NOT NULL
              ORDER BY 1) AS s;
    ELSE
        PERFORM pg_advisory_xact_lock_shared(stripe_class, s.stripe)
        FROM (SELECT DISTINCT (hashtextextended(u.p || E'\x1f' || u.m, 0) & 1023)::integer AS stripe
              FROM unnest(p_provider, p_message_id) AS u (p, m)
              WHERE u.m IS NOT NULL
              ORDER BY 1) AS s;
    END IF;
END;
$$;

-- As before (see the first migration), with three changes: stripes come from
-- lock_message_stripes; the UPDATE runs with `hookline.refreshing` on, so the counter trigger
-- applies its deltas at once (the stripes are held) instead of queueing them; and the recipient
-- takes the winning event's `provider_status` (the column comes with the previous migration).
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

-- Refuses isolation levels at which the commit pass could miss early events, and makes sure the
-- transaction has its commit pass.
CREATE FUNCTION recipients_expect_commit_pass()
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'hookline: register and change recipients at READ COMMITTED isolation, not %',
                        upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Events a worker stores while this transaction runs are applied to its '
                        || 'recipients when it commits; a transaction snapshot would not see them, '
                        || 'and those recipients would stay queued.',
                  HINT = 'Use a READ COMMITTED transaction for writes to recipients.';
    END IF;
    INSERT INTO recipients_commit_pass DEFAULT VALUES ON CONFLICT DO NOTHING;
END;
$$;

-- Statement-level, on INSERT and UPDATE of recipients by the application: note the messages
-- whose stored events must be applied at commit (new rows; rows given a new message id).
CREATE OR REPLACE FUNCTION recipients_apply_stored_events()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('hookline.refreshing', true) = 'on' THEN
        RETURN NULL;  -- a refresh's own UPDATE
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO recipients_pending (provider, message_id)
        SELECT provider, provider_message_id FROM new_rows WHERE provider_message_id IS NOT NULL;
    ELSE
        INSERT INTO recipients_pending (provider, message_id)
        SELECT n.provider, n.provider_message_id
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.provider_message_id IS NOT NULL
          AND (o.provider_message_id IS DISTINCT FROM n.provider_message_id
               OR o.provider IS DISTINCT FROM n.provider);
    END IF;
    IF FOUND THEN
        PERFORM recipients_expect_commit_pass();
    END IF;
    RETURN NULL;
END;
$$;

-- Counters: inside a refresh (stripes held) applied at once, as before; for the application's
-- own statements noted as deltas for the commit pass, so no batch lock is held before it.
CREATE OR REPLACE FUNCTION recipients_count_rows()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    b uuid[];
    s text[];
    n integer[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(d.batch_id), array_agg(d.status), array_agg(d.n) INTO b, s, n
        FROM (SELECT batch_id, status, count(*)::integer AS n FROM new_rows
              WHERE batch_id IS NOT NULL GROUP BY 1, 2) AS d;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(d.batch_id), array_agg(d.status), array_agg(d.n) INTO b, s, n
        FROM (SELECT batch_id, status, -count(*)::integer AS n FROM old_rows
              WHERE batch_id IS NOT NULL GROUP BY 1, 2) AS d;
    ELSE
        -- -1 for every old row, +1 for every new one, netted per (batch, status): unchanged rows
        -- cancel out. An aggregate, not a join, so it stays linear however many rows changed.
        SELECT array_agg(d.batch_id), array_agg(d.status), array_agg(d.n) INTO b, s, n
        FROM (
            SELECT x.batch_id, x.status, sum(x.n)::integer AS n
            FROM (
                SELECT batch_id, status, -1 AS n FROM old_rows
                UNION ALL
                SELECT batch_id, status, 1 FROM new_rows
            ) x
            WHERE x.batch_id IS NOT NULL
            GROUP BY x.batch_id, x.status
            HAVING sum(x.n) <> 0
        ) AS d;
    END IF;
    IF b IS NULL THEN
        RETURN NULL;
    END IF;
    IF current_setting('hookline.refreshing', true) = 'on' THEN
        PERFORM apply_batch_deltas(b, s, n);
    ELSE
        INSERT INTO recipients_pending (batch_id, status, delta)
        SELECT * FROM unnest(b, s, n);
        PERFORM recipients_expect_commit_pass();
    END IF;
    RETURN NULL;
END;
$$;

-- The commit pass: every stripe of the transaction's messages at once (sorted, exclusive), then
-- the counters, then the refresh; the same lock order as a worker, in one pass.
CREATE FUNCTION recipients_apply_at_commit()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    providers text[];
    messages text[];
BEGIN
    SELECT array_agg(k.provider), array_agg(k.message_id) INTO providers, messages
    FROM (SELECT DISTINCT provider, message_id FROM recipients_pending
          WHERE xid = NEW.xid AND message_id IS NOT NULL) AS k;
    IF providers IS NOT NULL THEN
        PERFORM lock_message_stripes(providers, messages, true);
    END IF;
    PERFORM apply_batch_deltas(array_agg(d.batch_id), array_agg(d.status), array_agg(d.n))
    FROM (
        SELECT batch_id, status, sum(delta)::integer AS n
        FROM recipients_pending
        WHERE xid = NEW.xid AND batch_id IS NOT NULL
        GROUP BY batch_id, status
        HAVING sum(delta) <> 0
    ) AS d;
    IF providers IS NOT NULL THEN
        PERFORM refresh_recipients(providers, messages, true);
    END IF;
    DELETE FROM recipients_pending WHERE xid = NEW.xid;
    DELETE FROM recipients_commit_pass WHERE xid = NEW.xid;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER recipients_commit_pass
    AFTER INSERT ON recipients_commit_pass
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION recipients_apply_at_commit();

-- A new message id is noted by a statement-level trigger now (transition tables cannot be used
-- with a column list, so it compares old and new rows itself).
DROP TRIGGER recipients_10_apply_events_on_message_id ON recipients;
CREATE TRIGGER recipients_10_apply_events_on_update
    AFTER UPDATE ON recipients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recipients_apply_stored_events();
