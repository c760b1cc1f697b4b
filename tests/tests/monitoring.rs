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
