//! Admin connections shared by every secret on a node, and persistence coalesced across them.
//!
//! A deployment with many secrets on one server (the vendor's bulk secrets: a thousand account pairs
//! on one instance) would otherwise open a TCP connection and log in as the admin user for every
//! `ACL SETUSER`, and rewrite the whole ACL file for every one: with 2,000 users an `ACL SAVE` writes
//! about 240 kB and syncs it, some 15 ms of the server's single thread, so saves alone would cap the
//! server at fifty-odd rotations a second.
//!
//! - [`Node`] is one node as seen by one admin credential: a cached, authenticated
//!   [`MultiplexedConnection`] that every secret's backend on that node shares (the `redis` crate
//!   pipelines concurrent commands over it). A command that fails at the transport level drops the
//!   connection and is sent once more on a fresh one, so a node restarted between rotations costs no
//!   failed attempt; the next caller reconnects.
//! - [`Node::persist`] coalesces persistence: a caller whose change the node has acknowledged waits for
//!   one `ACL SAVE` (or `CONFIG REWRITE`) that *started after* that acknowledgement, and a save covers
//!   every change acknowledged before it was sent. Redis runs commands one at a time, so an
//!   acknowledged `SETUSER` is in memory before any later save runs: each caller still returns only
//!   once its own change is on the node's disk, as with one save per change.
//!
//! Nodes are shared process-wide through a registry of weak references keyed by everything that
//! decides how [`Node::connection`]'s `connect` reaches and logs into the node (address and admin
//! credential); when the last backend using a node is dropped (a reload), its connection closes.
//! A cached connection stays logged in when the admin user's password changes on the server, so `check`
//! does not use it: it logs in afresh to prove the configured credential.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use redis::aio::MultiplexedConnection;
use rotd_core::{BackendError, BackendResult, Secret};

use crate::Persist;

/// What identifies a shared node: anything that changes how the admin connection is made or whom it
/// logs in as must be part of it. The password is kept only as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    host: String,
    port: u16,
    transport: Transport,
    admin_user: String,
    admin_password_sha256: [u8; 32],
}

/// How the admin connection reaches a node: plain TCP, or TLS verified against a CA bundle (by its
/// SHA-256) or the default roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    Tcp,
    Tls { ca_sha256: Option<[u8; 32]> },
}

fn registry() -> &'static Mutex<HashMap<Key, Weak<Node>>> {
    static NODES: OnceLock<Mutex<HashMap<Key, Weak<Node>>>> = OnceLock::new();
    NODES.get_or_init(Mutex::default)
}

/// One node under one admin credential, shared by every backend configured with both.
pub(crate) struct Node {
    /// The cached admin connection and the last failure to make one, behind an async lock so that
    /// callers arriving together wait for one connection attempt instead of each making their own.
    cached: tokio::sync::Mutex<Cached>,
    /// Numbers connection attempts, so a caller that queued behind a failed attempt takes its error
    /// instead of trying again at once (a hung node would otherwise cost each queued caller a full
    /// connect timeout, one after another).
    attempts: AtomicU64,
    acl_save: Coalescer,
    config_rewrite: Coalescer,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Cached {
    /// The connection and its attempt number (to recognize it when a caller reports it broken).
    con: Option<(u64, MultiplexedConnection)>,
    /// The newest attempt that failed, with its error.
    failure: Option<(u64, BackendError)>,
}

impl Node {
    /// The shared node for this address and admin credential, made on first use.
    pub(crate) fn shared(
        host: &str,
        port: u16,
        transport: Transport,
        admin_user: &str,
        admin_password: &Secret,
    ) -> Arc<Node> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, admin_password.expose_secret());
        let mut admin_password_sha256 = [0u8; 32];
        admin_password_sha256.copy_from_slice(digest.as_ref());
        let key = Key {
            host: host.to_owned(),
            port,
            transport,
            admin_user: admin_user.to_owned(),
            admin_password_sha256,
        };
        let mut nodes = registry()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(node) = nodes.get(&key).and_then(Weak::upgrade) {
            return node;
        }
        // Entries of nodes no backend uses any more go when a new node is added.
        nodes.retain(|_, n| n.strong_count() > 0);
        let node = Arc::new(Node {
            cached: tokio::sync::Mutex::default(),
            attempts: AtomicU64::new(0),
            acl_save: Coalescer::default(),
            config_rewrite: Coalescer::default(),
        });
        nodes.insert(key, Arc::downgrade(&node));
        node
    }

    /// The cached admin connection, or a new one from `connect` (which must return it logged in).
    async fn connection<C, CF>(&self, connect: C) -> BackendResult<(u64, MultiplexedConnection)>
    where
        C: FnOnce() -> CF,
        CF: Future<Output = BackendResult<MultiplexedConnection>>,
    {
        let queued_at = self.attempts.load(Ordering::SeqCst);
        let mut cached = self.cached.lock().await;
        if let Some((id, con)) = &cached.con {
            return Ok((*id, con.clone()));
        }
        if let Some((attempt, e)) = &cached.failure
            && *attempt > queued_at
        {
            return Err(e.clone());
        }
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        match connect().await {
            Ok(con) => {
                cached.con = Some((attempt, con.clone()));
                cached.failure = None;
                Ok((attempt, con))
            }
            Err(e) => {
                cached.failure = Some((attempt, e.clone()));
                Err(e)
            }
        }
    }

    /// Drops connection `id` if it is still the cached one.
    async fn forget(&self, id: u64) {
        let mut cached = self.cached.lock().await;
        if cached.con.as_ref().is_some_and(|(cur, _)| *cur == id) {
            cached.con = None;
        }
    }

    /// Runs `cmd` on the shared admin connection. When it fails at the transport level (the node
    /// restarted, the connection dropped or timed out), the connection is dropped; if it was one made
    /// earlier for someone else, the command is sent once more on a fresh connection. Only idempotent
    /// commands are sent here (`ACL SETUSER` with every rule, `ACL SAVE`, `CONFIG REWRITE`).
    pub(crate) async fn query<C, CF, E>(&self, cmd: &redis::Cmd, connect: C, err: E) -> BackendResult<()>
    where
        C: Fn() -> CF,
        CF: Future<Output = BackendResult<MultiplexedConnection>>,
        E: Fn(&redis::RedisError) -> BackendError,
    {
        let mut fresh_tried = false;
        loop {
            let before = self.attempts.load(Ordering::SeqCst);
            let (id, mut con) = self.connection(&connect).await?;
            // Made by this call (no one else's connection to blame): its failure is the answer.
            let fresh = id > before;
            match cmd.query_async::<()>(&mut con).await {
                Ok(()) => return Ok(()),
                Err(e) if transport(&e) => {
                    self.forget(id).await;
                    if fresh || fresh_tried {
                        return Err(err(&e));
                    }
                    fresh_tried = true;
                }
                Err(e) => return Err(err(&e)),
            }
        }
    }

    /// Persists the changes this caller made on the node (acknowledged before the call) with one save
    /// (`ACL SAVE` or `CONFIG REWRITE`, as `how` says) shared with every other caller waiting at the
    /// same time, sent like [`Node::query`]. A failed save fails every caller it would have covered.
    pub(crate) async fn persist<C, CF, E>(&self, how: Persist, connect: C, err: E) -> BackendResult<()>
    where
        C: Fn() -> CF,
        CF: Future<Output = BackendResult<MultiplexedConnection>>,
        E: Fn(&redis::RedisError) -> BackendError,
    {
        let (group, cmd) = match how {
            Persist::AclFile => (&self.acl_save, redis::cmd("ACL").arg("SAVE").to_owned()),
            Persist::Config => (
                &self.config_rewrite,
                redis::cmd("CONFIG").arg("REWRITE").to_owned(),
            ),
            Persist::None => return Ok(()),
        };
        group.run(|| self.query(&cmd, connect, err)).await
    }
}

/// A failure of the connection rather than an answer from the server.
fn transport(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}

/// Group persistence for one node and one kind of save.
#[derive(Default)]
struct Coalescer {
    /// Changes handed in so far: each caller takes the next number after its change was acknowledged.
    issued: AtomicU64,
    /// The newest save: every change numbered up to `covered` was acknowledged before it was sent.
    /// Held while a save runs, so callers queue behind it and the first of them runs the next one.
    done: tokio::sync::Mutex<Done>,
}

#[derive(Default)]
struct Done {
    covered: u64,
    result: Option<BackendError>,
}

impl Coalescer {
    async fn run<R, RF>(&self, run: R) -> BackendResult<()>
    where
        R: FnOnce() -> RF,
        RF: Future<Output = BackendResult<()>>,
    {
        let mine = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.done.lock().await;
        if done.covered >= mine {
            return done.result.clone().map_or(Ok(()), Err);
        }
        // Everything numbered so far was acknowledged before this save is sent, so it covers them. If
        // this future is dropped mid-save, `done` stays as it was and the next caller saves.
        let covers = self.issued.load(Ordering::SeqCst);
        let result = run().await;
        *done = Done {
            covered: covers,
            result: result.clone().err(),
        };
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_together_share_one_save_that_started_after_their_change() {
        let c = Arc::new(Coalescer::default());
        let saves = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        // The first caller's save is held open; the callers that arrive meanwhile queue behind it.
        let first = {
            let (c, saves, mut gate) = (c.clone(), saves.clone(), gate.clone());
            tokio::spawn(async move {
                c.run(|| async move {
                    saves.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.wait_for(|open| *open).await;
                    Ok(())
                })
                .await
            })
        };
        while saves.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let waiting: Vec<_> = (0..20)
            .map(|_| {
                let (c, saves) = (c.clone(), saves.clone());
                tokio::spawn(async move {
                    c.run(|| async move {
                        saves.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        while c.issued.load(Ordering::SeqCst) < 21 {
            tokio::task::yield_now().await;
        }
        let _ = release.send(true);
        first.await.expect("task").expect("saved");
        for w in waiting {
            w.await.expect("task").expect("saved");
        }
        // The held save began before the twenty changes were handed in, so it covers none of them:
        // exactly one more save, started after all twenty, covers them all.
        assert_eq!(saves.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_save_fails_the_callers_it_covered_and_the_next_change_saves_again() {
        let c = Coalescer::default();
        let failing = c
            .run(|| async { Err(BackendError::retryable("redis", "apply", "disk full")) })
            .await;
        assert!(failing.is_err());
        let saved = c.run(|| async { Ok(()) }).await;
        assert!(saved.is_ok(), "a later change is saved by a save of its own");
    }
}
