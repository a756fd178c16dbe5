-- Bytes per stored event (heap + indexes + TOAST) for documented-shape Telnyx and Resend bodies,
-- against the schema of a migrated database. Everything it inserts is rolled back.
--
--   psql "$DATABASE_URL" -v n=100000 -f bench/storage.sql
--
-- The bodies follow the providers' documented examples (Telnyx "delivery update", Resend
-- `email.delivered`); ids are random so index sizes are realistic. Run it on a scratch database:
-- rolled-back rows still extend the table files until the next VACUUM.
\if :{?n}
\else
  \set n 100000
\endif
\set ON_ERROR_STOP on

-- Summed over the log's partitions (pg_partition_tree gives a plain table as its own leaf).
CREATE TEMP VIEW storage_now AS
SELECT sum(pg_relation_size(c.oid)) AS heap,
       sum(CASE WHEN c.reltoastrelid <> 0 THEN pg_total_relation_size(c.reltoastrelid) ELSE 0 END)
           AS toast,
       sum(pg_indexes_size(c.oid)) AS indexes
FROM pg_partition_tree('delivery_events') AS t
JOIN pg_class c ON c.oid = t.relid
WHERE t.isleaf;

-- Sizes when a run starts (rolled back with it), and the report of what the run added.
CREATE TEMP TABLE before AS SELECT * FROM storage_now WITH NO DATA;
CREATE TEMP VIEW storage_report AS
SELECT (SELECT provider FROM delivery_events WHERE received_at = now() LIMIT 1) AS provider,
       round((n.heap - b.heap)::numeric / :n)          AS heap_bytes_per_event,
       round((n.toast - b.toast)::numeric / :n)        AS toast_bytes_per_event,
       round((n.indexes - b.indexes)::numeric / :n)    AS index_bytes_per_event,
       round((n.heap + n.toast + n.indexes - b.heap - b.toast - b.indexes)::numeric / :n)
           AS total_bytes_per_event,
       (SELECT round(avg(octet_length(payload::text))) FROM delivery_events
        WHERE received_at = now()) AS body_bytes
FROM storage_now n, before b;

-- Telnyx: a message.finalized webhook as its API reference shows one.
BEGIN;
INSERT INTO before SELECT * FROM storage_now;
INSERT INTO delivery_events (provider, event_id, provider_message_id, event_type, status,
                             occurred_at, provider_status, payload)
SELECT 'telnyx', e, m, 'message.finalized', 'delivered', now(), 'delivered',
       json_build_object('data', json_build_object(
           'record_type', 'event', 'id', e, 'event_type', 'message.finalized',
           'occurred_at', to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'payload', json_build_object(
               'record_type', 'message', 'direction', 'outbound', 'id', m, 'type', 'SMS',
               'messaging_profile_id', '4000eba1-a0c0-4563-9925-b25e842a7cb6',
               'organization_id', 'b448f9cc-a842-4784-98e9-03c1a5872950',
               'from', json_build_object('phone_number', '+18445550001', 'carrier', 'TELNYX LLC',
                                         'line_type', 'VoIP'),
               'to', json_build_array(json_build_object(
                   'phone_number', '+1866555' || lpad((i % 10000)::text, 4, '0'),
                   'status', 'delivered', 'carrier', 'T-MOBILE USA, INC.', 'line_type', 'Wireless')),
               'cc', json_build_array(), 'text', 'Your code is ' || (i % 1000000),
               'subject', NULL, 'media', json_build_array(),
               'webhook_url', 'https://www.example.com/hooks',
               'webhook_failover_url', 'https://backup.example.com/hooks',
               'encoding', 'GSM-7', 'parts', 1, 'tags', json_build_array('campaign-42'),
               'cost', json_build_object('amount', '0.0051', 'currency', 'USD'),
               'cost_breakdown', json_build_object(
                   'carrier_fee', json_build_object('amount', '0.00305', 'currency', 'USD'),
                   'rate', json_build_object('amount', '0.00205', 'currency', 'USD')),
               'tcr_campaign_id', 'TCPA3X7', 'tcr_campaign_billable', true,
               'tcr_campaign_registered', 'REGISTERED',
               'received_at', to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'sent_at', to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'completed_at', to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'valid_until', NULL, 'errors', json_build_array())),
           'meta', json_build_object('attempt', 1,
                                     'delivered_to', 'https://www.example.com/hooks'))
FROM (SELECT i, gen_random_uuid()::text AS e, gen_random_uuid()::text AS m
      FROM generate_series(1, :n) AS i) AS g;
SELECT * FROM storage_report;
ROLLBACK;

-- Resend: an email.delivered webhook as its documentation shows one (ids are Resend's uuids).
BEGIN;
INSERT INTO before SELECT * FROM storage_now;
INSERT INTO delivery_events (provider, event_id, provider_message_id, event_type, status,
                             occurred_at, provider_status, payload)
SELECT 'resend', 'msg_' || replace(e, '-', ''), m, 'email.delivered', 'delivered', now(),
       'delivered',
       json_build_object(
           'type', 'email.delivered',
           'created_at', to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'data', json_build_object(
               'broadcast_id', '8b146471-e88e-4322-86af-016cd36fd216',
               'created_at', to_char(now(), 'YYYY-MM-DD HH24:MI:SS.US+00'),
               'email_id', m, 'from', 'Acme <onboarding@resend.dev>',
               'to', json_build_array('customer' || i || '@example.com'),
               'subject', 'Your order has shipped',
               'tags', json_build_object('category', 'confirm_email')))
FROM (SELECT i, gen_random_uuid()::text AS e, gen_random_uuid()::text AS m
      FROM generate_series(1, :n) AS i) AS g;
SELECT * FROM storage_report;
ROLLBACK;

