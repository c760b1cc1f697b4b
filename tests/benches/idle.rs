//! CPU and memory of an idle `rotd serve` with 10,000 configured secrets, against the same daemon with
//! none, measured in the same run.
//!
//! Run: `cargo build --release -p rotd && cargo bench -p rotd-e2e --bench idle` (uses target/release/rotd
//! when it exists, otherwise target/debug/rotd, and says which). Set ROTD_BENCH_SECRETS to change 10,000.

use std::path::PathBuf;
use std::time::Duration;

use rotd_e2e::{Daemon, Env, free_port, repo_root, wait_for};

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

fn proc_stat(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

fn measure(secrets: usize) -> (f64, u64, Duration) {
    let env = Env::new();
    env.write(
        "rotd.toml",
        &format!(
            "data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n[api]\nlisten = \"127.0.0.1:{}\"\n",
            free_port(),
            free_port()
        ),
    );
    for i in 0..secrets {
        env.write(
            &format!("secrets.d/s{i:05}.toml"),
            &format!("name = \"bench/s{i:05}\"\ntype = \"Generic\"\n[rotation]\ninterval = \"30d\"\nwindow = \"2h\"\n"),
        );
    }
    let started = rotd_core::Clock::system().instant();
    let mut cmd = std::process::Command::new(binary());
    cmd.arg("-c").arg(env.config()).arg("serve");
    let log = env.path("serve.log");
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let d = Daemon {
        child: cmd.spawn().expect("spawn"),
        log,
    };
    // "rotd started." is logged after every declared secret is in the store and loaded into the engine.
    wait_for("start-up", Duration::from_secs(1800), || {
        d.log_text().contains("rotd started.")
    });
    // Let the start-up's last writes settle, then measure a quiet window.
    std::thread::sleep(Duration::from_secs(5));
    let startup = rotd_core::Clock::system().elapsed(started);
    let pid = d.child.id();
    let (t0, _) = proc_stat(pid);
    let window = Duration::from_secs(30);
    std::thread::sleep(window);
    let (t1, rss) = proc_stat(pid);
    // SAFETY: sysconf has no memory effects.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_pct = (t1 - t0) as f64 / hz / window.as_secs_f64() * 100.0;
    d.stop();
    (cpu_pct, rss, startup)
}

fn main() {
    let n: usize = std::env::var("ROTD_BENCH_SECRETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    println!("binary: {}", binary().display());
    let (base_cpu, base_rss, base_start) = measure(0);
    let (cpu, rss, start) = measure(n);
    println!("idle rotd serve, 30 s window:");
    println!(
        "  baseline (0 secrets):   CPU {base_cpu:.2}%  RSS {base_rss} KiB  (start-up {:.1}s)",
        base_start.as_secs_f64()
    );
    println!(
        "  {n} secrets:          CPU {cpu:.2}%  RSS {rss} KiB  (first start incl. creating them: {:.1}s)",
        start.as_secs_f64()
    );
    println!(
        "  ratio: CPU {:.1}x  RSS {:.2}x",
        cpu / base_cpu.max(0.01),
        rss as f64 / base_rss.max(1) as f64
    );
}
