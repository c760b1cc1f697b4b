//! The daemon's own file, `rotd.toml`: where data lives, how the keyring is found, what to listen on.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::check;
use crate::error::{ConfigError, Diag, Source};
use crate::secret_ref::check_credential_name;

/// The validated `rotd.toml`. Every path is absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// The file this was loaded from; relative paths in it and in the secret files resolve against
    /// its directory ([`DaemonConfig::config_dir`]).
    pub file: PathBuf,
    pub data_dir: PathBuf,
    pub secrets_dir: PathBuf,
    pub store: StoreConfig,
    pub keyring: KeyringSource,
    /// The CMK that wraps the data keys of secrets that name none.
    pub default_cmk: String,
    pub api: ApiConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub rotation: RotationConfig,
}

impl DaemonConfig {
    /// The directory of `rotd.toml`, the base of every relative path outside the data directory.
    pub fn config_dir(&self) -> &Path {
        self.file.parent().unwrap_or_else(|| Path::new("/"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Sqlite { path: PathBuf },
}

/// Where the CMK keyring comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringSource {
    /// A JSON keyring file that must be mode 0600.
    File(PathBuf),
    /// A systemd credential name, read from `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(String),
}

/// The KMS-compatible HTTPS API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Subject alternative names of the server certificate: DNS names and IP addresses, as text.
    pub tls_names: Vec<String>,
    /// The TLS handshake and each request head must arrive within this (also the idle keep-alive limit).
    pub header_timeout: Duration,
    /// A request body must arrive within this after its head.
    pub body_timeout: Duration,
    /// The most API connections open at once.
    pub max_connections: usize,
    /// Requests per second one source address (an IPv6 /64) may send on average, checked before any key
    /// lookup.
    pub per_source_rate: u32,
    /// Requests one source address may send at once.
    pub per_source_burst: u32,
    /// Peers (load balancers, reverse proxies) whose `X-Forwarded-For` names the source; from any other
    /// peer the header is ignored.
    pub trusted_proxies: Vec<rotd_core::IpNet>,
}

/// Defaults of the API's connection limits.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Defaults of the per-source-address budget.
pub const DEFAULT_PER_SOURCE_RATE: u32 = 100;
pub const DEFAULT_PER_SOURCE_BURST: u32 = 200;
/// The largest per-source rate and burst accepted.
const MAX_PER_SOURCE: i64 = 1_000_000;
/// The most `trusted_proxies` entries (each request is matched against all of them).
const MAX_TRUSTED_PROXIES: usize = 256;

/// The plain-HTTP admin listener with `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive such as `info` or `info,rotd_engine=debug`; the
    /// binary parses it, because only the binary depends on tracing-subscriber.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
    Journald,
}

/// How the engine runs rotations (`[rotation]` in rotd.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationConfig {
    /// Rotations running at once, across all secrets.
    pub max_concurrent: usize,
    /// Calls into one kind of backend at once.
    pub per_backend: usize,
    /// Rotations at once against one target (host and port), whatever its kind; less than
    /// `max_concurrent` (unless both are 1), so a host that hangs cannot hold every rotation slot.
    pub per_target: usize,
    /// A backend call that takes longer fails as retryable.
    pub step_timeout: Duration,
    /// Failed attempts in a row before a secret is quarantined.
    pub max_attempts: u32,
    /// The first retry's delay; each further retry doubles it, up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// Rotations that fell due while rotd was down are spread over this long.
    pub catch_up: Duration,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 4,
            per_backend: 2,
            per_target: 1,
            step_timeout: Duration::from_secs(60),
            max_attempts: 5,
            backoff: Duration::from_secs(30),
            backoff_max: Duration::from_secs(3600),
            catch_up: Duration::from_secs(600),
        }
    }
}

/// The longest `step_timeout`: a backend call that needs more than a day is hung, not slow.
const MAX_STEP_TIMEOUT: Duration = Duration::from_secs(86_400);
/// The longest retry delay the engine uses (it caps the exponential backoff at a day).
const MAX_BACKOFF: Duration = Duration::from_secs(86_400);
/// The longest catch-up spread: a week, beyond which due rotations would wait past most intervals.
const MAX_CATCH_UP: Duration = Duration::from_secs(7 * 86_400);

fn validate_rotation_tuning(
    d: &mut Diag<'_>,
    raw: Option<&Spanned<RawRotationTuning>>,
) -> Option<RotationConfig> {
    let def = RotationConfig::default();
    let Some(raw) = raw else { return Some(def) };
    let r = raw.get_ref();
    let mut count = |v: &Option<Spanned<i64>>, key: &str, default: usize, max: i64| -> Option<usize> {
        match v {
            None => Some(default),
            Some(n) if (1..=max).contains(n.get_ref()) => usize::try_from(*n.get_ref()).ok(),
            Some(n) => d.at(n, key, format!("must be between 1 and {max}")),
        }
    };
    let max_concurrent = count(
        &r.max_concurrent,
        "rotation.max_concurrent",
        def.max_concurrent,
        1024,
    );
    let per_backend = count(&r.per_backend, "rotation.per_backend", def.per_backend, 1024);
    let per_target = count(&r.per_target, "rotation.per_target", def.per_target, 1024);
    let max_attempts = count(
        &r.max_attempts,
        "rotation.max_attempts",
        def.max_attempts as usize,
        100,
    );
    let mut dur = |v: &Option<Spanned<String>>, key: &str, default: Duration, max: Duration| match v {
        None => Some(default),
        Some(s) => check::duration_at_most(d, s, key, max),
    };
    let step_timeout = dur(
        &r.step_timeout,
        "rotation.step_timeout",
        def.step_timeout,
        MAX_STEP_TIMEOUT,
    );
    let backoff = dur(&r.backoff, "rotation.backoff", def.backoff, MAX_BACKOFF);
    let backoff_max = dur(
        &r.backoff_max,
        "rotation.backoff_max",
        def.backoff_max,
        MAX_BACKOFF,
    );
    let catch_up = dur(&r.catch_up, "rotation.catch_up", def.catch_up, MAX_CATCH_UP);
    // A cap below the first delay would make every retry wait the cap; say so instead.
    if let (Some(b), Some(bm)) = (backoff, backoff_max)
        && bm < b
    {
        let shown = |t: Duration| rotd_core::RotationInterval::from_secs(t.as_secs());
        return match (&r.backoff_max, &r.backoff) {
            (Some(raw_max), _) => d.at(
                raw_max,
                "rotation.backoff_max",
                format!("must not be shorter than rotation.backoff ({})", shown(b)),
            ),
            (None, Some(raw)) => d.at(
                raw,
                "rotation.backoff",
                format!(
                    "must not be longer than rotation.backoff_max ({}, the default)",
                    shown(bm)
                ),
            ),
            (None, None) => None,
        };
    }
    // The rotations on one host take their slots from the global ones: if they could take all of
    // them, one hung host would stop every other secret's rotation until the step timeout.
    if let (Some(all), Some(one), Some(raw)) = (max_concurrent, per_target, &r.per_target)
        && one > 1
        && one >= all
    {
        return d.at(
            raw,
            "rotation.per_target",
            format!(
                "must be less than rotation.max_concurrent ({all}), so one hung host cannot hold every slot"
            ),
        );
    }
    Some(RotationConfig {
        max_concurrent: max_concurrent?,
        per_backend: per_backend?,
        per_target: per_target?,
        step_timeout: step_timeout?,
        max_attempts: u32::try_from(max_attempts?).ok()?,
        backoff: backoff?,
        backoff_max: backoff_max?,
        catch_up: catch_up?,
    })
}

pub const DEFAULT_API_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443);
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    data_dir: Option<Spanned<String>>,
    secrets_dir: Option<Spanned<String>>,
    store: Option<Spanned<RawStore>>,
    keyring: Option<Spanned<RawKeyring>>,
    api: Option<Spanned<RawApi>>,
    admin: Option<Spanned<RawAdmin>>,
    log: Option<Spanned<RawLog>>,
    rotation: Option<Spanned<RawRotationTuning>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRotationTuning {
    max_concurrent: Option<Spanned<i64>>,
    per_backend: Option<Spanned<i64>>,
    per_target: Option<Spanned<i64>>,
    step_timeout: Option<Spanned<String>>,
    max_attempts: Option<Spanned<i64>>,
    backoff: Option<Spanned<String>>,
    backoff_max: Option<Spanned<String>>,
    catch_up: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    engine: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyring {
    file: Option<Spanned<String>>,
    credential: Option<Spanned<String>>,
    default_cmk: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<Spanned<String>>,
    tls_names: Option<Spanned<Vec<Spanned<String>>>>,
    header_timeout: Option<Spanned<String>>,
    body_timeout: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    per_source_rate: Option<Spanned<i64>>,
    per_source_burst: Option<Spanned<i64>>,
    trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

/// A loaded daemon file together with what the secret loader needs to point its own errors at
/// `rotd.toml`.
pub(crate) struct LoadedDaemon {
    pub(crate) config: DaemonConfig,
    pub(crate) source: Source,
    /// Where `secrets_dir` was written, if it was.
    pub(crate) secrets_dir_span: Option<Range<usize>>,
}

pub(crate) fn load(path: &Path) -> Result<LoadedDaemon, Vec<ConfigError>> {
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let text = std::fs::read_to_string(&file).map_err(|e| {
        vec![crate::error::io_error(
            &file,
            "(file)",
            format!("cannot read: {}", crate::error::io_message(&e)),
        )]
    })?;
    from_text(file, text)
}

/// [`load`] on text already read from `file` (an absolute path).
pub(crate) fn from_text(file: PathBuf, text: String) -> Result<LoadedDaemon, Vec<ConfigError>> {
    let source = Source::new(file.clone(), text);
    let raw: RawDaemon = source.parse()?;
    let mut d = Diag::new(&source);
    let config = validate(&mut d, &raw, file);
    let config = match config {
        Some(c) if !d.has_errors() => c,
        _ => {
            d.errors.sort_by_key(|e| (e.line, e.col));
            return Err(d.errors);
        }
    };
    Ok(LoadedDaemon {
        config,
        secrets_dir_span: raw.secrets_dir.as_ref().map(Spanned::span),
        source,
    })
}

fn validate(d: &mut Diag<'_>, raw: &RawDaemon, file: PathBuf) -> Option<DaemonConfig> {
    let base = file.parent().unwrap_or_else(|| Path::new("/")).to_owned();
    let data_dir = match &raw.data_dir {
        Some(v) => check::path(d, v, "data_dir", &base),
        None => Some(base.join("data")),
    };
    let secrets_dir = match &raw.secrets_dir {
        Some(v) => check::path(d, v, "secrets_dir", &base),
        None => Some(base.join("secrets.d")),
    };
    // Paths inside the data directory fall back to the config directory only if data_dir itself
    // was invalid, which is already an error; that keeps later checks running.
    let data_base = data_dir.clone().unwrap_or_else(|| base.clone());

    let store = validate_store(d, raw.store.as_ref(), &data_base);
    let (keyring, default_cmk) = validate_keyring(d, raw.keyring.as_ref(), &data_base);
    let api = validate_api(d, raw.api.as_ref());
    let admin = match raw.admin.as_ref().and_then(|a| a.get_ref().listen.as_ref()) {
        Some(v) => check::socket_addr(d, v, "admin.listen"),
        None => Some(DEFAULT_ADMIN_LISTEN),
    };
    if let (Some(api), Some(admin_listen)) = (&api, admin)
        && api.listen == admin_listen
        && admin_listen.port() != 0
    {
        let at = raw
            .admin
            .as_ref()
            .and_then(|a| a.get_ref().listen.as_ref())
            .map(Spanned::span)
            .unwrap_or(0..0);
        d.error(
            at,
            "admin.listen",
            "must differ from api.listen; the admin listener serves plain http",
        );
    }
    let log = validate_log(d, raw.log.as_ref());
    let rotation = validate_rotation_tuning(d, raw.rotation.as_ref());

    Some(DaemonConfig {
        file,
        data_dir: data_dir?,
        secrets_dir: secrets_dir?,
        store: store?,
        keyring: keyring?,
        default_cmk: default_cmk?,
        api: api?,
        admin: AdminConfig { listen: admin? },
        log: log?,
        rotation: rotation?,
    })
}

#[derive(Clone, Copy)]
enum Engine {
    Sqlite,
    Postgres,
}

fn validate_store(d: &mut Diag<'_>, raw: Option<&Spanned<RawStore>>, data_dir: &Path) -> Option<StoreConfig> {
    let default_path = || data_dir.join("rotd.db");
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return Some(StoreConfig::Sqlite { path: default_path() });
    };
    let engine = check::choice_or(
        d,
        raw.engine.as_ref(),
        "store.engine",
        &[("sqlite", Engine::Sqlite), ("postgres", Engine::Postgres)],
        Engine::Sqlite,
    );
    let path = match &raw.path {
        Some(v) => check::path(d, v, "store.path", data_dir),
        None => Some(default_path()),
    };
    match engine? {
        Engine::Sqlite => Some(StoreConfig::Sqlite { path: path? }),
        Engine::Postgres => {
            let at = raw.engine.as_ref().map(Spanned::span).unwrap_or(0..0);
            d.error(
                at,
                "store.engine",
                "the postgres store is not supported yet; use sqlite",
            );
            None
        }
    }
}

fn validate_keyring(
    d: &mut Diag<'_>,
    raw: Option<&Spanned<RawKeyring>>,
    data_dir: &Path,
) -> (Option<KeyringSource>, Option<String>) {
    let default_file = || KeyringSource::File(data_dir.join("keyring.json"));
    let Some(spanned) = raw else {
        return (Some(default_file()), Some("default".to_owned()));
    };
    let raw = spanned.get_ref();
    let source = match (&raw.file, &raw.credential) {
        (Some(_), Some(c)) => d.at(
            c,
            "keyring.credential",
            "set only one of keyring.file and keyring.credential",
        ),
        (Some(f), None) => check::path(d, f, "keyring.file", data_dir).map(KeyringSource::File),
        (None, Some(c)) => match check_credential_name(c.get_ref()) {
            Ok(()) => Some(KeyringSource::Credential(c.get_ref().clone())),
            Err(m) => d.at(c, "keyring.credential", m),
        },
        (None, None) => Some(default_file()),
    };
    let cmk = match &raw.default_cmk {
        Some(v) => check::cmk(d, v, "keyring.default_cmk"),
        None => Some("default".to_owned()),
    };
    (source, cmk)
}

fn validate_api(d: &mut Diag<'_>, raw: Option<&Spanned<RawApi>>) -> Option<ApiConfig> {
    let raw = raw.map(Spanned::get_ref);
    let listen = match raw.and_then(|r| r.listen.as_ref()) {
        Some(v) => check::socket_addr(d, v, "api.listen"),
        None => Some(DEFAULT_API_LISTEN),
    };
    let tls_names = match raw.and_then(|r| r.tls_names.as_ref()) {
        None => Some(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]),
        Some(list) if list.get_ref().is_empty() => d.at(
            list,
            "api.tls_names",
            "must name at least one dns name or ip address",
        ),
        Some(list) => {
            let mut names = Vec::new();
            for n in list.get_ref() {
                let s = n.get_ref();
                let dns = s.strip_prefix("*.").unwrap_or(s);
                if s.parse::<IpAddr>().is_ok() || check::is_dns_name(dns) {
                    names.push(s.clone());
                } else {
                    d.error(
                        n.span(),
                        "api.tls_names",
                        "each entry must be a dns name (optionally starting with *.) or an ip address",
                    );
                }
            }
            (names.len() == list.get_ref().len()).then_some(names)
        }
    };
    let mut timeout = |v: Option<&Spanned<String>>, key: &str, default: Duration| match v {
        None => Some(default),
        Some(s) => match check::duration(d, s, key)? {
            t if t.is_zero() || t > Duration::from_secs(600) => d.at(s, key, "must be between 1s and 10m"),
            t => Some(t),
        },
    };
    let header_timeout = timeout(
        raw.and_then(|r| r.header_timeout.as_ref()),
        "api.header_timeout",
        DEFAULT_HEADER_TIMEOUT,
    );
    let body_timeout = timeout(
        raw.and_then(|r| r.body_timeout.as_ref()),
        "api.body_timeout",
        DEFAULT_BODY_TIMEOUT,
    );
    let max_connections = match raw.and_then(|r| r.max_connections.as_ref()) {
        None => Some(DEFAULT_MAX_CONNECTIONS),
        Some(n) if (1..=1_000_000).contains(n.get_ref()) => usize::try_from(*n.get_ref()).ok(),
        Some(n) => d.at(n, "api.max_connections", "must be between 1 and 1000000"),
    };
    let mut budget = |v: Option<&Spanned<i64>>, key: &str, default: u32| match v {
        None => Some(default),
        Some(n) if (1..=MAX_PER_SOURCE).contains(n.get_ref()) => u32::try_from(*n.get_ref()).ok(),
        Some(n) => d.at(n, key, format!("must be between 1 and {MAX_PER_SOURCE}")),
    };
    let per_source_rate = budget(
        raw.and_then(|r| r.per_source_rate.as_ref()),
        "api.per_source_rate",
        DEFAULT_PER_SOURCE_RATE,
    );
    let per_source_burst = budget(
        raw.and_then(|r| r.per_source_burst.as_ref()),
        "api.per_source_burst",
        DEFAULT_PER_SOURCE_BURST,
    );
    let trusted_proxies = match raw.and_then(|r| r.trusted_proxies.as_ref()) {
        None => Some(Vec::new()),
        Some(list) if list.get_ref().len() > MAX_TRUSTED_PROXIES => d.at(
            list,
            "api.trusted_proxies",
            format!("must have at most {MAX_TRUSTED_PROXIES} entries"),
        ),
        Some(list) => {
            let mut nets = Vec::new();
            for n in list.get_ref() {
                match n.get_ref().parse::<rotd_core::IpNet>() {
                    Ok(net) => nets.push(net),
                    Err(e) => d.error(n.span(), "api.trusted_proxies", e.to_string()),
                }
            }
            (nets.len() == list.get_ref().len()).then_some(nets)
        }
    };
    Some(ApiConfig {
        listen: listen?,
        tls_names: tls_names?,
        header_timeout: header_timeout?,
        body_timeout: body_timeout?,
        max_connections: max_connections?,
        per_source_rate: per_source_rate?,
        per_source_burst: per_source_burst?,
        trusted_proxies: trusted_proxies?,
    })
}

fn validate_log(d: &mut Diag<'_>, raw: Option<&Spanned<RawLog>>) -> Option<LogConfig> {
    let raw = raw.map(Spanned::get_ref);
    let level = match raw.and_then(|r| r.level.as_ref()) {
        Some(v) if v.get_ref().trim().is_empty() => d.at(v, "log.level", "must not be empty"),
        Some(v) => Some(v.get_ref().clone()),
        None => Some("info".to_owned()),
    };
    let format = check::choice_or(
        d,
        raw.and_then(|r| r.format.as_ref()),
        "log.format",
        &[
            ("text", LogFormat::Text),
            ("json", LogFormat::Json),
            ("journald", LogFormat::Journald),
        ],
        LogFormat::Text,
    );
    Some(LogConfig {
        level: level?,
        format: format?,
    })
}
