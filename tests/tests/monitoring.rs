//! The shipped alert rules name only metrics rotd registers (promtool, run by scripts/test, checks their
//! syntax and behaviour on synthetic series; this checks they would see real ones), and every alert has
//! a runbook section.

use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(rotd_e2e::repo_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `"rotd_…"` string literal passed to a registry's `register` in the crates' sources.
fn registered() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).expect("source");
                let mut rest = text.as_str();
                while let Some(i) = rest.find(".register(") {
                    rest = &rest[i + ".register(".len()..];
                    let literal = rest.trim_start();
                    if let Some(name) = literal.strip_prefix('"').and_then(|l| l.split('"').next()) {
                        out.insert(name.to_owned());
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    for c in std::fs::read_dir(rotd_e2e::repo_root().join("crates"))
        .expect("crates")
        .flatten()
    {
        let src = c.path().join("src");
        if src.is_dir() {
            walk(&src, &mut out);
        }
    }
    out
}

/// The metric names an expression uses, without the suffixes the exposition format adds.
fn metric_names(rules: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in rules.lines().filter(|l| l.trim_start().starts_with("expr:")) {
        let mut rest = line;
        while let Some(i) = rest.find("rotd_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let base = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(base.to_owned());
            rest = &tail[end..];
        }
    }
    out
}

#[test]
fn every_alert_names_metrics_rotd_registers_and_has_a_runbook_section() {
    let rules = read("config/prometheus/rotd-alerts.yml");
    let used = metric_names(&rules);
    assert!(used.len() >= 8, "the rules use rotd's metrics: {used:?}");
    let known = registered();
    assert!(
        known.contains("rotd_rotations"),
        "the scan finds registrations: {known:?}"
    );
    let unknown: Vec<&String> = used.iter().filter(|n| !known.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "alert rules name metrics rotd does not register: {unknown:?}"
    );

    let runbook = read("docs/runbook.md");
    let tests = read("config/prometheus/tests/rotd-alerts.test.yml");
    for alert in rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert: "))
    {
        assert!(
            runbook.contains(&format!("\n## {alert}\n")),
            "docs/runbook.md has no section for {alert}"
        );
        assert!(
            rules.contains(&format!("docs/runbook.md#{}", alert.to_lowercase())),
            "{alert} links its runbook section"
        );
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has a promtool unit test"
        );
    }
}

/// The metric names one PromQL expression uses, without the suffixes the exposition format adds.
fn names_in(expr: &str) -> BTreeSet<String> {
    metric_names(&format!("expr: {expr}"))
}

/// The families a running daemon exports: every `# TYPE <name>` of its `/metrics`.
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The Grafana dashboard: every panel is well formed, every expression names only metrics a running
/// daemon (the quickstart, with its API) actually exports, and every expression parses (promtool checks
/// them as recording rules, with the dashboard's `$instance` variable filled in).
#[test]
fn the_grafana_dashboard_uses_only_metrics_a_running_daemon_exports() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("config/grafana/rotd.json")).expect("dashboard JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {p}");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id in {title}"
        );
        assert!(
            p["gridPos"]["w"].as_u64().is_some_and(|w| w > 0),
            "{title}: gridPos"
        );
        assert_eq!(
            p["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{title}: the importable datasource"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            exprs.push((title.to_owned(), t["expr"].as_str().expect("expr").to_owned()));
        }
    }
    let variable = dash["templating"]["list"][0]["query"]["query"]
        .as_str()
        .expect("instance variable");
    exprs.push(("$instance".to_owned(), variable.to_owned()));
    // What the dashboard promises to show.
    let used: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| names_in(e)).collect();
    for wanted in [
        "rotd_rotations",
        "rotd_rotation_duration_seconds",
        "rotd_next_due_timestamp_seconds",
        "rotd_last_success_timestamp_seconds",
        "rotd_quarantined",
        "rotd_api_requests",
        "rotd_api_audit_write_seconds",
    ] {
        assert!(used.contains(wanted), "the dashboard shows {wanted}: {used:?}");
    }

    // A daemon that has rotated a secret and answered an API request exports every family with a
    // sample, except those that only have one while something is wrong: those must at least be
    // registered (the source scan above).
    const ONLY_WHEN_SOMETHING_IS_WRONG: [&str; 3] = [
        "rotd_rotation_lagging_node",
        "rotd_target_identity_mismatch",
        "rotd_rotation_open_since_timestamp_seconds",
    ];
    let known = registered();
    let (env, admin) = rotd_e2e::quickstart();
    let toml = std::fs::read_to_string(env.path("rotd.toml")).expect("rotd.toml");
    let api = toml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("listen = \"127.0.0.1:"))
        .filter_map(|l| l.split('"').next())
        .find(|p| *p != admin.to_string())
        .expect("the API's port")
        .to_owned();
    let daemon = rotd_e2e::Daemon::start(&env, "serve.log", &[]);
    rotd_e2e::wait_for("the admin listener", std::time::Duration::from_secs(60), || {
        daemon.assert_alive();
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
    });
    let r = env.run(&["rotate", "quickstart/api-token"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // An unsigned request: answered, counted, and refused.
    let out = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://127.0.0.1:{api}/?Action=GetSecretValue"))
        .output()
        .expect("curl");
    assert_ne!(String::from_utf8_lossy(&out.stdout), "000", "the API answered");
    let mut body = String::new();
    rotd_e2e::wait_for(
        "the API request in the metrics",
        std::time::Duration::from_secs(30),
        || {
            body = rotd_e2e::http_get(admin, "/metrics").1;
            body.contains("rotd_api_requests_total")
        },
    );
    let families = exported(&body);
    for (title, expr) in &exprs {
        for name in names_in(expr) {
            if ONLY_WHEN_SOMETHING_IS_WRONG.contains(&name.as_str()) {
                assert!(
                    known.contains(&name),
                    "panel {title:?} uses {name}, which rotd does not register"
                );
                continue;
            }
            assert!(
                families.contains(&name),
                "panel {title:?} uses {name}, which the running daemon does not export: {expr}\n{body}"
            );
        }
    }
    drop(daemon);

    // Every expression parses.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in exprs.iter().enumerate() {
        if expr.starts_with("label_values(") {
            continue;
        }
        let e = expr.replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:panel{i}\n        expr: {}\n",
            serde_json::to_string(&e).expect("quote")
        ));
    }
    env.write("dashboard-rules.yml", &rules);
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(env.path("dashboard-rules.yml"))
        .output()
        .expect("promtool (scripts/install-test-deps installs it)");
    assert!(
        out.status.success(),
        "a dashboard expression does not parse:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's metrics table lists every metric rotd registers (as exposed: counters with `_total`).
#[test]
fn the_readme_lists_every_metric() {
    let readme = read("README.md");
    let section = &readme[readme.find("## Monitoring").expect("a Monitoring section")..];
    for name in registered() {
        assert!(
            section.contains(&format!("`{name}`")) || section.contains(&format!("`{name}_total`")),
            "README's metrics table does not list {name}"
        );
    }
}
