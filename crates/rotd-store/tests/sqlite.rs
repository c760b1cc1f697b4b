//! The store conformance suite on SQLite, plus checks only SQLite can make: tampering with rows in the
//! database file, durability settings, and a scan of every byte on disk for plaintext.

use std::path::{Path, PathBuf};

use rotd_core::{DataType, Secret, SecretName, SecretType, Tags, VersionId};
use rotd_store::{Keyring, NewSecret, NewVersion, Selector, Store, StoreError};
use rotd_testkit::store_suite::{GuardWithKeyring, Handle, keyring, keyring_guard};
use sqlx::Connection;

async fn sqlite(keyring: Keyring) -> Handle {
    let dir = tempfile::tempdir().expect("temp dir");
    let guard = keyring_guard(&keyring, dir);
    let path = db_path(&guard);
    let store = Store::open_sqlite(&path, keyring)
        .await
        .expect("open sqlite store");
    Handle { store, guard }
}

fn db_path(guard: &Box<dyn std::any::Any + Send>) -> PathBuf {
    let g = guard.downcast_ref::<GuardWithKeyring>().expect("guard");
    g.inner
        .downcast_ref::<tempfile::TempDir>()
        .expect("temp dir")
        .path()
        .join("rotd.db")
}

rotd_testkit::store_conformance!(sqlite);

fn new_secret(name: &str) -> NewSecret {
    NewSecret {
        name: SecretName::parse(name).expect("name"),
        kind: SecretType::Generic,
        description: String::new(),
        tags: Tags::default(),
        cmk_id: "default".into(),
        extended_config: None,
        rotation: None,
        policy: None,
        managed_by: None,
    }
}

fn version(id: &str, value: &str) -> NewVersion {
    NewVersion {
        version_id: VersionId::parse(id).expect("id"),
        data_type: DataType::Text,
        value: Secret::from(value),
    }
}

fn vid(s: &str) -> VersionId {
    VersionId::parse(s).expect("id")
}

async fn raw(path: &Path) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw connection")
}

#[tokio::test]
async fn flipped_byte_in_any_sealed_column_fails_to_decrypt() {
    let h = sqlite(keyring()).await;
    let path = db_path(&h.guard);
    h.store
        .create_secret(new_secret("a"), Some(version("v1", "value-one")))
        .await
        .expect("create");
    let mut conn = raw(&path).await;
    for column in ["ciphertext", "nonce", "wrapped_key"] {
        let blob: Vec<u8> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {column} FROM versions")))
            .fetch_one(&mut conn)
            .await
            .expect("read");
        for pos in [0, blob.len() / 2, blob.len() - 1] {
            let mut flipped = blob.clone();
            flipped[pos] ^= 0x01;
            sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE versions SET {column} = ?")))
                .bind(&flipped)
                .execute(&mut conn)
                .await
                .expect("tamper");
            let e = h.store.get_value("a", &Selector::current()).await.unwrap_err();
            assert!(matches!(e, StoreError::Decrypt { .. }), "{column}[{pos}]: {e}");
            assert!(
                e.to_string().starts_with("cannot decrypt secret a version v1: "),
                "{e}"
            );
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE versions SET {column} = ?")))
            .bind(&blob)
            .execute(&mut conn)
            .await
            .expect("restore");
        let v = h
            .store
            .get_value("a", &Selector::current())
            .await
            .expect("intact again");
        assert_eq!(v.value.expose_str(), Some("value-one"));
    }
}

#[tokio::test]
async fn ciphertext_moved_to_another_row_fails_to_decrypt() {
    let h = sqlite(keyring()).await;
    let path = db_path(&h.guard);
    h.store
        .create_secret(new_secret("a"), Some(version("v1", "alpha")))
        .await
        .expect("create a");
    h.store
        .create_secret(new_secret("b"), Some(version("v1", "bravo")))
        .await
        .expect("create b");
    h.store
        .put_value("a", version("v2", "alpha-two"), None)
        .await
        .expect("put");
    let mut conn = raw(&path).await;
    // Copy a/v1's sealed columns over b/v1 (another secret) and a/v2 (another version).
    for (secret, ver) in [("b", "v1"), ("a", "v2")] {
        sqlx::query(
            "UPDATE versions SET wrapped_key = src.wrapped_key, nonce = src.nonce, ciphertext = src.ciphertext
             FROM (SELECT wrapped_key, nonce, ciphertext FROM versions WHERE secret_name = 'a' AND version_id = 'v1') AS src
             WHERE secret_name = ? AND version_id = ?",
        )
        .bind(secret)
        .bind(ver)
        .execute(&mut conn)
        .await
        .expect("move ciphertext");
        let e = h
            .store
            .get_value(secret, &Selector::Version(vid(ver)))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Decrypt { .. }), "{secret}/{ver}: {e}");
    }
    let v = h
        .store
        .get_value("a", &Selector::Version(vid("v1")))
        .await
        .expect("a/v1 untouched");
    assert_eq!(v.value.expose_str(), Some("alpha"));
}

#[tokio::test]
async fn no_plaintext_anywhere_on_disk() {
    let h = sqlite(keyring()).await;
    let path = db_path(&h.guard);
    let values: Vec<String> = (0..20)
        .map(|i| format!("PLAINTEXT-MARKER-{i:02}-{}", "q".repeat(i * 50)))
        .collect();
    h.store
        .create_secret(new_secret("a"), Some(version("v0", &values[0])))
        .await
        .expect("create");
    for (i, v) in values.iter().enumerate().skip(1) {
        h.store
            .put_value("a", version(&format!("v{i}"), v), None)
            .await
            .expect("put");
    }
    let (_, ak_secret) = h
        .store
        .create_access_key("k", "{}", "default")
        .await
        .expect("access key");
    let ak_secret = ak_secret.expose_str().expect("text").to_owned();
    let keyring_material: Vec<String> = {
        let g = h.guard.downcast_ref::<GuardWithKeyring>().expect("guard");
        let v: serde_json::Value = serde_json::from_slice(&g.keyring_bytes).expect("json");
        v["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["material"].as_str().expect("m").to_owned())
            .collect()
    };
    let scan = |label: &str| {
        let dir = path.parent().expect("dir");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let file = entry.expect("entry").path();
            let bytes = std::fs::read(&file).expect("read file");
            seen += bytes.len();
            let hay = String::from_utf8_lossy(&bytes);
            assert!(
                !hay.contains("PLAINTEXT-MARKER"),
                "{label}: plaintext in {}",
                file.display()
            );
            assert!(
                !hay.contains(&ak_secret),
                "{label}: access key secret in {}",
                file.display()
            );
            for m in &keyring_material {
                assert!(
                    !hay.contains(m.as_str()),
                    "{label}: CMK material in {}",
                    file.display()
                );
            }
        }
        assert!(
            seen > 10_000,
            "{label}: the scan must see the database ({seen} bytes)"
        );
    };
    scan("with WAL");
    h.store.close().await;
    scan("after checkpoint and close");
}

#[tokio::test]
async fn wal_mode_and_append_only_journal() {
    let h = sqlite(keyring()).await;
    let path = db_path(&h.guard);
    h.store
        .create_secret(new_secret("a"), None)
        .await
        .expect("create");
    let rec = rotd_store::JournalRecord {
        secret_name: SecretName::parse("a").expect("name"),
        rotation_id: "r".into(),
        step: rotd_store::Step::Pending(rotd_store::Planned {
            slot: rotd_core::Slot::Single,
            started_from: Some(None),
        }),
        version_id: None,
    };
    h.store.journal_append(&rec).await.expect("append");
    let mut conn = raw(&path).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    for sql in [
        "UPDATE rotation_journal SET step = 'x'",
        "DELETE FROM rotation_journal",
    ] {
        let e = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
    }
    // The `created` marker and the entry appended above.
    assert_eq!(h.store.journal("a").await.expect("journal").len(), 2);
}

#[tokio::test]
async fn reopening_keeps_everything_and_a_wrong_keyring_cannot_read() {
    let kr = keyring();
    let bytes = kr.to_bytes().to_vec();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("rotd.db");
    {
        let s = Store::open_sqlite(&path, kr).await.expect("open");
        s.create_secret(new_secret("a"), Some(version("v1", "persisted")))
            .await
            .expect("create");
        s.close().await;
    }
    let s = Store::open_sqlite(&path, Keyring::parse(&bytes).expect("keyring"))
        .await
        .expect("reopen");
    assert_eq!(
        s.get_value("a", &Selector::current())
            .await
            .expect("get")
            .value
            .expose_str(),
        Some("persisted")
    );
    let other = Store::open_sqlite(&path, keyring())
        .await
        .expect("reopen with another keyring");
    let e = other.get_value("a", &Selector::current()).await.unwrap_err();
    assert!(matches!(e, StoreError::Decrypt { .. }), "{e}");
}

#[tokio::test]
async fn an_unreadable_journal_entry_is_an_error_naming_it_not_a_silent_none() {
    let h = sqlite(keyring()).await;
    let path = db_path(&h.guard);
    h.store
        .create_secret(new_secret("a"), None)
        .await
        .expect("create");
    let mut conn = raw(&path).await;
    // A pending entry without its slot, as a bug or a hand edit could leave it.
    sqlx::query(
        "INSERT INTO rotation_journal (secret_name, rotation_id, step, version_id, at, detail)
         VALUES ('a', 'r', 'pending', 'v9', 0, '{}')",
    )
    .execute(&mut conn)
    .await
    .expect("insert");
    let e = h.store.journal_tail("a").await.expect_err("unreadable");
    let msg = e.to_string();
    assert!(
        msg.contains("journal entry") && msg.contains("secret a") && msg.contains("slot"),
        "{msg}"
    );
    assert!(!e.is_retryable(), "retrying cannot help: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_opening_a_new_store_at_once_all_succeed() {
    // The daemon's first start and CLI commands may open a store that does not exist yet at the same
    // moment; every one of them runs the migrations, which must not collide.
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("rotd.db");
        let bytes = keyring().to_bytes().to_vec();
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                let kr = Keyring::parse(&bytes).expect("keyring");
                tokio::spawn(async move { Store::open_sqlite(&path, kr).await.map(|_| ()) })
            })
            .collect();
        for o in opens {
            o.await.expect("task").expect("every concurrent open succeeds");
        }
    }
}

// ---- group commit (`writer.rs`) -----------------------------------------------------------------

fn pending(name: &str, rotation: &str) -> rotd_store::JournalRecord {
    rotd_store::JournalRecord {
        secret_name: SecretName::parse(name).expect("name"),
        rotation_id: rotation.into(),
        step: rotd_store::Step::Pending(rotd_store::Planned {
            slot: rotd_core::Slot::Single,
            started_from: Some(None),
        }),
        version_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_writes_are_each_committed_when_they_return() {
    let h = sqlite(keyring()).await;
    let path = db_path(&h.guard);
    for i in 0..20 {
        h.store
            .create_secret(new_secret(&format!("s{i}")), None)
            .await
            .expect("create");
    }
    // 200 writers at once, each checking from a connection of its own (not the store's) that its
    // entry is committed the moment its append returns.
    let writers: Vec<_> = (0..200)
        .map(|k| {
            let (store, path) = (h.store.clone(), path.clone());
            tokio::spawn(async move {
                let name = format!("s{}", k % 20);
                let id = store
                    .journal_append(&pending(&name, &format!("r{k}")))
                    .await
                    .expect("append");
                let mut conn = raw(&path).await;
                let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rotation_journal WHERE id = ?")
                    .bind(id)
                    .fetch_one(&mut conn)
                    .await
                    .expect("count");
                assert_eq!(seen, 1, "entry {id} is committed once its append returned");
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let mut total = 0;
    for i in 0..20 {
        total += h.store.journal(&format!("s{i}")).await.expect("journal").len();
    }
    assert_eq!(total, 20 + 200, "every created marker and every append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_abandoned_write_in_a_batch_takes_nothing_else_with_it() {
    let h = sqlite(keyring()).await;
    h.store
        .create_secret(new_secret("taken"), None)
        .await
        .expect("create");
    // Refused writes (the name exists), writes whose caller gives up at once (the future is dropped
    // while it waits for its turn or for the commit) and good writes, all queued together.
    let mut tasks = Vec::new();
    for k in 0..60 {
        let store = h.store.clone();
        tasks.push(tokio::spawn(async move {
            match k % 3 {
                0 => matches!(
                    store.create_secret(new_secret("taken"), None).await,
                    Err(StoreError::AlreadyExists { .. })
                ),
                1 => {
                    let give_up = tokio::time::timeout(
                        std::time::Duration::ZERO,
                        store.create_secret(new_secret(&format!("maybe{k}")), None),
                    );
                    let _ = give_up.await;
                    true
                }
                _ => store
                    .create_secret(new_secret(&format!("good{k}")), None)
                    .await
                    .is_ok(),
            }
        }));
    }
    for t in tasks {
        assert!(
            t.await.expect("task"),
            "every refused write is refused and every good one stored"
        );
    }
    for k in (2..60).step_by(3) {
        h.store
            .describe(&format!("good{k}"))
            .await
            .expect("a good write next to refused and abandoned ones is kept");
    }
    // A write abandoned mid-way is either wholly there or wholly absent: its `created` marker and its
    // row go together.
    for k in (1..60).step_by(3) {
        let name = format!("maybe{k}");
        let exists = h.store.describe(&name).await.is_ok();
        let marker = !h.store.journal(&name).await.expect("journal").is_empty();
        assert_eq!(
            exists, marker,
            "{name}: the secret and its created marker together"
        );
    }
    // The writer is still healthy after all that.
    h.store
        .create_secret(new_secret("after"), None)
        .await
        .expect("a later write");
}
