//! SIGKILL at random points of builds and pushes, twenty times each: no
//! blob under a final name is ever corrupt, an index.json always names
//! complete blobs, and the next run completes with the same digest.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use support::*;

/// A small deterministic-per-run generator: spread kill times, no dependency.
struct Lcg(u64);

impl Lcg {
    fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        eprintln!("interrupt seed: {seed}");
        Self(seed | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Every file of a blob directory named by a digest has that digest.
fn check_blobs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue; // a temporary name: never taken for a blob
        }
        let out = Command::new("sha256sum").arg(e.path()).output().unwrap();
        let sum = String::from_utf8_lossy(&out.stdout);
        assert!(
            sum.starts_with(&name),
            "corrupt blob under a final name: {}",
            e.path().display()
        );
    }
}

/// An index.json, when present, names a manifest whose blobs are all there.
fn check_layout(dir: &Path) {
    check_blobs(&dir.join("blobs/sha256"));
    let Ok(text) = std::fs::read_to_string(dir.join("index.json")) else {
        return;
    };
    let index: serde_json::Value =
        serde_json::from_str(&text).expect("index.json is complete JSON");
    for m in index["manifests"].as_array().unwrap() {
        let hex = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let manifest: serde_json::Value =
            serde_json::from_str(&read(&dir.join("blobs/sha256").join(hex)))
                .expect("the manifest is there");
        let mut all = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
        all.extend(
            manifest["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string()),
        );
        for d in all {
            assert!(
                dir.join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:"))
                    .is_file(),
                "index.json names a missing blob {d}"
            );
        }
    }
}

fn kill_after(mut cmd: Command, delay: Duration) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn builds_killed_at_random_points_leave_nothing_corrupt() {
    let _ = image();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("oci");
    let mut rng = Lcg::new();
    for _ in 0..20 {
        // --rebuild makes each run compile, install and pack anew.
        let mut cmd = build_cmd("milborne==0.4.0", &out_dir);
        cmd.arg("--rebuild");
        kill_after(cmd, Duration::from_millis(rng.below(8000)));
        check_blobs(&cache().join("blobs/sha256"));
        check_layout(&out_dir);
    }
    let out = run(build_cmd("milborne==0.4.0", &out_dir));
    assert!(out.status.success());
    assert_eq!(
        digest_of(&out),
        image_digest(),
        "the next run completes with the same digest"
    );
    check_layout(&out_dir);
}

#[test]
fn pushes_killed_at_random_points_leave_the_registry_consistent() {
    let reg = Registry::start("", "");
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Lcg::new();
    let target = format!("{}/team/interrupted:1", reg.host);
    let push = |cache: &Path| {
        let mut c = assemble();
        c.arg("push")
            .arg(format!("oci:{}:0.4.0", image().display()))
            .arg(&target)
            .args(["--insecure-registry", &reg.host, "--chunk-size", "1048576"])
            .arg("--cache-dir")
            .arg(cache);
        c
    };
    for i in 0..20 {
        kill_after(
            push(&tmp.path().join(format!("c{i}"))),
            Duration::from_millis(rng.below(1500)),
        );
    }
    let out = run(push(&tmp.path().join("final")));
    assert!(out.status.success());
    assert_eq!(
        skopeo_inspect(&target, false)["Digest"].as_str().unwrap(),
        image_digest()
    );
    let copy = tmp.path().join("copy");
    let out = run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{target}"))
        .arg(format!("oci:{}:x", copy.display())));
    assert!(
        out.status.success(),
        "every blob the registry holds has its digest"
    );
}
