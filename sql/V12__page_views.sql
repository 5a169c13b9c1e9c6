-- Page views, written in batches by the EventLog from the ring the HTTP
-- workers record into. No cookie and no address: a visitor is a keyed hash
-- of the client's address and User-Agent under the day's salt, so the same
-- visitor counts once a day (on every node) and cannot be followed across
-- days. The views of one batch that are alike (day, path, referrer host,
-- country, viewer class and visitor) are one row that counts them, timed
-- at the first: a burst of views costs the database a row, not a row each,
-- and views are sum(views), not count(*). The dashboard aggregates per
-- day: both indexes lead with it.
CREATE TABLE page_views (
    day            date        NOT NULL,
    viewed_at      timestamptz NOT NULL,
    path           text        NOT NULL,
    -- The referring page's host only, never its URL (which can carry a
    -- search or a token).
    referrer_host  text,
    country        text        CHECK (country ~ '^[A-Z]{2}$'),
    viewer         text        NOT NULL CHECK (viewer IN ('anonymous', 'member', 'subscriber')),
    visitor        bigint      NOT NULL,
    views          integer     NOT NULL DEFAULT 1 CHECK (views > 0)
);

CREATE INDEX page_views_day_path ON page_views (day, path);
CREATE INDEX page_views_day_visitor ON page_views (day, visitor);

-- One random salt per UTC day, made by whichever node needs it first
-- (INSERT ... ON CONFLICT DO NOTHING), shared by every node on this
-- database. A past day's salt is deleted, so its hashes cannot be made again.
CREATE TABLE visitor_salts (
    day  date  PRIMARY KEY,
    salt bytea NOT NULL CHECK (length(salt) = 16)
);
