-- Per-secret rotation control state, operator requests, and the daemon's heartbeat.

CREATE TABLE rotation_state (
    secret_name          TEXT PRIMARY KEY NOT NULL,
    -- An operator paused automatic rotation (`rotd rotation pause`).
    paused               INTEGER NOT NULL DEFAULT 0,
    -- Too many failures in this window, or a permanent one: no attempts until resumed or next window.
    quarantined          INTEGER NOT NULL DEFAULT 0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    -- Earliest time the next attempt may start (backoff after a failure), unix seconds.
    next_attempt_at      INTEGER,
    -- The last failure's message (never contains secret material) and class.
    last_error           TEXT,
    last_success_at      INTEGER,
    updated_at           INTEGER NOT NULL
) STRICT;

-- Requests from the CLI/API to the daemon: rotate now, resume. The daemon marks them done.
CREATE TABLE rotation_requests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    secret_name  TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('rotate', 'resume', 'refresh')),
    version_id   TEXT,
    requested_at INTEGER NOT NULL,
    done_at      INTEGER,
    result       TEXT
) STRICT;
CREATE INDEX rotation_requests_open ON rotation_requests (done_at, id);
CREATE INDEX rotation_requests_by_secret ON rotation_requests (secret_name, requested_at);

CREATE TABLE daemon_heartbeat (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    pid        INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    beat_at    INTEGER NOT NULL
) STRICT;
