-- Search must not reveal a premium episode's paid notes: its index (and the
-- snippet `content::search` quotes) covers only the public teaser, the notes
-- up to their first second-level heading, whose Markdown the importer now
-- stores beside the HTML.

ALTER TABLE episodes ADD COLUMN teaser_source text NOT NULL DEFAULT '';

-- Episodes imported before this migration get the text of their teaser's
-- HTML, exactly what a visitor can read; the next import stores the source.
UPDATE episodes SET teaser_source =
    replace(replace(replace(replace(replace(
        regexp_replace(teaser_html, '<[^>]*>', '', 'g'),
        '&lt;', '<'), '&gt;', '>'), '&quot;', '"'), '&#39;', ''''), '&amp;', '&');

-- A generated column's expression cannot be altered on PostgreSQL 15:
-- dropping the column drops its index too, and both are made again.
ALTER TABLE episodes DROP COLUMN search;
ALTER TABLE episodes ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', title), 'A') ||
    setweight(to_tsvector('english', summary), 'B') ||
    setweight(to_tsvector('english',
        CASE WHEN access = 'premium' THEN teaser_source ELSE body_source END), 'C')
) STORED;
CREATE INDEX episodes_search ON episodes USING gin (search);
