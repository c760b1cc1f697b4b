-- rotd store schema, SQLite dialect. Timestamps are unix seconds (UTC); the vendor's API has whole seconds.

CREATE TABLE secrets (
    name              TEXT PRIMARY KEY NOT NULL,
    secret_type       TEXT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    cmk_id            TEXT NOT NULL,
    -- The vendor's ExtendedConfig, as JSON text; NULL for generic secrets.
    extended_config   TEXT,
    -- rotd_core::RotationPolicy as JSON; NULL when the secret rotates only on request.
    rotation          TEXT,
    -- The resource policy document (JSON text); NULL means the default policy.
    policy            TEXT,
    -- The per-secret TOML file that declares this secret, or NULL for secrets created by CLI/API.
    managed_by        TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    planned_delete_at INTEGER,
    last_rotation_at  INTEGER,
    next_rotation_at  INTEGER,
    -- Creation counter for versions of this secret: gives a total order independent of the clock.
    version_seq       INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE secret_tags (
    secret_name TEXT NOT NULL REFERENCES secrets(name) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (secret_name, key)
) STRICT;

CREATE TABLE versions (
    secret_name TEXT NOT NULL REFERENCES secrets(name) ON DELETE CASCADE,
    version_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    data_type   TEXT NOT NULL CHECK (data_type IN ('text', 'binary')),
    cmk_id      TEXT NOT NULL,
    cmk_version INTEGER NOT NULL,
    wrapped_key BLOB NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    PRIMARY KEY (secret_name, version_id)
) STRICT;

CREATE TABLE stages (
    secret_name TEXT NOT NULL,
    stage       TEXT NOT NULL,
    version_id  TEXT NOT NULL,
    PRIMARY KEY (secret_name, stage),
    FOREIGN KEY (secret_name, version_id) REFERENCES versions(secret_name, version_id) ON DELETE CASCADE
) STRICT;

-- The rotation engine's write-ahead journal. Rows are only ever appended, and they outlive the secret
-- they describe so that history survives a force delete.
CREATE TABLE rotation_journal (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    secret_name TEXT NOT NULL,
    rotation_id TEXT NOT NULL,
    step        TEXT NOT NULL,
    version_id  TEXT,
    at          INTEGER NOT NULL,
    detail      TEXT NOT NULL DEFAULT '{}'
) STRICT;
CREATE INDEX rotation_journal_by_secret ON rotation_journal (secret_name, id);

CREATE TRIGGER rotation_journal_no_update BEFORE UPDATE ON rotation_journal
BEGIN SELECT RAISE(ABORT, 'rotation journal is append-only'); END;
CREATE TRIGGER rotation_journal_no_delete BEFORE DELETE ON rotation_journal
BEGIN SELECT RAISE(ABORT, 'rotation journal is append-only'); END;

CREATE TABLE access_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    -- The access key's policy document (allowed actions and secret name patterns), JSON.
    policy       TEXT NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    created_at   INTEGER NOT NULL,
    cmk_id       TEXT NOT NULL,
    cmk_version  INTEGER NOT NULL,
    wrapped_key  BLOB NOT NULL,
    nonce        BLOB NOT NULL,
    ciphertext   BLOB NOT NULL
) STRICT;
