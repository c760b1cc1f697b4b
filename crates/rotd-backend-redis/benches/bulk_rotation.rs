//! Bulk rotation: 1,000 dual Redis secrets on one server (2,000 ACL users) fall due at one instant, and
//! rotd's scheduler rotates them all; against a raw loop measured in the same run on the same server: a
//! minimal program with the same driver doing, per secret, exactly the Redis work of one rotation (one
//! `ACL SETUSER … resetpass #<sha256> on` over one admin connection, the persist command, then a fresh
//! connection with `AUTH` and `PING`), one secret after another.
//!
//! rotd's rotation adds what makes it a rotation: the new value sealed and stored as `ACSPending`
//! before the server is touched, the journal (pending, applied, verified, promoted), the promotion's
//! stage move and the scheduler's bookkeeping, every write durable (SQLite WAL, `synchronous=FULL`)
//! before the next step; and it runs many rotations at once, which the raw loop does not.
//!
//! Run: `cargo bench -p rotd-backend-redis --bench bulk_rotation`. Knobs (environment):
//! `ROTD_BENCH_SECRETS` (1000), `ROTD_BENCH_ROUNDS` (3), `ROTD_BENCH_PERSIST` (`acl_file`, or `none`),
//! `ROTD_BENCH_CONCURRENT` (the engine's `max_concurrent` and `per_backend`, 128) and
//! `ROTD_BENCH_PER_TARGET` (96): the bulk tuning config/README.md gives.
//! Prints, per round and as medians, rotd's rotations per second, the raw loop's, and their ratio, and
//! where the CPU went: milliseconds per rotation by thread (tokio's workers, sqlx's SQLite workers, the
//! store's writer) and the server's own (`INFO cpu`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use rotd_backend_redis::{Persist, READ_WRITE_RULES};
use rotd_core::{Clock, PasswordPolicy, StageLabel};
use rotd_engine::EngineConfig;
use rotd_testkit::fixtures::redis::Redis;

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds used so far by this process's threads, by thread name (Linux `/proc`): tokio's workers,
/// sqlx's SQLite workers (one per connection), the store's writer thread.
fn cpu_by_thread() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid … utime stime: fields 14 and 15, counted after the parenthesis.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks: f64 = rest
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
            .unwrap_or(0.0);
        *out.entry(comm).or_insert(0.0) += ticks / 100.0;
    }
    out
}

/// The server's own CPU seconds (`INFO cpu`: user + sys of the main thread and its children).
async fn server_cpu(admin: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(admin)
        .await
        .expect("info");
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| matches!(*k, "used_cpu_sys" | "used_cpu_user"))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum()
}

/// CPU milliseconds per rotation between two readings, by thread name, largest first.
fn cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, n: usize) -> String {
    let mut d: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect();
    d.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = d.iter().map(|(_, v)| v).sum();
    let parts: Vec<String> = d
        .iter()
        .map(|(k, v)| format!("{k} {:.2}", v * 1000.0 / n as f64))
        .collect();
    format!(
        "{:.2} ms/rotation ({})",
        total * 1000.0 / n as f64,
        parts.join(", ")
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn connect(redis: &Redis) -> redis::aio::MultiplexedConnection {
    let info = ConnectionAddr::Tcp(redis.host().to_owned(), redis.port())
        .into_connection_info()
        .expect("info")
        .set_redis_settings(RedisConnectionInfo::default().set_skip_set_lib_name());
    redis::Client::open(info)
        .expect("client")
        .get_multiplexed_async_connection_with_config(&AsyncConnectionConfig::new())
        .await
        .expect("connect")
}

/// The raw loop: per account, a new password, its SHA-256, the same `ACL SETUSER` rotd sends, the
/// persist command, and a fresh connection that `AUTH`s and `PING`s. Returns how long all took.
async fn raw_loop(redis: &Redis, accounts: &[String], persist: Persist) -> Duration {
    let real = Clock::system();
    let started = real.instant();
    let mut admin = connect(redis).await;
    redis::cmd("AUTH")
        .arg(redis.admin_user())
        .arg(redis.admin_password())
        .query_async::<()>(&mut admin)
        .await
        .expect("admin auth");
    for account in accounts {
        let pw = rotd_core::generate_password(&PasswordPolicy::default()).expect("password");
        let pw = pw.expose_str().expect("text").to_owned();
        let hash = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            pw.as_bytes(),
        ));
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(account)
            .arg("resetkeys")
            .arg("resetchannels")
            .arg("-@all");
        for r in READ_WRITE_RULES.split_whitespace() {
            cmd.arg(r);
        }
        cmd.arg("resetpass").arg(format!("#{hash}")).arg("on");
        cmd.query_async::<()>(&mut admin).await.expect("setuser");
        match persist {
            Persist::AclFile => redis::cmd("ACL")
                .arg("SAVE")
                .query_async::<()>(&mut admin)
                .await
                .expect("acl save"),
            Persist::Config => redis::cmd("CONFIG")
                .arg("REWRITE")
                .query_async::<()>(&mut admin)
                .await
                .expect("config rewrite"),
            Persist::None => {}
        }
        let mut con = connect(redis).await;
        redis::cmd("AUTH")
            .arg(account)
            .arg(&pw)
            .query_async::<()>(&mut con)
            .await
            .expect("auth");
        redis::cmd("PING")
            .query_async::<()>(&mut con)
            .await
            .expect("ping");
    }
    real.elapsed(started)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = env("ROTD_BENCH_SECRETS", 1000);
    let rounds: i64 = env("ROTD_BENCH_ROUNDS", 3);
    let persist = match std::env::var("ROTD_BENCH_PERSIST").as_deref() {
        Ok("none") => Persist::None,
        Ok("acl_file") | Err(_) => Persist::AclFile,
        Ok(other) => panic!("ROTD_BENCH_PERSIST={other}: acl_file or none"),
    };
    let concurrent: usize = env("ROTD_BENCH_CONCURRENT", 128);
    let cfg = EngineConfig {
        max_concurrent: concurrent,
        per_backend: concurrent,
        per_target: env("ROTD_BENCH_PER_TARGET", 96),
        ..EngineConfig::default()
    };
    println!(
        "bulk rotation: {n} dual Redis secrets ({} ACL users) on one server, persist {persist:?}, \
         max_concurrent {}, per_backend {}, per_target {}",
        2 * n,
        cfg.max_concurrent,
        cfg.per_backend,
        cfg.per_target
    );
    let mut bulk = common::Bulk::start(n, persist, cfg).await;
    println!(
        "  {} accounts created by create_accounts in {:.2} s",
        2 * n,
        bulk.created_in.as_secs_f64()
    );
    let mut admin = connect(&bulk.redis).await;
    redis::cmd("AUTH")
        .arg(bulk.redis.admin_user())
        .arg(bulk.redis.admin_password())
        .query_async::<()>(&mut admin)
        .await
        .expect("admin auth");
    let (mut rotd_rates, mut raw_rates) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        // The raw loop resets the accounts holding ACSPrevious: the ones rotd resets next, so rotd's
        // round sees the server in the same state and never needs the passwords the raw loop set.
        let mut previous = Vec::with_capacity(n);
        for i in 0..n {
            previous.push(common::account(&bulk.value(i, StageLabel::previous()).await).0);
        }
        let (cpu0, server0) = (cpu_by_thread(), server_cpu(&mut admin).await);
        let raw = raw_loop(&bulk.redis, &previous, persist).await;
        let (cpu1, server1) = (cpu_by_thread(), server_cpu(&mut admin).await);
        let (took, promoted) = bulk.rotate_all(round, Duration::from_secs(900)).await;
        let (cpu2, server2) = (cpu_by_thread(), server_cpu(&mut admin).await);
        assert_eq!(promoted, n, "round {round}: every secret rotated");
        let rotd_rate = n as f64 / took.as_secs_f64();
        let raw_rate = n as f64 / raw.as_secs_f64();
        println!(
            "  round {round}: rotd {rotd_rate:7.1} rotations/s ({:.2} s)   raw loop {raw_rate:7.1} /s ({:.2} s)   \
             ratio rotd/raw {:.2}",
            took.as_secs_f64(),
            raw.as_secs_f64(),
            rotd_rate / raw_rate
        );
        println!(
            "    CPU, raw loop: bench process {}; redis-server {:.2} ms/rotation",
            cpu_delta(&cpu0, &cpu1, n),
            (server1 - server0) * 1000.0 / n as f64
        );
        println!(
            "    CPU, rotd:     rotd process {}; redis-server {:.2} ms/rotation",
            cpu_delta(&cpu1, &cpu2, n),
            (server2 - server1) * 1000.0 / n as f64
        );
        rotd_rates.push(rotd_rate);
        raw_rates.push(raw_rate);
    }
    let (rotd, raw) = (median(rotd_rates), median(raw_rates));
    println!(
        "  median of {rounds}: rotd {rotd:.1} rotations/s, raw loop {raw:.1} /s, ratio rotd/raw {:.2}",
        rotd / raw
    );
    bulk.stop().await;
}
