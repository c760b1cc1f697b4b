//! The SSH backend passes the backend conformance suite against real OpenSSH servers (the testkit's
//! private `sshd`, StrictModes on, PAM), for both credential kinds and every way of managing the user:
//! root with a key, a NOPASSWD sudoer, a sudoer whose sudo asks for the password (logging in with it,
//! or with a key and `sudo_password`), and a host whose sshd refuses password logins (the new password
//! is then checked with unix_chkpwd through the management login).

mod common;

use std::sync::Arc;

use common::{Admin, Host, Setup, ed25519, rsa};
use rotd_backend_ssh::Credential;
use rotd_core::{Backend, Slot};
use rotd_testkit::backend_suite::BackendUnderTest;

async fn under_test(setup: Setup) -> BackendUnderTest {
    let host = tokio::task::block_in_place(|| Host::start(setup));
    let backend = host.backend();
    let initial = host.initial(&backend).await;
    BackendUnderTest {
        backend: Arc::new(backend) as Arc<dyn Backend>,
        initial: vec![(Slot::Single, initial)],
        guard: Box::new(host),
        nodes: None,
    }
}

mod password_root_key {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(Setup::new(Credential::Password, Admin::RootKey)).await
    }
    rotd_testkit::backend_conformance!(factory);
}

mod password_sudo_nopasswd {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(Setup::new(Credential::Password, Admin::SudoNoPassword)).await
    }
    rotd_testkit::backend_conformance!(factory);
}

mod password_sudo_asks {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(Setup::new(Credential::Password, Admin::SudoPassword)).await
    }
    rotd_testkit::backend_conformance!(factory);
}

mod password_no_password_logins {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(Setup {
            password_authentication: false,
            ..Setup::new(Credential::Password, Admin::SudoPasswordKeyLogin)
        })
        .await
    }
    rotd_testkit::backend_conformance!(factory);
}

mod ed25519_root_key {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(Setup::new(ed25519(), Admin::RootKey)).await
    }
    rotd_testkit::backend_conformance!(factory);
}

mod ed25519_sudo_asks_key_login {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(Setup::new(ed25519(), Admin::SudoPasswordKeyLogin)).await
    }
    rotd_testkit::backend_conformance!(factory);
}

mod rsa_sudo_nopasswd {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(Setup::new(rsa(), Admin::SudoNoPassword)).await
    }
    rotd_testkit::backend_conformance!(factory);
}
