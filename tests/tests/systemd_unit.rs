//! The shipped unit file passes systemd's own offline checks: no warnings from `verify` (which exits 0
//! even on typos, so any output fails the test) and an exposure score of at most 2.0 from `security`.

use std::process::Command;

use rotd_e2e::{repo_root, rotd_bin};

fn systemd_analyze() -> &'static str {
    let path = "/usr/bin/systemd-analyze";
    assert!(
        std::path::Path::new(path).exists(),
        "systemd-analyze not found: apt-get install systemd"
    );
    path
}

#[test]
fn unit_file_verifies_without_warnings() {
    let unit = std::fs::read_to_string(repo_root().join("systemd/rotd.service")).expect("unit file");
    let dir = tempfile::tempdir().expect("dir");
    // verify checks that ExecStart exists; point it at the binary under test.
    let path = dir.path().join("rotd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/rotd", rotd_bin().to_str().expect("utf8")),
    )
    .expect("write");
    let out = Command::new(systemd_analyze())
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}

#[test]
fn unit_file_is_hardened() {
    let out = Command::new(systemd_analyze())
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(repo_root().join("systemd/rotd.service"))
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure above 2.0:\n{text}");
    assert!(text.contains("Overall exposure level for rotd.service"), "{text}");
}
