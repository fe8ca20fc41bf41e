//! Layer properties of the cache and the per-distribution split: a release
//! bump changes only the application's layer, and a changed input rebuilds
//! exactly what depends on it.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn copy_fixture(to: &Path, version: &str) {
    assert!(Command::new("cp")
        .arg("-r")
        .arg(repo().join("tests/fixtures/milborne"))
        .arg(to)
        .status()
        .unwrap()
        .success());
    let p = to.join("pyproject.toml");
    let text = read(&p).replace("version = \"0.4.0\"", &format!("version = \"{version}\""));
    std::fs::write(&p, text).unwrap();
}

fn result_of(dir: &Path, extra: &[&str], result: &Path) -> serde_json::Value {
    let out = run(build_cmd(dir, &dir.parent().unwrap().join("oci"))
        .arg("--result-file")
        .arg(result)
        .args(extra));
    assert!(out.status.success());
    serde_json::from_str(&read(result)).unwrap()
}

fn layers(doc: &serde_json::Value) -> Vec<(String, String, u64)> {
    doc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["build"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_release_bump_changes_only_the_application_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a/milborne"), tmp.path().join("b/milborne"));
    std::fs::create_dir_all(a.parent().unwrap()).unwrap();
    std::fs::create_dir_all(b.parent().unwrap()).unwrap();
    copy_fixture(&a, "0.4.0");
    copy_fixture(&b, "0.4.1");
    let old = layers(&result_of(&a, &[], &tmp.path().join("a.json")));
    let new = layers(&result_of(&b, &[], &tmp.path().join("b.json")));
    assert_eq!(old.len(), new.len());
    let last = old.len() - 1;
    for i in 0..last {
        assert_eq!(
            old[i].0, new[i].0,
            "layer {i} is unchanged by a release bump"
        );
    }
    assert_ne!(old[last].0, new[last].0, "the application layer changes");
    assert!(
        new[last].2 < 512 * 1024,
        "the new layer is small: {} bytes",
        new[last].2
    );
    assert!(
        new[1].2 > 1024 * 1024,
        "while the dependencies' layer is the big one: {} bytes",
        new[1].2
    );
}

#[test]
fn a_changed_constraint_rebuilds_the_wheels_and_venv_but_not_the_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("src/milborne");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    copy_fixture(&dir, "0.4.0");
    let first = result_of(&dir, &[], &tmp.path().join("1.json"));
    let again = layers(&result_of(&dir, &[], &tmp.path().join("2.json")));
    assert!(
        again.iter().all(|l| l.1 == "cached"),
        "no change, all cached: {again:?}"
    );
    let constraints = tmp.path().join("constraints.txt");
    std::fs::write(&constraints, "sqlparse==0.5.3\n").unwrap();
    let changed = layers(&result_of(
        &dir,
        &["--constraint", constraints.to_str().unwrap()],
        &tmp.path().join("3.json"),
    ));
    assert_eq!(changed[0].1, "cached", "the base rootfs is not rebuilt");
    assert_eq!(changed[1].1, "built", "the wheels and venv are");
    assert_eq!(changed[0].0, layers(&first)[0].0);
}
