-- The reconciliation sweep's bookkeeping, so it cannot starve.
--
-- Before, each sweep took the 10,000 non-final recipients with the oldest `updated_at`, and a
-- lookup that resolved nothing (not found, still not final) changed nothing about the row: the
-- same 10,000 unresolvable recipients came first in every sweep, and any resolvable one behind
-- them was never looked up. Now each lookup stamps the row, the sweep takes the least recently
-- checked first (never checked before all), and a recipient checked too often or too long without
-- an answer is given up on: counted, logged, kept queryable, no longer swept.

ALTER TABLE recipients
    ADD COLUMN reconcile_checked_at timestamptz,
    ADD COLUMN reconcile_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN reconcile_gave_up_at timestamptz;

-- What a sweep reads: open, not given up, least recently checked first.
CREATE INDEX recipients_reconcile_queue
    ON recipients (provider, reconcile_checked_at NULLS FIRST, updated_at)
    WHERE status IN ('queued', 'sending', 'sent', 'delayed') AND reconcile_gave_up_at IS NULL;
