-- Authors' own media (posters, images, clips, PDFs): the files under a
-- content folder's media/, imported with the content and served at
-- /media/{path}. The SHA-256 is the ETag, and an import rewrites a row only
-- when it differs.

CREATE TABLE media (
    path         text PRIMARY KEY CHECK (
        path ~ '^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$' AND length(path) <= 200
    ),
    content_type text NOT NULL,
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    bytes        bytea NOT NULL CHECK (length(bytes) <= 20971520),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
