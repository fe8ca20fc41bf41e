//! `assemble cache prune` against a real registry (CNCF distribution) on
//! loopback: a cache repository holding assemble entries old and recent,
//! entries without a usable date, an image and another artifact, pushed by
//! hand with the registry's HTTP API; only the old entries go, and only
//! when asked for real.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::sync::{Arc, Mutex};

use support::*;

const REPO: &str = "team/milborne/cache";
const BUILD_RECORD: &str = "application/vnd.assemble.build-record.v1";

/// What the repository holds: tag → digest, and the digests that must go.
struct Fixture {
    tags: BTreeMap<&'static str, String>,
    old: Vec<String>,
}

/// Fills the cache repository: two old assemble entries (one with two
/// tags), a recent one with two tags, one without a created annotation,
/// one whose annotation is not a date, an old image and an old artifact of
/// another kind.
fn fill(api: &Api) -> Fixture {
    let empty_bytes: &[u8] = b"{}";
    let image_bytes: &[u8] =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let empty = (
        "application/vnd.oci.empty.v1+json",
        api.put_blob(empty_bytes),
        empty_bytes.len(),
    );
    let image_config = (
        "application/vnd.oci.image.config.v1+json",
        api.put_blob(image_bytes),
        image_bytes.len(),
    );
    let entry =
        |artifact: Option<&str>, config: &(&str, String, usize), created: Option<String>| {
            let mut m = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": config.0, "digest": config.1, "size": config.2},
                "layers": [],
            });
            if let Some(a) = artifact {
                m["artifactType"] = a.into();
            }
            if let Some(c) = created {
                m["annotations"] = serde_json::json!({ "org.opencontainers.image.created": c });
            }
            m
        };
    let empty_config = &empty;
    let dated = |days: u64| Some(days_ago(days));
    let old = entry(Some(BUILD_RECORD), empty_config, dated(40));
    let older = entry(
        Some("application/vnd.assemble.cache-entry.v1"),
        empty_config,
        dated(100),
    );
    let recent = entry(Some(BUILD_RECORD), empty_config, dated(2));
    let undated = entry(Some(BUILD_RECORD), empty_config, None);
    let bad_date = entry(Some(BUILD_RECORD), empty_config, Some("yesterday".into()));
    let image = entry(None, &image_config, dated(400));
    let sbom = entry(Some("application/spdx+json"), empty_config, dated(400));
    let mut tags = BTreeMap::new();
    for (tag, m) in [
        ("build-old", &old),
        ("build-older-a", &older),
        ("build-older-b", &older),
        ("build-recent", &recent),
        ("recent-alias", &recent),
        ("build-undated", &undated),
        ("build-bad-date", &bad_date),
        ("app-1.0", &image),
        ("sbom", &sbom),
    ] {
        tags.insert(tag, api.put_manifest(tag, m));
    }
    let old = vec![tags["build-old"].clone(), tags["build-older-a"].clone()];
    assert_eq!(tags["build-older-a"], tags["build-older-b"]);
    Fixture { tags, old }
}

fn prune(host: &str, args: &[&str]) -> Output {
    assemble()
        .args(["cache", "prune"])
        .arg(format!("{host}/{REPO}"))
        .args(["--insecure-registry", host])
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every tag of the fixture still resolves, and so does every digest.
fn assert_all_there(api: &Api, f: &Fixture) {
    for (tag, digest) in &f.tags {
        assert_eq!(api.status(tag), 200, "tag {tag}");
        assert_eq!(api.status(digest), 200, "digest of {tag}");
    }
}

#[test]
fn only_assembles_old_entries_go_and_a_dry_run_deletes_nothing() {
    let reg = Registry::start("", "");
    let api = Api::new(&reg, REPO);
    let f = fill(&api);

    let out = prune(&reg.host, &["--keep-days", "30", "--dry-run", "--verbose"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(stdout(&out).trim(), "would prune 2 of 7 entries (5 kept)");
    assert!(
        err.contains(&format!(
            "would prune tag build-old {} (40 days old)",
            f.tags["build-old"]
        )) && err.contains(&format!(
            "would prune tags build-older-a, build-older-b {} (100 days old)",
            f.tags["build-older-a"]
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "kept 5: 2 not assemble's, 2 without a readable date, 1 written in the last 30 days\n"
        ),
        "{err}"
    );
    for (kept, why) in [
        ("tag app-1.0", "not an assemble entry (an image)"),
        ("tag build-bad-date", "is not RFC 3339: \"yesterday\""),
        (
            "tags build-recent, recent-alias",
            "written in the last 30 days",
        ),
        (
            "tag build-undated",
            "without an org.opencontainers.image.created annotation",
        ),
        (
            "tag sbom",
            "not an assemble entry (artifact application/spdx+json)",
        ),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("kept {kept} ")) && l.contains(why)),
            "{kept}: {why}\n{err}"
        );
    }
    assert_eq!(reg.count("\"DELETE "), 0, "a dry run sends no DELETE");
    assert_all_there(&api, &f);

    let out = prune(&reg.host, &["--keep-days", "30"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(stdout(&out).trim(), "pruned 2 of 7 entries (5 kept)");
    assert!(
        err.contains(&format!(
            "pruned tag build-old {} (40 days old)",
            f.tags["build-old"]
        )) && err.contains(&format!(
            "pruned tags build-older-a, build-older-b {} (100 days old)",
            f.tags["build-older-a"]
        )),
        "{err}"
    );
    assert!(err.contains("garbage collector"), "{err}");
    assert!(
        err.contains("kept 5: ") && err.contains(" (--verbose lists them)"),
        "{err}"
    );
    assert!(
        !err.contains("kept tag"),
        "kept entries listed with --verbose only: {err}"
    );
    assert_eq!(reg.count("\"DELETE "), 2, "one DELETE per old manifest");
    for digest in &f.old {
        assert_eq!(
            reg.count(&format!("\"DELETE /v2/{REPO}/manifests/{digest} ")),
            1
        );
        assert_eq!(api.status(digest), 404, "{digest} is gone");
    }
    for (tag, digest) in &f.tags {
        let gone = f.old.contains(digest);
        assert_eq!(api.status(tag), if gone { 404 } else { 200 }, "tag {tag}");
        assert_eq!(api.status(digest), if gone { 404 } else { 200 }, "{tag}");
    }

    // Once more: nothing left to prune, and with 0 days, only the recent
    // entry goes.
    let out = prune(&reg.host, &["--keep-days", "30"]);
    assert_eq!(stdout(&out).trim(), "pruned 0 of 5 entries (5 kept)");
    let out = prune(&reg.host, &["--keep-days", "0"]);
    assert_eq!(stdout(&out).trim(), "pruned 1 of 5 entries (4 kept)");
    assert_eq!(api.status("recent-alias"), 404);
    assert_eq!(api.status("build-undated"), 200);
    assert_eq!(api.status("app-1.0"), 200);
    assert_eq!(api.status("sbom"), 200);
}

#[test]
fn a_registry_with_deletes_disabled_is_a_clear_error_after_one_refused_delete() {
    // Exit 1, as for any registry that refuses an operation: the command
    // was right, the registry would not do it (usage errors are 2).
    let reg = Registry::start_with_env("", "", &[("REGISTRY_STORAGE_DELETE_ENABLED", "false")]);
    let api = Api::new(&reg, REPO);
    let f = fill(&api);
    let out = prune(&reg.host, &["--keep-days", "30"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("registry {} has deletes disabled", reg.host))
            && err.contains("REGISTRY_STORAGE_DELETE_ENABLED=true")
            && err.contains("storage.delete.enabled")
            && err.contains("nothing was deleted"),
        "{err}"
    );
    assert_eq!(stdout(&out), "", "no result line");
    assert_eq!(
        reg.count("\"DELETE "),
        1,
        "nothing tried after the first refusal:\n{}",
        reg.log()
    );
    assert_all_there(&api, &f);
}

#[test]
fn credentials_are_used_and_never_shown() {
    const USER: &str = "pruner";
    const PASSWORD: &str = "pr4ne-Pa55-word";
    need("htpasswd");
    let dir = tempfile::tempdir().unwrap();
    let out = run(std::process::Command::new("htpasswd")
        .args(["-Bbn", USER, PASSWORD])
        .stdin(std::process::Stdio::null()));
    assert!(out.status.success());
    std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
    let reg = Registry::start(
        &format!(
            "auth:\n  htpasswd:\n    realm: assemble-test\n    path: {}\n",
            dir.path().join("htpasswd").display()
        ),
        "",
    );
    assert_eq!(
        Api::new(&reg, REPO).status("x"),
        401,
        "the registry asks for them"
    );
    let api = Api::with_login(&reg, REPO, USER, PASSWORD);
    let f = fill(&api);
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            reg.host,
            basic(USER, PASSWORD)
        ),
    )
    .unwrap();
    let out = assemble()
        .env("DOCKER_CONFIG", &docker)
        .env("ASSEMBLE_LOG", "debug")
        .args(["cache", "prune", "--verbose", "--keep-days", "30"])
        .arg(format!("{}/{REPO}", reg.host))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(stdout(&out).trim(), "pruned 2 of 7 entries (5 kept)");
    for text in [stdout(&out), err] {
        assert!(
            !text.contains(PASSWORD) && !text.contains(&basic(USER, PASSWORD)),
            "a secret leaked:\n{text}"
        );
    }
    for digest in &f.old {
        assert_eq!(api.status(digest), 404);
    }
    assert_eq!(api.status("build-recent"), 200);
}

#[test]
fn bad_usage_is_exit_2_before_any_request_and_an_unknown_repository_exit_1() {
    let reg = Registry::start("", "");
    let host = reg.host.clone();
    for (args, says) in [
        (
            vec![format!("{host}/{REPO}:latest"), "--keep-days=3".into()],
            "without a tag or digest",
        ),
        (
            vec![format!("{host}/{REPO}"), "--keep-days=-2".into()],
            "give a whole number of days",
        ),
        (
            vec![format!("{host}/{REPO}"), "--keep-days=thirty".into()],
            "give a whole number of days",
        ),
    ] {
        let out = assemble()
            .args(["cache", "prune"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    let out = assemble()
        .args(["cache", "prune", &format!("{host}/{REPO}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--keep-days is required");
    assert_eq!(reg.count("\"GET /v2/"), 0, "no request:\n{}", reg.log());

    let out = prune(&host, &["--keep-days", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot read the build cache {host}/{REPO}"))
            && err.contains("NAME_UNKNOWN"),
        "{err}"
    );
}

/// A proxy in front of the registry that serves the tag list itself, two
/// tags a page with a `Link` to the next (CNCF distribution 2.8 ignores
/// `n` and sends every tag at once), and passes every other request on.
/// Returns its port and the tag list requests it answered.
fn paging_proxy(upstream: String) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (upstream, log) = (upstream.clone(), log.clone());
            std::thread::spawn(move || {
                let _ = serve(conn, &upstream, &log);
            });
        }
    });
    (port, seen)
}

fn serve(mut conn: TcpStream, upstream: &str, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    // The client's HTTPS probe: no TLS here, it goes to plain HTTP.
    let mut first = [0u8; 1];
    if conn.peek(&mut first)? == 1 && first[0] == 0x16 {
        return Ok(());
    }
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut head = format!("{}\r\n", line.trim_end());
    let mut len = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            head.push_str(&h);
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    if line.starts_with("GET ") && path.contains("/tags/list") {
        log.lock().unwrap().push(path.clone());
        let (prefix, query) = path.split_once('?').unwrap_or((&path, ""));
        let last = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("last="))
            .map(str::to_string);
        let all: serde_json::Value = reqwest::blocking::get(format!("http://{upstream}{prefix}"))
            .unwrap()
            .json()
            .unwrap();
        let mut tags: Vec<String> = all["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        tags.sort();
        let rest: Vec<&String> = tags
            .iter()
            .filter(|t| last.as_ref().is_none_or(|l| t.as_str() > l.as_str()))
            .collect();
        let page: Vec<&String> = rest.iter().take(2).copied().collect();
        let link = if rest.len() > 2 {
            format!(
                "Link: <{prefix}?n=2&last={}>; rel=\"next\"\r\n",
                page.last().unwrap()
            )
        } else {
            String::new()
        };
        let doc = serde_json::json!({ "name": REPO, "tags": page }).to_string();
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{link}Connection: close\r\n\r\n{doc}",
            doc.len()
        )?;
        return Ok(());
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    conn.write_all(&answer)
}

#[test]
fn tags_are_read_page_by_page() {
    let reg = Registry::start("", "");
    let api = Api::new(&reg, REPO);
    let f = fill(&api);
    let (port, seen) = paging_proxy(reg.host.clone());
    let host = format!("127.0.0.1:{port}");
    let out = prune(&host, &["--keep-days", "30", "--dry-run"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(stdout(&out).trim(), "would prune 2 of 7 entries (5 kept)");
    // 9 tags, 2 a page: 5 pages, each asked once, following the links.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen[1].ends_with("?n=2&last=build-bad-date"), "{seen:?}");
    assert!(err.contains("9 tags"), "{err}");
    assert_all_there(&api, &f);
}
