//! rotd-backend-exec rotates the credentials of any target through a user-supplied command (a *plug-in*), so
//! supporting a new kind of target needs no recompiled rotd. [`ExecBackend`] implements
//! [`rotd_core::Backend`] by running the configured command once per call, feeding it one JSON request line on
//! stdin and reading its exit code and optional JSON response line. The protocol below (also `PROTOCOL.md`
//! beside this crate's `Cargo.toml`, written for plug-in authors) is the whole contract.
//!
//! Security properties kept here: the value travels only on the plug-in's stdin (never argv, never the
//! environment, which is cleared); buffers that hold it are zeroized; plug-in output is bounded and has the
//! value redacted before it goes into an error; a plug-in that overstays its deadline is killed together with
//! its whole process group.
//!
#![doc = include_str!("../PROTOCOL.md")]

mod capture;
mod redact;

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rotd_core::{Backend, BackendError, BackendResult, BoxFuture, Capabilities, ErrorClass, Secret, Slot};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStdin, Command};

pub use crate::capture::OUTPUT_LIMIT;
use crate::capture::{Capture, Keep, capture};
pub use crate::redact::REDACTED;
use crate::redact::Redactor;

/// The backend's label in logs, metrics and errors.
pub const KIND: &str = "exec";

/// The `version` field of every request.
pub const PROTOCOL_VERSION: u32 = 1;

/// The only `PATH` a plug-in sees; anything else it needs it must name by absolute path.
pub const PLUGIN_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How many bytes of plug-in error text or stderr an error message quotes.
pub const ERROR_EXCERPT_BYTES: usize = 500;

/// How long to wait for a plug-in killed at its deadline to be reaped before leaving it to tokio's orphan
/// reaper; SIGKILL cannot be caught, so this only matters for a process stuck in the kernel.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// The static configuration of one exec-backed secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// The rotd secret name, passed to the plug-in as `secret_name` and `ROTD_SECRET_NAME`.
    pub secret_name: String,
    /// The plug-in's argv: an absolute program path followed by fixed arguments. Never contains a secret.
    pub command: Vec<String>,
    /// The deadline of each call; the plug-in's process group is killed when it passes.
    pub timeout: Duration,
}

/// A [`Backend`] that delegates every step to a plug-in command. See the crate docs for the protocol.
#[derive(Debug)]
pub struct ExecBackend {
    cfg: ExecConfig,
}

/// What a call asks the plug-in to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Check,
    Apply,
    Verify,
    Retire,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Check => "check",
            Action::Apply => "apply",
            Action::Verify => "verify",
            Action::Retire => "retire",
        }
    }
}

/// The request line. It borrows the value only for as long as it takes to serialize it into a zeroizing
/// buffer.
#[derive(Serialize)]
struct Request<'a> {
    version: u32,
    action: &'static str,
    secret_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
}

/// The response line. Unknown fields are ignored so that later protocol-1 plug-ins can add some.
#[derive(Deserialize)]
struct Response {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    retryable: Option<bool>,
}

impl ExecBackend {
    /// Validates the configuration: a non-empty command whose program is an absolute path (the plug-in runs
    /// with a minimal `PATH`, and a relative path would depend on rotd's working directory), no NUL bytes
    /// (they cannot be passed to `execve`), a secret name and a non-zero timeout. Whether the program exists
    /// is left to [`Backend::check`], since the configuration may be validated on another host.
    pub fn new(cfg: ExecConfig) -> Result<Self, BackendError> {
        let invalid = |message: String| BackendError::permanent(KIND, "configure", message);
        let Some(program) = cfg.command.first() else {
            return Err(invalid(
                "the command is empty: give the absolute path of the plug-in".to_owned(),
            ));
        };
        if !Path::new(program).is_absolute() {
            return Err(invalid(format!(
                "the plug-in path {program:?} is not absolute: plug-ins run with PATH={PLUGIN_PATH}, so name the \
                 program by its full path"
            )));
        }
        if cfg.command.iter().any(|arg| arg.contains('\0')) {
            return Err(invalid("the command contains a NUL byte".to_owned()));
        }
        if cfg.secret_name.is_empty() || cfg.secret_name.contains('\0') {
            return Err(invalid(
                "the secret name is empty or contains a NUL byte".to_owned(),
            ));
        }
        if cfg.timeout.is_zero() {
            return Err(invalid(
                "the plug-in timeout must be greater than zero".to_owned(),
            ));
        }
        Ok(Self { cfg })
    }

    pub fn config(&self) -> &ExecConfig {
        &self.cfg
    }

    fn program(&self) -> &str {
        // `new` guarantees a first element; the fallback only keeps this free of a panic path.
        self.cfg.command.first().map_or("", String::as_str)
    }

    /// Runs the plug-in once for `action` and interprets its answer.
    async fn call(&self, action: Action, slot: Option<Slot>, value: Option<&Secret>) -> BackendResult<()> {
        let op = action.as_str();
        if let Some(slot) = slot {
            self.check_slot(op, slot)?;
        }
        let text = match value {
            None => None,
            Some(value) => Some(value.expose_str().ok_or_else(|| {
                BackendError::permanent(
                    KIND,
                    op,
                    "the secret value is not UTF-8 text, which the exec plug-in protocol cannot carry",
                )
            })?),
        };
        let request = self.encode_request(op, action, slot, text)?;
        let redactor = Redactor::new(text);
        let program = self.program();

        let mut child = self
            .command(op)
            .spawn()
            .map_err(|e| spawn_error(op, program, &e))?;
        let started = rotd_core::Clock::system().instant();
        // Declared after `child`, so it is dropped first: an abandoned call kills the whole group before
        // `kill_on_drop` kills the leader alone.
        let mut group = GroupGuard {
            pgid: child.id(),
            armed: true,
        };
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        // The request is written while both outputs are drained, so neither side can block the other on a
        // full pipe; the exit status is collected only after end-of-file on both outputs.
        let run = async {
            let ((), out, err) = tokio::join!(
                write_request(stdin, request.expose_secret()),
                capture(stdout, Keep::Head),
                capture(stderr, Keep::Tail),
            );
            (child.wait().await, out, err)
        };
        let outcome = tokio::time::timeout(self.cfg.timeout, run).await;
        drop(request);
        if outcome.is_err() {
            // The leader has not been reaped (its exit status was never collected), so its pid, which is the
            // group id, cannot have been reused: the kill reaches only the plug-in and its children.
            kill_process_group(group.pgid);
        }
        // From here on the leader is reaped or already killed with its group; a later kill could only hit a
        // reused id.
        group.armed = false;

        let (status, out, err) = match outcome {
            Ok((Ok(status), out, err)) => (status, out, err),
            Ok((Err(e), _, _)) => {
                return Err(BackendError::retryable(
                    KIND,
                    op,
                    format!("{op} failed: waiting for plug-in {program} failed: {e}"),
                ));
            }
            Err(_elapsed) => {
                if tokio::time::timeout(REAP_GRACE, child.wait()).await.is_err() {
                    tracing::warn!(action = op, "exec plug-in not reaped after SIGKILL");
                }
                let after = human_duration(self.cfg.timeout);
                tracing::warn!(action = op, program, "exec plug-in timed out after {after}");
                return Err(BackendError::retryable(
                    KIND,
                    op,
                    format!(
                        "{op} failed: plug-in {program} timed out after {after}; its process group was killed"
                    ),
                ));
            }
        };
        let result = self.judge(op, status, &out, &err, &redactor);
        tracing::debug!(
            action = op,
            exit_code = status.code(),
            elapsed_ms =
                u64::try_from(rotd_core::Clock::system().elapsed(started).as_millis()).unwrap_or(u64::MAX),
            ok = result.is_ok(),
            "exec plug-in finished"
        );
        result
    }

    /// Exec secrets have one account. A dual-account exec secret would need a value that names its
    /// account (the engine derives the live slot from `ACSCurrent`'s value, and an application must
    /// know which account to log in as); the protocol's bare value cannot, so the shape is not offered.
    fn check_slot(&self, op: &'static str, slot: Slot) -> BackendResult<()> {
        if slot == Slot::Single {
            return Ok(());
        }
        Err(BackendError::permanent(
            KIND,
            op,
            format!("slot {slot} does not exist for an exec secret (single account)"),
        ))
    }

    /// Serializes the request line into a buffer sized for the worst case (every byte escaped as `\u00XX`),
    /// so it never reallocates and the only copy of the value in it is zeroized on drop.
    fn encode_request(
        &self,
        op: &'static str,
        action: Action,
        slot: Option<Slot>,
        value: Option<&str>,
    ) -> BackendResult<Secret> {
        let request = Request {
            version: PROTOCOL_VERSION,
            action: action.as_str(),
            secret_name: &self.cfg.secret_name,
            slot: slot.map(Slot::as_str),
            value,
        };
        let escaped_len = 6 * (self.cfg.secret_name.len() + value.map_or(0, str::len));
        let mut line = Vec::with_capacity(escaped_len + 128);
        let written = serde_json::to_writer(&mut line, &request);
        line.push(b'\n');
        let line = Secret::new(line);
        written.map_err(|e| BackendError::permanent(KIND, op, format!("cannot encode the request: {e}")))?;
        Ok(line)
    }

    fn command(&self, op: &'static str) -> Command {
        let mut cmd = Command::new(self.program());
        cmd.args(self.cfg.command.iter().skip(1))
            .env_clear()
            .env("PATH", PLUGIN_PATH)
            .env("ROTD_ACTION", op)
            .env("ROTD_SECRET_NAME", &self.cfg.secret_name)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own lets a timeout kill the plug-in's children too; kill-on-drop covers a call
            // whose future is dropped (a cancelled rotation, a shutdown) before the plug-in finishes.
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }

    /// Applies the outcome table of the protocol to a finished plug-in.
    fn judge(
        &self,
        op: &'static str,
        status: ExitStatus,
        out: &Capture,
        err: &Capture,
        redactor: &Redactor,
    ) -> BackendResult<()> {
        let program = self.program();
        let response = parse_response(out);
        let stderr = || stderr_excerpt(err, redactor);
        let fail = |class: ErrorClass, message: String| BackendError {
            backend: KIND.to_owned(),
            operation: op,
            class,
            message,
            node: None,
            identity_mismatch: false,
        };

        let Some(code) = status.code() else {
            let signal = status.signal().map_or_else(|| "?".to_owned(), |s| s.to_string());
            return Err(fail(
                ErrorClass::Retryable,
                format!(
                    "{op} failed: plug-in {program} was killed by signal {signal}: {}",
                    stderr()
                ),
            ));
        };
        if code == 0 {
            return match response {
                Ok(None) => Ok(()),
                Ok(Some(r)) if r.ok => Ok(()),
                Ok(Some(r)) => {
                    let class = if r.retryable == Some(false) {
                        ErrorClass::Permanent
                    } else {
                        ErrorClass::Retryable
                    };
                    let detail = r.error.map_or_else(stderr, |e| error_excerpt(&e, redactor));
                    Err(fail(
                        class,
                        format!("{op} failed: plug-in {program} exited with code 0 and reported: {detail}"),
                    ))
                }
                Err(problem) => Err(fail(
                    ErrorClass::Permanent,
                    format!(
                        "{op} failed: plug-in {program} exited with code 0 but broke the protocol: {problem}; stderr: {}",
                        stderr()
                    ),
                )),
            };
        }
        // A non-zero exit is a failure whatever stdout says; a response only refines the class and message.
        let response = response.ok().flatten();
        let said_permanent = response.as_ref().and_then(|r| r.retryable) == Some(false);
        let class = if (64..=78).contains(&code) || said_permanent {
            ErrorClass::Permanent
        } else {
            ErrorClass::Retryable
        };
        let detail = response
            .and_then(|r| r.error)
            .map_or_else(stderr, |e| error_excerpt(&e, redactor));
        Err(fail(
            class,
            format!("{op} failed: plug-in {program} exited with code {code}: {detail}"),
        ))
    }
}

impl Backend for ExecBackend {
    fn kind(&self) -> &str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn check(&self) -> BoxFuture<'_, BackendResult<()>> {
        Box::pin(self.call(Action::Check, None, None))
    }

    /// A generic secret's value is the credential itself, so the password is returned unchanged.
    fn compose(&self, _slot: Slot, password: &Secret) -> BackendResult<Secret> {
        Ok(password.clone())
    }

    fn apply<'a>(&'a self, slot: Slot, new: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(self.call(Action::Apply, Some(slot), Some(new)))
    }

    fn verify<'a>(&'a self, slot: Slot, secret: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(self.call(Action::Verify, Some(slot), Some(secret)))
    }

    fn retire<'a>(&'a self, slot: Slot, old: &'a Secret, _step: u8) -> BoxFuture<'a, BackendResult<()>> {
        // Exec plug-ins have no retire steps (retire_steps = 0); a call is one revocation.
        Box::pin(self.call(Action::Retire, Some(slot), Some(old)))
    }
}

/// Writes the request and closes stdin. A plug-in may exit without reading it (a `check` that needs nothing
/// from stdin), so a broken pipe is expected; any other write error also leaves the verdict to the exit
/// status.
async fn write_request(stdin: Option<ChildStdin>, line: &[u8]) {
    let Some(mut stdin) = stdin else {
        return;
    };
    if let Err(e) = stdin.write_all(line).await
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        tracing::debug!(error = %e, "writing the exec plug-in request failed");
    }
    // Dropping the handle closes the pipe, which is the plug-in's end-of-file.
    drop(stdin);
}

/// Reads the response from the last non-blank line of stdout. `Ok(None)` means stdout was blank. The errors
/// describe the problem without quoting the line, which may hold the value.
fn parse_response(out: &Capture) -> Result<Option<Response>, String> {
    if out.truncated {
        return Err(format!("its stdout exceeded {} KiB", OUTPUT_LIMIT / 1024));
    }
    let Some(line) = out
        .bytes()
        .rsplit(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .find(|l| !l.is_empty())
    else {
        return Ok(None);
    };
    serde_json::from_slice::<Response>(line).map(Some).map_err(|e| {
        // serde_json's message can quote the offending data, so only its category and position are kept.
        format!(
            "the last line of its stdout is not a response object ({:?} error at column {})",
            e.classify(),
            e.column()
        )
    })
}

/// The last [`ERROR_EXCERPT_BYTES`] of stderr, redacted and on one line.
fn stderr_excerpt(err: &Capture, redactor: &Redactor) -> String {
    let redacted = redactor.redact(err.bytes(), err.truncated);
    let text = one_line(&String::from_utf8_lossy(&redacted));
    // Joining lines could in principle assemble a value that spanned them, so the joined text is redacted
    // again before it is cut.
    let text = redactor.redact_str(&text);
    if text.is_empty() {
        return "no output on stderr".to_owned();
    }
    if text.len() <= ERROR_EXCERPT_BYTES {
        return text;
    }
    let mut start = text.len() - ERROR_EXCERPT_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// The first [`ERROR_EXCERPT_BYTES`] of the plug-in's `error` text, redacted and on one line.
fn error_excerpt(error: &str, redactor: &Redactor) -> String {
    let text = redactor.redact_str(&one_line(&redactor.redact_str(error)));
    if text.is_empty() {
        return "the plug-in gave no error text".to_owned();
    }
    if text.len() <= ERROR_EXCERPT_BYTES {
        return text;
    }
    let mut end = ERROR_EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Joins the non-blank lines with ` | ` and escapes control characters, so plug-in output cannot forge log
/// lines or terminal escapes.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push_str(" | ");
        }
        for c in line.chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// Classifies a failure to start the plug-in. Problems with the file itself are permanent, since retrying
/// will meet the same file; resource shortages and a file still open for writing are retryable.
fn spawn_error(op: &'static str, program: &str, e: &io::Error) -> BackendError {
    let permanent =
        |why: String| BackendError::permanent(KIND, op, format!("cannot start plug-in {program}: {why}"));
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::NotFound, _) => {
            permanent("no such file (or its #! interpreter is missing)".to_owned())
        }
        (io::ErrorKind::PermissionDenied, _) => permanent("permission denied (is it executable?)".to_owned()),
        (_, Some(libc::ENOEXEC)) => {
            permanent("not an executable format (does the script start with #!?)".to_owned())
        }
        (
            _,
            Some(libc::ETXTBSY | libc::EAGAIN | libc::ENOMEM | libc::EMFILE | libc::ENFILE | libc::EINTR),
        ) => BackendError::retryable(KIND, op, format!("cannot start plug-in {program}: {e}")),
        _ => permanent(e.to_string()),
    }
}

/// Kills the plug-in's process group when a call is abandoned (its future dropped by a cancelled rotation or
/// a shutdown) while the plug-in runs, so no child of the plug-in outlives the call holding the value.
struct GroupGuard {
    pgid: Option<u32>,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            // While armed, the leader has not been reaped, so the group id is still the plug-in's.
            kill_process_group(self.pgid);
        }
    }
}

/// Sends SIGKILL to the plug-in's whole process group.
#[allow(unsafe_code)]
fn kill_process_group(pgid: Option<u32>) {
    // 0 and 1 are refused: `kill(0)` would signal rotd's own group and `kill(-1)` every process rotd may
    // signal. A plug-in spawned with `process_group(0)` always has its own pid, which is neither.
    let Some(pgid) = pgid
        .and_then(|p| libc::pid_t::try_from(p).ok())
        .filter(|&p| p > 1)
    else {
        return;
    };
    // SAFETY: kill(2) takes two integers and reads or writes no memory of this process, so it cannot break
    // any Rust invariant. The target is the group the plug-in leads (spawned with `process_group(0)`, so its
    // pgid is its pid), and the caller has not reaped the leader, so the id still denotes that group.
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc != 0 {
        // ESRCH: the whole group is already gone, which is the goal.
        tracing::debug!(pgid, error = %io::Error::last_os_error(), "killing the exec plug-in's process group failed");
    }
}

/// `30s` for whole seconds, `1500ms` otherwise, as in "timed out after 30s".
fn human_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Helpers for other crates' tests. Not part of the supported API.
#[doc(hidden)]
pub mod testing {
    use std::path::PathBuf;

    /// The file-backed fake target plug-in (`tests/fixtures/fake-target.py`). Run it with one fixed
    /// argument, a state directory; see the script's docstring for its files and fault switches.
    pub fn fake_target_script() -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/fake-target.py"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_the_protocol_says() {
        assert_eq!(human_duration(Duration::from_secs(30)), "30s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn one_line_joins_and_escapes() {
        assert_eq!(one_line("a\n\n  b  \r\nc\u{1b}[31m"), "a | b | c\\u{1b}[31m");
    }

    #[test]
    fn request_line_is_one_json_line() {
        let backend = ExecBackend::new(ExecConfig {
            secret_name: "app/token".to_owned(),
            command: vec!["/bin/true".to_owned()],
            timeout: Duration::from_secs(1),
        })
        .expect("valid config");
        let line = backend
            .encode_request("apply", Action::Apply, Some(Slot::Single), Some("pa\"ss\nword"))
            .expect("encodes");
        let text = line.expose_str().expect("utf-8");
        assert_eq!(
            text,
            "{\"version\":1,\"action\":\"apply\",\"secret_name\":\"app/token\",\"slot\":\"single\",\"value\":\"pa\\\"ss\\nword\"}\n"
        );
        let check = backend
            .encode_request("check", Action::Check, None, None)
            .expect("encodes");
        assert_eq!(
            check.expose_str().expect("utf-8"),
            "{\"version\":1,\"action\":\"check\",\"secret_name\":\"app/token\"}\n"
        );
    }
}
