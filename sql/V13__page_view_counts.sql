-- Page views in one batch that are alike (day, path, referrer host,
-- country, viewer class and visitor) are written as one row that counts
-- them, timed at the first: a burst of views costs the database a row, not
-- a row each. Views are sum(views), not count(*).
ALTER TABLE page_views ADD COLUMN views integer NOT NULL DEFAULT 1 CHECK (views > 0);
