-- Two changes to the event log's partition upkeep (migration 20261202000001):
--   * the name of a day's partition is made in one place, event_partition_name;
--   * a day is "missing" only if no partition of delivery_events overlaps it, whatever its name:
--     one made by pg_partman (delivery_events_pYYYYMMDD) or by hand counts, so that
--     `hookline maintain` next to such a tool neither fails on an overlapping ATTACH nor lists a
--     covered day in its dry run.

-- The name of the event log's partition for one UTC day, in one place. create_event_partition
-- builds it here; `hookline maintain --dry-run`, the bench's history filler and the tests ask
-- this function instead of spelling the name again. (The one other spelling is the parser in
-- crates/store/src/lifecycle.rs, `day_of`, which reads the day back from a name; a unit test
-- there holds the two together.)
CREATE FUNCTION event_partition_name(p_day date)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$ SELECT 'delivery_events_' || to_char(p_day, 'YYYYMMDD') $$;

-- As in migration 20261202000001, with the name from event_partition_name.
CREATE OR REPLACE FUNCTION create_event_partition(p_day date)
RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
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
$$;

-- The days from today (UTC) to `p_days_ahead` ahead that no partition of delivery_events
-- overlaps, read from the partitions' bounds (pg_get_expr gives them in this session's time zone,
-- and they are read back in it). Partitions with MINVALUE/MAXVALUE bounds, and a DEFAULT one, are
-- not matched: hookline never makes them.
CREATE FUNCTION event_partition_days_missing(p_days_ahead integer)
RETURNS SETOF date
LANGUAGE sql
STABLE
SET search_path FROM CURRENT
AS $$
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
$$;

-- As in migration 20261202000001 (SECURITY DEFINER, one creator at a time), over the days no
-- partition covers.
CREATE OR REPLACE FUNCTION create_event_partitions(p_days_ahead integer DEFAULT 7)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
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
$$;
