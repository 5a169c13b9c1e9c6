-- Content: series, episodes, articles and tags. Markdown sources are stored
-- beside their HTML, compiled once at import or save: a page view never
-- compiles Markdown. Search uses PostgreSQL full-text search over titles,
-- summaries and bodies.

CREATE TABLE series (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 80),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    summary     text NOT NULL DEFAULT '' CHECK (length(summary) <= 500),
    body_source text NOT NULL DEFAULT '',
    body_html   text NOT NULL DEFAULT '',
    position    integer NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE episodes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug            text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 80),
    number          integer NOT NULL CHECK (number > 0),
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    summary         text NOT NULL DEFAULT '' CHECK (length(summary) <= 500),
    body_source     text NOT NULL DEFAULT '',
    body_html       text NOT NULL DEFAULT '',
    -- The show notes up to their first second-level heading: what a visitor
    -- without access to a premium episode reads.
    teaser_html     text NOT NULL DEFAULT '',
    duration_secs   integer NOT NULL CHECK (duration_secs >= 0),
    video_url       text NOT NULL,
    poster_url      text,
    access          text NOT NULL CHECK (access IN ('free', 'premium')),
    status          text NOT NULL CHECK (status IN ('draft', 'published')),
    published_at    timestamptz,
    series_id       bigint REFERENCES series (id) ON DELETE SET NULL,
    series_position integer CHECK (series_position > 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    search          tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A') ||
        setweight(to_tsvector('english', summary), 'B') ||
        setweight(to_tsvector('english', body_source), 'C')
    ) STORED,
    CHECK (status = 'draft' OR published_at IS NOT NULL),
    CHECK ((series_id IS NULL) = (series_position IS NULL)),
    -- Deferred, so that an import may renumber or reorder in one transaction.
    CONSTRAINT episodes_number_unique UNIQUE (number) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT episodes_series_position_unique UNIQUE (series_id, series_position) DEFERRABLE INITIALLY DEFERRED
);

CREATE INDEX episodes_published ON episodes (published_at DESC) WHERE status = 'published';
CREATE INDEX episodes_search ON episodes USING gin (search);

CREATE TABLE articles (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug         text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 80),
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    summary      text NOT NULL DEFAULT '' CHECK (length(summary) <= 500),
    body_source  text NOT NULL DEFAULT '',
    body_html    text NOT NULL DEFAULT '',
    status       text NOT NULL CHECK (status IN ('draft', 'published')),
    published_at timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    search       tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A') ||
        setweight(to_tsvector('english', summary), 'B') ||
        setweight(to_tsvector('english', body_source), 'C')
    ) STORED,
    CHECK (status = 'draft' OR published_at IS NOT NULL)
);

CREATE INDEX articles_published ON articles (published_at DESC) WHERE status = 'published';
CREATE INDEX articles_search ON articles USING gin (search);

CREATE TABLE tags (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 40)
);

CREATE TABLE episode_tags (
    episode_id bigint NOT NULL REFERENCES episodes (id) ON DELETE CASCADE,
    tag_id     bigint NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (episode_id, tag_id)
);
CREATE INDEX episode_tags_tag ON episode_tags (tag_id);

CREATE TABLE article_tags (
    article_id bigint NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    tag_id     bigint NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (article_id, tag_id)
);
CREATE INDEX article_tags_tag ON article_tags (tag_id);
