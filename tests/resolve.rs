//! Issue 13: builds keyed on what was resolved. A test index of each
//! test's own (`PrivateIndex`) gets releases between two builds; the base
//! and compiler come from the run's shared cache.

mod support;

use std::path::Path;
use std::process::Output;

use support::private_index::PrivateIndex;
use support::*;

/// `assemble milborne==VERSION` against `idx` into `out`, with a result
/// file; extra arguments after.
fn build(
    idx: &PrivateIndex,
    version: &str,
    out: &Path,
    extra: &[&str],
) -> (Output, serde_json::Value) {
    let result = out.with_extension("json");
    let o = run(assemble()
        .arg(format!("milborne=={version}"))
        .arg("--index-url")
        .arg(idx.url())
        .arg("--cache-dir")
        .arg(cache())
        .arg("--output")
        .arg(out)
        .arg("--result-file")
        .arg(&result)
        .args(extra));
    let doc = if o.status.success() {
        serde_json::from_str(&read(&result)).unwrap()
    } else {
        serde_json::Value::Null
    };
    (o, doc)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// (digest, built-or-cached) of each layer of a result file.
fn layers(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["build"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn version_of(doc: &serde_json::Value, name: &str) -> String {
    doc["python"]["set"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {doc}"))["version"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_dependency_release_is_picked_up_recompiling_only_it_and_a_lock_holds_the_old_set() {
    let idx = PrivateIndex::start();
    let tmp = tempfile::tempdir().unwrap();
    let lock = tmp.path().join("pylock.toml");
    let (a, doc_a) = build(
        &idx,
        "0.4.0",
        &tmp.path().join("a"),
        &["--lock", lock.to_str().unwrap()],
    );
    assert!(a.status.success());
    let (old, new) = idx.bump_wheel("sqlparse");
    // The bumped wheel's bytes are the same in every run: an earlier run
    // on this cache may have fetched it already.
    let wheel = format!("sqlparse-{new}-py3-none-any.whl");
    let known = std::fs::read_dir(cache().join("wheels"))
        .unwrap()
        .flatten()
        .any(|e| e.path().join(&wheel).is_file());

    let (b, doc_b) = build(&idx, "0.4.0", &tmp.path().join("b"), &[]);
    assert!(b.status.success());
    let log = stderr(&b);
    assert!(
        log.contains(&format!("sqlparse {old} → {new}")),
        "the progress names the change:\n{log}"
    );
    let expected = if known {
        "all 4 wheels cached".to_string()
    } else {
        format!("3 wheels cached, fetching 1 (sqlparse {new})")
    };
    assert!(
        log.contains(&expected) && !log.contains("compiling"),
        "only the new release is fetched, nothing compiled:\n{log}"
    );
    assert_eq!(version_of(&doc_b, "sqlparse"), new);
    assert_eq!(doc_b["python"]["set"]["resolution"], "resolved");
    assert_eq!(doc_b["python"]["set"]["changes"][0]["after"], new.as_str());
    let (la, lb) = (layers(&doc_a), layers(&doc_b));
    assert_eq!(la.len(), 4);
    assert_eq!(la[0].0, lb[0].0, "same base");
    assert_ne!(la[1].0, lb[1].0, "a new dependencies layer");
    if !known {
        assert_eq!(lb[1].1, "built");
    }
    assert_eq!(la[2].0, lb[2].0, "same runtime layer");
    assert_eq!(la[3].0, lb[3].0, "same application layer");
    assert_ne!(digest_of(&a), digest_of(&b));

    // The lock written before the release builds the old set, with no
    // resolution: the image of the first build, byte for byte.
    let (c, doc_c) = build(
        &idx,
        "0.4.0",
        &tmp.path().join("c"),
        &["--locked", lock.to_str().unwrap()],
    );
    assert!(c.status.success());
    assert!(stderr(&c).contains("(no resolution)"), "{}", stderr(&c));
    assert!(!stderr(&c).contains("uv resolves"), "{}", stderr(&c));
    assert_eq!(version_of(&doc_c, "sqlparse"), old);
    assert_eq!(doc_c["python"]["set"]["resolution"], "locked");
    assert_eq!(digest_of(&c), digest_of(&a));
}

#[test]
fn an_application_release_compiles_one_wheel_and_rebuilds_one_layer() {
    let idx = PrivateIndex::start();
    let tmp = tempfile::tempdir().unwrap();
    let (a, doc_a) = build(&idx, "0.4.0", &tmp.path().join("a"), &[]);
    assert!(a.status.success());
    // A version of this run's own: the shared cache must not have it.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let version = format!("0.4.1.post{nanos}");
    idx.release_app(&version);
    let (b, doc_b) = build(&idx, &version, &tmp.path().join("b"), &[]);
    assert!(b.status.success());
    let log = stderr(&b);
    assert!(
        log.contains(&format!(
            "3 wheels cached, compiling 1 (milborne {version})"
        )),
        "only the application is compiled:\n{log}"
    );
    assert!(
        log.contains("cached dependencies layer"),
        "only the application is installed and packed:\n{log}"
    );
    let (la, lb) = (layers(&doc_a), layers(&doc_b));
    let builds: Vec<&str> = lb.iter().map(|l| l.1.as_str()).collect();
    assert_eq!(builds, ["cached", "cached", "cached", "built"], "{lb:?}");
    assert_eq!(la[1].0, lb[1].0, "the same dependencies layer");
    assert_ne!(la[3].0, lb[3].0, "a new application layer");
    assert_eq!(version_of(&doc_b, "milborne"), version);
    // Installing the application alone over the cached dependencies gives
    // the image a whole install gives.
    let (c, _) = build(&idx, &version, &tmp.path().join("c"), &["--rebuild"]);
    assert!(c.status.success());
    assert!(!stderr(&c).contains("cached dependencies layer"));
    assert_eq!(digest_of(&c), digest_of(&b));
}

#[test]
fn a_no_change_rebuild_asks_the_index_pages_and_runs_no_resolver() {
    let idx = PrivateIndex::start();
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = build(&idx, "0.4.0", &tmp.path().join("a"), &[]);
    assert!(a.status.success());
    let before = idx.requests().len();
    let (b, doc_b) = build(&idx, "0.4.0", &tmp.path().join("b"), &[]);
    assert!(b.status.success());
    let log = stderr(&b);
    assert!(log.contains("nothing new on the index"), "{log}");
    assert!(!log.contains("uv resolves"), "{log}");
    assert_eq!(doc_b["python"]["set"]["resolution"], "revalidated");
    assert!(layers(&doc_b).iter().all(|l| l.1 == "cached"));
    assert_eq!(digest_of(&a), digest_of(&b));
    let asked: Vec<String> = idx.requests()[before..].to_vec();
    for project in ["milborne", "django", "asgiref", "sqlparse"] {
        assert!(
            asked
                .iter()
                .any(|r| r.contains(&format!("/simple/{project}/"))),
            "{project}'s page was asked: {asked:?}"
        );
    }
    assert!(
        !asked.iter().any(|r| r.contains("/packages/")),
        "no file was downloaded: {asked:?}"
    );
}

#[test]
fn an_unreachable_index_keeps_the_recorded_set_with_one_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, first) = {
        let idx = PrivateIndex::start();
        let (a, _) = build(&idx, "0.4.0", &tmp.path().join("a"), &[]);
        assert!(a.status.success());
        (idx.url(), digest_of(&a))
    };
    // The index is gone: its port is closed.
    let out = run(assemble()
        .arg("milborne==0.4.0")
        .arg("--index-url")
        .arg(&url)
        .arg("--cache-dir")
        .arg(cache())
        .arg("--output")
        .arg(tmp.path().join("b")));
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(log.matches("warning:").count(), 1, "{log}");
    assert!(
        log.contains("cannot connect") && log.contains("recorded set"),
        "{log}"
    );
    assert_eq!(digest_of(&out), first);
}

#[test]
fn the_lock_is_valid_pep_751_and_a_wrong_hash_in_it_exits_2_naming_the_package() {
    let idx = PrivateIndex::start();
    let tmp = tempfile::tempdir().unwrap();
    let lock = tmp.path().join("pylock.toml");
    let (a, _) = build(
        &idx,
        "0.4.0",
        &tmp.path().join("a"),
        &["--lock", lock.to_str().unwrap()],
    );
    assert!(a.status.success());
    // packaging's own reader (PEP 751 rules), and the files it selects.
    let check = r#"
import sys, tomllib
from packaging.pylock import Pylock
lock = Pylock.from_dict(tomllib.load(open(sys.argv[1], "rb")))
for p in lock.packages:
    f = p.wheels[0] if p.wheels else p.sdist
    print(p.name, p.version, f.name, f.hashes["sha256"])
"#;
    let out = run(std::process::Command::new(data().join("venv/bin/python"))
        .args(["-c", check])
        .arg(&lock));
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = String::from_utf8(out.stdout).unwrap();
    let django = idx
        .files()
        .into_iter()
        .find(|f| f.starts_with("django-"))
        .unwrap();
    assert!(
        listed.contains(&format!("django 4.2.30 {django} {}", idx.sha256(&django))),
        "{listed}"
    );
    assert_eq!(listed.lines().count(), 4, "{listed}");

    // A lock whose django hash is not the index's file: exit 2, naming the
    // lock and django; no image.
    let text = read(&lock).replace(&idx.sha256(&django), &"0".repeat(64));
    let bad = tmp.path().join("pylock.bad.toml");
    std::fs::write(&bad, text).unwrap();
    let (b, _) = build(
        &idx,
        "0.4.0",
        &tmp.path().join("b"),
        &["--locked", bad.to_str().unwrap(), "--rebuild"],
    );
    let log = stderr(&b);
    assert_eq!(b.status.code(), Some(2), "{log}");
    assert!(
        log.contains("pylock.bad.toml") && log.contains("django"),
        "{log}"
    );
    assert!(!tmp.path().join("b/index.json").exists());
}

#[test]
fn a_requirements_file_with_hashes_builds_and_a_wrong_hash_exits_2_naming_file_and_package() {
    let idx = PrivateIndex::start();
    let tmp = tempfile::tempdir().unwrap();
    let files = idx.files();
    let file = |prefix: &str| {
        files
            .iter()
            .find(|f| f.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {files:?}"))
            .clone()
    };
    let pins = [
        ("milborne==0.4.0", file("milborne-0.4.0")),
        ("django==4.2.30", file("django-4.2.30")),
        ("asgiref==3.8.1", file("asgiref-3.8.1")),
        ("sqlparse==0.5.3", file("sqlparse-0.5.3")),
    ];
    let text = |wrong: Option<&str>| {
        pins.iter()
            .map(|(pin, f)| {
                let hash = if Some(*pin) == wrong {
                    "0".repeat(64)
                } else {
                    idx.sha256(f)
                };
                format!("{pin} \\\n    --hash=sha256:{hash}\n")
            })
            .collect::<String>()
    };
    let good = tmp.path().join("requirements.txt");
    std::fs::write(&good, format!("# pinned by the team\n{}", text(None))).unwrap();
    let build_r = |req: &Path, out: &str| {
        run(assemble()
            .arg("-r")
            .arg(req)
            .arg("--index-url")
            .arg(idx.url())
            .arg("--cache-dir")
            .arg(cache())
            .arg("--output")
            .arg(tmp.path().join(out)))
    };
    let a = build_r(&good, "a");
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(
        String::from_utf8_lossy(&a.stdout).contains(":0.4.0 sha256:"),
        "the project is the file's first requirement"
    );
    let bad = tmp.path().join("requirements-bad.txt");
    std::fs::write(&bad, text(Some("sqlparse==0.5.3"))).unwrap();
    let b = build_r(&bad, "b");
    let log = stderr(&b);
    assert_eq!(b.status.code(), Some(2), "{log}");
    assert!(
        log.contains("requirements-bad.txt") && log.contains("sqlparse"),
        "{log}"
    );
    assert!(!tmp.path().join("b/index.json").exists());
    // A wrong hash on the sdist: refused before its code runs (no metadata
    // built, nothing compiled), exit 2 naming the file and the package.
    let bad = tmp.path().join("requirements-sdist.txt");
    std::fs::write(&bad, text(Some("milborne==0.4.0"))).unwrap();
    let c = build_r(&bad, "c");
    let log = stderr(&c);
    assert_eq!(c.status.code(), Some(2), "{log}");
    assert!(
        log.contains("requirements-sdist.txt") && log.contains("milborne"),
        "{log}"
    );
    assert!(!log.contains("compile:"), "{log}");
}

#[test]
fn a_lock_given_as_the_requirement_or_found_in_the_project_directory_is_built_as_locked() {
    let idx = PrivateIndex::start();
    let tmp = tempfile::tempdir().unwrap();
    let lock = tmp.path().join("pylock.toml");
    let (a, _) = build(
        &idx,
        "0.4.0",
        &tmp.path().join("a"),
        &["--lock", lock.to_str().unwrap()],
    );
    assert!(a.status.success());
    let b = run(assemble()
        .arg(&lock)
        .arg("--index-url")
        .arg(idx.url())
        .arg("--cache-dir")
        .arg(cache())
        .arg("--output")
        .arg(tmp.path().join("b")));
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(stderr(&b).contains("(no resolution)"), "{}", stderr(&b));
    assert_eq!(digest_of(&b), digest_of(&a));

    // The fixture's directory with that lock beside it: its dependencies
    // come from the lock, the project from the directory.
    let dir = tmp.path().join("milborne");
    run(std::process::Command::new("cp")
        .arg("-r")
        .arg(repo().join("tests/fixtures/milborne"))
        .arg(&dir));
    std::fs::copy(&lock, dir.join("pylock.toml")).unwrap();
    let c = run(assemble()
        .arg(&dir)
        .arg("--index-url")
        .arg(idx.url())
        .arg("--cache-dir")
        .arg(cache())
        .arg("--output")
        .arg(tmp.path().join("c")));
    let log = stderr(&c);
    assert!(c.status.success(), "{log}");
    assert!(
        log.contains("(no resolution)") && !log.contains("uv resolves"),
        "{log}"
    );
}

/// The review of issue 13 found a directory's requirements.txt making its
/// first line the project, and files it includes left out of the key.
#[test]
fn a_directory_with_a_requirements_file_stays_the_project_and_its_includes_are_keyed() {
    let idx = PrivateIndex::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("milborne");
    run(std::process::Command::new("cp")
        .arg("-r")
        .arg(repo().join("tests/fixtures/milborne"))
        .arg(&dir));
    std::fs::write(
        dir.join("requirements.txt"),
        "Django==4.2.30\n-r extra/more.txt\n",
    )
    .unwrap();
    std::fs::create_dir(dir.join("extra")).unwrap();
    std::fs::write(dir.join("extra/more.txt"), "sqlparse==0.5.3\n").unwrap();
    let build_dir = |out: &str| {
        let result = tmp.path().join(format!("{out}.json"));
        let o = run(assemble()
            .arg(&dir)
            .arg("--index-url")
            .arg(idx.url())
            .arg("--cache-dir")
            .arg(cache())
            .arg("--output")
            .arg(tmp.path().join(out))
            .arg("--result-file")
            .arg(&result));
        assert!(o.status.success(), "{}", stderr(&o));
        (
            o,
            serde_json::from_str::<serde_json::Value>(&read(&result)).unwrap(),
        )
    };
    let (a, doc_a) = build_dir("a");
    assert_eq!(doc_a["name"], "milborne", "{}", stderr(&a));
    assert!(
        stderr(&a).contains("with requirements.txt"),
        "{}",
        stderr(&a)
    );
    // A change in an included file alone: resolved again, six in the set.
    std::fs::write(dir.join("extra/more.txt"), "sqlparse==0.5.3\nsix==1.16.0\n").unwrap();
    let (b, doc_b) = build_dir("b");
    assert!(stderr(&b).contains("uv resolves"), "{}", stderr(&b));
    assert_eq!(version_of(&doc_b, "six"), "1.16.0");
    assert_eq!(doc_b["name"], "milborne");

    // An include outside the requirements file's directory: exit 2.
    std::fs::write(dir.join("requirements.txt"), "-r ../elsewhere.txt\n").unwrap();
    std::fs::write(tmp.path().join("elsewhere.txt"), "six==1.16.0\n").unwrap();
    let c = run(assemble()
        .arg(&dir)
        .arg("--index-url")
        .arg(idx.url())
        .arg("--cache-dir")
        .arg(cache())
        .arg("--output")
        .arg(tmp.path().join("c")));
    assert_eq!(c.status.code(), Some(2), "{}", stderr(&c));
    assert!(stderr(&c).contains("../elsewhere.txt"), "{}", stderr(&c));
}
