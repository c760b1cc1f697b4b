//! The exec backend passes the shared backend conformance suite, driving the file-backed fake target
//! (`tests/fixtures/fake-target.py`) as its plug-in. The target's state directory is a
//! fresh temporary directory per test, seeded with each slot's initial password as an operator would have
//! set it.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use rotd_backend_exec::{ExecBackend, ExecConfig, testing::fake_target_script};
use rotd_core::{Backend, Secret, Slot};
use rotd_testkit::backend_suite::BackendUnderTest;
use tempfile::TempDir;

/// The fake target's file for each slot (see its docstring).
fn slot_file(slot: Slot) -> &'static str {
    match slot {
        Slot::Single => "current",
        Slot::Primary => "current-primary",
        Slot::Clone => "current-clone",
    }
}

fn under_test(slots: &[(Slot, &str)]) -> BackendUnderTest {
    let state = TempDir::new().expect("tempdir");
    let initial = slots
        .iter()
        .map(|(slot, pw)| {
            fs::write(state.path().join(slot_file(*slot)), pw).expect("seed the fake target");
            (*slot, Secret::from(*pw))
        })
        .collect();
    let backend = ExecBackend::new(ExecConfig {
        secret_name: "app/token".to_owned(),
        command: vec![
            fake_target_script().to_str().expect("utf-8 path").to_owned(),
            state.path().to_str().expect("utf-8 path").to_owned(),
        ],
        timeout: Duration::from_secs(20),
    })
    .expect("valid config");
    BackendUnderTest {
        backend: Arc::new(backend) as Arc<dyn Backend>,
        initial,
        guard: Box::new(state),
        nodes: None,
    }
}

mod single {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(&[(Slot::Single, "initial-pw")])
    }
    rotd_testkit::backend_conformance!(factory);
}

// The exec backend has one shape: a single account. A dual shape would need a value that names its
// account (the conformance suite's `slot_of` case: the engine derives the live account from `ACSCurrent`'s
// value, and an application must know which account to log in as), which the protocol's bare value cannot
// carry, so it is not offered (`ExecConfig` has no such field).
