//! GetSecretValue throughput and latency of a real `rotd serve` over its HTTPS API, next to nginx serving
//! a static file of the same size over TLS on the same machine, measured in the same run and printed as
//! ratios (never a timed assertion).
//!
//! Run: `cargo build --release -p rotd && cargo bench -p rotd-e2e --bench api_throughput` (uses
//! target/release/rotd when it exists, otherwise target/debug/rotd, and says which). nginx must be on PATH
//! or in /usr/sbin. Settings (environment): ROTD_BENCH_CONNS (8 keep-alive connections),
//! ROTD_BENCH_SECS (10 s measured), ROTD_BENCH_WARMUP_SECS (2 s), ROTD_BENCH_KEYS (32 access keys for the
//! unthrottled run), ROTD_BENCH_CLIENT_THREADS (the core count), ROTD_BENCH_NGINX_WORKERS (the core count).
//!
//! The load generator is closed-loop: each connection sends its next request when the previous response
//! has arrived. Latency is from writing the request to reading the whole response; rotd requests are
//! V3-signed (fresh nonce and date each) just before that, so signing counts in throughput, not latency.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rotd_aliyun::{AccessKey, RequestParts, percent, random_nonce};
use rotd_e2e::{Env, free_port, repo_root, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const SECRET: &str = "bench/secret";

#[derive(Debug, Clone, Copy)]
struct Settings {
    conns: usize,
    warmup: Duration,
    measured: Duration,
    keys: usize,
    threads: usize,
    nginx_workers: usize,
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn binary() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from);
    let release = target.join("release/rotd");
    if release.exists() {
        release
    } else {
        target.join("debug/rotd")
    }
}

/// Runs `rotd -c <config> args…` with `input` on stdin and requires success.
fn rotd(env: &Env, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new(binary())
        .arg("-c")
        .arg(env.config())
        .args(args)
        .env_remove("ROTD_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rotd");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut stdin, input).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait rotd");
    assert!(
        out.status.success(),
        "rotd {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_key(path: &Path) -> AccessKey {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("read key file")).expect("key json");
    AccessKey::new(
        doc["AccessKeyId"].as_str().expect("AccessKeyId"),
        rotd_core::Secret::from(doc["AccessKeySecret"].as_str().expect("AccessKeySecret")),
    )
}

fn nginx_binary() -> Option<PathBuf> {
    ["nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// What each connection sends.
#[derive(Debug)]
enum Load {
    Rotd { host: String, keys: Vec<AccessKey> },
    Static { request: Vec<u8> },
}

impl Load {
    fn request(&self, conn: usize, n: usize) -> Vec<u8> {
        match self {
            Load::Static { request } => request.clone(),
            Load::Rotd { host, keys } => {
                let key = &keys[(conn + n) % keys.len()];
                let query = vec![
                    ("SecretName".to_owned(), SECRET.to_owned()),
                    ("VersionStage".to_owned(), "ACSCurrent".to_owned()),
                ];
                let mut headers = vec![
                    ("host".to_owned(), host.clone()),
                    ("x-acs-action".to_owned(), "GetSecretValue".to_owned()),
                    ("x-acs-version".to_owned(), "2016-01-20".to_owned()),
                ];
                let parts = RequestParts {
                    method: "POST",
                    path: "/",
                    query: &query,
                    headers: &headers,
                    body: b"",
                };
                let signed = rotd_aliyun::v3::sign_request(
                    key,
                    &parts,
                    rotd_core::Clock::system().now(),
                    &random_nonce(),
                );
                headers.extend(signed);
                let qs = query
                    .iter()
                    .map(|(k, v)| format!("{}={}", percent::encode(k), percent::encode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                let mut head = format!("POST /?{qs} HTTP/1.1\r\n");
                for (n, v) in &headers {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str("content-length: 0\r\n\r\n");
                head.into_bytes()
            }
        }
    }
}

/// One response: status, body, and whether the server will close the connection.
struct Response {
    status: u16,
    body: Vec<u8>,
    close: bool,
}

fn io_err(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

/// Writes `request` and reads one HTTP/1.1 response (Content-Length framed); `buf` keeps any surplus.
async fn exchange(
    s: &mut TlsStream<TcpStream>,
    buf: &mut Vec<u8>,
    request: &[u8],
) -> std::io::Result<Response> {
    s.write_all(request).await?;
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io_err("connection closed mid-response".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io_err(format!("bad status line: {head:?}")))?;
    let mut length = None;
    let mut close = false;
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (
            name.trim().to_ascii_lowercase(),
            value.trim().to_ascii_lowercase(),
        );
        match name.as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "connection" => close = value == "close",
            "transfer-encoding" => return Err(io_err(format!("unsupported transfer-encoding {value}"))),
            _ => {}
        }
    }
    let length = length.ok_or_else(|| io_err(format!("no content-length: {head:?}")))?;
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io_err("connection closed mid-body".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Ok(Response { status, body, close })
}

async fn connect(connector: &TlsConnector, port: u16) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("server name");
    connector.connect(name, tcp).await
}

#[derive(Debug, Default)]
struct Stats {
    /// Latencies of 200 responses in the measured window, in microseconds.
    latencies: Vec<u32>,
    /// Non-200 responses in the measured window, by status, with one sample body each.
    failures: BTreeMap<u16, (u64, String)>,
    io_errors: u64,
    reconnects: u64,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.latencies.extend(other.latencies);
        for (status, (n, sample)) in other.failures {
            self.failures.entry(status).or_insert((0, sample)).0 += n;
        }
        self.io_errors += other.io_errors;
        self.reconnects += other.reconnects;
    }
}

async fn worker(
    connector: TlsConnector,
    port: u16,
    load: Arc<Load>,
    conn: usize,
    measure_from: Instant,
    end: Instant,
) -> Stats {
    let mut stats = Stats::default();
    let mut stream = connect(&connector, port).await.expect("connect");
    let mut buf = Vec::new();
    let mut n = 0;
    while rotd_core::Clock::system().instant() < end {
        let request = load.request(conn, n);
        n += 1;
        let t0 = rotd_core::Clock::system().instant();
        let result = exchange(&mut stream, &mut buf, &request).await;
        let micros = u32::try_from(rotd_core::Clock::system().elapsed(t0).as_micros()).unwrap_or(u32::MAX);
        let counted = t0 >= measure_from;
        let reconnect = match result {
            Ok(r) => {
                if counted {
                    if r.status == 200 {
                        stats.latencies.push(micros);
                    } else {
                        let sample = String::from_utf8_lossy(&r.body).chars().take(200).collect();
                        stats.failures.entry(r.status).or_insert((0, sample)).0 += 1;
                    }
                }
                r.close
            }
            Err(_) => {
                if counted {
                    stats.io_errors += 1;
                }
                true
            }
        };
        if reconnect {
            stats.reconnects += 1;
            buf.clear();
            stream = connect(&connector, port).await.expect("reconnect");
        }
    }
    stats
}

#[derive(Debug)]
struct Summary {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    stats: Stats,
}

fn run_load(
    rt: &tokio::runtime::Runtime,
    s: &Settings,
    connector: &TlsConnector,
    port: u16,
    load: Load,
) -> Summary {
    let load = Arc::new(load);
    let start = rotd_core::Clock::system().instant();
    let measure_from = start + s.warmup;
    let end = measure_from + s.measured;
    let mut stats = rt.block_on(async {
        let tasks: Vec<_> = (0..s.conns)
            .map(|c| {
                tokio::spawn(worker(
                    connector.clone(),
                    port,
                    load.clone(),
                    c,
                    measure_from,
                    end,
                ))
            })
            .collect();
        let mut all = Stats::default();
        for t in tasks {
            all.merge(t.await.expect("worker"));
        }
        all
    });
    stats.latencies.sort_unstable();
    let pct = |p: usize| -> f64 {
        let v = &stats.latencies;
        if v.is_empty() {
            return f64::NAN;
        }
        f64::from(v[(v.len() * p / 100).min(v.len() - 1)]) / 1000.0
    };
    Summary {
        rps: stats.latencies.len() as f64 / s.measured.as_secs_f64(),
        p50_ms: pct(50),
        p99_ms: pct(99),
        stats,
    }
}

/// nginx in the foreground with a private configuration, killed on drop.
#[derive(Debug)]
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(bin: &Path, tls: &Path, file: &[u8], workers: usize, port: u16) -> Nginx {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("nginx dir");
    let d = dir.path();
    // Workers may run as an unprivileged user: let them into the document root.
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::create_dir(d.join("www")).expect("www");
    std::fs::write(d.join("www/secret.json"), file).expect("static file");
    std::fs::set_permissions(d.join("www/secret.json"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let p = d.display();
    let conf = format!(
        "worker_processes {workers};\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
         \x20 fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
         \x20 keepalive_requests 1000000000;\n  keepalive_timeout 300s;\n  default_type application/json;\n\
         \x20 server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {tls}/server.pem;\n\
         \x20   ssl_certificate_key {tls}/server-key.pem;\n    root {p}/www;\n    location / {{ }}\n  }}\n}}\n",
        tls = tls.display()
    );
    std::fs::write(d.join("nginx.conf"), conf).expect("nginx.conf");
    let child = Command::new(bin)
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .arg("-p")
        .arg(d)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("stderr.log")).expect("stderr log"))
        .spawn()
        .expect("spawn nginx");
    let mut nginx = Nginx { child, dir };
    wait_for("nginx to listen", Duration::from_secs(20), || {
        if let Ok(Some(status)) = nginx.child.try_wait() {
            let log = std::fs::read_to_string(nginx.dir.path().join("stderr.log")).unwrap_or_default();
            panic!("nginx exited with {status}:\n{log}");
        }
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    nginx
}

fn row(label: &str, s: &Summary) {
    let fails: u64 = s.stats.failures.values().map(|(n, _)| n).sum();
    println!(
        "  {label:<34} {:>9.0} {:>9.3} {:>9.3} {:>8} {:>6} {:>10}",
        s.rps, s.p50_ms, s.p99_ms, fails, s.stats.io_errors, s.stats.reconnects
    );
}

fn failures(label: &str, s: &Summary) {
    for (status, (n, sample)) in &s.stats.failures {
        println!("    {label}: {n} x HTTP {status}, e.g. {sample}");
    }
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let s = Settings {
        conns: env_num("ROTD_BENCH_CONNS", 8),
        warmup: Duration::from_secs(env_num("ROTD_BENCH_WARMUP_SECS", 2) as u64),
        measured: Duration::from_secs(env_num("ROTD_BENCH_SECS", 10) as u64),
        keys: env_num("ROTD_BENCH_KEYS", 32),
        threads: env_num("ROTD_BENCH_CLIENT_THREADS", cores),
        nginx_workers: env_num("ROTD_BENCH_NGINX_WORKERS", cores),
    };
    let Some(nginx_bin) = nginx_binary() else {
        eprintln!(
            "api_throughput: nginx is not installed (not on PATH nor in /usr/sbin); it is the baseline this \
             benchmark compares rotd against. Install it (e.g. `apt-get install -y nginx`) and rerun."
        );
        std::process::exit(2);
    };
    let bin = binary();
    assert!(
        bin.exists(),
        "{} does not exist; build it with `cargo build --release -p rotd`",
        bin.display()
    );
    let profile = if bin.ends_with("release/rotd") {
        "release"
    } else {
        "DEBUG (slower; build --release)"
    };
    println!("machine: {cores} cores (load generator, rotd and nginx all share them)");
    println!("rotd binary: {} [{profile}]", bin.display());
    println!("nginx binary: {}", nginx_bin.display());
    println!(
        "load: {} keep-alive TLS 1.3 connections (rustls/aws-lc-rs), closed loop, {} client threads, \
         {} s warm-up + {} s measured per run",
        s.conns,
        s.threads,
        s.warmup.as_secs(),
        s.measured.as_secs()
    );

    // An installation with the secret and the access keys, then `rotd serve`. Every connection of the
    // load generator comes from 127.0.0.1, so the per-source budget is lifted to its maximum: this
    // measures the pipeline, not the budget.
    let env = Env::new();
    let api_port = free_port();
    env.write(
        "rotd.toml",
        &format!(
            "data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n[api]\nlisten = \"127.0.0.1:{api_port}\"\nper_source_rate = 1000000\nper_source_burst = 1000000\n",
            free_port()
        ),
    );
    rotd(&env, &["init"], b"");
    let value: String = "0123456789abcdef".repeat(13)[..200].to_owned();
    rotd(
        &env,
        &["secret", "create", SECRET, "--value-stdin"],
        value.as_bytes(),
    );
    let admin = read_key(&env.path("data/admin-access-key.json"));
    let mut keys = Vec::new();
    for i in 0..s.keys {
        let file = env.path(&format!("key{i}.json"));
        let f = file.to_str().expect("utf8 path");
        rotd(
            &env,
            &[
                "access-key",
                "create",
                "--description",
                "bench",
                "--action",
                "kms:*",
                "--secret",
                "*",
                "--secret-file",
                f,
            ],
            b"",
        );
        keys.push(read_key(&file));
    }
    let log = env.path("serve.log");
    let daemon = rotd_e2e::Daemon {
        child: Command::new(&bin)
            .arg("-c")
            .arg(env.config())
            .arg("serve")
            .env_remove("ROTD_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn rotd serve"),
        log,
    };
    wait_for("rotd started.", Duration::from_secs(60), || {
        daemon.assert_alive();
        daemon.log_text().contains("rotd started.")
    });
    let started = daemon.log_text();
    let listen = started
        .split_whitespace()
        .find_map(|w| w.trim_matches('"').strip_prefix("api="))
        .map(|a| a.trim_matches('"').to_owned())
        .unwrap_or_else(|| format!("127.0.0.1:{api_port}"));
    let port: u16 = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(api_port);

    let tls = env.path("data/tls");
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(tls.join("ca.pem")).expect("ca.pem");
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(c.expect("ca cert")).expect("add ca");
    }
    let client =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.threads)
        .enable_all()
        .build()
        .expect("runtime");
    let host = format!("127.0.0.1:{port}");

    // One response, to size nginx's file like rotd's response body.
    let sample = rt.block_on(async {
        let mut stream = connect(&connector, port).await.expect("connect");
        let load = Load::Rotd {
            host: host.clone(),
            keys: vec![admin.clone()],
        };
        exchange(&mut stream, &mut Vec::new(), &load.request(0, 0))
            .await
            .expect("GetSecretValue")
    });
    assert_eq!(sample.status, 200, "{}", String::from_utf8_lossy(&sample.body));
    println!(
        "rotd api on {host}; secret value {} bytes, GetSecretValue response body {} bytes",
        value.len(),
        sample.body.len()
    );

    let one_key = run_load(
        &rt,
        &s,
        &connector,
        port,
        Load::Rotd {
            host: host.clone(),
            keys: vec![admin],
        },
    );
    let many_keys = run_load(&rt, &s, &connector, port, Load::Rotd { host, keys });
    daemon.assert_alive();
    drop(daemon);

    let nginx_port = free_port();
    let nginx = start_nginx(&nginx_bin, &tls, &sample.body, s.nginx_workers, nginx_port);
    let request = format!("GET /secret.json HTTP/1.1\r\nhost: 127.0.0.1:{nginx_port}\r\n\r\n").into_bytes();
    let baseline = run_load(&rt, &s, &connector, nginx_port, Load::Static { request });
    drop(nginx);

    println!();
    println!(
        "  {:<34} {:>9} {:>9} {:>9} {:>8} {:>6} {:>10}",
        "run", "req/s", "p50 ms", "p99 ms", "non-200", "io-err", "reconnects"
    );
    row("rotd GetSecretValue, 1 access key", &one_key);
    row(
        &format!("rotd GetSecretValue, {} access keys", s.keys),
        &many_keys,
    );
    row(
        &format!(
            "nginx static {} B file, {} workers",
            sample.body.len(),
            s.nginx_workers
        ),
        &baseline,
    );
    failures("rotd, 1 key", &one_key);
    failures(&format!("rotd, {} keys", s.keys), &many_keys);
    failures("nginx", &baseline);
    println!();
    println!(
        "ratio rotd/nginx ({} access keys): throughput {:.3}x  p50 {:.2}x  p99 {:.2}x",
        s.keys,
        many_keys.rps / baseline.rps,
        many_keys.p50_ms / baseline.p50_ms,
        many_keys.p99_ms / baseline.p99_ms
    );
    println!(
        "ratio rotd/nginx (1 access key):  throughput {:.3}x  p50 {:.2}x  p99 {:.2}x",
        one_key.rps / baseline.rps,
        one_key.p50_ms / baseline.p50_ms,
        one_key.p99_ms / baseline.p99_ms
    );
    println!();
    println!(
        "note: rotd limits each access key to 200 requests/s (burst 400); the 1-key run measures that limiter \
         (its non-200s are Rejected.Throttling, latency percentiles are over 200s only). The {}-key run spreads \
         requests round-robin over {} keys (limit {} req/s in all) so the limiter is out of the way unless it \
         shows non-200s.",
        s.keys,
        s.keys,
        s.keys * 200
    );
}
