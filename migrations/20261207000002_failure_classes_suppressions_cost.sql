-- What a sender needs to know beyond a status: why a failure failed (its class), which addresses
-- must not be sent to again (the suppression list, across providers), and what a message cost.
--
-- * `failure_class` on events and recipients: hard, soft, policy, opt_out or unknown, for a
--   failed, bounced, complained or suppressed outcome (NULL for any other). Each provider's file
--   in crates/core/src/providers/ maps its documented codes to a class; a code it does not list
--   is `unknown`, never guessed. The raw code stays in error_code / provider_status. A
--   recipient's class is the one of the event that set its status, like provider_status.
-- * `cost_amount`/`cost_currency` and `parts`, where a provider reports them (Telnyx). A
--   recipient's cost is the latest event's that carries one (by occurred_at, then event id:
--   a function of the set of events, whatever their order); its parts the largest reported.
--   Batch totals are sums over recipients (`batch_costs`), so duplicates and replays, which
--   change no recipient, change no total.
-- * `suppressions`: one row per address (normalized by `address_key`: E.164 for phone numbers,
--   case-folded email) that had a hard failure, a complaint or an opt-out, or N soft failures in
--   a row (`hookline.suppress_after_soft`, 3 by default, 0 for never), with the event that put
--   it there. Written by a trigger on recipients in the transaction that derives the outcome,
--   so an address is added once however often its events are retried or replayed. Removal is
--   a DELETE (the CLI's `hookline suppression remove`), and every addition and removal is
--   logged in `suppression_log`, with who removed it and why. A later delivery to the address
--   does not remove it.
-- * Views for the sending application and the batch dashboard: `batch_failure_classes`,
--   `batch_costs`, and functions `is_suppressed(address)` and `suppressed_among(addresses[])`.
--
-- Workers still running the previous release call the previous store_events (kept): their
-- events are stored without class or cost until they are replayed.

ALTER TABLE delivery_events
    ADD COLUMN failure_class text
        CHECK (failure_class IN ('hard', 'soft', 'policy', 'opt_out', 'unknown')),
    ADD COLUMN cost_amount numeric,
    ADD COLUMN cost_currency text,
    ADD COLUMN parts integer;

ALTER TABLE recipients
    ADD COLUMN failure_class text
        CHECK (failure_class IN ('hard', 'soft', 'policy', 'opt_out', 'unknown')),
    ADD COLUMN cost_amount numeric,
    ADD COLUMN cost_currency text,
    ADD COLUMN parts integer,
    -- The event whose cost the row holds, and when it happened: what the next one is merged by.
    ADD COLUMN cost_event_id text,
    ADD COLUMN cost_at timestamptz;

-- The changes the feed relays carry the class (docs/feed.md).
ALTER TABLE change_outbox ADD COLUMN failure_class text;

-- As in migration 20261207000001, with the class.
CREATE OR REPLACE FUNCTION recipients_feed_changes() RETURNS trigger
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
         new_status, provider_status, event_id, occurred_at, error_code, error_description,
         failure_class)
    SELECT c.kind, n.batch_id, n.id, n.provider, n.provider_message_id, n.address, c.old_status,
           c.new_status, n.provider_status, c.event_id, c.occurred_at, n.last_error_code,
           n.last_error_description, n.failure_class
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

-- As in migration 20261204000001, with the class and the cost; the previous one is kept for
-- workers of the previous release during an upgrade.
CREATE FUNCTION store_events(
    p_provider text[], p_event_id text[], p_message_id text[], p_event_type text[],
    p_status text[], p_engagement text[], p_occurred_at timestamptz[], p_error_code text[],
    p_error_description text[], p_provider_status text[], p_payload text[],
    p_failure_class text[], p_cost_amount numeric[], p_cost_currency text[], p_parts integer[],
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
             engagement, error_code, error_description, provider_status, payload,
             failure_class, cost_amount, cost_currency, parts)
        SELECT u.occurred_at, u.provider, u.event_id, u.message_id, u.event_type, u.status,
               u.engagement, u.error_code, u.error_description, u.provider_status,
               u.payload::json, u.failure_class, u.cost_amount, u.cost_currency, u.parts
        FROM (
            SELECT DISTINCT ON (a.provider, a.event_id) a.*
            FROM unnest(p_provider, p_event_id, p_message_id, p_event_type, p_status,
                        p_engagement, p_occurred_at, p_error_code, p_error_description,
                        p_provider_status, p_payload, p_failure_class, p_cost_amount,
                        p_cost_currency, p_parts)
                 WITH ORDINALITY
                 AS a (provider, event_id, message_id, event_type, status, engagement,
                       occurred_at, error_code, error_description, provider_status, payload,
                       failure_class, cost_amount, cost_currency, parts, nth)
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

-- As in migration 20261202000001 (with 20261202000003's setting), with the class and the cost.
CREATE OR REPLACE FUNCTION refresh_recipients(
    p_provider text[],
    p_message_id text[],
    p_registering boolean DEFAULT false,
    p_from timestamptz[] DEFAULT NULL,
    p_to timestamptz[] DEFAULT NULL
)
RETURNS integer
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
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
               (array_agg(e.failure_class ORDER BY e.rank DESC, e.occurred_at DESC, e.event_id DESC)
                   FILTER (WHERE e.status IS NOT NULL))[1] AS failure_class,
               -- The cost is the latest report of one (an estimate, then the final figure).
               (array_agg(e.cost_amount ORDER BY e.occurred_at DESC, e.event_id DESC)
                   FILTER (WHERE e.cost_amount IS NOT NULL))[1] AS cost_amount,
               (array_agg(e.cost_currency ORDER BY e.occurred_at DESC, e.event_id DESC)
                   FILTER (WHERE e.cost_amount IS NOT NULL))[1] AS cost_currency,
               (array_agg(e.event_id ORDER BY e.occurred_at DESC, e.event_id DESC)
                   FILTER (WHERE e.cost_amount IS NOT NULL))[1] AS cost_event_id,
               max(e.occurred_at) FILTER (WHERE e.cost_amount IS NOT NULL)           AS cost_at,
               max(e.parts)                                                          AS parts,
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
                   d.error_description, d.provider_status, d.failure_class, d.cost_amount,
                   d.cost_currency, d.parts,
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
               CASE WHEN w.wins THEN a.failure_class ELSE r.failure_class END AS failure_class,
               CASE WHEN c.wins THEN a.cost_amount ELSE r.cost_amount END     AS cost_amount,
               CASE WHEN c.wins THEN a.cost_currency ELSE r.cost_currency END AS cost_currency,
               CASE WHEN c.wins THEN a.cost_event_id ELSE r.cost_event_id END AS cost_event_id,
               CASE WHEN c.wins THEN a.cost_at ELSE r.cost_at END             AS cost_at,
               GREATEST(r.parts, a.parts)              AS parts,
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
        CROSS JOIN LATERAL (
            SELECT coalesce((a.cost_at, a.cost_event_id)
                            >= (coalesce(r.cost_at, '-infinity'), coalesce(r.cost_event_id, '')),
                            false) AS wins
        ) AS c
    )
    UPDATE recipients r
    SET status = n.status,
        status_event_id = n.status_event_id,
        status_at = n.status_at,
        last_error_code = n.last_error_code,
        last_error_description = n.last_error_description,
        provider_status = n.provider_status,
        failure_class = n.failure_class,
        cost_amount = n.cost_amount,
        cost_currency = n.cost_currency,
        cost_event_id = n.cost_event_id,
        cost_at = n.cost_at,
        parts = n.parts,
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
           r.provider_status, r.failure_class, r.cost_amount, r.cost_currency, r.cost_event_id,
           r.cost_at, r.parts, r.sent_at, r.delivered_at, r.failed_at, r.complained_at,
           r.opened_at, r.clicked_at, r.last_event_at)
          IS DISTINCT FROM
          (n.status, n.status_event_id, n.status_at, n.last_error_code, n.last_error_description,
           n.provider_status, n.failure_class, n.cost_amount, n.cost_currency, n.cost_event_id,
           n.cost_at, n.parts, n.sent_at, n.delivered_at, n.failed_at, n.complained_at,
           n.opened_at, n.clicked_at, n.last_event_at);
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

-- An address as the suppression list keys it: an email case-folded and trimmed; a phone number
-- in E.164 (spaces, tabs, dots, dashes, slashes and parentheses removed, a leading 00 read as
-- +); anything else trimmed and case-folded, so that it still matches itself. One regular
-- expression at most: it is evaluated for every outcome the index below takes.
CREATE FUNCTION address_key(p_address text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE
    WHEN strpos(p_address, '@') > 0 THEN lower(btrim(p_address))
    WHEN translate(p_address, E' \t().-/', '') ~ '^(\+|00)[1-9][0-9]{6,14}$'
        -- The regular expression guarantees a non-zero digit after the + or 00.
        THEN '+' || ltrim(translate(p_address, E' \t().-/+', ''), '0')
    ELSE lower(btrim(p_address))
END;

-- A soft-failure streak reads an address's latest outcomes: only recipients with a final,
-- confirmed outcome are in this index (registrations and updates in flight add nothing to it).
CREATE INDEX recipients_outcomes_by_address ON recipients (address_key(address), status_at)
    WHERE status IN ('delivered', 'failed', 'bounced', 'complained', 'suppressed');

CREATE TABLE suppressions (
    -- address_key() of the address.
    address             text PRIMARY KEY,
    -- hard, opt_out (a complaint, STOP, an unsubscribe) or soft_streak.
    reason              text NOT NULL CHECK (reason IN ('hard', 'opt_out', 'soft_streak')),
    -- The outcome that put it here: its recipient, message, event and the provider's code.
    provider            text NOT NULL,
    provider_message_id text,
    recipient_id        bigint,
    event_id            text,
    status              text,
    provider_status     text,
    error_code          text,
    error_description   text,
    occurred_at         timestamptz,
    added_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX suppressions_by_added ON suppressions (added_at);

CREATE TABLE suppression_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address     text NOT NULL,
    action      text NOT NULL CHECK (action IN ('added', 'removed')),
    reason      text NOT NULL,
    provider    text,
    event_id    text,
    recipient_id bigint,
    error_code  text,
    at          timestamptz NOT NULL DEFAULT now(),
    -- Who removed it (the session's role) and why (`SET LOCAL hookline.note = '...'`).
    by_role     text NOT NULL DEFAULT current_user,
    note        text
);
CREATE INDEX suppression_log_by_address ON suppression_log (address, id);
CREATE INDEX suppression_log_by_at ON suppression_log (at);

CREATE FUNCTION suppressions_log_change() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO suppression_log (address, action, reason, provider, event_id, recipient_id,
                                     error_code, by_role)
        SELECT n.address, 'added', n.reason, n.provider, n.event_id, n.recipient_id,
               n.error_code, session_user
        FROM new_rows n ORDER BY n.address;
    ELSE
        INSERT INTO suppression_log (address, action, reason, provider, event_id, recipient_id,
                                     error_code, by_role, note)
        SELECT o.address, 'removed', o.reason, o.provider, o.event_id, o.recipient_id,
               o.error_code, session_user, nullif(current_setting('hookline.note', true), '')
        FROM old_rows o ORDER BY o.address;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER suppressions_log_insert AFTER INSERT ON suppressions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION suppressions_log_change();
CREATE TRIGGER suppressions_log_delete AFTER DELETE ON suppressions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION suppressions_log_change();

-- The outcomes of one refresh_recipients UPDATE that put addresses on the list. Only outcomes
-- that changed count (a retried or replayed event changes no row), and an address already on
-- the list stays as it was. Soft failures: the address's latest N confirmed outcomes, under a
-- lock per address so that two workers committing its failures at once see each other's (the
-- second's query, a new snapshot, runs once the first committed).
CREATE FUNCTION recipients_suppress() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    soft_limit integer := coalesce(nullif(current_setting('hookline.suppress_after_soft', true),
                                          '')::integer, 3);
BEGIN
    IF current_setting('hookline.refreshing', true) IS DISTINCT FROM 'on'
       OR NOT EXISTS (SELECT 1 FROM new_rows WHERE failure_class IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    -- Every address this statement may add, locked first and in one order: two transactions
    -- never hold one address each while waiting for the other's (its lock, or its uniqueness).
    PERFORM pg_advisory_xact_lock(1751870318, k.h)
    FROM (SELECT DISTINCT hashtext(address_key(n.address)) AS h
          FROM new_rows n
          JOIN old_rows o ON o.id = n.id
          WHERE n.failure_class IN ('hard', 'opt_out', 'soft')
            AND n.failure_class IS DISTINCT FROM o.failure_class
            AND n.address IS NOT NULL
          ORDER BY 1) AS k;
    INSERT INTO suppressions AS s
        (address, reason, provider, provider_message_id, recipient_id, event_id, status,
         provider_status, error_code, error_description, occurred_at)
    SELECT DISTINCT ON (address_key(n.address))
           address_key(n.address),
           CASE WHEN n.failure_class = 'hard' THEN 'hard' ELSE 'opt_out' END,
           n.provider, n.provider_message_id, n.id, n.status_event_id, n.status,
           n.provider_status, n.last_error_code, n.last_error_description, n.status_at
    FROM new_rows n
    JOIN old_rows o ON o.id = n.id
    WHERE n.failure_class IN ('hard', 'opt_out')
      AND n.failure_class IS DISTINCT FROM o.failure_class
      AND n.address IS NOT NULL
    ORDER BY address_key(n.address), n.status_at, n.id
    ON CONFLICT (address) DO NOTHING;

    IF soft_limit <= 0 THEN
        RETURN NULL;
    END IF;
    -- Each address that had a soft failure now: its latest N confirmed outcomes, all soft, put
    -- it on the list, caused by the latest of them.
    INSERT INTO suppressions AS s
        (address, reason, provider, provider_message_id, recipient_id, event_id, status,
         provider_status, error_code, error_description, occurred_at)
    SELECT k.a, 'soft_streak', r.provider, r.provider_message_id, r.id, r.status_event_id,
           r.status, r.provider_status, r.last_error_code, r.last_error_description, r.status_at
    FROM (SELECT DISTINCT address_key(n.address) AS a
          FROM new_rows n
          JOIN old_rows o ON o.id = n.id
          WHERE n.failure_class = 'soft' AND o.failure_class IS DISTINCT FROM 'soft'
            AND n.address IS NOT NULL) AS k
    CROSS JOIN LATERAL (
        SELECT count(*) AS outcomes, count(*) FILTER (WHERE l.failure_class = 'soft') AS soft,
               (array_agg(l.id ORDER BY l.status_at DESC, l.id DESC))[1] AS latest
        FROM (SELECT x.id, x.failure_class, x.status_at FROM recipients x
              WHERE address_key(x.address) = k.a
                AND x.status IN ('delivered', 'failed', 'bounced', 'complained', 'suppressed')
              ORDER BY x.status_at DESC, x.id DESC
              LIMIT soft_limit) AS l
    ) AS c
    JOIN recipients r ON r.id = c.latest
    WHERE c.outcomes = soft_limit AND c.soft = soft_limit
    ORDER BY k.a
    ON CONFLICT (address) DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER recipients_17_suppress AFTER UPDATE ON recipients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recipients_suppress();

-- For the sending application, before it sends.
CREATE FUNCTION is_suppressed(p_address text) RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE
RETURN EXISTS (SELECT 1 FROM suppressions s WHERE s.address = address_key(p_address));

-- Of these addresses, the ones on the list (one query for a whole batch's addresses).
CREATE FUNCTION suppressed_among(p_addresses text[])
RETURNS TABLE (address text, address_key text, reason text, added_at timestamptz)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT a.address, s.address, s.reason, s.added_at
    FROM unnest(p_addresses) AS a (address)
    JOIN suppressions s ON s.address = address_key(a.address)
$$;

-- Per batch, how many recipients failed in each class (a recount: always exact).
CREATE VIEW batch_failure_classes AS
SELECT r.batch_id, r.failure_class, count(*) AS recipients
FROM recipients r
WHERE r.status IN ('failed', 'bounced', 'complained', 'suppressed')
  AND r.batch_id IS NOT NULL
GROUP BY r.batch_id, r.failure_class;

-- Per batch and currency, what the provider reported it cost, from the recipients' rows.
CREATE VIEW batch_costs AS
SELECT r.batch_id, r.cost_currency AS currency, sum(r.cost_amount) AS amount,
       sum(r.parts) AS parts, count(*) AS recipients
FROM recipients r
WHERE r.cost_amount IS NOT NULL AND r.batch_id IS NOT NULL
GROUP BY r.batch_id, r.cost_currency;

-- Whoever reads recipients reads these; whoever may delete recipients may remove suppressions.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT a.privilege_type, r.rolname
        FROM pg_class c, aclexplode(c.relacl) a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = 'recipients'::regclass
          AND a.grantee <> c.relowner
          AND a.privilege_type IN ('SELECT', 'DELETE')
    LOOP
        IF g.privilege_type = 'SELECT' THEN
            EXECUTE format('GRANT SELECT ON suppressions, suppression_log, batch_failure_classes, '
                           'batch_costs TO %I', g.rolname);
        ELSE
            EXECUTE format('GRANT DELETE ON suppressions TO %I', g.rolname);
        END IF;
    END LOOP;
END;
$$;
