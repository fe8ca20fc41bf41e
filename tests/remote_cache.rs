//! The registry as the build cache of runners with empty caches (issue 14),
//! against a real registry (CNCF distribution) on loopback: runner A builds
//! and pushes, and records its build in the cache repository; runner B,
//! with an empty cache, writes the same image from that record.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::private_index::PrivateIndex;
use support::*;

/// `assemble milborne==0.4.0` from the run's index with `cache_dir`,
/// pushing as `args` say.
fn build(cache_dir: &Path, out: &Path, reg: &Registry, args: &[String]) -> Output {
    build_from(&index(), "milborne==0.4.0", cache_dir, out, reg, args)
}

/// `assemble REQUIREMENT` from `index_url` with `cache_dir`, its layout and
/// result file under `out`.
fn build_from(
    index_url: &str,
    requirement: &str,
    cache_dir: &Path,
    out: &Path,
    reg: &Registry,
    args: &[String],
) -> Output {
    build_cmd(
        assemble(),
        index_url,
        requirement,
        cache_dir,
        out,
        reg,
        args,
    )
}

/// `assemble milborne==0.4.0` from the run's index with `cache_dir`, as
/// the command `c` (its environment set) runs it.
fn build_with(c: Command, cache_dir: &Path, out: &Path, reg: &Registry, args: &[String]) -> Output {
    build_cmd(c, &index(), "milborne==0.4.0", cache_dir, out, reg, args)
}

fn build_cmd(
    mut c: Command,
    index_url: &str,
    requirement: &str,
    cache_dir: &Path,
    out: &Path,
    reg: &Registry,
    args: &[String],
) -> Output {
    c.arg(requirement)
        .arg("--index-url")
        .arg(index_url)
        .arg("--cache-dir")
        .arg(cache_dir)
        .arg("--output")
        .arg(out.join("oci"))
        .arg("--result-file")
        .arg(out.join("result.json"))
        .args(["--insecure-registry", &reg.host])
        .args(args);
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn result(out: &Path) -> serde_json::Value {
    serde_json::from_str(&read(&out.join("result.json"))).unwrap()
}

/// Runner A: the run's warm cache, pushed to `team/milborne` under the
/// registry; the build cache is its default, `team/milborne/cache`.
fn runner_a(reg: &Registry, tmp: &Path) -> String {
    let a = tmp.join("a");
    let out = build(
        &cache(),
        &a,
        reg,
        &[
            "--push".into(),
            "--registry".into(),
            format!("{}/team", reg.host),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("remote cache: recording this build in"),
        "{}",
        stderr(&out)
    );
    result(&a)["digest"].as_str().unwrap().to_string()
}

/// A cache with the run's root filesystems and nothing else: a runner that
/// would build the Python side here.
fn cache_with_rootfs_only(tmp: &Path) -> PathBuf {
    let dir = tmp.join("rootfs-only");
    std::fs::create_dir_all(&dir).unwrap();
    let shared = cache();
    let cp = run(Command::new("cp")
        .arg("-al")
        .arg(shared.join("rootfs"))
        .arg(shared.join("blobs"))
        .arg(&dir));
    assert!(cp.status.success());
    dir
}

/// One field of every layer of a result file, bottom first.
fn layer_field<'a>(doc: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    doc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l[field].as_str().unwrap())
        .collect()
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Sets the `created` annotation of an entry's manifest, the date prune
/// reads.
fn date(manifest: &mut serde_json::Value, created: &str) {
    manifest["annotations"]
        .as_object_mut()
        .expect("an entry's manifest has annotations")
        .insert("org.opencontainers.image.created".into(), created.into());
}

/// Rewrites the config of the entry under `tag` if `change` changes it:
/// the new config uploaded, and the manifest, pointing to it, stored again
/// under the tag. Returns whether it did.
fn rewrite_config(api: &Api, tag: &str, change: impl Fn(&mut serde_json::Value) -> bool) -> bool {
    let mut manifest = api.manifest(tag);
    let digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: serde_json::Value = serde_json::from_slice(&api.blob(&digest)).unwrap();
    if !change(&mut config) {
        return false;
    }
    let body = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = api.put_blob(&body).into();
    manifest["config"]["size"] = body.len().into();
    api.put_manifest(tag, &manifest);
    true
}

#[test]
fn a_runner_with_an_empty_cache_writes_the_image_from_the_record_and_uploads_no_layer() {
    let reg = Registry::start("", "");
    let tmp = tempfile::tempdir().unwrap();
    let digest = runner_a(&reg, tmp.path());
    let before = reg.log().len();

    // Runner B: an empty cache, the image pushed under another name, the
    // build cache read only.
    let empty = tmp.path().join("empty-cache");
    let b = tmp.path().join("b");
    std::fs::create_dir(&b).unwrap();
    let out = build(
        &empty,
        &b,
        &reg,
        &[
            "--push".into(),
            "--tag".into(),
            format!("{}/team/copy:0.4.0", reg.host),
            "--cache-from".into(),
            format!("{}/team/milborne/cache", reg.host),
        ],
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    let doc = result(&b);
    assert_eq!(doc["digest"], digest, "the same image as runner A's");
    let layers = doc["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    assert!(
        layers.iter().all(|l| l["build"] == "remote-cache"),
        "{layers:?}"
    );
    // Nothing built here: no rootfs, no wheel, no uv, no layer blob.
    for entry in ["rootfs", "wheels", "tools", "layers", "wheelhouse"] {
        assert_eq!(entries(&empty.join(entry)), 0, "{entry}");
    }
    assert!(!log.contains("mmdebstrap"), "{log}");
    // Both checks made, and both found nothing new.
    assert!(!log.contains("warning:"), "{log}");
    assert!(
        log.contains("remote cache: nothing new on the index (4 distributions as recorded)"),
        "{log}"
    );
    assert!(
        !b.join("oci/index.json").exists(),
        "no layout without the layers"
    );
    // By the registry's log: the config uploaded, every layer mounted from
    // the cache repository; the read-only cache never written.
    let after = &reg.log()[before..];
    let pushed: Vec<&serde_json::Value> = doc["push"]["blobs"].as_array().unwrap().iter().collect();
    assert_eq!(pushed.len(), 5, "{pushed:?}");
    assert_eq!(
        pushed.iter().filter(|b| b["outcome"] == "mounted").count(),
        4,
        "{pushed:?}"
    );
    let uploads = after
        .lines()
        .filter(|l| l.contains("PUT /v2/team/copy/blobs/uploads/"))
        .count();
    assert_eq!(uploads, 1, "only the config is sent:\n{after}");
    assert!(
        !after.contains("PUT /v2/team/milborne/cache/"),
        "the read-only cache is not written:\n{after}"
    );
    assert_eq!(
        skopeo_inspect(&format!("{}/team/copy:0.4.0", reg.host), false)["Digest"],
        digest
    );
}

#[test]
fn an_entry_whose_record_is_not_its_manifests_is_ignored_and_the_build_goes_on_here() {
    let reg = Registry::start("", "");
    let tmp = tempfile::tempdir().unwrap();
    let digest = runner_a(&reg, tmp.path());
    // Rewrite two entries: the record now names another application layer
    // than its manifest does, and the dependencies layer's entry another
    // diff_id than its blob has (what poisoned or broken entries look like;
    // the registry checks neither).
    let api = Api::new(&reg, "team/milborne/cache");
    let tags = api.tags();
    let mut done: Vec<&String> = tags
        .iter()
        .filter(|t| t.starts_with("build-"))
        .filter(|t| {
            rewrite_config(&api, t, |record| {
                *record
                    .pointer_mut("/application/digest")
                    .expect("a record names its application layer") =
                    format!("sha256:{}", "0".repeat(64)).into();
                true
            })
        })
        .collect();
    done.extend(tags.iter().filter(|t| t.starts_with("layer-")).filter(|t| {
        rewrite_config(&api, t, |entry| {
            if entry["value"].get("distributions").is_none() {
                return false;
            }
            *entry
                .pointer_mut("/value/blob/diff_id")
                .expect("a layer entry names its blob's diff_id") =
                format!("sha256:{}", "1".repeat(64)).into();
            true
        })
    }));
    assert_eq!(done.len(), 2, "{tags:?} {done:?}");

    let c = tmp.path().join("c");
    let out = build(
        &cache_with_rootfs_only(tmp.path()),
        &c,
        &reg,
        &[
            "--cache-from".into(),
            format!("{}/team/milborne/cache", reg.host),
        ],
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("warning: ignoring the build cache's record entry")
            && log.contains("its layers are not the ones its record names"),
        "{log}"
    );
    assert!(
        log.contains("warning: ignoring the build cache's layer")
            && log.contains("its blob is not the layer it names"),
        "{log}"
    );
    let doc = result(&c);
    assert_eq!(doc["digest"], digest, "built here, the same image");
    // Not the record's image, nor its dependencies layer: both made here;
    // the runtime layer from the build cache.
    let builds = layer_field(&doc, "build");
    assert_eq!(
        builds,
        ["cached", "built", "remote-cache", "built"],
        "{doc}"
    );
    assert!(c.join("oci/index.json").is_file());
}

#[test]
fn a_cache_registry_that_cannot_be_reached_is_a_warning_and_a_read_only_one_is_never_written() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = cache_with_rootfs_only(tmp.path());
    let closed = format!("127.0.0.1:{}", free_port());
    let reg = Registry::start("", "");
    let d = tmp.path().join("d");
    let out = build(
        &cache_dir,
        &d,
        &reg,
        &[
            "--cache-repo".into(),
            format!("{closed}/team/cache"),
            "--insecure-registry".into(),
            closed.clone(),
        ],
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "warning: cannot read the build cache {closed}/team/cache"
        )),
        "{log}"
    );
    assert_eq!(
        log.matches("warning:").count(),
        1,
        "one warning; a repository that could not be read is not written: {log}"
    );
    assert!(d.join("oci/index.json").is_file());

    // A read-only cache (--cache-from) with nothing for these inputs: the
    // build goes on here, pushes, and writes nothing to the cache.
    let e = tmp.path().join("e");
    let fresh = cache_with_rootfs_only(&tmp.path().join("second"));
    let out = build(
        &fresh,
        &e,
        &reg,
        &[
            "--push".into(),
            "--registry".into(),
            format!("{}/team", reg.host),
            "--cache-from".into(),
            format!("{}/team/shared/cache", reg.host),
        ],
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("remote cache: nothing recorded"), "{log}");
    assert!(!log.contains("recording this build"), "{log}");
    assert_eq!(
        reg.count("\"GET /v2/team/shared/cache/manifests/build-"),
        1,
        "one lookup:\n{}",
        reg.log()
    );
    assert_eq!(reg.count("PUT /v2/team/shared/cache"), 0, "no write");
}

#[test]
fn a_fresh_runner_with_a_release_bump_builds_and_uploads_only_the_application_layer() {
    let idx = PrivateIndex::start();
    let reg = Registry::start("", "");
    let tmp = tempfile::tempdir().unwrap();
    let push = [
        "--push".to_string(),
        "--registry".into(),
        format!("{}/team", reg.host),
    ];
    // Runner A, the run's warm cache: its build is served by its own
    // cache, and it writes the stages it has (both root filesystems, the
    // dependencies and runtime layers) to the build cache.
    let a = tmp.path().join("a");
    let out = build_from(&idx.url(), "milborne==0.4.0", &cache(), &a, &reg, &push);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    for tag in ["rootfs-", "layer-"] {
        assert!(
            log.contains(&format!("remote cache: writing {tag}")),
            "{tag}: {log}"
        );
    }
    let doc_a = result(&a);

    // A release of the application, then runner C with an empty cache.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let version = format!("0.4.1.post{nanos}");
    idx.release_app(&version);
    let before = reg.log().len();
    let empty = tmp.path().join("empty-cache");
    let c = tmp.path().join("c");
    let out = build_from(
        &idx.url(),
        &format!("milborne=={version}"),
        &empty,
        &c,
        &reg,
        &push,
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("warning:"), "{log}");
    assert!(
        !log.contains("mmdebstrap"),
        "no root filesystem built:\n{log}"
    );
    assert!(
        log.contains(&format!("compiling 1 (milborne {version})")),
        "the application alone compiled:\n{log}"
    );
    assert!(
        log.contains("the build cache's dependencies layer"),
        "the application alone installed and packed:\n{log}"
    );
    let doc = result(&c);
    let builds = layer_field(&doc, "build");
    assert_eq!(
        builds,
        ["remote-cache", "remote-cache", "remote-cache", "built"],
        "{doc}"
    );
    let (la, lc) = (layer_field(&doc_a, "digest"), layer_field(&doc, "digest"));
    assert_eq!(
        la[..3],
        lc[..3],
        "base, dependencies and runtime: runner A's"
    );
    assert_ne!(la[3], lc[3]);
    // By the registry's log: the image's new layer and its config were
    // uploaded, nothing else; every other layer was mounted.
    let after = &reg.log()[before..];
    let uploads = after
        .lines()
        .filter(|l| l.contains("PUT /v2/team/milborne/blobs/uploads/"))
        .count();
    assert_eq!(uploads, 2, "the application layer and the config:\n{after}");
    let sent: Vec<&str> = doc["push"]["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["outcome"] == "uploaded")
        .map(|b| b["digest"].as_str().unwrap())
        .collect();
    assert_eq!(sent.len(), 2, "{doc}");
    assert!(sent.contains(&lc[3]), "{doc}");
}

#[test]
fn entries_in_use_are_dated_again_and_prune_removes_only_the_unused() {
    let reg = Registry::start("", "");
    let tmp = tempfile::tempdir().unwrap();
    runner_a(&reg, tmp.path());
    // Every entry dated ten days back, and one more that no build uses.
    let api = Api::new(&reg, "team/milborne/cache");
    let old = days_ago(10);
    let mut tags = api.tags();
    let mut unused = None;
    for tag in &tags {
        let mut manifest = api.manifest(tag);
        date(&mut manifest, &old);
        api.put_manifest(tag, &manifest);
        if tag.starts_with("layer-") {
            unused = Some(manifest);
        }
    }
    let mut unused = unused.expect("a layer entry to copy");
    unused["annotations"] = serde_json::json!({
        "org.opencontainers.image.created": old,
        "unused": "yes",
    });
    api.put_manifest(&format!("layer-{}", "0".repeat(32)), &unused);
    tags.sort();
    assert!(tags.iter().any(|t| t.starts_with("build-")), "{tags:?}");
    assert!(tags.iter().any(|t| t.starts_with("rootfs-")), "{tags:?}");

    let prune = |dry: bool| {
        let mut c = assemble();
        c.args([
            "cache",
            "prune",
            &format!("{}/team/milborne/cache", reg.host),
            "--keep-days",
            "5",
            "--insecure-registry",
            &reg.host,
        ]);
        if dry {
            c.arg("--dry-run");
        }
        run(c)
    };

    // A fresh runner reads entries: `assemble vendor` with an empty cache
    // takes both root filesystems and the application's wheel from the
    // build cache, and dates those again.
    let out = run(assemble()
        .arg("vendor")
        .arg("milborne==0.4.0")
        .arg("--index-url")
        .arg(index())
        .arg("--cache-dir")
        .arg(tmp.path().join("fresh-cache"))
        .arg("--vendor")
        .arg(tmp.path().join("store"))
        .arg("--cache-repo")
        .arg(format!("{}/team/milborne/cache", reg.host))
        .args(["--insecure-registry", &reg.host]));
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        log.matches("remote cache: dating again (in use) ").count(),
        3,
        "two root filesystems and one wheel:\n{log}"
    );
    let dry = prune(true);
    let said = String::from_utf8_lossy(&dry.stdout).into_owned() + &stderr(&dry);
    assert!(dry.status.success(), "{said}");
    assert!(
        said.contains(&format!("would prune 4 of {}", tags.len() + 1)),
        "the record, the two layers and the unused entry are still old:\n{said}"
    );

    // The same build again (served by its own cache): it writes its record
    // again and dates again every stage entry it has.
    let again = tmp.path().join("again");
    let out = build(
        &cache(),
        &again,
        &reg,
        &[
            "--push".into(),
            "--registry".into(),
            format!("{}/team", reg.host),
        ],
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("remote cache: dating again (in use)"), "{log}");

    let prune = prune(false);
    let log = stderr(&prune);
    assert!(prune.status.success(), "{log}");
    let mut left = api.tags();
    left.sort();
    assert_eq!(
        left, tags,
        "the entries in use stay, the unused one went: {log}"
    );
    assert!(
        String::from_utf8_lossy(&prune.stdout).contains("pruned 1 of"),
        "{}",
        String::from_utf8_lossy(&prune.stdout)
    );
}

#[test]
fn a_pull_only_token_reads_the_build_cache_and_never_tries_to_write_it() {
    let tr = TokenRegistry::start();
    let reg = &tr.reg;
    let tmp = tempfile::tempdir().unwrap();
    // Runner A, with a token that may push: the image and the build cache.
    let a = tmp.path().join("a");
    let mut c = assemble();
    c.env("DOCKER_CONFIG", &tr.writer);
    let out = build_with(
        c,
        &cache(),
        &a,
        reg,
        &[
            "--push".into(),
            "--registry".into(),
            format!("{}/team", reg.host),
        ],
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("remote cache: recording this build in"),
        "{log}"
    );
    let digest = result(&a)["digest"].as_str().unwrap().to_string();
    // Its record dated two days back: in use, a runner that may write
    // would date it again.
    let api = Api::with_token(
        reg,
        "team/milborne/cache",
        TokenRegistry::USER,
        TokenRegistry::PASSWORD,
    );
    let tag = api
        .tags()
        .into_iter()
        .find(|t| t.starts_with("build-"))
        .expect("a build record");
    let mut manifest = api.manifest(&tag);
    date(&mut manifest, &days_ago(2));
    api.put_manifest(&tag, &manifest);

    // Runner B, an empty cache and a pull-only token for the same cache
    // repository, read and (as far as its options say) written.
    let before = reg.log().len();
    let b = tmp.path().join("b");
    let mut c = assemble();
    c.env("DOCKER_CONFIG", &tr.reader);
    let out = build_with(
        c,
        &tmp.path().join("empty-cache"),
        &b,
        reg,
        &[
            "--cache-repo".into(),
            format!("{}/team/milborne/cache", reg.host),
        ],
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("warning:"), "{log}");
    assert!(
        log.contains("grants these credentials no push") && log.contains("read only, not written"),
        "{log}"
    );
    assert_eq!(result(&b)["digest"], digest, "the image from the record");
    let after = &reg.log()[before..];
    for write in ["POST /v2/", "PUT /v2/", "PATCH /v2/"] {
        assert!(!after.contains(write), "{write}: nothing tried:\n{after}");
    }
    let grants = read(&tr.log);
    assert!(
        grants
            .lines()
            .any(|l| l.starts_with("GRANTED(reader)") && l.contains("team/milborne/cache")),
        "{grants}"
    );
}

#[test]
fn vendor_fills_the_offline_store_from_the_build_cache() {
    let reg = Registry::start("", "");
    let tmp = tempfile::tempdir().unwrap();
    let digest = runner_a(&reg, tmp.path());
    // An empty cache: the root filesystems and the application's wheel (an
    // sdist compiled by runner A) come from the build cache.
    let store = tmp.path().join("store");
    let out = run(assemble()
        .arg("vendor")
        .arg("milborne==0.4.0")
        .arg("--index-url")
        .arg(index())
        .arg("--cache-dir")
        .arg(tmp.path().join("empty-cache"))
        .arg("--vendor")
        .arg(&store)
        .arg("--cache-from")
        .arg(format!("{}/team/milborne/cache", reg.host))
        .args(["--insecure-registry", &reg.host]));
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        !log.contains("mmdebstrap"),
        "no root filesystem built:\n{log}"
    );
    assert_eq!(log.matches("remote cache: rootfs ").count(), 2, "{log}");
    assert!(log.contains("remote cache: wheel "), "{log}");
    assert!(!log.contains("warning:"), "{log}");
    // The store builds the same image offline, from another empty cache.
    let out = run(assemble()
        .args(["--offline", "milborne==0.4.0", "--vendor"])
        .arg(&store)
        .arg("--cache-dir")
        .arg(tmp.path().join("offline-cache"))
        .arg("--output")
        .arg(tmp.path().join("oci")));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(digest_of(&out), digest);
}

#[test]
fn a_build_that_fails_after_its_root_filesystems_still_writes_them_to_the_build_cache() {
    // The entries of a build's inputs are written while it goes on: a
    // build that then fails (here: no such release on the index) leaves
    // them for the next runner.
    let reg = Registry::start("", "");
    let tmp = tempfile::tempdir().unwrap();
    let dir = cache_with_rootfs_only(tmp.path());
    let out = build_from(
        &index(),
        "milborne==9.9.9",
        &dir,
        &tmp.path().join("out"),
        &reg,
        &[
            "--push".into(),
            "--registry".into(),
            format!("{}/team", reg.host),
        ],
    );
    let log = stderr(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("9.9.9"), "the failure is said: {log}");
    let written = reg
        .log()
        .lines()
        .filter(|l| l.contains("PUT /v2/team/milborne/cache/manifests/rootfs-"))
        .count();
    assert_eq!(written, 2, "base and compiler rootfs:\n{log}");
    assert!(
        !reg.log().contains("PUT /v2/team/milborne/manifests/"),
        "no image pushed:\n{log}"
    );
}
