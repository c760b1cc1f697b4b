-- The CLI asks the running daemon to reload the keyring (`rotd key rotate`, `rotd key rewrap`) by raising
-- `requested`; the daemon answers by setting `handled` to the value it saw and `loaded` to the newest
-- version of each CMK it now holds (JSON object, CMK id to version; no key material), or `error` to why
-- the reload was refused. One row.
CREATE TABLE keyring_reload (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    requested INTEGER NOT NULL DEFAULT 0,
    handled   INTEGER NOT NULL DEFAULT 0,
    loaded    TEXT NOT NULL DEFAULT '{}',
    loaded_at INTEGER,
    error     TEXT
) STRICT;
INSERT INTO keyring_reload (id) VALUES (1);
