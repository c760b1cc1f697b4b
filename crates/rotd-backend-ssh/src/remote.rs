//! One SSH connection to a managed host: the host key checked against the pin before anything is sent,
//! a login, and commands whose secret input goes over the channel's stdin only.
//!
//! # Commands and sudo
//!
//! Every command is a fixed script (`scripts.rs`) run as `/bin/sh -c <script> rotd <args…>`, the args
//! being names and paths only; with `sudo` it is prefixed by `sudo -S -p <PROMPT> --`. The script's
//! first act is to print [`READY`] on stdout. The client writes nothing to stdin until it sees either
//! the prompt on stderr (then it sends the sudo password, once) or `READY` (then the payload, then EOF),
//! so a sudo that asks for a password and one that does not (NOPASSWD) are told apart for certain, and
//! the payload can never be read by sudo as a password or the other way round.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, MethodKind};
use zeroize::Zeroizing;

use crate::keys;

/// What a script prints before it reads stdin.
pub(crate) const READY: &[u8] = b"rotd-ready\n";
/// The prompt rotd asks sudo to print, so it can recognise a password request.
pub(crate) const PROMPT: &str = "rotd-sudo-password:";
/// The most a command may print on stdout (an `authorized_keys` file is far smaller).
const MAX_STDOUT: usize = 4 << 20;
/// The most stderr kept for an error message.
const MAX_STDERR: usize = 8 << 10;

/// Why a connection or login failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The host presented a key other than the pinned one (`seen`), or none: nothing was sent.
    HostKey { seen: Option<String> },
    /// TCP, the handshake, or the connection broke: worth retrying.
    Transport(String),
    /// The server refused the login.
    Refused { methods: Vec<MethodKind> },
    /// The step took longer than the backend's timeout.
    TimedOut,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::HostKey { seen: Some(k) } => write!(f, "the host presented the key {k}"),
            Failure::HostKey { seen: None } => f.write_str("the host presented no usable host key"),
            Failure::Transport(m) => f.write_str(m),
            Failure::Refused { .. } => f.write_str("the login was refused"),
            Failure::TimedOut => f.write_str("timed out"),
        }
    }
}

/// The host-key check: only the pinned fingerprint is accepted; what was seen is kept for the error.
pub(crate) struct Pinned {
    expected: String,
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // A host certificate is judged by the key it certifies: rotd pins keys, not CAs.
        let fp = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => keys::host_fingerprint(key),
            russh::keys::PublicKeyOrCertificate::Certificate(c) => {
                c.public_key().fingerprint(HashAlg::Sha256).to_string()
            }
        };
        let ok = keys::same_fingerprint(&fp, &self.expected);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fp);
        }
        Ok(ok)
    }
}

/// Where to connect and which host key to accept.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub host: String,
    pub port: u16,
    pub host_key_sha256: String,
    pub timeout: Duration,
}

/// How to log in.
pub(crate) enum Login<'a> {
    Password(&'a str),
    Key(&'a PrivateKey),
}

/// An authenticated connection.
pub(crate) struct Session {
    handle: Handle<Pinned>,
    timeout: Duration,
}

/// Opens a connection whose host key matches the pin; nothing is sent to a host that fails it.
pub(crate) async fn connect(ep: &Endpoint) -> Result<Handle<Pinned>, Failure> {
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(ep.timeout),
        nodelay: true,
        ..Default::default()
    });
    let seen = Arc::new(Mutex::new(None));
    let handler = Pinned {
        expected: ep.host_key_sha256.clone(),
        seen: Arc::clone(&seen),
    };
    let connecting = client::connect(config, (ep.host.as_str(), ep.port), handler);
    match tokio::time::timeout(ep.timeout, connecting).await {
        Err(_) => Err(Failure::TimedOut),
        Ok(Ok(h)) => Ok(h),
        Ok(Err(russh::Error::UnknownKey)) => Err(Failure::HostKey {
            seen: seen.lock().ok().and_then(|s| s.clone()),
        }),
        Ok(Err(e)) => {
            let seen = seen.lock().ok().and_then(|s| s.clone());
            match seen {
                Some(fp) if !keys::same_fingerprint(&fp, &ep.host_key_sha256) => {
                    Err(Failure::HostKey { seen: Some(fp) })
                }
                _ => Err(Failure::Transport(describe(&e))),
            }
        }
    }
}

fn describe(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// The login methods the server offers `user` (from a `none` attempt).
pub(crate) async fn methods(ep: &Endpoint, user: &str) -> Result<Vec<MethodKind>, Failure> {
    let mut h = connect(ep).await?;
    let r = tokio::time::timeout(ep.timeout, h.authenticate_none(user))
        .await
        .map_err(|_| Failure::TimedOut)?
        .map_err(|e| Failure::Transport(describe(&e)))?;
    let _ = h.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    Ok(match r {
        AuthResult::Success => Vec::new(),
        AuthResult::Failure {
            remaining_methods, ..
        } => remaining_methods.to_vec(),
    })
}

/// Connects and logs in as `user`.
pub(crate) async fn login(ep: &Endpoint, user: &str, how: Login<'_>) -> Result<Session, Failure> {
    let mut handle = connect(ep).await?;
    let auth = async {
        match how {
            Login::Password(pw) => handle.authenticate_password(user, pw).await,
            Login::Key(key) => {
                let hash = if key.algorithm().is_rsa() {
                    // rsa-sha2-512/256 as the server offers them; SHA-1 `ssh-rsa` only if it offers
                    // nothing better (OpenSSH ≥ 8.8 refuses SHA-1 signatures).
                    match handle.best_supported_rsa_hash().await {
                        Ok(Some(h)) => h,
                        _ => Some(HashAlg::Sha256),
                    }
                } else {
                    None
                };
                let key = PrivateKeyWithHashAlg::new(Arc::new(key.clone()), hash);
                handle.authenticate_publickey(user, key).await
            }
        }
    };
    let r = tokio::time::timeout(ep.timeout, auth)
        .await
        .map_err(|_| Failure::TimedOut)?
        .map_err(|e| Failure::Transport(describe(&e)))?;
    match r {
        AuthResult::Success => Ok(Session {
            handle,
            timeout: ep.timeout,
        }),
        AuthResult::Failure {
            remaining_methods, ..
        } => Err(Failure::Refused {
            methods: remaining_methods.to_vec(),
        }),
    }
}

/// A password login through keyboard-interactive (PAM's "Password:" prompt), for servers that offer
/// only that method. Answers one prompt per round, at most three rounds.
pub(crate) async fn login_interactive(ep: &Endpoint, user: &str, pw: &str) -> Result<(), Failure> {
    let mut handle = connect(ep).await?;
    let run = async {
        let mut r = handle.authenticate_keyboard_interactive_start(user, None).await?;
        for _ in 0..3 {
            match r {
                KeyboardInteractiveAuthResponse::Success => return Ok(true),
                KeyboardInteractiveAuthResponse::Failure { .. } => return Ok(false),
                KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                    let answers = prompts
                        .iter()
                        .map(|p| if p.echo { String::new() } else { pw.to_owned() })
                        .collect();
                    r = handle.authenticate_keyboard_interactive_respond(answers).await?;
                }
            }
        }
        Ok::<bool, russh::Error>(matches!(r, KeyboardInteractiveAuthResponse::Success))
    };
    let ok = tokio::time::timeout(ep.timeout, run)
        .await
        .map_err(|_| Failure::TimedOut)?
        .map_err(|e| Failure::Transport(describe(&e)))?;
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    if ok {
        Ok(())
    } else {
        Err(Failure::Refused { methods: Vec::new() })
    }
}

/// What a command did.
pub(crate) struct Output {
    /// `None` when the command ended without an exit status (killed by a signal, connection lost).
    pub status: Option<u32>,
    /// stdout after [`READY`].
    pub stdout: Vec<u8>,
    /// stderr, at most [`MAX_STDERR`] bytes, lossily decoded; never holds the payload.
    pub stderr: String,
    /// Whether the script got as far as [`READY`] (sudo accepted).
    pub ready: bool,
}

/// Why a command could not run to its end.
#[derive(Debug)]
pub(crate) enum ExecFailure {
    Transport(String),
    TimedOut,
    /// sudo asked for a password and there is none to give.
    SudoNeedsPassword,
    /// sudo asked again after the password was sent: it was wrong.
    SudoRefused,
    TooMuchOutput,
}

impl Session {
    /// Runs `command` (built by [`command`]), answering sudo's prompt with `sudo_password` and
    /// writing `stdin` once the script is ready.
    pub(crate) async fn run(
        &self,
        command: &str,
        sudo_password: Option<&str>,
        stdin: &[u8],
    ) -> Result<Output, ExecFailure> {
        tokio::time::timeout(self.timeout, self.run_inner(command, sudo_password, stdin))
            .await
            .map_err(|_| ExecFailure::TimedOut)?
    }

    async fn run_inner(
        &self,
        command: &str,
        sudo_password: Option<&str>,
        stdin: &[u8],
    ) -> Result<Output, ExecFailure> {
        let t = |e: russh::Error| ExecFailure::Transport(describe(&e));
        let mut ch = self.handle.channel_open_session().await.map_err(t)?;
        ch.exec(true, command.as_bytes()).await.map_err(t)?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut answered = false;
        let mut ready = false;
        let mut status = None;
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    stdout.extend_from_slice(&data);
                    if stdout.len() > MAX_STDOUT {
                        let _ = ch.close().await;
                        return Err(ExecFailure::TooMuchOutput);
                    }
                    if !ready && let Some(at) = find(&stdout, READY) {
                        stdout.drain(..at + READY.len());
                        ready = true;
                        if !stdin.is_empty() {
                            ch.data_bytes(stdin.to_vec()).await.map_err(t)?;
                        }
                        ch.eof().await.map_err(t)?;
                    }
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    if stderr.len() < MAX_STDERR * 4 {
                        stderr.extend_from_slice(&data);
                    }
                    // A prompt after the one answered means sudo refused the password.
                    if !ready && count(&stderr, PROMPT.as_bytes()) > usize::from(answered) {
                        if answered {
                            let _ = ch.close().await;
                            return Err(ExecFailure::SudoRefused);
                        }
                        let Some(pw) = sudo_password else {
                            let _ = ch.close().await;
                            return Err(ExecFailure::SudoNeedsPassword);
                        };
                        let mut line = Zeroizing::new(Vec::with_capacity(pw.len() + 1));
                        line.extend_from_slice(pw.as_bytes());
                        line.push(b'\n');
                        ch.data_bytes(line.to_vec()).await.map_err(t)?;
                        answered = true;
                    }
                }
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        // The prompt is rotd's own text; it says nothing to an operator.
        let text = String::from_utf8_lossy(&stderr).replace(PROMPT, "");
        let mut stderr = text.trim().to_owned();
        if stderr.len() > MAX_STDERR {
            let mut cut = MAX_STDERR;
            while !stderr.is_char_boundary(cut) {
                cut -= 1;
            }
            stderr.truncate(cut);
        }
        Ok(Output {
            status,
            stdout,
            stderr,
            ready,
        })
    }

    pub(crate) async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Quotes a word for a POSIX shell.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The command line that runs `script` with `args`, through sudo when `sudo`.
pub(crate) fn command(script: &str, args: &[&str], sudo: bool) -> String {
    let mut cmd = String::new();
    if sudo {
        cmd.push_str("sudo -S -p ");
        cmd.push_str(&quote(PROMPT));
        cmd.push_str(" -- ");
    }
    cmd.push_str("/bin/sh -c ");
    cmd.push_str(&quote(script));
    cmd.push_str(" rotd");
    for a in args {
        cmd.push(' ');
        cmd.push_str(&quote(a));
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_quote_every_word() {
        assert_eq!(
            command("echo \"$1\"; echo 'x'", &["it's"], true),
            "sudo -S -p 'rotd-sudo-password:' -- /bin/sh -c 'echo \"$1\"; echo '\\''x'\\''' rotd 'it'\\''s'"
        );
        assert_eq!(command("true", &[], false), "/bin/sh -c 'true' rotd");
    }

    #[test]
    fn prompts_are_counted() {
        assert_eq!(
            count(
                b"rotd-sudo-password:Sorry, try again.\nrotd-sudo-password:",
                PROMPT.as_bytes()
            ),
            2
        );
        assert_eq!(find(b"xxrotd-ready\nabc", READY), Some(2));
    }
}
