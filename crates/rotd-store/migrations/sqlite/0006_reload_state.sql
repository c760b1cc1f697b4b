-- The running daemon's last configuration reload, for `rotd status`: when a reload was refused and how
-- many errors it found (both NULL while the configuration in use is the last one loaded).
ALTER TABLE daemon_heartbeat ADD COLUMN reload_failed_at INTEGER;
ALTER TABLE daemon_heartbeat ADD COLUMN reload_errors INTEGER;
