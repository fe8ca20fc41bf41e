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

/// Before issue 13 the wheelhouse was keyed on the constraints' text, so
/// any new constraint rebuilt the wheels and the venv. Now a new constraint
/// makes pip resolve again, and what follows is keyed on what it resolved.
#[test]
fn a_constraint_that_changes_nothing_resolved_is_resolved_again_and_rebuilds_nothing() {
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
    // What the index has anyway: the same set.
    std::fs::write(&constraints, "sqlparse==0.5.3\n").unwrap();
    let doc = result_of(
        &dir,
        &["--constraint", constraints.to_str().unwrap()],
        &tmp.path().join("3.json"),
    );
    assert_eq!(doc["python"]["set"]["resolution"], "resolved");
    let changed = layers(&doc);
    assert!(
        changed.iter().all(|l| l.1 == "cached"),
        "the same set: nothing rebuilt: {changed:?}"
    );
    assert_eq!(doc["digest"], first["digest"]);
}

#[test]
fn a_changed_base_reinstalls_the_venv_but_keeps_the_wheels() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("src/milborne");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    copy_fixture(&dir, "0.4.0");
    // Base A: the base layer of the shared image, as a tarball. Base B: the
    // same tree plus one file, rewritten by Python's tarfile.
    let first = image();
    let blob = |digest: &serde_json::Value| {
        let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
        first.join("blobs/sha256").join(hex)
    };
    let index: serde_json::Value = serde_json::from_str(&read(&first.join("index.json"))).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&read(&blob(&index["manifests"][0]["digest"]))).unwrap();
    let a = tmp.path().join("a.tar.gz");
    std::fs::copy(blob(&manifest["layers"][0]["digest"]), &a).unwrap();
    let b = tmp.path().join("b.tar.gz");
    // It also prints the base's interpreters (usr/bin/python3.X).
    let script = r#"
import io, re, sys, tarfile
with tarfile.open(sys.argv[1], "r:gz") as src, \
        tarfile.open(sys.argv[2], "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as dst:
    for m in src:
        dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        found = re.fullmatch(r"(\./)?usr/bin/python(3\.[0-9]+)", m.name)
        if found:
            print(found.group(2))
    marker = tarfile.TarInfo("etc/assemble-test-marker")
    marker.size, marker.mode = 2, 0o644
    dst.addfile(marker, io.BytesIO(b"B\n"))
"#;
    let out = run(Command::new("python3").args(["-c", script]).arg(&a).arg(&b));
    assert!(out.status.success());
    let pythons = String::from_utf8(out.stdout).unwrap();
    let python = pythons
        .lines()
        .next()
        .expect("the base has a python3.X")
        .to_string();

    let build = |base: &Path, extra: &[&str], name: &str| {
        let result = tmp.path().join(name);
        let out = run(build_cmd(&dir, &tmp.path().join("oci"))
            .arg("--base")
            .arg(base)
            .arg("--result-file")
            .arg(&result)
            .args(extra));
        assert!(out.status.success());
        let doc: serde_json::Value = serde_json::from_str(&read(&result)).unwrap();
        (
            layers(&doc),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (on_a, _) = build(&a, &[], "a.json");
    let (on_b, log_b) = build(&b, &[], "b.json");
    assert_eq!(
        on_b.len(),
        4,
        "base, dependencies, runtime, application: {on_b:?}"
    );
    assert_ne!(on_a[0].0, on_b[0].0, "the new base is the first layer");
    assert!(
        log_b.contains("wheels cached") && !log_b.contains("compiling"),
        "the wheels come from the cache (the compiler did not change):\n{log_b}"
    );
    assert_eq!(
        (on_b[1].1.as_str(), on_b[3].1.as_str()),
        ("built", "built"),
        "the venv is installed again, in the new base"
    );
    assert_eq!(
        (&on_b[1].0, &on_b[3].0),
        (&on_a[1].0, &on_a[3].0),
        "and, the base's python being the same, into the same bytes"
    );
    assert_eq!(
        on_b[2].1, "cached",
        "the runtime layer does not depend on the base"
    );

    // Naming the python the build chose by itself changes nothing.
    let (named, _) = build(&b, &["--python", &python], "named.json");
    assert!(
        named.iter().skip(1).all(|l| l.1 == "cached"),
        "--python {python} is what the build used already: {named:?}"
    );
}
