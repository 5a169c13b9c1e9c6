-- Accounts: users, their sessions (any node can read them), the single-use
-- tokens that emails carry, and the counters behind the rate limits.
CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Normalised (trimmed, lower case) by the application; unique.
    email         text        NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
    name          text        NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    -- argon2id PHC string; NULL for an account that logs in by emailed link only.
    password_hash text,
    role          text        NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin')),
    confirmed_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    -- SHA-256 of the cookie's value: a leaked table opens no session.
    token_hash   bytea       PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The synchronizer token that this session's forms carry.
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);

CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE user_tokens (
    -- SHA-256 of the token in the emailed link.
    token_hash bytea       PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text        NOT NULL CHECK (purpose IN ('confirm', 'reset', 'magic', 'change_email')),
    -- The address the link was sent to (for change_email, the new address).
    sent_to    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE INDEX user_tokens_user_id ON user_tokens (user_id, purpose);

-- Fixed-window counters, shared by every node: key is e.g. `login:ip:192.0.2.1`.
CREATE TABLE rate_limits (
    key          text        NOT NULL,
    window_start timestamptz NOT NULL,
    hits         integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (key, window_start)
);
