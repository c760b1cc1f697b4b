//! `[log] format = "journald"` speaks the native journal protocol to a real systemd-journald, and
//! `journalctl -o json` shows what an operator filters on: `SECRET=` on every line about a secret,
//! `ROTATION_ID=` shared by all lines of one rotation (the engine's, the hooks'), priorities that
//! match the level, and no secret value anywhere.
//!
//! The machine has no journald running (systemd is not PID 1 here), so the test starts one in a private
//! mount namespace with its own /run (`unshare`, as root) and runs `rotd serve` beside it; nothing of
//! the host's /run is touched. `journalctl` reads that namespace's journal through `nsenter`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use rotd_e2e::{Env, http_get, quickstart, rotd_bin, wait_for};

/// Mounts a private /run, starts systemd-journald there, runs the given command (rotd serve) in the
/// background, and stops it with SIGTERM once the test creates /run/rotd-stop. It is PID 1 of its own
/// PID namespace, so when it dies (or the test kills `unshare`) everything it started dies too.
const NAMESPACE_SCRIPT: &str = r#"set -u
mount -t tmpfs -o mode=0755 tmpfs /run || exit 1
/lib/systemd/systemd-journald &
i=0
until [ -S /run/systemd/journal/socket ]; do
    i=$((i + 1)); [ "$i" -lt 200 ] || { echo "journald did not start" >&2; exit 1; }
    sleep 0.05
done
"$@" &
rotd=$!
while [ ! -e /run/rotd-stop ] && kill -0 "$rotd" 2>/dev/null; do sleep 0.05; done
kill -TERM "$rotd" 2>/dev/null
wait "$rotd"
echo "$?" > /run/rotd-exited
# Keep journald (and so the namespace) up until the test has read the journal.
while [ ! -e /run/rotd-read ]; do sleep 0.05; done
"#;

struct Namespaced {
    child: std::process::Child,
    log: std::path::PathBuf,
}

type Entry = serde_json::Map<String, serde_json::Value>;

impl Namespaced {
    fn start(env: &Env) -> Self {
        let script = env.path("journald-ns.sh");
        std::fs::write(&script, NAMESPACE_SCRIPT).expect("script");
        let log = env.path("ns.log");
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--kill-child",
                "--",
                "sh",
            ])
            .arg(&script)
            .arg(rotd_bin())
            .arg("-c")
            .arg(env.config())
            .arg("serve")
            .env_remove("ROTD_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("unshare");
        Namespaced { child, log }
    }

    /// A command in the namespace's mount namespace (`unshare` itself entered it before forking).
    fn in_namespace(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.child.id()))
            .arg("--")
            .arg(program);
        c
    }

    fn sh(&self, script: &str) -> bool {
        self.in_namespace("sh")
            .args(["-c", script])
            .status()
            .expect("nsenter")
            .success()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// rotd's entries, one JSON object per line of `journalctl -o json`.
    fn entries(&self) -> Vec<Entry> {
        let out = self
            .in_namespace("journalctl")
            .args(["-o", "json", "--no-pager", "SYSLOG_IDENTIFIER=rotd"])
            .output()
            .expect("journalctl");
        assert!(
            out.status.success(),
            "journalctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("journal entry JSON"))
            .collect()
    }

    /// Stops rotd with SIGTERM; its stderr and every journal entry it wrote, shutdown included.
    fn stop(mut self) -> (String, Vec<Entry>) {
        assert!(self.sh("touch /run/rotd-stop"));
        let exited = self.sh(
            "i=0; until [ -s /run/rotd-exited ]; do i=$((i+1)); [ $i -lt 800 ] || exit 1; sleep 0.05; done",
        );
        assert!(exited, "rotd did not stop:\n{}", self.log_text());
        let status = self
            .in_namespace("cat")
            .arg("/run/rotd-exited")
            .output()
            .expect("cat");
        let status = String::from_utf8_lossy(&status.stdout).trim().to_owned();
        let entries = self.entries();
        assert!(self.sh("touch /run/rotd-read"));
        let _ = self.child.wait();
        assert_eq!(
            status,
            "0",
            "rotd serve exited with {status}:\n{}",
            self.log_text()
        );
        (self.log_text(), entries)
    }
}

impl Drop for Namespaced {
    fn drop(&mut self) {
        // SIGKILL to unshare: --kill-child takes its PID 1, and the kernel everything else in there.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn field<'a>(e: &'a Entry, name: &str) -> Option<&'a str> {
    match e.get(name) {
        Some(serde_json::Value::String(s)) => Some(s),
        // journald keeps duplicated fields; journalctl shows them as an array. rotd must not send any.
        Some(other) => panic!("{name} is not one string: {other} in {e:?}"),
        None => None,
    }
}

#[test]
fn journald_lines_carry_secret_and_rotation_id() {
    let (env, admin) = quickstart();
    let toml = std::fs::read_to_string(env.config())
        .expect("rotd.toml")
        .replace("format = \"text\"", "format = \"journald\"");
    assert!(
        toml.contains("format = \"journald\""),
        "the quickstart config changed: {toml}"
    );
    env.write("rotd.toml", &toml);
    // A hook that fails: its WARN line is logged inside the rotation it follows.
    let secret_file = env.path("secrets.d/app-api-token.toml");
    let mut secret = std::fs::read_to_string(&secret_file).expect("secret file");
    secret.push_str("\n[[hooks]]\ncommand = [\"/bin/false\"]\n");
    std::fs::write(&secret_file, secret).expect("write");
    let name = "quickstart/api-token";

    let daemon = Namespaced::start(&env);
    wait_for("readiness", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok() && http_get(admin, "/readyz").0 == 200
    });
    // The first value comes at once (declared without one, so it is created, not rotated); then two
    // operator rotations. Every value the secret ever had is kept for the leak check below.
    wait_for("the first value", Duration::from_secs(30), || {
        env.run(&["secret", "get", name, "--reveal"]).code == 0
    });
    let mut values: Vec<String> = Vec::new();
    for _ in 0..2 {
        values.push(env.ok(&["secret", "get", name, "--reveal"]).trim().to_owned());
        env.ok(&["rotate", name]);
    }
    values.push(env.ok(&["secret", "get", name, "--reveal"]).trim().to_owned());
    for v in &values {
        assert!(v.len() >= 40, "value of {} characters", v.len());
    }
    assert!(
        values[0] != values[1] && values[1] != values[2],
        "each rotation made a new value"
    );
    wait_for("two promotions in the journal", Duration::from_secs(20), || {
        daemon
            .entries()
            .iter()
            .filter(|e| field(e, "MESSAGE") == Some("Rotation promoted."))
            .count()
            >= 2
    });
    let (stderr, entries) = daemon.stop();
    // Everything went to the journal: nothing on stderr (no fallback to text).
    assert!(stderr.trim().is_empty(), "rotd wrote to stderr:\n{stderr}");

    let promoted: Vec<_> = entries
        .iter()
        .filter(|e| field(e, "MESSAGE") == Some("Rotation promoted."))
        .collect();
    assert_eq!(promoted.len(), 2, "{promoted:#?}");
    let mut by_rotation: BTreeMap<String, Vec<&Entry>> = BTreeMap::new();
    for e in &entries {
        if let Some(id) = field(e, "ROTATION_ID") {
            by_rotation.entry(id.to_owned()).or_default().push(e);
        }
    }
    for p in &promoted {
        assert_eq!(field(p, "SECRET"), Some(name), "{p:?}");
        assert_eq!(
            field(p, "PRIORITY"),
            Some("6"),
            "INFO is journal priority 6: {p:?}"
        );
        assert!(field(p, "VERSION").is_some(), "{p:?}");
        let id = field(p, "ROTATION_ID").expect("the promotion names its rotation");
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        // The hook's line belongs to the same rotation, and names the secret and the hook.
        let lines = &by_rotation[id];
        let hook = lines
            .iter()
            .find(|e| field(e, "MESSAGE") == Some("Post-rotation hook failed."))
            .unwrap_or_else(|| panic!("no hook line with ROTATION_ID={id}: {lines:#?}"));
        assert_eq!(field(hook, "SECRET"), Some(name));
        assert_eq!(field(hook, "HOOK"), Some("/bin/false"));
        assert_eq!(field(hook, "PRIORITY"), Some("4"), "WARN is priority 4: {hook:?}");
    }
    assert_ne!(
        field(promoted[0], "ROTATION_ID"),
        field(promoted[1], "ROTATION_ID"),
        "two rotations, two ids"
    );
    for (id, lines) in &by_rotation {
        for e in lines {
            assert_eq!(
                field(e, "SECRET"),
                Some(name),
                "line of rotation {id} without the secret: {e:?}"
            );
        }
    }
    // Lines of the whole daemon: a start-up line, rotd's own identifier, no prefixed field names, and
    // not one of the values rotd generated.
    assert!(
        entries
            .iter()
            .any(|e| field(e, "TARGET").is_some_and(|t| t.starts_with("rotd"))),
        "{entries:#?}"
    );
    for e in &entries {
        assert!(
            !e.keys().any(|k| k.starts_with("F_")),
            "prefixed field names: {e:?}"
        );
        let text = serde_json::to_string(e).expect("json");
        for v in &values {
            assert!(
                !text.contains(v.as_str()),
                "a secret value is in the journal: {e:?}"
            );
        }
    }
}
