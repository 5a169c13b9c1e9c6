-- Accounts, hardened: links that a later change voids, rate limits that
-- slide instead of resetting on the clock's window boundaries, growing
-- delays after failed logins, and what the daily cap on emails per
-- recipient counts.

-- A link voided by a later change (a newer sign-up, a new address, a new
-- password) is refused as "no longer valid", not as "already used".
ALTER TABLE user_tokens ADD COLUMN voided_at timestamptz;

-- GCRA: one row per key holding its theoretical arrival time. A request is
-- allowed while the arrival time, moved on by window/limit, stays within one
-- window of now: `limit` requests at once, then one every window/limit.
DROP TABLE rate_limits;
CREATE TABLE rate_limits (
    key text        PRIMARY KEY,
    tat timestamptz NOT NULL
);

-- Counts one request under `key`; returns 0 when it is allowed, otherwise
-- the seconds until the next one would be.
CREATE FUNCTION rate_limit_hit(p_key text, p_window_secs float8, p_limit integer)
RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    step  interval := make_interval(secs => p_window_secs / greatest(p_limit, 1));
    span  interval := make_interval(secs => p_window_secs);
    ahead timestamptz;
BEGIN
    INSERT INTO rate_limits (key, tat) VALUES (p_key, now()) ON CONFLICT (key) DO NOTHING;
    SELECT greatest(tat, now()) + step INTO ahead FROM rate_limits WHERE key = p_key FOR UPDATE;
    IF ahead - now() > span THEN
        RETURN extract(epoch FROM ahead - now() - span);
    END IF;
    UPDATE rate_limits SET tat = ahead WHERE key = p_key;
    RETURN 0;
END $$;

-- Failed password logins per address: past a few, each further attempt
-- waits longer (capped), so a stranger slows the owner down but never
-- locks them out. A successful login clears the row.
CREATE TABLE login_failures (
    email          text        PRIMARY KEY,
    failures       integer     NOT NULL,
    last_failed_at timestamptz NOT NULL
);

-- The daily cap on emails to one address counts that address's recent rows.
CREATE INDEX email_outbox_recipient ON email_outbox (recipient, created_at);
-- Housekeeping purges sent and dead rows by age.
CREATE INDEX email_outbox_created ON email_outbox (created_at) WHERE status <> 'pending';
-- Housekeeping purges accounts never confirmed.
CREATE INDEX users_unconfirmed ON users (updated_at) WHERE confirmed_at IS NULL;
