//! Push, pull and tags against a real registry (CNCF distribution) over
//! plain HTTP on loopback.

mod support;

use std::process::Command;

use support::*;

fn push(
    reg: &Registry,
    cache: &std::path::Path,
    target: &str,
    extra: &[&str],
) -> std::process::Output {
    run(assemble()
        .arg("push")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .arg(format!("{}/{target}", reg.host))
        .arg("--insecure-registry")
        .arg(&reg.host)
        .arg("--cache-dir")
        .arg(cache)
        .args(extra))
}

#[test]
fn push_prints_the_digest_skopeo_sees_and_a_second_push_uploads_nothing() {
    let reg = Registry::start("", "");
    let tmp = tempfile::tempdir().unwrap();
    let out = push(&reg, tmp.path(), "team/milborne:0.4.0", &[]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        stdout,
        format!("{}/team/milborne@{}", reg.host, image_digest()),
        "stdout holds only the pushed reference"
    );
    let info = skopeo_inspect(&format!("{}/team/milborne:0.4.0", reg.host), false);
    assert_eq!(info["Digest"].as_str().unwrap(), image_digest());

    let copy = tmp.path().join("copy");
    let out = run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/team/milborne:0.4.0", reg.host))
        .arg(format!("oci:{}:back", copy.display())));
    assert!(out.status.success(), "skopeo copy reads the image back");

    let uploads = reg.count("PUT /v2/team/milborne/blobs/uploads/");
    assert!(
        uploads >= 5,
        "the first push uploaded every blob ({uploads})"
    );
    let out = push(&reg, tmp.path(), "team/milborne:0.4.0", &[]);
    assert!(out.status.success());
    assert_eq!(
        reg.count("PUT /v2/team/milborne/blobs/uploads/"),
        uploads,
        "the second push uploads no blob"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped"));

    let out = run(assemble()
        .arg("tags")
        .arg(format!("{}/team/milborne", reg.host))
        .arg("--insecure-registry")
        .arg(&reg.host));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0.4.0");
}

#[test]
fn the_same_image_in_a_second_repository_is_mounted_not_uploaded() {
    let reg = Registry::start("", "");
    let cache = tempfile::tempdir().unwrap();
    assert!(push(&reg, cache.path(), "team/first:1", &[])
        .status
        .success());
    let out = push(&reg, cache.path(), "team/second:1", &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mounted from team/first"));
    assert_eq!(
        reg.count("PUT /v2/team/second/blobs/uploads/"),
        0,
        "nothing uploaded to the second repository"
    );
    assert!(reg.count("POST /v2/team/second/blobs/uploads/?mount=") >= 5);
    assert_eq!(
        skopeo_inspect(&format!("{}/team/second:1", reg.host), false)["Digest"]
            .as_str()
            .unwrap(),
        image_digest()
    );
}

#[test]
fn large_blobs_go_in_chunks_and_arrive_intact() {
    let reg = Registry::start("", "");
    let cache = tempfile::tempdir().unwrap();
    let out = push(
        &reg,
        cache.path(),
        "team/chunked:1",
        &["--chunk-size", "1048576"],
    );
    assert!(out.status.success());
    assert!(
        reg.count("PATCH /v2/team/chunked/blobs/uploads/") > 5,
        "PATCH chunks were sent"
    );
    assert_eq!(
        skopeo_inspect(&format!("{}/team/chunked:1", reg.host), false)["Digest"]
            .as_str()
            .unwrap(),
        image_digest()
    );
}

#[test]
fn build_with_push_names_the_image_after_project_and_version() {
    let reg = Registry::start("", "");
    let tmp = tempfile::tempdir().unwrap();
    let out = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci")).args([
        "--push",
        "--registry",
        &format!("{}/team", reg.host),
        "--insecure-registry",
        &reg.host,
        "--result-file",
        tmp.path().join("result.json").to_str().unwrap(),
    ]));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{}/team/milborne@{}", reg.host, image_digest())
    );
    let doc: serde_json::Value =
        serde_json::from_str(&read(&tmp.path().join("result.json"))).unwrap();
    assert_eq!(
        doc["push"]["reference"],
        format!("{}/team/milborne@{}", reg.host, image_digest())
    );
    let blobs = doc["push"]["blobs"].as_array().unwrap();
    assert_eq!(blobs.len(), 5, "config and four layers");
    assert!(
        blobs
            .iter()
            .all(|b| b["outcome"] == "uploaded" && b["size"].as_u64().unwrap() > 0),
        "{blobs:?}"
    );
    let out = run(assemble()
        .arg("tags")
        .arg(format!("{}/team/milborne", reg.host))
        .arg("--insecure-registry")
        .arg(&reg.host));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0.4.0");
}

/// The base image's name and digest, as image-spec's annotations say
/// them on the image's manifest (what `crane rebase` and update bots read).
fn base_annotations(reg: &Registry, repository: &str, tag: &str) -> (String, String) {
    let manifest = Api::new(reg, repository).manifest(tag);
    let annotation = |key: &str| {
        manifest["annotations"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {manifest}"))
            .to_string()
    };
    (
        annotation("org.opencontainers.image.base.name"),
        annotation("org.opencontainers.image.base.digest"),
    )
}

#[test]
fn a_base_pulled_from_the_registry_keeps_its_layer_digests() {
    let reg = Registry::start("", "");
    let cache = tempfile::tempdir().unwrap();
    assert!(push(&reg, cache.path(), "team/base:1", &[])
        .status
        .success());
    let base_layers = skopeo_inspect(&format!("{}/team/base:1", reg.host), false)["Layers"]
        .as_array()
        .unwrap()
        .clone();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci")).args([
        "--base",
        &format!("docker://{}/team/base:1", reg.host),
        "--push",
        "--tag",
        &format!("{}/team/app:1", reg.host),
        "--insecure-registry",
        &reg.host,
    ]));
    assert!(out.status.success());
    let app_layers = skopeo_inspect(&format!("{}/team/app:1", reg.host), false)["Layers"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        app_layers[..base_layers.len()],
        base_layers[..],
        "base layers unchanged"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mounted from team/base"),
        "base layers are mounted from the base's repository"
    );
    // The image names its base.
    let base_digest = skopeo_inspect(&format!("{}/team/base:1", reg.host), false)["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        base_annotations(&reg, "team/app", "1"),
        (format!("{}/team/base:1", reg.host), base_digest.clone())
    );
    // A base named by a multi-platform index: the annotations name the
    // index (image-spec: the name and the digest must point to the same
    // thing), the layers are still the platform image's.
    let api = Api::new(&reg, "team/base");
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/team/base:1", reg.host),
    ]));
    assert!(raw.status.success());
    let size = raw.stdout.len();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": base_digest,
            "size": size,
            "platform": {"architecture": arch, "os": "linux"},
        }],
    });
    let index_digest = api.put_index("multi", &index);
    let out = run(
        build_cmd("milborne==0.4.0", &tmp.path().join("oci-multi")).args([
            "--base",
            &format!("docker://{}/team/base:multi", reg.host),
            "--push",
            "--tag",
            &format!("{}/team/app:2", reg.host),
            "--insecure-registry",
            &reg.host,
        ]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        base_annotations(&reg, "team/app", "2"),
        (format!("{}/team/base:multi", reg.host), index_digest)
    );
    let app_layers = skopeo_inspect(&format!("{}/team/app:2", reg.host), false)["Layers"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(app_layers[..base_layers.len()], base_layers[..]);
}

/// Regression: a plain HTTP registry on loopback failed until
/// --insecure-registry was added; docker and go-containerregistry reach it.
#[test]
fn a_plain_http_registry_on_loopback_needs_no_flag() {
    let reg = Registry::start("", "");
    let tmp = tempfile::tempdir().unwrap();
    let out = run(assemble()
        .arg("push")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .arg(format!("{}/team/loopback:1", reg.host))
        .arg("--cache-dir")
        .arg(tmp.path().join("cache")));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim()
        .ends_with(&image_digest()));
    let localhost = reg.host.replace("127.0.0.1", "localhost");
    let tags = run(assemble()
        .arg("tags")
        .arg(format!("{localhost}/team/loopback")));
    assert!(tags.status.success());
    assert_eq!(String::from_utf8_lossy(&tags.stdout).trim(), "1");
}

/// Off loopback, in a network namespace of the test's own with a
/// documentation address: plain HTTP still needs --insecure-registry (the
/// error says so), and even then credentials are not sent over it.
#[test]
fn off_loopback_plain_http_needs_the_flag_and_never_gets_credentials() {
    need("unshare");
    need("ip");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let docker = d.join("docker");
    std::fs::create_dir(&docker).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("offuser:off-Pa55");
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths":{{"192.0.2.1:5000":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    // Answers every request with a Basic challenge and writes down what it
    // was sent.
    std::fs::write(
        d.join("recorder.py"),
        r#"import http.server, sys
log = open(sys.argv[1], "a")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        log.write(self.requestline + "\n" + "".join("%s: %s\n" % kv for kv in self.headers.items()) + "\n")
        log.flush()
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="off"')
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("192.0.2.1", 5000), H).serve_forever()
"#,
    )
    .unwrap();
    let script = r#"
        ip link set lo up
        ip addr add 192.0.2.1/32 dev lo
        python3 recorder.py requests.log &
        server=$!
        for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('192.0.2.1', 5000), 1)" 2>/dev/null && break; sleep 0.1; done
        set +e
        "$ASSEMBLE" tags 192.0.2.1:5000/team/off --timeout 20 > plain.out 2> plain.err; echo $? > plain.rc
        "$ASSEMBLE" tags 192.0.2.1:5000/team/off --timeout 20 --insecure-registry 192.0.2.1:5000 > flagged.out 2> flagged.err; echo $? > flagged.rc
        kill $server
    "#;
    let out = run(Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "sh", "-ec", script])
        .current_dir(d)
        .env("ASSEMBLE", bin())
        .env("DOCKER_CONFIG", &docker)
        .env_remove("REGISTRY_AUTH_FILE")
        .stdin(std::process::Stdio::null()));
    assert!(out.status.success(), "the namespace script ran");
    let plain = read(&d.join("plain.err"));
    assert_eq!(read(&d.join("plain.rc")).trim(), "1", "{plain}");
    assert!(
        plain.contains("if it serves plain HTTP, pass --insecure-registry 192.0.2.1:5000"),
        "{plain}"
    );
    let flagged = read(&d.join("flagged.err"));
    assert_eq!(read(&d.join("flagged.rc")).trim(), "1", "{flagged}");
    assert!(
        flagged.contains("192.0.2.1:5000 is reached over plain HTTP")
            && flagged.contains("only to loopback"),
        "{flagged}"
    );
    let requests = read(&d.join("requests.log"));
    assert!(
        requests.contains("GET /v2/team/off/tags/list"),
        "the flagged run reached the registry over HTTP:\n{requests}"
    );
    assert!(
        !requests.to_ascii_lowercase().contains("authorization"),
        "credentials went over plain HTTP:\n{requests}"
    );
}

#[test]
fn a_registry_that_stays_down_fails_with_the_last_error() {
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let out = assemble()
        .arg("push")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .arg(format!("{host}/team/x:1"))
        .args(["--insecure-registry", &host, "--attempts", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot reach registry {host}")),
        "{err}"
    );
}

#[test]
fn bad_references_exit_2_with_the_accepted_form() {
    let out = assemble()
        .arg("push")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .arg("127.0.0.1:5000/UPPER:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected [HOST[:PORT]/]PATH"));
}

#[test]
fn format_docker_pushes_a_schema_2_manifest_with_the_same_blobs() {
    let reg = Registry::start("", "");
    let cache = tempfile::tempdir().unwrap();
    let out = push(&reg, cache.path(), "team/docker:1", &["--format", "docker"]);
    assert!(out.status.success());
    let pushed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/team/docker:1", reg.host)));
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let info = skopeo_inspect(&format!("{}/team/docker:1", reg.host), false);
    assert!(
        pushed.ends_with(info["Digest"].as_str().unwrap()),
        "{pushed}"
    );
    assert_ne!(
        info["Digest"].as_str().unwrap(),
        image_digest(),
        "new bytes, new digest"
    );
    let oci_layers = skopeo_inspect_layout_layers();
    assert_eq!(
        info["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        oci_layers,
        "the same blobs"
    );
}

fn skopeo_inspect_layout_layers() -> Vec<String> {
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:0.4.0", image().display())));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_oci_archive_is_pushed() {
    let reg = Registry::start("", "");
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("image.oci.tar");
    let out = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci"))
        .arg("--archive")
        .arg(format!("oci-archive:{}", archive.display())));
    assert!(out.status.success());
    let out = run(assemble()
        .arg("push")
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("{}/team/fromarchive:1", reg.host))
        .arg("--insecure-registry")
        .arg(&reg.host)
        .arg("--cache-dir")
        .arg(tmp.path().join("cache")));
    assert!(out.status.success());
    assert_eq!(
        skopeo_inspect(&format!("{}/team/fromarchive:1", reg.host), false)["Digest"]
            .as_str()
            .unwrap(),
        image_digest()
    );
}

fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn a_pull_of_a_missing_tag_leaves_nothing_behind() {
    // Regression: `assemble pull` of a missing tag left DIR/{blobs,oci-layout}.
    let reg = Registry::start("", "");
    let cache = tempfile::tempdir().unwrap();
    assert!(push(&reg, cache.path(), "team/app:1", &[]).status.success());
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("fresh");
    let mine = tmp.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "must survive").unwrap();
    for dest in [&fresh, &mine] {
        let before = listing(tmp.path());
        let out = assemble()
            .arg("pull")
            .arg(format!("{}/team/app:nope", reg.host))
            .arg(dest)
            .args(["--insecure-registry", &reg.host])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
        assert_eq!(listing(tmp.path()), before, "the pull left nothing");
    }
    // A pull that works joins an existing layout and keeps its other tags.
    for tag in ["1", "again"] {
        let out = run(assemble()
            .arg("pull")
            .arg(format!("{}/team/app:1", reg.host))
            .arg(&mine)
            .args(["--insecure-registry", &reg.host]));
        assert!(out.status.success());
        let out = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:1", mine.display())));
        assert!(out.status.success(), "after pulling {tag}");
    }
    assert_eq!(read(&mine.join("notes.txt")), "must survive");
    assert!(
        !listing(tmp.path()).iter().any(|n| n.contains(".pull-")),
        "no staging directory is left"
    );
}

#[test]
fn a_pull_by_digest_alone_asks_for_a_tag_and_a_tag_with_a_digest_works() {
    // Regression: `pull REF@sha256:…` tagged the layout `latest`.
    let reg = Registry::start("", "");
    let cache = tempfile::tempdir().unwrap();
    assert!(push(&reg, cache.path(), "team/app:1", &[]).status.success());
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("oci");
    let digest = image_digest();
    let out = assemble()
        .arg("pull")
        .arg(format!("{}/team/app@{digest}", reg.host))
        .arg(&dest)
        .args(["--insecure-registry", &reg.host])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("team/app:TAG@{digest}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dest.exists());
    let out = run(assemble()
        .arg("pull")
        .arg(format!("{}/team/app:pinned@{digest}", reg.host))
        .arg(&dest)
        .args(["--insecure-registry", &reg.host]));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("oci:{}:pinned {digest}", dest.display())
    );
}

#[test]
fn a_push_to_a_digest_that_is_not_the_images_uploads_nothing() {
    // Regression: `push REF@sha256:…` uploaded every blob before the registry
    // refused the digest.
    let reg = Registry::start("", "");
    let cache = tempfile::tempdir().unwrap();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let out = assemble()
        .arg("push")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .arg(format!("{}/team/app@{wrong}", reg.host))
        .args(["--insecure-registry", &reg.host, "--cache-dir"])
        .arg(cache.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&wrong) && err.contains(&image_digest()),
        "{err}"
    );
    assert_eq!(reg.count("/blobs/"), 0, "no blob was checked or sent");
    let out = push(
        &reg,
        cache.path(),
        &format!("team/app@{}", image_digest()),
        &[],
    );
    assert!(out.status.success(), "the image's own digest is pushed");
}

#[test]
fn tags_of_a_missing_repository_exit_1_and_of_an_empty_one_exit_0() {
    // Regression: `assemble tags` of a repository the registry does not know
    // (404 NAME_UNKNOWN) printed nothing and exited 0.
    let reg = Registry::start("", "");
    let tags = |repo: &str| {
        assemble()
            .arg("tags")
            .arg(format!("{}/{repo}", reg.host))
            .args(["--insecure-registry", &reg.host])
            .output()
            .unwrap()
    };
    let out = tags("team/nope");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("404") && err.contains("NAME_UNKNOWN: repository name not known to registry"),
        "{err}"
    );
    let cache = tempfile::tempdir().unwrap();
    assert!(push(&reg, cache.path(), "team/app:1", &[]).status.success());
    let del = run(Command::new("skopeo")
        .args(["delete", "--tls-verify=false"])
        .arg(format!("docker://{}/team/app:1", reg.host)));
    assert!(del.status.success());
    let out = tags("team/app");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
}
