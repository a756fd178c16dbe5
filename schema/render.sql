-- Renders the schema the migrations build as one readable file (schema/current.sql): every
-- table of the public schema but partitions, with its constraints, then indexes, functions
-- (their current bodies), triggers and views, each sorted by name. Run by the worker tests
-- (`schema::the_readable_schema_is_what_the_migrations_build`).
WITH tables AS (
    SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND c.relname <> '_sqlx_migrations'
), parts AS (
    SELECT 1 AS k, t.relname AS name, format(E'CREATE TABLE %I (\n%s\n)%s;', t.relname,
        (SELECT string_agg(format('    %I %s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')), E',\n' ORDER BY a.attnum)
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped)
        || coalesce((SELECT E',\n' || string_agg(format('    CONSTRAINT %I %s', co.conname, pg_get_constraintdef(co.oid)), E',\n' ORDER BY co.conname)
                     FROM pg_constraint co WHERE co.conrelid = t.oid AND co.contype <> 'n'), ''),
        coalesce(' PARTITION BY ' || pg_get_partkeydef(t.oid), '')) AS def
    FROM tables t
    UNION ALL
    SELECT 2, i.relname, pg_get_indexdef(i.oid) || ';'
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN tables t ON t.oid = x.indrelid
    WHERE NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = i.oid)
    UNION ALL
    SELECT 3, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', pg_get_functiondef(p.oid) || ';'
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 4, tg.tgname, pg_get_triggerdef(tg.oid) || ';'
    FROM pg_trigger tg JOIN tables t ON t.oid = tg.tgrelid WHERE NOT tg.tgisinternal
    UNION ALL
    SELECT 5, c.relname, format(E'CREATE VIEW %I AS\n%s', c.relname, pg_get_viewdef(c.oid))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'v'
)
SELECT string_agg(def, E'\n\n' ORDER BY k, name) FROM parts
