-- The schema the migrations build, rendered by schema/render.sql: generated, do not edit.
-- Regenerate: HOOKLINE_UPDATE_SCHEMA=1 cargo nextest run -E 'test(schema::)'

CREATE TABLE batches (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    total_count integer NOT NULL DEFAULT 0,
    queued_count integer NOT NULL DEFAULT 0,
    sending_count integer NOT NULL DEFAULT 0,
    sent_count integer NOT NULL DEFAULT 0,
    delayed_count integer NOT NULL DEFAULT 0,
    unconfirmed_count integer NOT NULL DEFAULT 0,
    delivered_count integer NOT NULL DEFAULT 0,
    failed_count integer NOT NULL DEFAULT 0,
    bounced_count integer NOT NULL DEFAULT 0,
    complained_count integer NOT NULL DEFAULT 0,
    suppressed_count integer NOT NULL DEFAULT 0,
    completed_at timestamp with time zone,
    CONSTRAINT batches_pkey PRIMARY KEY (id)
);

CREATE TABLE change_outbox (
    id bigint NOT NULL,
    kind text NOT NULL,
    batch_id uuid,
    recipient_id bigint,
    provider text,
    provider_message_id text,
    address text,
    old_status text,
    new_status text,
    provider_status text,
    event_id text,
    occurred_at timestamp with time zone,
    error_code text,
    error_description text,
    batch json,
    stored_at timestamp with time zone NOT NULL DEFAULT now(),
    failure_class text,
    CONSTRAINT change_outbox_pkey PRIMARY KEY (id)
);

CREATE TABLE delivery_events (
    received_at timestamp with time zone NOT NULL DEFAULT now(),
    occurred_at timestamp with time zone NOT NULL,
    provider text NOT NULL,
    event_id text NOT NULL,
    provider_message_id text,
    event_type text NOT NULL,
    status text,
    engagement text,
    error_code text,
    error_description text,
    provider_status text,
    payload json NOT NULL,
    failure_class text,
    cost_amount numeric,
    cost_currency text,
    parts integer,
    CONSTRAINT delivery_events_engagement_check CHECK ((engagement = ANY (ARRAY['opened'::text, 'clicked'::text]))),
    CONSTRAINT delivery_events_failure_class_check CHECK ((failure_class = ANY (ARRAY['hard'::text, 'soft'::text, 'policy'::text, 'opt_out'::text, 'unknown'::text]))),
    CONSTRAINT delivery_events_status_fkey FOREIGN KEY (status) REFERENCES delivery_statuses(status),
    CONSTRAINT delivery_events_status_or_engagement CHECK (((status IS NULL) OR (engagement IS NULL)))
) PARTITION BY RANGE (received_at);

CREATE TABLE delivery_statuses (
    status text NOT NULL,
    rank smallint NOT NULL,
    is_final boolean NOT NULL,
    CONSTRAINT delivery_statuses_pkey PRIMARY KEY (status),
    CONSTRAINT delivery_statuses_rank_key UNIQUE (rank)
);

CREATE TABLE early_messages (
    provider text NOT NULL,
    provider_message_id text NOT NULL,
    first_received_at timestamp with time zone NOT NULL,
    last_received_at timestamp with time zone NOT NULL,
    CONSTRAINT early_messages_pkey PRIMARY KEY (provider, provider_message_id)
);

CREATE TABLE future_dated_events (
    provider text NOT NULL,
    event_id text NOT NULL,
    received_at timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT future_dated_events_pkey PRIMARY KEY (provider, event_id)
);

CREATE TABLE hookline_migrations (
    version bigint NOT NULL,
    description text NOT NULL,
    checksum bytea NOT NULL,
    installed_on timestamp with time zone NOT NULL DEFAULT now(),
    execution_ms bigint NOT NULL,
    CONSTRAINT hookline_migrations_pkey PRIMARY KEY (version)
);

CREATE TABLE message_addresses (
    provider text NOT NULL,
    provider_message_id text NOT NULL,
    address text NOT NULL,
    status text,
    provider_status text NOT NULL,
    status_event_id text NOT NULL,
    status_at timestamp with time zone NOT NULL,
    CONSTRAINT message_addresses_pkey PRIMARY KEY (provider, provider_message_id, address),
    CONSTRAINT message_addresses_status_fkey FOREIGN KEY (status) REFERENCES delivery_statuses(status)
);

CREATE TABLE recipients (
    id bigint NOT NULL,
    batch_id uuid,
    provider text NOT NULL,
    provider_message_id text,
    address text,
    status text NOT NULL DEFAULT 'queued'::text,
    status_event_id text,
    status_at timestamp with time zone,
    last_error_code text,
    last_error_description text,
    sent_at timestamp with time zone,
    delivered_at timestamp with time zone,
    failed_at timestamp with time zone,
    complained_at timestamp with time zone,
    opened_at timestamp with time zone,
    clicked_at timestamp with time zone,
    last_event_at timestamp with time zone,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    provider_status text,
    reconcile_checked_at timestamp with time zone,
    reconcile_attempts integer NOT NULL DEFAULT 0,
    reconcile_gave_up_at timestamp with time zone,
    failure_class text,
    cost_amount numeric,
    cost_currency text,
    parts integer,
    cost_event_id text,
    cost_at timestamp with time zone,
    CONSTRAINT recipients_batch_id_fkey FOREIGN KEY (batch_id) REFERENCES batches(id) ON DELETE CASCADE,
    CONSTRAINT recipients_failure_class_check CHECK ((failure_class = ANY (ARRAY['hard'::text, 'soft'::text, 'policy'::text, 'opt_out'::text, 'unknown'::text]))),
    CONSTRAINT recipients_pkey PRIMARY KEY (id),
    CONSTRAINT recipients_provider_provider_message_id_key UNIQUE (provider, provider_message_id),
    CONSTRAINT recipients_status_fkey FOREIGN KEY (status) REFERENCES delivery_statuses(status)
);

CREATE TABLE recipients_commit_pass (
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT recipients_commit_pass TRIGGER DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT recipients_commit_pass_pkey PRIMARY KEY (xid)
);

CREATE TABLE recipients_pending (
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    provider text,
    message_id text,
    batch_id uuid,
    status text,
    delta integer
);

CREATE TABLE suppression_log (
    id bigint NOT NULL,
    address text NOT NULL,
    action text NOT NULL,
    reason text NOT NULL,
    provider text,
    event_id text,
    recipient_id bigint,
    error_code text,
    at timestamp with time zone NOT NULL DEFAULT now(),
    by_role text NOT NULL DEFAULT CURRENT_USER,
    note text,
    CONSTRAINT suppression_log_action_check CHECK ((action = ANY (ARRAY['added'::text, 'removed'::text]))),
    CONSTRAINT suppression_log_pkey PRIMARY KEY (id)
);

CREATE TABLE suppressions (
    address text NOT NULL,
    reason text NOT NULL,
    provider text NOT NULL,
    provider_message_id text,
    recipient_id bigint,
    event_id text,
    status text,
    provider_status text,
    error_code text,
    error_description text,
    occurred_at timestamp with time zone,
    added_at timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT suppressions_pkey PRIMARY KEY (address),
    CONSTRAINT suppressions_reason_check CHECK ((reason = ANY (ARRAY['hard'::text, 'opt_out'::text, 'soft_streak'::text])))
);

CREATE INDEX delivery_events_by_event_id ON ONLY public.delivery_events USING hash (event_id);

CREATE INDEX delivery_events_by_message ON ONLY public.delivery_events USING hash (provider_message_id);

CREATE INDEX delivery_events_by_received_utc ON ONLY public.delivery_events USING btree ((received_at AT TIME ZONE 'UTC'::text));

CREATE INDEX future_dated_events_by_received ON public.future_dated_events USING btree (received_at);

CREATE INDEX recipients_batch_status ON public.recipients USING btree (batch_id, status);

CREATE INDEX recipients_open_by_age ON public.recipients USING btree (updated_at) WHERE (status = ANY (ARRAY['queued'::text, 'sending'::text, 'sent'::text, 'delayed'::text]));

CREATE INDEX recipients_outcomes_by_address ON public.recipients USING btree (address_key(address), status_at) WHERE (status = ANY (ARRAY['delivered'::text, 'failed'::text, 'bounced'::text, 'complained'::text, 'suppressed'::text]));

CREATE INDEX recipients_pending_xid ON public.recipients_pending USING btree (xid);

CREATE INDEX recipients_reconcile_queue ON public.recipients USING btree (provider, reconcile_checked_at NULLS FIRST, updated_at) WHERE ((status = ANY (ARRAY['queued'::text, 'sending'::text, 'sent'::text, 'delayed'::text])) AND (reconcile_gave_up_at IS NULL));

CREATE INDEX suppression_log_by_address ON public.suppression_log USING btree (address, id);

CREATE INDEX suppression_log_by_at ON public.suppression_log USING btree (at);

CREATE INDEX suppressions_by_added ON public.suppressions USING btree (added_at);

CREATE OR REPLACE FUNCTION public.address_key(p_address text)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
RETURN CASE WHEN (strpos(p_address, '@'::text) > 0) THEN lower(btrim(p_address)) WHEN (translate(p_address, ' 	().-/'::text, ''::text) ~ '^(\+|00)[1-9][0-9]{6,14}$'::text) THEN ('+'::text || ltrim(translate(p_address, ' 	().-/+'::text, ''::text), '0'::text)) ELSE lower(btrim(p_address)) END
;

CREATE OR REPLACE FUNCTION public.apply_batch_deltas(p_batch uuid[], p_status text[], p_delta integer[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION public.batches_note_completion()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public'
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION public.create_event_partition(p_day date)
 RETURNS text
 LANGUAGE plpgsql
 SET search_path TO '$user', 'public'
AS $function$
DECLARE
    name text := event_partition_name(p_day);
    lower_bound timestamptz := p_day::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(quote_ident(name)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE delivery_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING STORAGE INCLUDING COMPRESSION)', name);
    EXECUTE format('ALTER TABLE delivery_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, lower_bound, lower_bound + interval '1 day');
    RETURN name;
END;
$function$
;

CREATE OR REPLACE FUNCTION public.create_event_partitions(p_days_ahead integer DEFAULT 7)
 RETURNS SETOF text
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO '$user', 'public'
AS $function$
DECLARE
    missing date;
    created text;
BEGIN
    PERFORM pg_advisory_xact_lock(1751870318, 1);
    FOR missing IN SELECT * FROM event_partition_days_missing(p_days_ahead) LOOP
        created := create_event_partition(missing);
        IF created IS NOT NULL THEN
            RETURN NEXT created;
        END IF;
    END LOOP;
END;
$function$
;

CREATE OR REPLACE FUNCTION public.event_partition_days_missing(p_days_ahead integer)
 RETURNS SETOF date
 LANGUAGE sql
 STABLE
 SET search_path TO '$user', 'public'
AS $function$
    SELECT d.day
    FROM (SELECT ((now() AT TIME ZONE 'UTC')::date + n) AS day
          FROM generate_series(0, greatest(p_days_ahead, 0)) AS n) AS d
    WHERE NOT EXISTS (
        SELECT 1
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                        $re$FROM \('([^']+)'\) TO \('([^']+)'\)$re$) AS b
        WHERE i.inhparent = 'delivery_events'::regclass
          AND b[1]::timestamptz < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
          AND b[2]::timestamptz > d.day::timestamp AT TIME ZONE 'UTC')
    ORDER BY d.day
$function$
;

CREATE OR REPLACE FUNCTION public.event_partition_name(p_day date)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT 'delivery_events_' || to_char(p_day, 'YYYYMMDD') $function$
;

CREATE OR REPLACE FUNCTION public.feed_time(p timestamp with time zone)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
RETURN to_char((p AT TIME ZONE 'UTC'::text), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'::text)
;

CREATE OR REPLACE FUNCTION public.is_suppressed(p_address text)
 RETURNS boolean
 LANGUAGE sql
 STABLE PARALLEL SAFE STRICT
RETURN (EXISTS (SELECT 1 FROM suppressions s WHERE (s.address = address_key(is_suppressed.p_address))))
;

CREATE OR REPLACE FUNCTION public.lock_message_stripes(p_provider text[], p_message_id text[], p_exclusive boolean)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION public.recipients_apply_at_commit()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION public.recipients_apply_stored_events()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION public.recipients_count_rows()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION public.recipients_expect_commit_pass()
 RETURNS void
 LANGUAGE plpgsql
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION public.recipients_feed_changes()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public'
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION public.recipients_suppress()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public'
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION public.refresh_recipients(p_provider text[], p_message_id text[], p_registering boolean DEFAULT false, p_from timestamp with time zone[] DEFAULT NULL::timestamp with time zone[], p_to timestamp with time zone[] DEFAULT NULL::timestamp with time zone[])
 RETURNS integer
 LANGUAGE plpgsql
 SET enable_seqscan TO 'off'
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION public.store_events(p_provider text[], p_event_id text[], p_message_id text[], p_event_type text[], p_status text[], p_engagement text[], p_occurred_at timestamp with time zone[], p_error_code text[], p_error_description text[], p_provider_status text[], p_payload text[], p_window interval)
 RETURNS TABLE(stored_provider text, stored_message_id text)
 LANGUAGE plpgsql
 SET enable_seqscan TO 'off'
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION public.store_events(p_provider text[], p_event_id text[], p_message_id text[], p_event_type text[], p_status text[], p_engagement text[], p_occurred_at timestamp with time zone[], p_error_code text[], p_error_description text[], p_provider_status text[], p_payload text[], p_failure_class text[], p_cost_amount numeric[], p_cost_currency text[], p_parts integer[], p_window interval)
 RETURNS TABLE(stored_provider text, stored_message_id text)
 LANGUAGE plpgsql
 SET enable_seqscan TO 'off'
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION public.suppressed_among(p_addresses text[])
 RETURNS TABLE(address text, address_key text, reason text, added_at timestamp with time zone)
 LANGUAGE sql
 STABLE PARALLEL SAFE STRICT
AS $function$
    SELECT a.address, s.address, s.reason, s.added_at
    FROM unnest(p_addresses) AS a (address)
    JOIN suppressions s ON s.address = address_key(a.address)
$function$
;

CREATE OR REPLACE FUNCTION public.suppressions_log_change()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public'
AS $function$
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
$function$
;

CREATE TRIGGER batches_note_completion BEFORE UPDATE OF total_count, queued_count, sending_count, sent_count, delayed_count, unconfirmed_count, delivered_count, failed_count, bounced_count, complained_count, suppressed_count ON public.batches FOR EACH ROW EXECUTE FUNCTION batches_note_completion();

CREATE TRIGGER recipients_10_apply_events_on_insert AFTER INSERT ON public.recipients REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION recipients_apply_stored_events();

CREATE TRIGGER recipients_10_apply_events_on_update AFTER UPDATE ON public.recipients REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION recipients_apply_stored_events();

CREATE TRIGGER recipients_15_feed_changes AFTER UPDATE ON public.recipients REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION recipients_feed_changes();

CREATE TRIGGER recipients_17_suppress AFTER UPDATE ON public.recipients REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION recipients_suppress();

CREATE TRIGGER recipients_20_count_delete AFTER DELETE ON public.recipients REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION recipients_count_rows();

CREATE TRIGGER recipients_20_count_insert AFTER INSERT ON public.recipients REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION recipients_count_rows();

CREATE TRIGGER recipients_20_count_update AFTER UPDATE ON public.recipients REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION recipients_count_rows();

CREATE CONSTRAINT TRIGGER recipients_commit_pass AFTER INSERT ON public.recipients_commit_pass DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION recipients_apply_at_commit();

CREATE TRIGGER suppressions_log_delete AFTER DELETE ON public.suppressions REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION suppressions_log_change();

CREATE TRIGGER suppressions_log_insert AFTER INSERT ON public.suppressions REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION suppressions_log_change();

CREATE VIEW batch_costs AS
 SELECT r.batch_id,
    r.cost_currency AS currency,
    sum(r.cost_amount) AS amount,
    sum(r.parts) AS parts,
    count(*) AS recipients
   FROM recipients r
  WHERE ((r.cost_amount IS NOT NULL) AND (r.batch_id IS NOT NULL))
  GROUP BY r.batch_id, r.cost_currency;

CREATE VIEW batch_failure_classes AS
 SELECT r.batch_id,
    r.failure_class,
    count(*) AS recipients
   FROM recipients r
  WHERE ((r.status = ANY (ARRAY['failed'::text, 'bounced'::text, 'complained'::text, 'suppressed'::text])) AND (r.batch_id IS NOT NULL))
  GROUP BY r.batch_id, r.failure_class;

CREATE VIEW unfinished_batches AS
 SELECT b.id AS batch_id,
    b.name,
    b.created_at,
    b.total_count,
    (((b.queued_count + b.sending_count) + b.sent_count) + b.delayed_count) AS open_count,
    o.oldest_open_at,
    (now() - o.oldest_open_at) AS oldest_open_age
   FROM (batches b
     CROSS JOIN LATERAL ( SELECT min(r.created_at) AS oldest_open_at
           FROM recipients r
          WHERE ((r.batch_id = b.id) AND (r.status = ANY (ARRAY['queued'::text, 'sending'::text, 'sent'::text, 'delayed'::text])))) o)
  WHERE ((b.completed_at IS NULL) AND (b.total_count > 0));
