-- Billing: region discounts, Stripe customers and subscriptions, manual
-- grants, the Stripe events inbox, checkouts as quoted, flags for the
-- operator, and the claims that let exactly one node run a scheduled job
-- per period.

-- The country a visitor's proxy reports maps to a percent off and the
-- Stripe coupon that gives it. Editable by the operator (the admin, later).
CREATE TABLE region_discounts (
    country    text        PRIMARY KEY CHECK (country ~ '^[A-Z]{2}$'),
    percent    integer     NOT NULL CHECK (percent BETWEEN 1 AND 90),
    coupon     text        NOT NULL CHECK (coupon <> ''),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Purchasing-power discounts for countries where the list price is out of
-- reach; each coupon must exist in Stripe with the same percent
-- (`lectern billing reconcile` checks it).
INSERT INTO region_discounts (country, percent, coupon) VALUES
    ('IN', 50, 'region-50'), ('PK', 50, 'region-50'), ('BD', 50, 'region-50'),
    ('NG', 50, 'region-50'), ('EG', 50, 'region-50'), ('ID', 50, 'region-50'),
    ('VN', 50, 'region-50'), ('PH', 50, 'region-50'), ('KE', 50, 'region-50'),
    ('BR', 40, 'region-40'), ('MX', 40, 'region-40'), ('CO', 40, 'region-40'),
    ('AR', 40, 'region-40'), ('TR', 40, 'region-40'), ('UA', 40, 'region-40'),
    ('ZA', 40, 'region-40'), ('MA', 40, 'region-40'),
    ('PL', 25, 'region-25'), ('RO', 25, 'region-25'), ('HU', 25, 'region-25'),
    ('CN', 25, 'region-25'), ('TH', 25, 'region-25'), ('MY', 25, 'region-25'),
    ('CL', 25, 'region-25'), ('PE', 25, 'region-25');

-- One Stripe customer per account, made once.
CREATE TABLE billing_customers (
    user_id     bigint      PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    customer_id text        NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Subscriptions as Stripe last told us, re-read from Stripe on every event.
CREATE TABLE subscriptions (
    id                   text        PRIMARY KEY,
    user_id              bigint      REFERENCES users (id) ON DELETE SET NULL,
    customer_id          text        NOT NULL,
    status               text        NOT NULL CHECK (status IN ('incomplete', 'incomplete_expired',
                             'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'paused')),
    plan                 text,
    price_id             text        NOT NULL,
    amount               integer     NOT NULL CHECK (amount >= 0),
    currency             text        NOT NULL,
    current_period_end   timestamptz,
    cancel_at_period_end boolean     NOT NULL DEFAULT false,
    card_country         text,
    -- When Lectern first saw it active: the "subscription started" email goes once.
    started_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX subscriptions_user ON subscriptions (user_id);

-- Months given by hand (PayPal, complimentary).
CREATE TABLE grants (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source      text        NOT NULL CHECK (source IN ('paypal', 'complimentary')),
    months      integer     NOT NULL CHECK (months BETWEEN 1 AND 120),
    starts_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL CHECK (expires_at > starts_at),
    note        text        NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    reminded_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX grants_user ON grants (user_id, expires_at);

-- Every Stripe event, once: the id is the key, so a duplicate delivery
-- changes nothing. Processing marks it, in the transaction of its effects.
CREATE TABLE stripe_events (
    id           text        PRIMARY KEY,
    type         text        NOT NULL,
    created      timestamptz NOT NULL,
    payload      jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    due_at       timestamptz NOT NULL DEFAULT now(),
    last_error   text,
    outcome      text
);

CREATE INDEX stripe_events_due ON stripe_events (due_at) WHERE processed_at IS NULL;

-- What each Checkout was quoted at, to compare with what was paid.
CREATE TABLE checkouts (
    session_id  text        PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan        text        NOT NULL,
    country     text,
    amount      integer     NOT NULL,
    currency    text        NOT NULL,
    coupon      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);

-- Things the operator should look at (a card from another country than
-- the one quoted, say); never a block.
CREATE TABLE member_flags (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text        NOT NULL,
    detail     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, kind, detail)
);

-- Money received and refunded, for the operator's figures.
CREATE TABLE payments (
    id          text        PRIMARY KEY,
    user_id     bigint      REFERENCES users (id) ON DELETE SET NULL,
    kind        text        NOT NULL CHECK (kind IN ('invoice', 'refund')),
    amount      integer     NOT NULL,
    currency    text        NOT NULL,
    occurred_at timestamptz NOT NULL
);

-- A scheduled job's period claimed by the node that runs it: the primary
-- key lets exactly one node claim each period, whatever the clocks say.
CREATE TABLE job_runs (
    job         text        NOT NULL,
    period      timestamptz NOT NULL,
    node        text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    report      jsonb,
    PRIMARY KEY (job, period)
);
