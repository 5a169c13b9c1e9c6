-- The operator's admin area: an account an administrator disabled. While
-- disabled_at is set, its sessions are not found and no password or
-- emailed link logs it in; disabling also ends its sessions at once.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
