-- hookline's delivery state. The sending application writes `batches` and `recipients`;
-- hookline's workers write `delivery_events` and derive everything else from it.
--
-- The rules this schema enforces, whoever writes:
--   1. idempotent  - an event is stored once per (provider, event_id); state is a function of
--                    the *set* of stored events, so a redelivered event changes nothing;
--   2. monotonic   - a recipient's status is the highest-ranked status seen (a total order), so
--                    any arrival order of the same events gives the same row;
--   3. early events - events for a message not registered yet are kept and applied when the
--                    recipient row is inserted (or gets its provider_message_id);
--   4. counters    - batches.*_count are maintained from status transitions by triggers and always
--                    equal a recount of recipients.

CREATE TABLE delivery_statuses (
    status   text PRIMARY KEY,
    rank     smallint NOT NULL UNIQUE,
    is_final boolean NOT NULL
);

-- Mirrors hookline_core::DeliveryStatus (a test checks they agree).
INSERT INTO delivery_statuses (status, rank, is_final) VALUES
    ('queued',      10, false),
    ('sending',     20, false),
    ('sent',        30, false),
    ('delayed',     40, false),
    ('unconfirmed', 50, true),
    ('delivered',   60, true),
    ('failed',      70, true),
    ('bounced',     80, true),
    ('complained',  90, true);

CREATE TABLE batches (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- Maintained by triggers on recipients; do not write these.
    total_count       integer NOT NULL DEFAULT 0,
    queued_count      integer NOT NULL DEFAULT 0,
    sending_count     integer NOT NULL DEFAULT 0,
    sent_count        integer NOT NULL DEFAULT 0,
    delayed_count     integer NOT NULL DEFAULT 0,
    unconfirmed_count integer NOT NULL DEFAULT 0,
    delivered_count   integer NOT NULL DEFAULT 0,
    failed_count      integer NOT NULL DEFAULT 0,
    bounced_count     integer NOT NULL DEFAULT 0,
    complained_count  integer NOT NULL DEFAULT 0
);

CREATE TABLE recipients (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id               uuid REFERENCES batches (id) ON DELETE CASCADE,
    provider               text NOT NULL,
    -- NULL until the provider's send API has answered; set it then.
    provider_message_id    text,
    address                text,
    status                 text NOT NULL DEFAULT 'queued' REFERENCES delivery_statuses (status),
    -- The event that set `status` (NULL while the status is the one the sending app inserted).
    status_event_id        text,
    status_at              timestamptz,
    last_error_code        text,
    last_error_description text,
    sent_at                timestamptz,
    delivered_at           timestamptz,
    failed_at              timestamptz,
    complained_at          timestamptz,
    opened_at              timestamptz,
    clicked_at             timestamptz,
    last_event_at          timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, provider_message_id)
);

CREATE INDEX recipients_batch_status ON recipients (batch_id, status);
-- For the reconciliation sweep: non-final recipients by age.
CREATE INDEX recipients_open_by_age ON recipients (updated_at)
    WHERE status IN ('queued', 'sending', 'sent', 'delayed');

CREATE TABLE delivery_events (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider            text NOT NULL,
    event_id            text NOT NULL,
    provider_message_id text NOT NULL,
    event_type          text NOT NULL,
    status              text REFERENCES delivery_statuses (status),
    engagement          text CHECK (engagement IN ('opened', 'clicked')),
    occurred_at         timestamptz NOT NULL,
    error_code          text,
    error_description   text,
    -- The provider's body exactly as received (json keeps the text; jsonb would rewrite it).
    payload             json NOT NULL,
    received_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((status IS NULL) <> (engagement IS NULL)),
    UNIQUE (provider, event_id)
);

CREATE INDEX delivery_events_message ON delivery_events (provider, provider_message_id);

-- Recomputes recipients' state from all stored events of the given messages. Every write path
-- (worker batches, the sending app's inserts) goes through here, so there is one definition of
-- "the state of a message". Returns the number of recipient rows that changed.
--
-- Locking, so concurrent writers never miss each other's uncommitted rows (READ COMMITTED):
--   * the sending app registering recipients (`p_registering`, possibly 100,000 rows in one
--     INSERT) takes EXCLUSIVE locks on the messages' stripes — at most 1,024 locks, whatever the
--     row count — so it waits for workers in flight on those messages and holds off new ones;
--   * a worker takes the same stripes SHARED (workers never block each other on them), then one
--     exclusive lock per message, so two workers changing one message never compute from each
--     other's stale row.
-- Every transaction takes all its stripes before any message lock, each kind in sorted order,
-- so no two transactions wait on each other in a cycle.
CREATE FUNCTION refresh_recipients(
    p_provider text[],
    p_message_id text[],
    p_registering boolean DEFAULT false
)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    changed integer;
    nestloop_was text := current_setting('enable_nestloop');
    -- Advisory lock class for the stripes ("hkl"); the per-message locks use one bigint key,
    -- a separate key space.
    stripe_class constant integer := 1751870316;
BEGIN
    IF p_registering THEN
        -- Registering may touch 100,000 rows inserted by this very statement, which have no
        -- statistics: a misestimated nested loop over them is quadratic (minutes for 20,000).
        -- Hash joins are linear. Workers (at most a batch of keys) keep their index lookups.
        PERFORM set_config('enable_nestloop', 'off', true);
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
        PERFORM pg_advisory_xact_lock(k.h)
        FROM (SELECT DISTINCT hashtextextended(u.p || E'\x1f' || u.m, 0) AS h
              FROM unnest(p_provider, p_message_id) AS u (p, m)
              WHERE u.m IS NOT NULL
              ORDER BY 1) AS k;
    END IF;

    -- A new statement after the lock sees everything committed before we got it.
    -- The plan shape is spelled out with LATERAL: every lookup goes through an index, driven by
    -- the keys, whatever the planner estimates (rows inserted in this very statement have no
    -- statistics yet, and a misestimated nested loop over 20,000 keys took minutes).
    WITH keys AS (
        SELECT DISTINCT u.p AS provider, u.m AS message_id
        FROM unnest(p_provider, p_message_id) AS u (p, m)
        WHERE u.m IS NOT NULL
    ),
    agg AS (
        -- Per message: the event that decides the status (highest rank, then latest, then largest
        -- id), and the earliest time of each kind of event.
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
                   d.error_description, s.rank
            FROM delivery_events d
            LEFT JOIN delivery_statuses s ON s.status = d.status
            WHERE d.provider = k.provider AND d.provider_message_id = k.message_id
        ) AS e
        GROUP BY k.provider, k.message_id
    ),
    next AS (
        SELECT r.id,
               -- `a.rank >= cur.rank` is NULL without a status event: keep the current status.
               CASE WHEN a.rank >= cur.rank THEN a.status ELSE r.status END AS status,
               CASE WHEN a.rank >= cur.rank THEN a.event_id ELSE r.status_event_id END AS status_event_id,
               CASE WHEN a.rank >= cur.rank THEN a.occurred_at ELSE r.status_at END AS status_at,
               CASE WHEN a.rank >= cur.rank THEN a.error_code ELSE r.last_error_code END AS last_error_code,
               CASE WHEN a.rank >= cur.rank THEN a.error_description ELSE r.last_error_description END
                   AS last_error_description,
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
           r.sent_at, r.delivered_at, r.failed_at, r.complained_at, r.opened_at, r.clicked_at,
           r.last_event_at)
          IS DISTINCT FROM
          (n.status, n.status_event_id, n.status_at, n.last_error_code, n.last_error_description,
           n.sent_at, n.delivered_at, n.failed_at, n.complained_at, n.opened_at, n.clicked_at,
           n.last_event_at);
    GET DIAGNOSTICS changed = ROW_COUNT;
    PERFORM set_config('enable_nestloop', nestloop_was, true);
    RETURN changed;
END;
$$;

-- Adds per-(batch, status) deltas to the batch counters, locking batches in id order.
CREATE FUNCTION apply_batch_deltas(p_batch uuid[], p_status text[], p_delta integer[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- NO KEY UPDATE: the counters are not the key, so concurrent inserts of recipients (whose FK
    -- check holds KEY SHARE on the batch) do not deadlock with us.
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
               coalesce(sum(u.n) FILTER (WHERE u.s = 'complained'), 0)  AS complained
        FROM unnest(p_batch, p_status, p_delta) AS u (b, s, n)
        WHERE u.b IS NOT NULL
        GROUP BY u.b
    ) d
    WHERE b.id = d.batch_id;
END;
$$;

CREATE FUNCTION recipients_count_rows()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM apply_batch_deltas(array_agg(batch_id), array_agg(status), array_agg(1))
        FROM new_rows WHERE batch_id IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM apply_batch_deltas(array_agg(batch_id), array_agg(status), array_agg(-1))
        FROM old_rows WHERE batch_id IS NOT NULL;
    ELSE
        -- -1 for every old row, +1 for every new one, netted per (batch, status): unchanged rows
        -- cancel out. An aggregate, not a join, so it stays linear however many rows changed.
        PERFORM apply_batch_deltas(array_agg(d.batch_id), array_agg(d.status), array_agg(d.n))
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
        ) d;
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION recipients_apply_stored_events()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM refresh_recipients(array_agg(provider), array_agg(provider_message_id), true)
        FROM new_rows WHERE provider_message_id IS NOT NULL;
    ELSE
        PERFORM refresh_recipients(ARRAY[NEW.provider], ARRAY[NEW.provider_message_id], true);
    END IF;
    RETURN NULL;
END;
$$;

-- AFTER triggers of one event fire in name order: events are applied (taking the message locks)
-- before the counters lock batches, the same lock order the worker uses.
CREATE TRIGGER recipients_10_apply_events_on_insert
    AFTER INSERT ON recipients
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recipients_apply_stored_events();

CREATE TRIGGER recipients_10_apply_events_on_message_id
    AFTER UPDATE OF provider_message_id ON recipients
    FOR EACH ROW
    WHEN (NEW.provider_message_id IS NOT NULL
          AND OLD.provider_message_id IS DISTINCT FROM NEW.provider_message_id)
    EXECUTE FUNCTION recipients_apply_stored_events();

CREATE TRIGGER recipients_20_count_insert
    AFTER INSERT ON recipients
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recipients_count_rows();

CREATE TRIGGER recipients_20_count_update
    AFTER UPDATE ON recipients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recipients_count_rows();

CREATE TRIGGER recipients_20_count_delete
    AFTER DELETE ON recipients
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recipients_count_rows();
