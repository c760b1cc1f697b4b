//! An in-memory backend for engine tests: a pretend server with one or two accounts, whose state tests
//! can inspect, and faults they can inject. It may have replicas ([`FakeBackend::with_replicas`]):
//! `apply` and `verify` then cover every node, and a node can be taken down ([`FakeNodes`]). It follows the same contract as the real backends (and
//! passes the same conformance suite), so a test that passes with it says something about the engine.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rotd_core::{
    Backend, BackendError, BackendResult, BoxFuture, Capabilities, CredentialSource, PasswordPolicy,
    Reconciled, Secret, Slot, generate_password,
};

use crate::backend_suite::NodeControl;

/// How many credentials a minting fake's account may hold at once (a RAM user holds at most two).
pub const MINT_LIMIT: usize = 2;

/// Which operation a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Check,
    Apply,
    Verify,
    Retire,
    Mint,
    Reconcile,
}

#[derive(Debug, Default)]
struct State {
    /// The passwords each account accepts now on the main node. More than one only with overlap.
    accepted: HashMap<Slot, HashSet<String>>,
    /// The same for each replica (nodes 1, 2, …); empty for a one-node target.
    replicas: Vec<HashMap<Slot, HashSet<String>>>,
    /// Nodes that are unreachable (0 is the main node).
    down: HashSet<usize>,
    /// Credentials that exist but no longer log in (a deactivated AccessKey), for minting fakes.
    inactive: HashMap<Slot, HashSet<String>>,
    /// Credentials minted so far (for unique names).
    minted: u32,
    /// Remaining injected failures per operation, and whether they are permanent.
    failures: HashMap<Op, (u32, bool)>,
    /// Operations that hang (never return) while set.
    hang: HashSet<Op>,
    calls: HashMap<Op, u32>,
}

/// The fake server and its accounts. Cloning shares the state.
#[derive(Clone, Debug)]
pub struct FakeBackend {
    caps: Capabilities,
    /// The "host" it stands for, for the engine's per-target limit; `None` by default.
    target: Option<String>,
    accounts: HashMap<Slot, String>,
    state: Arc<Mutex<State>>,
}

/// The value format of database-like secrets: `{"AccountName","AccountPassword"}`.
pub fn account_value(account: &str, password: &str) -> Secret {
    Secret::from(serde_json::json!({"AccountName": account, "AccountPassword": password}).to_string())
}

fn parse_value(s: &Secret) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(s.expose_secret()).ok()?;
    Some((
        v["AccountName"].as_str()?.to_owned(),
        v["AccountPassword"].as_str()?.to_owned(),
    ))
}

impl FakeBackend {
    /// A single-account target, account `app`.
    pub fn single() -> Self {
        Self::new(Capabilities::default(), &[(Slot::Single, "app")])
    }

    /// A dual-account target, accounts `app` and `app_clone`.
    pub fn dual() -> Self {
        Self::new(
            Capabilities {
                dual_accounts: true,
                ..Default::default()
            },
            &[(Slot::Primary, "app"), (Slot::Clone, "app_clone")],
        )
    }

    /// A single account whose old and new passwords overlap until `retire`.
    pub fn overlapping() -> Self {
        Self::new(
            Capabilities {
                overlap: true,
                retire_steps: 1,
                ..Default::default()
            },
            &[(Slot::Single, "app")],
        )
    }

    /// A single account whose credentials the backend mints, like a RAM user's AccessKeys: at most
    /// [`MINT_LIMIT`] exist at once, old and new overlap, and retiring takes two steps (deactivate, then
    /// delete).
    pub fn minting() -> Self {
        Self::new(
            Capabilities {
                overlap: true,
                source: CredentialSource::Minted,
                retire_steps: 2,
                ..Default::default()
            },
            &[(Slot::Single, "app")],
        )
    }

    /// The same fake with `n` replicas besides the main node: `apply` and `verify` cover every node, and
    /// fail (retryable) while one is down. Replicas mirror `apply` and `retire`; minting stays on the main
    /// node.
    pub fn with_replicas(self, n: usize) -> Self {
        self.state.lock().expect("fake state").replicas = vec![HashMap::new(); n];
        self
    }

    /// Control over the nodes, for the conformance suite's multi-node case and for tests.
    pub fn nodes(&self) -> FakeNodes {
        FakeNodes(self.clone())
    }

    /// How many credentials exist at the target for `slot`, active or not.
    pub fn credentials_at_target(&self, slot: Slot) -> usize {
        let st = self.state.lock().expect("fake state");
        st.accepted.get(&slot).map_or(0, HashSet::len) + st.inactive.get(&slot).map_or(0, HashSet::len)
    }

    /// A dual-account target whose accounts do not exist until `create_accounts` creates them.
    pub fn creating() -> Self {
        Self::new(
            Capabilities {
                dual_accounts: true,
                creates_accounts: true,
                ..Default::default()
            },
            &[(Slot::Primary, "app"), (Slot::Clone, "app_clone")],
        )
    }

    pub fn new(caps: Capabilities, accounts: &[(Slot, &str)]) -> Self {
        Self {
            caps,
            target: None,
            accounts: accounts.iter().map(|(s, a)| (*s, (*a).to_owned())).collect(),
            state: Arc::default(),
        }
    }

    /// The same fake, reporting `target` as its host (the state stays shared with `self`).
    pub fn on_target(&self, target: &str) -> Self {
        Self {
            target: Some(target.to_owned()),
            ..self.clone()
        }
    }

    pub fn account(&self, slot: Slot) -> &str {
        &self.accounts[&slot]
    }

    /// Sets an account's password directly on every node, as an operator would before importing it.
    pub fn set_password(&self, slot: Slot, password: &str) {
        let mut st = self.state.lock().expect("fake state");
        st.accepted.insert(slot, HashSet::from([password.to_owned()]));
        for r in &mut st.replicas {
            r.insert(slot, HashSet::from([password.to_owned()]));
        }
    }

    /// Whether `value` (an account value JSON) logs in right now: the check tests use for "still works".
    pub fn accepts(&self, value: &Secret) -> bool {
        let Some((account, password)) = parse_value(value) else {
            return false;
        };
        let Some(slot) = self
            .accounts
            .iter()
            .find(|(_, a)| **a == account)
            .map(|(s, _)| *s)
        else {
            return false;
        };
        self.state
            .lock()
            .expect("fake state")
            .accepted
            .get(&slot)
            .is_some_and(|set| set.contains(&password))
    }

    /// The next `n` calls of `op` fail (retryable unless `permanent`).
    pub fn fail_next(&self, op: Op, n: u32, permanent: bool) {
        self.state
            .lock()
            .expect("fake state")
            .failures
            .insert(op, (n, permanent));
    }

    /// Calls of `op` hang until [`FakeBackend::unhang`].
    pub fn hang(&self, op: Op) {
        self.state.lock().expect("fake state").hang.insert(op);
    }

    pub fn unhang(&self, op: Op) {
        self.state.lock().expect("fake state").hang.remove(&op);
    }

    pub fn calls(&self, op: Op) -> u32 {
        self.state
            .lock()
            .expect("fake state")
            .calls
            .get(&op)
            .copied()
            .unwrap_or(0)
    }

    /// Records a call and returns an injected fault, if any.
    fn enter(&self, op: Op) -> Result<bool, BackendError> {
        let mut st = self.state.lock().expect("fake state");
        *st.calls.entry(op).or_default() += 1;
        if let Some((n, permanent)) = st.failures.get_mut(&op)
            && *n > 0
        {
            *n -= 1;
            let e = if *permanent {
                BackendError::permanent("fake", "call", format!("injected permanent {op:?} failure"))
            } else {
                BackendError::retryable("fake", "call", format!("injected {op:?} failure"))
            };
            return Err(e);
        }
        Ok(st.hang.contains(&op))
    }

    async fn gate(&self, op: Op) -> BackendResult<()> {
        while self.enter(op)? {
            // Hang until released; each poll counts as a call, which tests ignore for hangs.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut st = self.state.lock().expect("fake state");
            if let Some(c) = st.calls.get_mut(&op) {
                *c -= 1;
            }
        }
        Ok(())
    }

    fn slot_password(&self, slot: Slot, value: &Secret, op: &'static str) -> BackendResult<String> {
        let (account, password) = parse_value(value)
            .ok_or_else(|| BackendError::permanent("fake", op, "value is not an account JSON"))?;
        if account != self.accounts[&slot] {
            return Err(BackendError::permanent(
                "fake",
                op,
                format!("value is for account {account}, not {}", self.accounts[&slot]),
            ));
        }
        Ok(password)
    }
}

impl Backend for FakeBackend {
    fn kind(&self) -> &str {
        "fake"
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn target(&self) -> Option<String> {
        self.target.clone()
    }

    fn check(&self) -> BoxFuture<'_, BackendResult<()>> {
        Box::pin(self.gate(Op::Check))
    }

    fn compose(&self, slot: Slot, password: &Secret) -> BackendResult<Secret> {
        let account = self.accounts.get(&slot).ok_or_else(|| {
            BackendError::permanent("fake", "compose", format!("no account for slot {slot}"))
        })?;
        let pw = password
            .expose_str()
            .ok_or_else(|| BackendError::permanent("fake", "compose", "password is not text"))?;
        Ok(account_value(account, pw))
    }

    fn slot_of(&self, value: &Secret) -> Option<Slot> {
        let (account, _) = parse_value(value)?;
        self.accounts
            .iter()
            .find(|(_, a)| **a == account)
            .map(|(s, _)| *s)
    }

    fn apply<'a>(&'a self, slot: Slot, new: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            self.gate(Op::Apply).await?;
            let pw = self.slot_password(slot, new, "apply")?;
            let mut st = self.state.lock().expect("fake state");
            let overlap = self.caps.overlap;
            let put = |set: &mut HashSet<String>| {
                if !overlap {
                    set.clear();
                }
                set.insert(pw.clone());
            };
            // Node by node, as a real backend goes: the nodes before one that is down keep the change.
            for node in 0..=st.replicas.len() {
                if st.down.contains(&node) {
                    return Err(unreachable(node, "apply"));
                }
                let set = if node == 0 {
                    st.accepted.entry(slot).or_default()
                } else {
                    st.replicas[node - 1].entry(slot).or_default()
                };
                put(set);
            }
            Ok(())
        })
    }

    fn verify<'a>(&'a self, slot: Slot, secret: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            self.gate(Op::Verify).await?;
            let pw = self.slot_password(slot, secret, "verify")?;
            let st = self.state.lock().expect("fake state");
            for node in 0..=st.replicas.len() {
                if st.down.contains(&node) {
                    return Err(unreachable(node, "verify"));
                }
                let set = if node == 0 {
                    st.accepted.get(&slot)
                } else {
                    st.replicas[node - 1].get(&slot)
                };
                if !set.is_some_and(|s| s.contains(&pw)) {
                    return Err(BackendError::permanent(
                        "fake",
                        "verify",
                        format!(
                            "login as {} on node {node} failed: wrong password",
                            self.accounts[&slot]
                        ),
                    ));
                }
            }
            Ok(())
        })
    }

    fn mint<'a>(&'a self, rotation_id: &'a str, slot: Slot) -> BoxFuture<'a, BackendResult<Secret>> {
        Box::pin(async move {
            if !self.caps.mints() {
                return Err(BackendError::permanent(
                    "fake",
                    "mint",
                    "this backend does not mint credentials",
                ));
            }
            self.gate(Op::Mint).await?;
            let account = self.accounts.get(&slot).ok_or_else(|| {
                BackendError::permanent("fake", "mint", format!("no account for slot {slot}"))
            })?;
            let mut st = self.state.lock().expect("fake state");
            let held = st.accepted.get(&slot).map_or(0, HashSet::len)
                + st.inactive.get(&slot).map_or(0, HashSet::len);
            if held >= MINT_LIMIT {
                return Err(BackendError::permanent(
                    "fake",
                    "mint",
                    format!("account {account} already holds {held} credentials"),
                ));
            }
            st.minted += 1;
            let key = format!("key-{rotation_id}-{}", st.minted);
            st.accepted.entry(slot).or_default().insert(key.clone());
            Ok(account_value(account, &key))
        })
    }

    fn reconcile<'a>(&'a self, slot: Slot, known: &'a [Secret]) -> BoxFuture<'a, BackendResult<Reconciled>> {
        Box::pin(async move {
            self.gate(Op::Reconcile).await?;
            let known: HashSet<String> = known.iter().filter_map(parse_value).map(|(_, pw)| pw).collect();
            let mut st = self.state.lock().expect("fake state");
            let mut removed = 0;
            {
                let set = st.accepted.entry(slot).or_default();
                let before = set.len();
                set.retain(|k| known.contains(k));
                removed += before - set.len();
            }
            let set = st.inactive.entry(slot).or_default();
            let before = set.len();
            set.retain(|k| known.contains(k));
            removed += before - set.len();
            Ok(Reconciled {
                removed: u32::try_from(removed).unwrap_or(u32::MAX),
            })
        })
    }

    fn retire<'a>(&'a self, slot: Slot, old: &'a Secret, step: u8) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            self.gate(Op::Retire).await?;
            let pw = self.slot_password(slot, old, "retire")?;
            let two_steps = self.caps.retire_steps >= 2;
            let mut st = self.state.lock().expect("fake state");
            for r in &mut st.replicas {
                let set = r.entry(slot).or_default();
                if set.len() > 1 {
                    set.remove(&pw);
                }
            }
            let active = st.accepted.entry(slot).or_default();
            // Never remove the last password: retiring must not lock the account out.
            let was_active = active.len() > 1 && active.remove(&pw);
            if two_steps && step == 1 {
                if was_active {
                    st.inactive.entry(slot).or_default().insert(pw);
                }
            } else {
                st.inactive.entry(slot).or_default().remove(&pw);
            }
            Ok(())
        })
    }

    /// Gives every account a fresh generated password, replacing whatever it accepted (as a backend that
    /// creates accounts resets one it finds). Refused unless the capabilities say so.
    fn create_accounts<'a>(&'a self) -> BoxFuture<'a, BackendResult<Vec<(Slot, Secret)>>> {
        Box::pin(async move {
            if !self.caps.creates_accounts {
                return Err(BackendError::permanent(
                    "fake",
                    "create accounts",
                    "this backend does not create accounts",
                ));
            }
            let mut created = Vec::new();
            for (slot, account) in &self.accounts {
                let password = generate_password(&PasswordPolicy::default())
                    .map_err(|e| BackendError::permanent("fake", "create accounts", e.to_string()))?;
                let pw = password
                    .expose_str()
                    .ok_or_else(|| {
                        BackendError::permanent("fake", "create accounts", "password is not text")
                    })?
                    .to_owned();
                self.set_password(*slot, &pw);
                created.push((*slot, account_value(account, &pw)));
            }
            Ok(created)
        })
    }
}

fn unreachable(node: usize, op: &'static str) -> BackendError {
    BackendError::retryable("fake", op, format!("node {node} is unreachable")).on_node(format!("node{node}"))
}

/// The nodes of a [`FakeBackend`] with replicas, for the conformance suite's multi-node case.
#[derive(Debug, Clone)]
pub struct FakeNodes(FakeBackend);

impl NodeControl for FakeNodes {
    fn count(&self) -> usize {
        1 + self.0.state.lock().expect("fake state").replicas.len()
    }

    fn set_reachable(&self, node: usize, reachable: bool) -> BoxFuture<'_, ()> {
        let mut st = self.0.state.lock().expect("fake state");
        if reachable {
            st.down.remove(&node);
        } else {
            st.down.insert(node);
        }
        Box::pin(async {})
    }

    fn accepts<'a>(&'a self, node: usize, slot: Slot, secret: &'a Secret) -> BoxFuture<'a, bool> {
        let ok = parse_value(secret).is_some_and(|(account, pw)| {
            let st = self.0.state.lock().expect("fake state");
            let set = if node == 0 {
                st.accepted.get(&slot)
            } else {
                st.replicas.get(node - 1).and_then(|r| r.get(&slot))
            };
            self.0.accounts.get(&slot) == Some(&account) && set.is_some_and(|s| s.contains(&pw))
        });
        Box::pin(async move { ok })
    }
}
