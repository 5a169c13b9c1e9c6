-- Per-table checksums taken in the dump's own snapshot, beside the row
-- counts: `verify` compares a scratch restore with both. Rows written before
-- this migration have none and are compared by row counts only.
ALTER TABLE backups ADD COLUMN checksums jsonb;
