//! Air-gapped builds: `assemble vendor` fills the store online; `--offline`
//! builds from it alone inside a network namespace that has only `lo`, from
//! an empty cache, and gives the online build's digest.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn vendor(dir: &Path, bundle: Option<&Path>) {
    let mut c = assemble();
    c.arg("vendor")
        .arg("milborne==0.4.0")
        .arg("--index-url")
        .arg(index())
        .arg("--cache-dir")
        .arg(cache())
        .arg("--vendor")
        .arg(dir);
    if let Some(b) = bundle {
        c.arg("--bundle").arg(b);
    }
    let out = run(&mut c);
    assert!(out.status.success(), "assemble vendor failed");
}

/// Runs assemble in a new user and network namespace: only `lo`, and down.
fn offline(args: &[String]) -> std::process::Output {
    let mut script = String::from("exec \"$0\"");
    for i in 1..=args.len() {
        script.push_str(&format!(" \"${i}\""));
    }
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "sh", "-c", &script])
        .arg(bin())
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env_remove("ASSEMBLE_CACHE_DIR")
        .output()
        .unwrap()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn offline_build_in_a_network_namespace_gives_the_online_digest() {
    let online = image_digest();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("vendor");
    vendor(&store, None);
    assert!(store.join("pylock.toml").is_file());
    let out = offline(&[
        "--offline".into(),
        "milborne==0.4.0".into(),
        "--vendor".into(),
        s(&store),
        "--cache-dir".into(),
        s(&tmp.path().join("empty-cache")),
        "--output".into(),
        s(&tmp.path().join("oci")),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("mmdebstrap"), "no mmdebstrap offline: {err}");
    assert_eq!(
        digest_of(&out),
        online,
        "offline and online builds give the same manifest digest"
    );

    // One lock format: the store's lock is PEP 751 (packaging's reader), and
    // with the network `--locked` builds its wheels into the same image.
    let check = "import sys, tomllib; from packaging.pylock import Pylock; \
                 print(len(Pylock.from_dict(tomllib.load(open(sys.argv[1], 'rb'))).packages))";
    let listed = run(Command::new(data().join("venv/bin/python"))
        .args(["-c", check])
        .arg(store.join("pylock.toml")));
    assert!(listed.status.success());
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "4");
    let locked = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci-locked"))
        .arg("--locked")
        .arg(store.join("pylock.toml")));
    assert!(locked.status.success());
    assert_eq!(
        digest_of(&locked),
        online,
        "the store's lock, built with the network, gives the same digest"
    );

    // Rerunning vendor adds only what is missing: the files stay as they were.
    let before = std::fs::metadata(store.join("wheels"))
        .unwrap()
        .modified()
        .unwrap();
    vendor(&store, None);
    assert_eq!(
        std::fs::metadata(store.join("wheels"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
}

#[test]
fn a_wheel_missing_from_the_store_is_named_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("vendor");
    vendor(&store, None);
    let django = std::fs::read_dir(store.join("wheels"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("django-"))
        .unwrap()
        .path();
    std::fs::remove_file(&django).unwrap();
    let out = offline(&[
        "--offline".into(),
        "milborne==0.4.0".into(),
        "--vendor".into(),
        s(&store),
        "--cache-dir".into(),
        s(&tmp.path().join("c")),
        "--output".into(),
        s(&tmp.path().join("oci")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("django 4.2.30") && err.contains("missing"),
        "{err}"
    );
    assert!(!tmp.path().join("oci/index.json").exists());
}

#[test]
fn a_bundle_round_trips_and_a_corrupted_one_is_refused() {
    let online = image_digest();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("store.bundle");
    vendor(&tmp.path().join("vendor"), Some(&bundle));
    let out = offline(&[
        "--from-bundle".into(),
        s(&bundle),
        "milborne==0.4.0".into(),
        "--cache-dir".into(),
        s(&tmp.path().join("c1")),
        "--output".into(),
        s(&tmp.path().join("oci1")),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(digest_of(&out), online);

    // One byte changed in the middle of the bundle (inside a layer blob).
    let mut bytes = std::fs::read(&bundle).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let damaged = tmp.path().join("damaged.bundle");
    std::fs::write(&damaged, bytes).unwrap();
    let out = offline(&[
        "--from-bundle".into(),
        s(&damaged),
        "milborne==0.4.0".into(),
        "--cache-dir".into(),
        s(&tmp.path().join("c2")),
        "--output".into(),
        s(&tmp.path().join("oci2")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("damaged") || err.contains("does not match"),
        "{err}"
    );
    assert!(!tmp.path().join("oci2/index.json").exists());
}

#[test]
fn offline_without_a_store_says_how_to_make_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = assemble()
        .current_dir(tmp.path())
        .args(["--offline", "milborne==0.4.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("assemble vendor"));
}

/// A store vendored on a given base keeps the image that base is, so the
/// offline image names it in its manifest as the online one does: the
/// same digest.
#[test]
fn a_store_on_a_given_base_gives_the_online_image_annotations_included() {
    let tmp = tempfile::tempdir().unwrap();
    let base = format!("oci:{}:0.4.0", image().display());
    let online = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci-online"))
        .arg("--base")
        .arg(&base));
    assert!(online.status.success());
    let store = tmp.path().join("vendor");
    let mut c = assemble();
    c.arg("vendor")
        .arg("milborne==0.4.0")
        .arg("--index-url")
        .arg(index())
        .arg("--cache-dir")
        .arg(cache())
        .arg("--vendor")
        .arg(&store)
        .arg("--base")
        .arg(&base);
    assert!(run(&mut c).status.success(), "assemble vendor failed");
    let out = offline(&[
        "--offline".into(),
        "milborne==0.4.0".into(),
        "--vendor".into(),
        s(&store),
        "--cache-dir".into(),
        s(&tmp.path().join("empty-cache")),
        "--output".into(),
        s(&tmp.path().join("oci")),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(digest_of(&out), digest_of(&online));
    let manifest = run(Command::new("skopeo")
        .arg("inspect")
        .arg("--raw")
        .arg(format!("oci:{}:0.4.0", tmp.path().join("oci").display())));
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        image_digest()
    );
}
