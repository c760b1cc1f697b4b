//! The fake backend passes the backend conformance suite in each of its shapes.

use std::sync::Arc;

use rotd_core::{Backend, Slot};
use rotd_testkit::backend_suite::BackendUnderTest;
use rotd_testkit::fake_backend::{FakeBackend, account_value};

fn under_test(fake: FakeBackend, slots: &[(Slot, &str)]) -> BackendUnderTest {
    let initial = slots
        .iter()
        .map(|(slot, pw)| {
            fake.set_password(*slot, pw);
            (*slot, account_value(fake.account(*slot), pw))
        })
        .collect();
    BackendUnderTest {
        backend: Arc::new(fake) as Arc<dyn Backend>,
        initial,
        guard: Box::new(()),
        nodes: None,
    }
}

mod single {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(FakeBackend::single(), &[(Slot::Single, "initial-pw")])
    }
    rotd_testkit::backend_conformance!(factory);
}

mod dual {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(
            FakeBackend::dual(),
            &[(Slot::Primary, "primary-pw"), (Slot::Clone, "clone-pw")],
        )
    }
    rotd_testkit::backend_conformance!(factory);
}

mod overlapping {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(FakeBackend::overlapping(), &[(Slot::Single, "initial-pw")])
    }
    rotd_testkit::backend_conformance!(factory);
}

mod creating {
    use super::*;
    /// The accounts exist once `create_accounts` made them; its values are the initial credentials.
    async fn factory() -> BackendUnderTest {
        let fake = FakeBackend::creating();
        let initial = fake.create_accounts().await.expect("create the accounts");
        BackendUnderTest {
            backend: Arc::new(fake) as Arc<dyn Backend>,
            initial,
            guard: Box::new(()),
            nodes: None,
        }
    }
    rotd_testkit::backend_conformance!(factory);
}

mod minting {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(FakeBackend::minting(), &[(Slot::Single, "initial-key")])
    }
    rotd_testkit::backend_conformance!(factory);
}

mod dual_with_replicas {
    use super::*;
    /// A primary and two replicas, as a Redis deployment: every node or none.
    async fn factory() -> BackendUnderTest {
        let fake = FakeBackend::dual().with_replicas(2);
        let nodes = fake.nodes();
        let mut t = under_test(fake, &[(Slot::Primary, "primary-pw"), (Slot::Clone, "clone-pw")]);
        t.nodes = Some(Arc::new(nodes));
        t
    }
    rotd_testkit::backend_conformance!(factory);
}

mod overlapping_with_replicas {
    use super::*;
    async fn factory() -> BackendUnderTest {
        let fake = FakeBackend::overlapping().with_replicas(1);
        let nodes = fake.nodes();
        let mut t = under_test(fake, &[(Slot::Single, "initial-pw")]);
        t.nodes = Some(Arc::new(nodes));
        t
    }
    rotd_testkit::backend_conformance!(factory);
}
