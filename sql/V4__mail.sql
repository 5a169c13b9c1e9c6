-- Mail: the transactional outbox that the Mailer drains, and the addresses
-- that bounced or complained and are never mailed again.
CREATE TABLE email_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The template folder under templates/email/.
    message     text        NOT NULL CHECK (message ~ '^[a-z][a-z0-9_]*$'),
    recipient   text        NOT NULL,
    data        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- pending: waiting or retrying; sent: accepted by the provider;
    -- dead: given up (permanent error, retries exhausted, suppressed).
    status      text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts    integer     NOT NULL DEFAULT 0,
    due_at      timestamptz NOT NULL DEFAULT now(),
    last_error  text,
    provider_id text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);

CREATE INDEX email_outbox_due ON email_outbox (due_at) WHERE status = 'pending';
CREATE INDEX email_outbox_dead ON email_outbox (created_at) WHERE status = 'dead';

CREATE TABLE email_suppressions (
    email      text        PRIMARY KEY CHECK (email = lower(email)),
    reason     text        NOT NULL CHECK (reason IN ('bounce', 'complaint')),
    -- What the provider said (bounce type, diagnostic), for the dead letter.
    detail     text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
