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
