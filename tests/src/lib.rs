//! Black-box tests of the built `rotd` binary (in `tests/`), and the small harness they share: locating
//! the binary, laying out a configuration in a temp dir, and running commands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `rotd` binary next to this test executable (`target/<profile>/rotd`).
pub fn rotd_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("rotd");
    assert!(
        bin.exists(),
        "{} does not exist; build it first with `cargo build -p rotd` (scripts/test does)",
        bin.display()
    );
    bin
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A throwaway installation: `rotd.toml` and `secrets.d/` in a temp dir.
#[derive(Debug)]
pub struct Env {
    pub dir: tempfile::TempDir,
}

/// A finished command.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Env {
    /// A fresh installation with a minimal rotd.toml and an empty secrets.d/.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("rotd.toml"), "data_dir = \"data\"\n").expect("write rotd.toml");
        std::fs::create_dir(dir.path().join("secrets.d")).expect("secrets.d");
        Env { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("rotd.toml")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, text).expect("write");
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(rotd_bin());
        c.arg("-c")
            .arg(self.config())
            .args(args)
            .env_remove("ROTD_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run rotd")
            .into()
    }

    /// Runs with `input` on standard input.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rotd");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait").into()
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "rotd {args:?} failed:\n{}{}", r.stdout, r.stderr);
        r.stdout
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("json output")
    }
}

/// A free loopback TCP port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A plain HTTP/1.1 GET to 127.0.0.1:`port` (the admin listener): the status code and the whole response.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect admin");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, buf)
}

/// Polls `f` every 100 ms until it returns true, panicking after `timeout`.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let start = rotd_core::Clock::system().instant();
    while rotd_core::Clock::system().elapsed(start) < timeout {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A running `rotd serve`, killed (SIGKILL) on drop if still running.
#[derive(Debug)]
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `rotd serve` with extra environment variables, logging to `log_name` in the env dir.
    pub fn start(env: &Env, log_name: &str, vars: &[(&str, &str)]) -> Daemon {
        let log = env.path(log_name);
        let mut cmd = env.command(&["serve"]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().expect("spawn rotd serve"),
            log,
        }
    }

    /// Panics with the daemon's log if it has exited.
    pub fn assert_alive(&self) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // A zombie still answers kill(0); look at /proc instead.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let exited = state.is_empty()
            || state
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
        assert!(!exited, "rotd serve exited early:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let start = rotd_core::Clock::system().instant();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(
                    status.success(),
                    "serve exited with {status:?}:\n{}",
                    self.log_text()
                );
                return self.log_text();
            }
            assert!(
                rotd_core::Clock::system().elapsed(start) < std::time::Duration::from_secs(40),
                "serve did not stop:\n{}",
                self.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a power cut would.
    pub fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

/// A database server's address and admin credential, for [`declare_rds_dual_example`].
#[derive(Debug, Clone)]
pub struct DbServer<'a> {
    /// `mysql` or `postgres`: the example's `engine` line is set to it.
    pub engine: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub admin_user: &'a str,
    pub admin_password: &'a str,
}

/// Declares `config/examples/secrets.d/rds-mysql-dual.toml` (secret `orders/mysql-app`, accounts rotd
/// creates) as a user would, with only what differs on this machine changed: the engine, the server's
/// address, TLS off (the private servers have no certificates) and the admin credential's path (a 0600
/// file written here). Runs `rotd check` on the result.
pub fn declare_rds_dual_example(env: &Env, db: &DbServer<'_>) {
    use std::os::unix::fs::PermissionsExt;
    let example = std::fs::read_to_string(repo_root().join("config/examples/secrets.d/rds-mysql-dual.toml"))
        .expect("read the example");
    let admin_file = env.path("orders-admin.json");
    let admin = serde_json::json!({"AccountName": db.admin_user, "AccountPassword": db.admin_password});
    std::fs::write(&admin_file, admin.to_string()).expect("write the admin file");
    std::fs::set_permissions(&admin_file, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let mut text = String::new();
    for line in example.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let line = match key {
            "engine" => format!("engine = \"{}\"", db.engine),
            "host" => format!("host = \"{}\"", db.host),
            "port" => format!("port = {}", db.port),
            "tls" => "tls = \"disable\"".to_owned(),
            "ca_file" => continue,
            "admin" => format!(
                "admin = {{ file = {} }}",
                serde_json::Value::String(admin_file.to_str().expect("utf-8").to_owned())
            ),
            _ => line.to_owned(),
        };
        text.push_str(&line);
        text.push('\n');
    }
    assert!(
        text.contains("create = {") && text.contains("mode = \"dual\""),
        "the example creates two accounts:\n{text}"
    );
    env.write("secrets.d/rds-mysql-dual.toml", &text);
    env.ok(&["check"]);
}

/// A database secret's value at `stage`, as an application reads it: (version id, account, password).
pub fn read_account(env: &Env, name: &str, stage: &str) -> Option<(String, String, String)> {
    let r = env.run(&["-o", "json", "secret", "get", name, "--stage", stage, "--reveal"]);
    if r.code != 0 {
        return None;
    }
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).ok()?;
    let value: serde_json::Value = serde_json::from_str(doc["SecretData"].as_str()?).ok()?;
    Some((
        doc["VersionId"].as_str()?.to_owned(),
        value["AccountName"].as_str()?.to_owned(),
        value["AccountPassword"].as_str()?.to_owned(),
    ))
}

/// A copy of config/quickstart with its listeners moved to free ports (tests run in parallel), and the
/// admin listener's port.
pub fn quickstart() -> (Env, u16) {
    let env = Env::new();
    let admin = free_port();
    let src = repo_root().join("config/quickstart");
    let toml = std::fs::read_to_string(src.join("rotd.toml"))
        .expect("quickstart rotd.toml")
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:9464", &format!("127.0.0.1:{admin}"));
    env.write("rotd.toml", &toml);
    for f in std::fs::read_dir(src.join("secrets.d")).expect("secrets.d") {
        let f = f.expect("entry").path();
        std::fs::copy(&f, env.path("secrets.d").join(f.file_name().expect("name"))).expect("copy");
    }
    (env, admin)
}

/// The KMS API of a running daemon as an application reaches it: requests V3-signed with the
/// installation's first admin access key (`data/admin-access-key.json`), over TLS trusting only the
/// installation's CA (`data/tls/ca.pem`).
pub struct Api {
    addr: String,
    key: rotd_aliyun::AccessKey,
    tls: std::sync::Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// The API at `addr` (`127.0.0.1:PORT`) of the daemon serving `env`'s installation.
    pub fn new(env: &Env, addr: &str) -> Api {
        let doc: serde_json::Value = serde_json::from_slice(
            &std::fs::read(env.path("data/admin-access-key.json")).expect("the first admin access key"),
        )
        .expect("json");
        let key = rotd_aliyun::AccessKey::new(
            doc["AccessKeyId"].as_str().expect("id"),
            rotd_core::Secret::from(doc["AccessKeySecret"].as_str().expect("secret")),
        );
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(env.path("data/tls/ca.pem")).expect("ca.pem");
        for c in
            <rustls_pki_types::CertificateDer<'_> as rustls_pki_types::pem::PemObject>::pem_slice_iter(&pem)
        {
            roots.add(c.expect("pem")).expect("add the CA");
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Api {
            addr: addr.to_owned(),
            key,
            tls: std::sync::Arc::new(tls),
        }
    }

    /// GetSecretValue of `name` (at `stage`, or the default ACSCurrent): (HTTP status, body).
    pub fn get_secret_value(&self, name: &str, stage: Option<&str>) -> (u16, serde_json::Value) {
        use std::io::{Read, Write};
        let mut query = vec![("SecretName".to_owned(), name.to_owned())];
        if let Some(stage) = stage {
            query.push(("VersionStage".to_owned(), stage.to_owned()));
        }
        let mut headers = vec![
            ("host".to_owned(), self.addr.clone()),
            ("x-acs-action".to_owned(), "GetSecretValue".to_owned()),
            ("x-acs-version".to_owned(), "2016-01-20".to_owned()),
        ];
        let parts = rotd_aliyun::RequestParts {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            body: b"",
        };
        headers.extend(rotd_aliyun::v3::sign_request(
            &self.key,
            &parts,
            rotd_core::Clock::system().now(),
            &rotd_aliyun::random_nonce(),
        ));
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", rotd_aliyun::percent::encode(v)))
            .collect();
        let mut head = format!("POST /?{} HTTP/1.1\r\n", qs.join("&"));
        for (n, v) in &headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("content-length: 0\r\nconnection: close\r\n\r\n");
        let server = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(std::sync::Arc::clone(&self.tls), server).expect("client");
        let tcp = std::net::TcpStream::connect(&self.addr).expect("connect to the API");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(head.as_bytes()).expect("write");
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let (h, b) = text.split_once("\r\n\r\n").expect("an HTTP response");
        let status = h.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
        (status, serde_json::from_str(b).unwrap_or(serde_json::Value::Null))
    }
}
