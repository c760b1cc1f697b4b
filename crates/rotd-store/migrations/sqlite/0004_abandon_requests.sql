-- Operator requests gain 'abandon' (`rotd rotation abandon`): the daemon ends an open rotation that
-- cannot finish. SQLite cannot alter a CHECK constraint, so the table is rebuilt with its rows.
CREATE TABLE rotation_requests_v2 (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    secret_name  TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('rotate', 'resume', 'refresh', 'abandon')),
    version_id   TEXT,
    requested_at INTEGER NOT NULL,
    done_at      INTEGER,
    result       TEXT
) STRICT;
INSERT INTO rotation_requests_v2 (id, secret_name, kind, version_id, requested_at, done_at, result)
    SELECT id, secret_name, kind, version_id, requested_at, done_at, result FROM rotation_requests;
DROP TABLE rotation_requests;
ALTER TABLE rotation_requests_v2 RENAME TO rotation_requests;
CREATE INDEX rotation_requests_open ON rotation_requests (done_at, id);
CREATE INDEX rotation_requests_by_secret ON rotation_requests (secret_name, requested_at);
