-- Each address of a message sent to several (a Telnyx group MMS, whose webhooks list every
-- address in `to[]` with its own status).
--
-- Why a table beside `recipients` rather than one recipient row per address: the provider keys
-- a message, its webhooks and its API by one message id, and so does everything built on
-- `recipients` (the sending application's registration, early events, batch counters, the
-- reconciliation sweep). The message stays one recipient whose status is the highest-ranked of
-- its addresses (a group MMS with one failed address counts as failed); each address's own
-- outcome is kept here, by the same monotonic rule (a lower status never overwrites a higher one,
-- equal ranks keep the later event). Derived from stored events like everything else, so a replay
-- rebuilds it.
CREATE TABLE message_addresses (
    provider            text NOT NULL,
    provider_message_id text NOT NULL,
    address             text NOT NULL,
    -- NULL while every reported value is one hookline does not map.
    status              text REFERENCES delivery_statuses (status),
    provider_status     text NOT NULL,
    status_event_id     text NOT NULL,
    status_at           timestamptz NOT NULL,
    PRIMARY KEY (provider, provider_message_id, address)
);
