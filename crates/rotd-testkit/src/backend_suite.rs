//! The backend conformance suite: what every backend must do, whatever it talks to. Each case is an
//! async fn taking a [`BackendUnderTest`]; [`backend_conformance!`](crate::backend_conformance) expands
//! to one named test per case. Capability flags decide inside a case; no backend opts out of a case.

use std::any::Any;
use std::sync::Arc;

use rotd_core::{Backend, BoxFuture, PasswordPolicy, Secret, Slot, generate_password};

/// A backend with its accounts set up, and whatever keeps its server alive.
pub struct BackendUnderTest {
    pub backend: Arc<dyn Backend>,
    /// The credential each slot accepts now (one entry for single, two for dual).
    pub initial: Vec<(Slot, Secret)>,
    pub guard: Box<dyn Any + Send>,
    /// For a target of several nodes (a Redis primary and its replicas): control over each node, so
    /// the suite can take one away mid-rotation and check each one's view. `None`: one node.
    pub nodes: Option<Arc<dyn NodeControl>>,
}

/// The suite's handle on the nodes of a multi-node target.
pub trait NodeControl: Send + Sync {
    /// How many nodes the backend's `apply` and `verify` must cover.
    fn count(&self) -> usize;
    /// Makes node `node` unreachable (`false`) or reachable again (`true`), with its state kept.
    fn set_reachable(&self, node: usize, reachable: bool) -> BoxFuture<'_, ()>;
    /// Whether node `node` alone accepts `secret` for `slot` now (a client's login there).
    fn accepts<'a>(&'a self, node: usize, slot: Slot, secret: &'a Secret) -> BoxFuture<'a, bool>;
}

impl std::fmt::Debug for BackendUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendUnderTest")
            .field("backend", &self.backend.kind())
            .finish_non_exhaustive()
    }
}

/// Expands to one `#[tokio::test]` per case. `$factory` is an `async fn() -> BackendUnderTest`.
#[macro_export]
macro_rules! backend_conformance {
    ($factory:path) => {
        $crate::backend_conformance!(@cases $factory,
            check_succeeds,
            apply_then_verify,
            apply_is_idempotent,
            verify_rejects_a_wrong_secret,
            current_survives_a_rotation_of_the_other_slot,
            retire_is_idempotent,
            errors_never_contain_the_secret,
            create_accounts,
            slot_of,
            mint_then_verify,
            reconcile_removes_only_what_the_store_does_not_know,
            every_node_or_none,
        );
    };
    (@cases $factory:path, $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let under_test = $factory().await;
                $crate::backend_suite::$case(&under_test).await;
            }
        )+
    };
}

fn password() -> Secret {
    generate_password(&PasswordPolicy::default()).expect("password")
}

/// The slot a rotation would target: the clone for dual accounts, the only account otherwise.
fn target(t: &BackendUnderTest) -> Slot {
    if t.backend.capabilities().dual_accounts {
        Slot::Clone
    } else {
        Slot::Single
    }
}

/// Every slot the backend has: primary and clone for dual accounts, the single account otherwise.
fn slots(t: &BackendUnderTest) -> &'static [Slot] {
    if t.backend.capabilities().dual_accounts {
        &[Slot::Primary, Slot::Clone]
    } else {
        &[Slot::Single]
    }
}

fn initial(t: &BackendUnderTest, slot: Slot) -> Option<&Secret> {
    t.initial.iter().find(|(s, _)| *s == slot).map(|(_, v)| v)
}

pub async fn check_succeeds(t: &BackendUnderTest) {
    t.backend.check().await.expect("check");
}

pub async fn apply_then_verify(t: &BackendUnderTest) {
    let slot = target(t);
    let new = t.backend.compose(slot, &password()).expect("compose");
    t.backend.apply(slot, &new).await.expect("apply");
    t.backend
        .verify(slot, &new)
        .await
        .expect("verify the applied secret");
}

pub async fn apply_is_idempotent(t: &BackendUnderTest) {
    let slot = target(t);
    let new = t.backend.compose(slot, &password()).expect("compose");
    t.backend.apply(slot, &new).await.expect("apply");
    // A crash after apply and before the journal write makes the engine apply again.
    t.backend.apply(slot, &new).await.expect("apply again");
    t.backend.verify(slot, &new).await.expect("verify");
}

pub async fn verify_rejects_a_wrong_secret(t: &BackendUnderTest) {
    let slot = target(t);
    let wrong = t.backend.compose(slot, &password()).expect("compose");
    let e = t
        .backend
        .verify(slot, &wrong)
        .await
        .expect_err("a never-applied password must not verify");
    assert!(!e.is_retryable(), "a wrong password is a permanent failure: {e}");
}

pub async fn current_survives_a_rotation_of_the_other_slot(t: &BackendUnderTest) {
    let caps = t.backend.capabilities();
    let slot = target(t);
    let new = t.backend.compose(slot, &password()).expect("compose");
    t.backend.apply(slot, &new).await.expect("apply");
    t.backend.verify(slot, &new).await.expect("verify new");
    if caps.dual_accounts {
        let current = initial(t, Slot::Primary).expect("dual fixtures give the primary's credential");
        t.backend
            .verify(Slot::Primary, current)
            .await
            .expect("the current account is untouched by a dual rotation");
    } else if caps.overlap {
        let old = initial(t, Slot::Single).expect("fixtures give the current credential");
        t.backend
            .verify(Slot::Single, old)
            .await
            .expect("with overlap the old credential works until retire");
    } else if let Some(old) = initial(t, Slot::Single) {
        assert!(
            t.backend.verify(Slot::Single, old).await.is_err(),
            "single: the old password stops working"
        );
    }
}

pub async fn retire_is_idempotent(t: &BackendUnderTest) {
    let caps = t.backend.capabilities();
    let slot = target(t);
    let old_slot = if caps.dual_accounts {
        Slot::Primary
    } else {
        Slot::Single
    };
    let new = t.backend.compose(slot, &password()).expect("compose");
    t.backend.apply(slot, &new).await.expect("apply");
    if let Some(old) = initial(t, old_slot) {
        // Every step, each twice: a step repeated after a crash must succeed and change nothing.
        for step in 1..=caps.retire_steps.max(1) {
            t.backend.retire(old_slot, old, step).await.expect("retire");
            t.backend.retire(old_slot, old, step).await.expect("retire again");
        }
        if caps.overlap && !caps.dual_accounts {
            assert!(
                t.backend.verify(old_slot, old).await.is_err(),
                "a retired credential stops working"
            );
        }
    }
    t.backend
        .verify(slot, &new)
        .await
        .expect("the new credential survives retiring the old one");
}

pub async fn errors_never_contain_the_secret(t: &BackendUnderTest) {
    let slot = target(t);
    let pw = password();
    let wrong = t.backend.compose(slot, &pw).expect("compose");
    let e = t.backend.verify(slot, &wrong).await.expect_err("wrong secret");
    let pw_text = pw.expose_str().expect("text");
    for rendered in [e.to_string(), format!("{e:?}")] {
        assert!(
            !rendered.contains(pw_text),
            "error contains the secret: {rendered}"
        );
    }
    assert!(!format!("{wrong:?}").contains(pw_text));
}

/// Backends that create their accounts return one value per slot, and each verifies at once.
pub async fn create_accounts(t: &BackendUnderTest) {
    let caps = t.backend.capabilities();
    if !caps.creates_accounts {
        return;
    }
    let created = t.backend.create_accounts().await.expect("create accounts");
    let mut got: Vec<Slot> = created.iter().map(|(slot, _)| *slot).collect();
    got.sort_by_key(|s| s.as_str());
    let mut want = slots(t).to_vec();
    want.sort_by_key(|s| s.as_str());
    assert_eq!(got, want, "create_accounts returns exactly one value per slot");
    for (slot, value) in &created {
        t.backend
            .verify(*slot, value)
            .await
            .unwrap_or_else(|e| panic!("the created {slot} account does not verify: {e}"));
        if caps.dual_accounts {
            assert_eq!(
                t.backend.slot_of(value),
                Some(*slot),
                "a created value names its account"
            );
        }
    }
}

/// For dual accounts the engine reads which account holds `ACSCurrent` from the value (`slot_of`), so
/// every composed value must name its slot; a value naming no account names none. Single-account
/// backends may answer `None` for everything, but never a dual slot.
pub async fn slot_of(t: &BackendUnderTest) {
    let caps = t.backend.capabilities();
    for &slot in slots(t) {
        let value = t.backend.compose(slot, &password()).expect("compose");
        let named = t.backend.slot_of(&value);
        if caps.dual_accounts {
            assert_eq!(named, Some(slot), "a composed {slot} value names its account");
        } else {
            assert!(
                matches!(named, None | Some(Slot::Single)),
                "a single-account value names {named:?}"
            );
        }
    }
    for stranger in [
        Secret::from(
            serde_json::json!({"AccountName": "rotd_no_such_account", "AccountPassword": "x"}).to_string(),
        ),
        Secret::from("not a value of any account"),
        Secret::new(vec![0xff, 0xfe]),
    ] {
        assert_eq!(
            t.backend.slot_of(&stranger),
            None,
            "a value naming no account of this backend names no slot"
        );
    }
}

/// Backends that mint credentials: a minted credential, applied, logs in; a backend that does not mint
/// refuses `mint` (its capability says so) rather than pretending.
pub async fn mint_then_verify(t: &BackendUnderTest) {
    let caps = t.backend.capabilities();
    let slot = target(t);
    if !caps.mints() {
        assert!(
            t.backend.mint("suite-mint", slot).await.is_err(),
            "a backend without Minted credentials does not mint"
        );
        return;
    }
    let new = t.backend.mint("suite-mint", slot).await.expect("mint");
    t.backend
        .apply(slot, &new)
        .await
        .expect("apply a minted credential");
    t.backend
        .verify(slot, &new)
        .await
        .expect("a minted credential logs in");
}

/// Backends that mint credentials: after a crash between a mint and the store write, `reconcile` with
/// what the store knows removes the orphan and keeps every known credential.
pub async fn reconcile_removes_only_what_the_store_does_not_know(t: &BackendUnderTest) {
    let caps = t.backend.capabilities();
    let slot = target(t);
    let known: Vec<Secret> = t.initial.iter().map(|(_, v)| v.clone()).collect();
    if !caps.mints() {
        let r = t
            .backend
            .reconcile(slot, &known)
            .await
            .expect("reconcile is a no-op");
        assert_eq!(r.removed, 0);
        return;
    }
    let orphan = t.backend.mint("suite-orphan", slot).await.expect("mint");
    let r = t.backend.reconcile(slot, &known).await.expect("reconcile");
    assert!(r.removed >= 1, "the orphan was found");
    assert!(
        t.backend.verify(slot, &orphan).await.is_err(),
        "the orphan no longer logs in"
    );
    for (s, v) in &t.initial {
        t.backend
            .verify(*s, v)
            .await
            .expect("a credential the store knows survives reconcile");
    }
    let again = t.backend.reconcile(slot, &known).await.expect("reconcile again");
    assert_eq!(again.removed, 0, "idempotent");
}

/// A target of several nodes: with one node unreachable, the new credential does not verify (the
/// rotation stays open, retryable), and the accepting nodes keep what they had; once the node is back,
/// a repeated `apply` (the engine's resume) completes it and every node accepts the new credential. The
/// account holding `ACSCurrent` works on every node throughout. One-node targets have nothing more to
/// show than the other cases do.
pub async fn every_node_or_none(t: &BackendUnderTest) {
    let Some(nodes) = &t.nodes else { return };
    let caps = t.backend.capabilities();
    let n = nodes.count();
    assert!(n >= 2, "a multi-node fixture has at least two nodes");
    let slot = target(t);
    let current = if caps.dual_accounts {
        initial(t, Slot::Primary).map(|v| (Slot::Primary, v))
    } else {
        None
    };
    let new = t.backend.compose(slot, &password()).expect("compose");
    let down = n - 1;
    nodes.set_reachable(down, false).await;
    let applied = t.backend.apply(slot, &new).await;
    if let Err(e) = &applied {
        assert!(
            e.is_retryable(),
            "a node that is down is a retryable failure: {e}"
        );
    }
    let e = t
        .backend
        .verify(slot, &new)
        .await
        .expect_err("with a node down the new credential is not verified on every node");
    assert!(
        e.is_retryable(),
        "a node that is down is a retryable failure: {e}"
    );
    assert!(
        e.node.is_some(),
        "a failure on one node names it, so status and metrics can show which node lags: {e}"
    );
    if let Some((cs, cv)) = current {
        for node in 0..down {
            assert!(
                nodes.accepts(node, cs, cv).await,
                "node {node} still accepts ACSCurrent while another node is down"
            );
        }
    }
    nodes.set_reachable(down, true).await;
    t.backend
        .apply(slot, &new)
        .await
        .expect("apply again once every node is back (the engine's resume)");
    t.backend.verify(slot, &new).await.expect("verify on every node");
    for node in 0..n {
        assert!(
            nodes.accepts(node, slot, &new).await,
            "node {node} accepts the new credential"
        );
        if let Some((cs, cv)) = current {
            assert!(
                nodes.accepts(node, cs, cv).await,
                "node {node} still accepts ACSCurrent"
            );
        }
    }
}
