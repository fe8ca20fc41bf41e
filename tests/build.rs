//! End-to-end builds against a real pypiserver, checked with tools nobody
//! here wrote: skopeo, umoci and oci-image-tool.

mod support;

use std::process::Command;

use support::*;

fn inspect(layout: &std::path::Path, tag: &str) -> serde_json::Value {
    need("skopeo");
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{tag}", layout.display())));
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn config_of(layout: &std::path::Path, tag: &str) -> serde_json::Value {
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg("--config")
        .arg(format!("oci:{}:{tag}", layout.display())));
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn index_build_is_a_valid_layout_with_the_contract_config() {
    let layout = image();
    need("oci-image-tool");
    // Debian's oci-image-tool names the image-layout check `--type image`.
    let out = run(Command::new("oci-image-tool")
        .args(["validate", "--type", "image", "--ref", "name=0.4.0"])
        .arg(&layout));
    assert!(out.status.success(), "oci-image-tool refused the layout");

    let info = inspect(&layout, "0.4.0");
    assert_eq!(
        info["Digest"].as_str().unwrap(),
        read(&layout.parent().unwrap().join("digest"))
    );
    let config = config_of(&layout, "0.4.0");
    let c = &config["config"];
    assert_eq!(c["User"], "blue");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/home/blue/bin/entrypoint"])
    );
    assert_eq!(c["WorkingDir"], "/home/blue");
    for port in ["8080/tcp", "8081/tcp"] {
        assert!(c["ExposedPorts"].get(port).is_some(), "{port} exposed");
    }
    for v in ["/media", "/scripts", "/config"] {
        assert!(c["Volumes"].get(v).is_some(), "{v} is a volume");
    }
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for want in [
        "LANG=C.UTF-8",
        "PROJECT_NAME=milborne",
        "PROJECT_VERSION=0.4.0",
        "PYTHON_VERSION=3.11",
        "MILBORNE_CONFIG=/home/blue/config/app/*.ini",
        "DJANGO_SETTINGS_MODULE=milborne.settings",
    ] {
        assert!(env.contains(&want), "{want} in {env:?}");
    }
    assert!(env
        .iter()
        .any(|e| e.starts_with("PATH=/home/blue/app/bin:")));
    assert_eq!(c["Labels"]["org.opencontainers.image.title"], "milborne");
    assert_eq!(c["Labels"]["org.opencontainers.image.version"], "0.4.0");
    assert_eq!(
        c["Labels"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        config["history"].as_array().unwrap().len(),
        config["rootfs"]["diff_ids"].as_array().unwrap().len()
    );
}

#[test]
fn umoci_unpacks_the_image_with_the_contract_layout() {
    need("umoci");
    let layout = image();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let out = run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:0.4.0", layout.display()))
        .arg(&bundle));
    assert!(out.status.success());
    let root = bundle.join("rootfs");
    let site = root.join("home/blue/app/lib/python3.11/site-packages");
    assert!(site.join("django/__init__.py").is_file());
    assert!(
        site.join("milborne/crontab").is_file(),
        "the project's crontab ships in its package"
    );
    assert!(
        std::fs::read_dir(site.join("milborne"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".so")),
        "the C extension is compiled"
    );
    assert!(root.join("home/blue/bin/entrypoint").is_file());
    assert!(root
        .join("home/blue/config/app/50_default_settings.ini")
        .is_file());
    for d in ["media", "scripts", "config"] {
        assert!(root.join(d).is_dir(), "/{d} exists");
    }
    // No wheels, pip caches or build tools shipped.
    assert!(
        !root.join("usr/bin/gcc").exists(),
        "no compiler in the image"
    );
    assert!(!root.join("home/blue/.cache").exists(), "no pip cache");
    assert!(!root.join("assemble").exists(), "no sandbox mount points");
    // uv installed the venv, and left no record of its cache (a wall-clock
    // time) in a dist-info or its RECORD.
    let site = root.join("home/blue/app/lib/python3.11/site-packages");
    let mut dist_infos = 0;
    for e in std::fs::read_dir(&site).unwrap().flatten() {
        let p = e.path();
        if !p.to_string_lossy().ends_with(".dist-info") {
            continue;
        }
        dist_infos += 1;
        assert_eq!(read(&p.join("INSTALLER")).trim(), "uv", "{}", p.display());
        assert!(!p.join("uv_cache.json").exists(), "{}", p.display());
        assert!(
            !read(&p.join("RECORD")).contains("uv_cache.json"),
            "{}",
            p.display()
        );
    }
    assert_eq!(dist_infos, 4, "milborne, django, asgiref, sqlparse");
    assert!(
        !root.join("home/blue/app/.lock").exists(),
        "uv's lock file (mode 0666) is not shipped"
    );
    // Owners as the contract says, read from the application layer's tar headers.
    let listing = run(Command::new("tar")
        .arg("-tvzf")
        .arg(blob_of_layer(&layout, -1)));
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(
        text.lines()
            .filter(|l| l.contains("home/blue/app/"))
            .all(|l| l.contains("1000/33")),
        "application files owned by blue:www-data\n{text}"
    );
}

/// `dir` written as the tarball `tarball`.
fn tar_dir(dir: &std::path::Path, tarball: &std::path::Path) {
    let tar = run(Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(tarball)
        .arg("."));
    assert!(tar.status.success());
}

/// A tree `dir/name` of `files` (path, content), as `dir/name.tar`.
fn tarball_of(dir: &std::path::Path, name: &str, files: &[(&str, String)]) -> std::path::PathBuf {
    let root = dir.join(name);
    for (f, content) in files {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let tarball = dir.join(format!("{name}.tar"));
    tar_dir(&root, &tarball);
    tarball
}

/// Path of the n-th layer blob (negative from the end) of the layout's only image.
fn blob_of_layer(layout: &std::path::Path, n: isize) -> std::path::PathBuf {
    let index: serde_json::Value = serde_json::from_str(&read(&layout.join("index.json"))).unwrap();
    let m = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value =
        serde_json::from_str(&read(&layout.join("blobs/sha256").join(m))).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let i = if n < 0 { layers.len() as isize + n } else { n } as usize;
    let d = layers[i]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    layout.join("blobs/sha256").join(d)
}

/// Regression: the base layer had no /dev (mmdebstrap's `--skip=output/dev`
/// dropped the directory too), so a read-only rootfs had no mount point.
#[test]
fn the_base_layer_keeps_an_empty_dev_directory() {
    let listing = run(Command::new("tar")
        .arg("-tvzf")
        .arg(blob_of_layer(&image(), 0)));
    assert!(listing.status.success());
    let text = String::from_utf8_lossy(&listing.stdout);
    let dev: Vec<&str> = text
        .lines()
        .filter(|l| {
            let name = l.split_whitespace().last().unwrap_or("");
            name.trim_start_matches("./").starts_with("dev")
        })
        .collect();
    assert_eq!(dev.len(), 1, "only the directory itself:\n{dev:?}");
    assert!(
        dev[0].starts_with("drwxr-xr-x 0/0") && dev[0].ends_with(" ./dev/"),
        "a root-owned 0755 directory: {dev:?}"
    );
}

#[test]
fn rebuild_with_the_same_epoch_gives_the_same_digest() {
    let first = image();
    let tmp = tempfile::tempdir().unwrap();
    // --rebuild recompiles the wheels and re-installs the venv: only the rootfs stay cached.
    let out = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci")).arg("--rebuild"));
    assert!(out.status.success());
    assert_eq!(
        digest_of(&out),
        read(&first.parent().unwrap().join("digest")),
        "same inputs, same manifest digest"
    );
}

#[test]
fn local_directory_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(build_cmd(
        repo().join("tests/fixtures/milborne"),
        &tmp.path().join("oci"),
    ));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.trim().ends_with(&digest_of(&out)) && stdout.contains(":0.4.0 sha256:"),
        "{stdout}"
    );
    let info = inspect(&tmp.path().join("oci"), "0.4.0");
    assert_eq!(info["Labels"]["org.opencontainers.image.title"], "milborne");
    assert!(
        !repo().join("tests/fixtures/milborne/build").exists(),
        "the checkout is not written to"
    );
}

#[test]
fn wheel_path_with_extras_builds_and_installs_the_extra() {
    let wheel = std::fs::read_dir(data().join("wheels"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(build_cmd(
        format!("{}[extra]", wheel.display()),
        &tmp.path().join("oci"),
    ));
    assert!(out.status.success());
    let config = config_of(&tmp.path().join("oci"), "0.4.0");
    let history: Vec<String> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        history.iter().any(|h| h.contains("six==")),
        "the extra's dependency is installed: {history:?}"
    );
}

#[test]
fn malformed_requirement_exits_2_listing_the_accepted_forms() {
    let tmp = tempfile::tempdir().unwrap();
    let out = assemble()
        .current_dir(tmp.path())
        .arg("milborne>=0.4")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Accepted forms"), "{err}");
    assert!(!err.contains("panicked"));
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn unknown_version_fails_with_the_resolvers_reason_and_no_index_json() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build_cmd("milborne==9.9.9", &tmp.path().join("oci"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("uv resolve (index") && err.contains("failed") && err.contains("9.9.9"),
        "{err}"
    );
    assert!(
        !tmp.path().join("oci/index.json").exists(),
        "no output that looks complete"
    );
}

#[test]
fn index_that_does_not_answer_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = assemble()
        .arg("milborne==0.4.0")
        .arg("--index-url")
        .arg(format!("http://127.0.0.1:{port}/simple/"))
        .arg("--cache-dir")
        .arg(cache())
        .arg("--output")
        .arg(tmp.path().join("oci"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        // uv's resolution, or fetching uv itself when this cache has none.
        err.contains(&format!("(index http://127.0.0.1:{port}/simple/) failed")),
        "{err}"
    );
    assert!(!tmp.path().join("oci/index.json").exists());
}

#[test]
fn python_the_base_lacks_exits_2_naming_what_it_has() {
    // A given base (with the built one, --python picks a Debian release:
    // a_python_or_a_release_not_on_offer_exits_2_listing_those_that_are).
    let tmp = tempfile::tempdir().unwrap();
    let out = build_cmd("milborne==0.4.0", &tmp.path().join("oci"))
        .args(["--python", "3.7"])
        .arg("--base")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("python3.7") && err.contains("python3.11"),
        "{err}"
    );
}

#[test]
fn base_tarball_with_parent_entries_is_refused_and_nothing_escapes() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("evil.tar");
    // A tar entry named ../escaped-marker, written byte by byte: tar tools refuse to make one.
    let mut header = [0u8; 512];
    let name = b"../escaped-marker";
    header[..name.len()].copy_from_slice(name);
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(b"00000000002\0");
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| *b as u32).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    let mut data = b"x\n".to_vec();
    data.resize(512, 0);
    tar.extend(data);
    tar.extend([0u8; 1024]);
    std::fs::write(&base, tar).unwrap();
    let cache_dir = tmp.path().join("cache");
    let out = assemble()
        .arg("milborne==0.4.0")
        .arg("--base")
        .arg(&base)
        .arg("--index-url")
        .arg(index())
        .arg("--cache-dir")
        .arg(&cache_dir)
        .arg("--output")
        .arg(tmp.path().join("oci"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("../escaped-marker"), "{err}");
    assert!(
        !cache_dir.join("rootfs/escaped-marker").exists()
            && !cache_dir.join("escaped-marker").exists()
    );
    let escaped: Vec<_> = walkdir::WalkDir::new(tmp.path())
        .into_iter()
        .flatten()
        .filter(|e| e.file_name() == "escaped-marker")
        .collect();
    assert!(escaped.is_empty(), "{escaped:?}");
    assert!(!tmp.path().join("oci/index.json").exists());
}

/// `assemble run -q LAYOUT ARGS...` with the shared cache: its output.
fn run_in(layout: &std::path::Path, args: &[&str]) -> std::process::Output {
    run(assemble()
        .args(["-q", "run", "--cache-dir"])
        .arg(cache())
        .arg(layout)
        .args(args))
}

/// `assemble run LAYOUT start www` in the background, until dropped.
fn serve_www(layout: &std::path::Path) -> Running {
    Running(spawn_with_deathsig(
        assemble()
            .arg("run")
            .arg("--cache-dir")
            .arg(cache())
            .arg(layout)
            .args(["start", "www"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    ))
}

fn manifest_layers(layout: &std::path::Path, tag: &str) -> Vec<String> {
    let info = inspect(layout, tag);
    info["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn base_tarball_goes_into_the_image_byte_for_byte() {
    let first = image();
    let base_layer = manifest_layers(&first, "0.4.0")[0].clone();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base.tar.gz");
    std::fs::copy(
        first
            .join("blobs/sha256")
            .join(base_layer.trim_start_matches("sha256:")),
        &base,
    )
    .unwrap();
    let out = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci"))
        .arg("--base")
        .arg(&base));
    assert!(out.status.success());
    assert_eq!(
        manifest_layers(&tmp.path().join("oci"), "0.4.0")[0],
        base_layer,
        "the tarball is the first layer, unchanged"
    );
}

#[test]
fn base_layout_layers_go_into_the_image_byte_for_byte() {
    let first = image();
    let base_layers = manifest_layers(&first, "0.4.0");
    let tmp = tempfile::tempdir().unwrap();
    let out = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci"))
        .arg("--base")
        .arg(format!("oci:{}:0.4.0", first.display())));
    assert!(out.status.success());
    let layers = manifest_layers(&tmp.path().join("oci"), "0.4.0");
    assert_eq!(
        layers[..base_layers.len()],
        base_layers[..],
        "every base layer kept as it was"
    );
    assert_eq!(layers.len(), base_layers.len() + 3);
    // The manifest names the base by its digest (a layout's path is no
    // reference: no name); a tarball base is named by nothing.
    let raw = |layout: &std::path::Path| -> serde_json::Value {
        let out = run(Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .arg(format!("oci:{}:0.4.0", layout.display())));
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let manifest = raw(&tmp.path().join("oci"));
    let annotations = manifest["annotations"].as_object().unwrap();
    assert_eq!(
        annotations["org.opencontainers.image.base.digest"],
        image_digest()
    );
    assert!(!annotations.contains_key("org.opencontainers.image.base.name"));
    assert!(
        raw(&first)["annotations"].is_null(),
        "a built base names nothing"
    );
}

#[test]
fn asked_for_user_namespaces_without_them_the_error_says_what_to_enable() {
    // A user namespace of our own in which no further one may be created:
    // the host's settings stay untouched. (Not asked for, the build would
    // go on under proot: tests/jobcontainer.rs.)
    let tmp = tempfile::tempdir().unwrap();
    let script = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && exec {} milborne==0.4.0 --isolation userns --index-url {} --cache-dir {} --output {}",
        bin().display(),
        index(),
        tmp.path().join("cache").display(),
        tmp.path().join("oci").display()
    );
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("user namespace") && err.contains("max_user_namespaces"),
        "{err}"
    );
    assert!(!tmp.path().join("oci").exists());
}

#[test]
fn result_file_names_the_index_digest_and_a_no_change_rebuild_is_all_cached() {
    let _ = image();
    let tmp = tempfile::tempdir().unwrap();
    let result = tmp.path().join("result.json");
    // The second of two identical builds is the no-change rebuild.
    for _ in 0..2 {
        let out = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci"))
            .arg("--result-file")
            .arg(&result));
        assert!(out.status.success());
    }
    let doc: serde_json::Value = serde_json::from_str(&read(&result)).unwrap();
    let index: serde_json::Value =
        serde_json::from_str(&read(&tmp.path().join("oci/index.json"))).unwrap();
    assert_eq!(doc["digest"], index["manifests"][0]["digest"]);
    assert_eq!(doc["platform"]["os"], "linux");
    assert!(doc["push"].is_null());
    let layers = doc["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    assert!(
        layers.iter().all(|l| l["build"] == "cached"),
        "a no-change rebuild reads keys, not trees: {layers:?}"
    );
    assert!(layers
        .iter()
        .all(|l| l["digest"].as_str().unwrap().starts_with("sha256:")
            && l["size"].as_u64().unwrap() > 0));
}

#[test]
fn archives_are_read_by_skopeo() {
    let _ = image();
    let tmp = tempfile::tempdir().unwrap();
    let oci_archive = tmp.path().join("image.oci.tar");
    let docker_archive = tmp.path().join("image.docker.tar");
    let out = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci"))
        .arg("--archive")
        .arg(format!("oci-archive:{}", oci_archive.display()))
        .arg("--archive")
        .arg(format!("docker-archive:{}", docker_archive.display())));
    assert!(out.status.success());
    let built = digest_of(&out);
    let inspect = |r: String| {
        let out = run(Command::new("skopeo").arg("inspect").arg(r));
        assert!(out.status.success());
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let oci = inspect(format!("oci-archive:{}", oci_archive.display()));
    assert_eq!(
        oci["Digest"].as_str().unwrap(),
        built,
        "the oci-archive holds the built manifest"
    );
    let docker = inspect(format!("docker-archive:{}", docker_archive.display()));
    assert_eq!(docker["Layers"].as_array().unwrap().len(), 4);
    for (src, name) in [
        (format!("oci-archive:{}", oci_archive.display()), "a"),
        (format!("docker-archive:{}", docker_archive.display()), "b"),
    ] {
        let out = run(Command::new("skopeo")
            .arg("copy")
            .arg(src)
            .arg(format!("oci:{}:x", tmp.path().join(name).display())));
        assert!(
            out.status.success(),
            "skopeo copy reads every blob with its digest checked"
        );
    }
    let listing = run(Command::new("tar").arg("-tf").arg(&docker_archive));
    assert!(String::from_utf8_lossy(&listing.stdout).contains("manifest.json"));
    let manifest = run(Command::new("tar")
        .arg("-xOf")
        .arg(&docker_archive)
        .arg("manifest.json"));
    let m: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    assert_eq!(
        m[0]["RepoTags"][0], "milborne:0.4.0",
        "docker load will tag it"
    );
}

#[test]
fn bad_archive_specs_exit_2() {
    let out = assemble()
        .args(["milborne==0.4.0", "--archive", "zip:x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oci-archive:FILE or docker-archive:FILE")
    );
}

#[test]
fn json_mode_streams_one_event_a_line_on_stderr() {
    let _ = image();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci")).arg("--json"));
    assert!(out.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    assert!(events.iter().any(|e| e["event"] == "step"));
    let last = events.last().unwrap();
    assert_eq!(last["event"], "result");
    assert!(last["result"].as_str().unwrap().ends_with(&digest_of(&out)));
    let bad = assemble().args(["--json", "milborne>=1"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let e: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&bad.stderr).trim()).unwrap();
    assert_eq!(
        (e["event"].as_str(), e["exit_code"].as_i64()),
        (Some("error"), Some(2))
    );
}

/// Regression: --verbose printed pip's output with eprintln!, so under
/// --json stderr was no longer one JSON object a line.
#[test]
fn verbose_output_under_json_comes_as_json_events() {
    let _ = image();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci")).args([
        "--json",
        "--verbose",
        "--rebuild",
    ]));
    assert!(out.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let lines: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "output").collect();
    assert!(
        lines.iter().any(|e| e["source"]
            .as_str()
            .unwrap_or("")
            .starts_with("uv build (index")
            && e["line"].as_str().unwrap_or("").contains("milborne")),
        "uv's lines come as output events: {lines:?}"
    );
    assert_eq!(events.last().unwrap()["event"], "result");
}

#[test]
fn zstd_layers_are_deterministic_read_by_skopeo_and_run() {
    let _ = image();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("oci");
    let first = run(build_cmd("milborne==0.4.0", &layout).args(["--compression", "zstd"]));
    assert!(first.status.success());
    let again = run(
        build_cmd("milborne==0.4.0", &tmp.path().join("again")).args([
            "--compression",
            "zstd",
            "--rebuild",
        ]),
    );
    assert!(again.status.success());
    assert_eq!(
        digest_of(&first),
        digest_of(&again),
        "zstd output does not depend on timing"
    );
    assert_ne!(digest_of(&first), image_digest());
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:0.4.0", layout.display())));
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types[1..],
        ["application/vnd.oci.image.layer.v1.tar+zstd"; 3],
        "the layers assemble builds are zstd; the base keeps gzip"
    );
    let copy = run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:0.4.0", layout.display()))
        .arg(format!("oci:{}:x", tmp.path().join("copy").display())));
    assert!(copy.status.success());
    let out = run_in(
        &layout,
        &[
            "python",
            "-c",
            "import milborne._speedups as s; print(s.checksum(b'milborne'))",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1122270825");
}

#[test]
fn an_output_that_cannot_take_the_image_is_refused_before_anything_is_written() {
    // Regression: an --output whose index.json is not an OCI index failed with
    // exit 2 only after the blobs and oci-layout were written into it, and an
    // --output that is a regular file failed with exit 1.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("index.json"), r#"{"hello": "not an index"}"#).unwrap();
    std::fs::write(out.join("notes.txt"), "must survive").unwrap();
    let done = build_cmd("milborne==0.4.0", &out).output().unwrap();
    assert_eq!(done.status.code(), Some(2));
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(err.contains("index.json is not an OCI index"), "{err}");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["index.json", "notes.txt"], "nothing was written");
    assert!(
        !err.contains("compile"),
        "refused before any build step: {err}"
    );

    let file = tmp.path().join("file.txt");
    std::fs::write(&file, "must survive").unwrap();
    let done = build_cmd("milborne==0.4.0", &file).output().unwrap();
    assert_eq!(done.status.code(), Some(2));
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(err.contains("it is a file, not a directory"), "{err}");
    assert_eq!(read(&file), "must survive");
}

#[test]
fn a_truncated_or_corrupt_wheel_exits_2_before_the_build() {
    // Regression: a damaged .whl requirement failed inside pip with exit 1.
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(data().join("index/six-1.16.0-py2.py3-none-any.whl")).unwrap();
    let truncated = tmp.path().join("t/six-1.16.0-py2.py3-none-any.whl");
    std::fs::create_dir_all(truncated.parent().unwrap()).unwrap();
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    // One byte flipped in the middle of the first member's compressed data.
    let mut bytes = good.clone();
    let u16_at = |i: usize| u16::from_le_bytes([good[i], good[i + 1]]) as usize;
    let size = u32::from_le_bytes([good[18], good[19], good[20], good[21]]) as usize;
    let start = 30 + u16_at(26) + u16_at(28);
    bytes[start + size / 2] ^= 0x55;
    let corrupt = tmp.path().join("c/six-1.16.0-py2.py3-none-any.whl");
    std::fs::create_dir_all(corrupt.parent().unwrap()).unwrap();
    std::fs::write(&corrupt, &bytes).unwrap();
    for wheel in [&truncated, &corrupt] {
        let out = build_cmd(wheel, &tmp.path().join("oci")).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", wheel.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a usable wheel"), "{err}");
        assert!(!tmp.path().join("oci").exists());
    }
}

#[test]
fn a_source_date_epoch_past_2107_is_refused_up_front() {
    // Regression: SOURCE_DATE_EPOCH past what zip timestamps hold failed
    // inside pip instead of being refused.
    let tmp = tempfile::tempdir().unwrap();
    let out = build_cmd("milborne==0.4.0", &tmp.path().join("oci"))
        .env("SOURCE_DATE_EPOCH", "4354819200")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2108-01-01T00:00:00Z") && err.contains("zip timestamps"),
        "{err}"
    );
    assert!(!err.contains("compile"), "refused before any step: {err}");
}

/// A given base that cannot carry the image (musl, or without the runtime
/// programs) exits 2 before anything is resolved or compiled, saying what
/// is missing and what to pass instead.
#[test]
fn a_base_that_cannot_carry_the_image_exits_2_saying_why() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], &str); 2] = [
        (
            "alpine",
            &[
                "lib/ld-musl-x86_64.so.1",
                "etc/alpine-release",
                "usr/bin/python3.12",
            ],
            "the base is built on musl",
        ),
        (
            "bare",
            &[
                "usr/bin/python3.11",
                "usr/bin/apt-get",
                "lib64/ld-linux-x86-64.so.2",
            ],
            "the base lacks what the image runs: nginx, supervisord",
        ),
    ];
    for (name, files, said) in cases {
        let files: Vec<(&str, String)> = files.iter().map(|f| (*f, String::new())).collect();
        let tarball = tarball_of(tmp.path(), name, &files);
        let output = tmp.path().join(format!("oci-{name}"));
        let out = build_cmd("milborne==0.4.0", &output)
            .arg("--base")
            .arg(&tarball)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(said), "{name}: {err}");
        assert!(err.contains("leave --base unset"), "{name}: {err}");
        assert!(!err.contains("resolve:"), "{name}: nothing resolved: {err}");
        assert!(
            !err.contains("compiler rootfs"),
            "{name}: refused before the compiler is fetched: {err}"
        );
        assert!(!output.join("index.json").exists());
    }
}

/// A given base image's environment and labels are kept under the
/// image's own: its variables stay, its PATH directories follow the
/// venv's, its labels stay where ours do not clash.
#[test]
fn a_given_base_keeps_its_environment_and_labels_under_the_images() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let copy = run(Command::new("cp").arg("-a").arg(image()).arg(&base));
    assert!(copy.status.success());
    let config = run(Command::new("umoci")
        .arg("config")
        .arg("--image")
        .arg(format!("{}:0.4.0", base.display()))
        .args(["--tag", "team"])
        .args(["--config.env", "TEAM_SETTING=kept"])
        .args(["--config.env", "PATH=/opt/team/bin:/usr/bin:/bin"])
        .args(["--config.label", "team.owner=blue-team"])
        .args(["--config.label", "org.opencontainers.image.title=team-base"]));
    assert!(
        config.status.success(),
        "{}",
        String::from_utf8_lossy(&config.stderr)
    );
    let out = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci"))
        .arg("--base")
        .arg(format!("oci:{}:team", base.display())));
    assert!(out.status.success());
    let info = inspect(&tmp.path().join("oci"), "0.4.0");
    let env: Vec<&str> = info["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"TEAM_SETTING=kept"), "{env:?}");
    let path = env.iter().find(|e| e.starts_with("PATH=")).unwrap();
    assert!(
        path.starts_with("PATH=/home/blue/app/bin:") && path.ends_with(":/opt/team/bin"),
        "{path}"
    );
    assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
    assert_eq!(info["Labels"]["team.owner"], "blue-team");
    assert_eq!(
        info["Labels"]["org.opencontainers.image.title"], "milborne",
        "the image's own label wins"
    );
}

/// A Python no Debian release of layers/releases ships, or a release
/// assemble does not build from, exits 2 before any work, listing those on
/// offer.
#[test]
fn a_python_or_a_release_not_on_offer_exits_2_listing_those_that_are() {
    let tmp = tempfile::tempdir().unwrap();
    let out = build_cmd("milborne==0.4.0", &tmp.path().join("oci"))
        .args(["--python", "3.12"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no Debian release assemble builds from ships Python 3.12")
            && err.contains("bookworm (Python 3.11), trixie (Python 3.13)"),
        "{err}"
    );
    let config = tmp.path().join("assemble.toml");
    std::fs::write(&config, "debian = \"sid\"\n").unwrap();
    let out = build_cmd("milborne==0.4.0", &tmp.path().join("oci"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("names Debian release \"sid\""), "{err}");
    std::fs::write(&config, "debian = \"bookworm\"\npython = \"3.13\"\n").unwrap();
    let out = build_cmd("milborne==0.4.0", &tmp.path().join("oci"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Debian bookworm ships Python 3.11, not 3.13"),
        "{err}"
    );
    assert!(!tmp.path().join("oci").exists());
}

/// Root without CAP_MKNOD cannot make a chroot copy's /dev: chroot is
/// refused when asked for (exit 2, saying why), not tried and failed.
#[test]
fn chroot_without_cap_mknod_is_refused_saying_why() {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED chroot_without_cap_mknod_is_refused_saying_why: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set", "-mknod", "--inh-caps", "-all", "--"])
        .arg(bin())
        .arg("milborne==0.4.0")
        .args([
            "--isolation",
            "chroot",
            "--index-url",
            "http://127.0.0.1:1/simple",
        ])
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .arg("--output")
        .arg(tmp.path().join("oci"));
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot make device nodes"), "{err}");
}

/// `--compiler`: a given compiler that builds for the base compiles the
/// project's C extension, and a second build reuses it and its wheels;
/// one without the base's Python, on a newer glibc or on musl exits 2
/// before anything is resolved or compiled, naming what differs.
#[test]
fn a_given_compiler_compiles_and_one_that_cannot_build_for_the_base_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    // The compiler built from layers/, as a tarball a team would give.
    let out = run(assemble().arg("base").arg("--cache-dir").arg(cache()));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let tree = stdout
        .lines()
        .find_map(|l| l.strip_prefix("compiler "))
        .unwrap();
    let compiler = tmp.path().join("compiler.tar");
    tar_dir(std::path::Path::new(tree), &compiler);
    for round in ["first", "second"] {
        let output = tmp.path().join(format!("oci-{round}"));
        let out = run(build_cmd("milborne==0.4.0", &output)
            .arg("--compiler")
            .arg(&compiler));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{round}: {err}");
        assert!(output.join("index.json").exists());
        // The given compiler, not the built one (its tarball named, unpacked
        // once); the project's C extension compiled there, then cached.
        let line = err
            .lines()
            .find(|l| l.contains("compiler rootfs:"))
            .unwrap_or_default();
        assert!(line.contains("compiler.tar"), "{round}: {err}");
        if round == "first" {
            assert!(err.contains("compiling 1 (milborne 0.4.0)"), "{err}");
        } else {
            assert!(
                line.contains("cached") && err.contains("compile: all"),
                "{err}"
            );
        }
    }

    // Compilers that cannot build for the bookworm base (Python 3.11, glibc 2.36).
    let banner =
        |v: &str| format!("GNU C Library (Debian GLIBC {v}-1) stable release version {v}.");
    // (name, its files and their contents, what the refusal says)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: [Case; 3] = [
        (
            "python",
            vec![
                ("usr/bin/python3.13", String::new()),
                ("lib64/ld-linux-x86-64.so.2", String::new()),
                ("usr/lib/x86_64-linux-gnu/libc.so.6", banner("2.36")),
            ],
            "has no /usr/bin/python3.11, the base's interpreter (it has: /usr/bin/python3.13)",
        ),
        (
            "glibc",
            vec![
                ("usr/bin/python3.11", String::new()),
                ("lib64/ld-linux-x86-64.so.2", String::new()),
                ("usr/lib/x86_64-linux-gnu/libc.so.6", banner("2.99")),
            ],
            "is built on glibc 2.99, the base on glibc 2.36",
        ),
        (
            "musl",
            vec![
                ("usr/bin/python3.11", String::new()),
                ("lib/ld-musl-x86_64.so.1", String::new()),
            ],
            "is built on musl (/lib/ld-musl-x86_64.so.1), the base on glibc 2.36",
        ),
    ];
    for (name, files, said) in cases {
        let tarball = tarball_of(tmp.path(), name, &files);
        let output = tmp.path().join(format!("oci-{name}"));
        let out = build_cmd("milborne==0.4.0", &output)
            .arg("--compiler")
            .arg(&tarball)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(said), "{name}: {err}");
        assert!(
            err.contains(&tarball.display().to_string()),
            "{name}: {err}"
        );
        assert!(!err.contains("resolve:"), "{name}: nothing resolved: {err}");
        assert!(!output.join("index.json").exists());
    }
}

/// A base with apt and its sources (a team's Debian image with the runtime
/// packages and user blue, made here by mmdebstrap's apt variant, the way
/// `debian:bookworm` is) makes its own compiler: the base plus the build
/// packages, installed by its apt rootless; the project's C extension is
/// compiled there and imports in the image; a second build reuses the
/// compiler and the wheels (the key's dependence on the base's digest and
/// the packages is rootfs::derived's unit test).
/// A base with apt and its sources (here `debian:bookworm` plus Python
/// and uWSGI, without nginx, supervisor, the user blue or Python's
/// headers) gets what the image runs from its own apt, as one layer over
/// its own, and makes its own compiler with it: both once per base; the
/// C extension compiled there imports in the image, which serves.
#[test]
fn a_base_with_apt_completes_itself_and_makes_its_own_compiler_once() {
    let tmp = tempfile::tempdir().unwrap();
    let base = plain_base();
    for round in ["first", "second"] {
        let output = tmp.path().join(format!("oci-{round}"));
        let out = run(build_cmd("milborne==0.4.0", &output)
            .arg("--base")
            .arg(&base));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{round}: {err}");
        assert!(!err.contains("warning"), "{err}");
        let completed = err
            .lines()
            .find(|l| l.contains("base rootfs:") && l.contains("blue"))
            .unwrap_or_default();
        assert!(
            completed.contains("nginx-light supervisor and user blue"),
            "{round}: {err}"
        );
        // The base's one layer, the completion's, then the image's own.
        let layers = manifest_layers(&output, "0.4.0");
        assert_eq!(layers.len(), 5, "{layers:?}");
        let line = err
            .lines()
            .find(|l| l.contains("compiler rootfs:"))
            .unwrap_or_default();
        assert!(line.contains("made from the base"), "{err}");
        if round == "first" {
            // Made now (or by an earlier run of this test on this cache).
            assert!(
                line.contains("cached")
                    || line.contains("build-essential python3-dev python3-pip python3.11-dev"),
                "{err}"
            );
            assert!(err.contains("compiling 1 (milborne 0.4.0)"), "{err}");
            assert!(
                !err.contains("mmdebstrap"),
                "no compiler built from layers/: {err}"
            );
        } else {
            assert!(completed.contains("cached"), "{err}");
            assert!(
                line.contains("cached") && line.contains("made from the base"),
                "{err}"
            );
            assert!(err.contains("compile: all"), "{err}");
        }
    }
    let output = tmp.path().join("oci-second");
    let out = run_in(
        &output,
        &[
            "python",
            "-c",
            "import milborne._speedups as s; print(s.checksum(b'milborne'))",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1122270825");
    // The user as useradd makes it (its home from /etc/skel).
    let out = run_in(&output, &["sh", "-c", "id; ls -a /home/blue"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("uid=1000(blue) gid=33(www-data)") && said.contains(".bashrc"),
        "{said}"
    );
    let _port = lock("port-8080");
    let _run = serve_www(&output);
    let body =
        wait_http(8080, "/", std::time::Duration::from_secs(120)).expect("nginx answers on 8080");
    assert!(
        body.contains("service=www") && body.contains("uid=1000"),
        "{body}"
    );
}

/// A base whose only interpreter is under /usr/local (as the `python`
/// images have it), with its own PATH and a variable: the interpreter is
/// found on that PATH and the venv made with it, the compiler is made from
/// the base without Debian's Python packages, uWSGI is compiled from the
/// index into the venv, and the image serves with it, keeping both
/// variables.
#[test]
fn a_base_whose_python_is_under_usr_local_builds_and_serves_with_the_venvs_uwsgi() {
    let tmp = tempfile::tempdir().unwrap();
    let base = local_python_base();
    let output = tmp.path().join("oci");
    // Where no compiler can be made from the base, none built from
    // layers/ has its interpreter: exit 2 before any is fetched or built.
    let out = run(build_cmd("milborne==0.4.0", &output)
        .env("ASSEMBLE_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
        .arg("--base")
        .arg(format!("oci:{}:base", base.display())));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("/usr/local/bin/python3.11 is not Debian's")
            && err.contains("ASSEMBLE_DEBIAN_MIRROR is set")
            && err.contains("--compiler"),
        "{err}"
    );
    assert!(!err.contains("compiler rootfs"), "{err}");
    let out = run(build_cmd("milborne==0.4.0", &output)
        .arg("--base")
        .arg(format!("oci:{}:base", base.display())));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("warning"), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("compiler rootfs:"))
        .unwrap_or_default();
    assert!(line.contains("made from the base"), "{err}");
    assert!(
        !line.contains("python3-dev") && !line.contains("python3.11-dev"),
        "no Debian Python headers for python.org's interpreter: {line}"
    );
    let info = inspect(&output, "0.4.0");
    let env: Vec<&str> = info["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"TEAM_SETTING=kept"), "{env:?}");
    let path = env.iter().find(|e| e.starts_with("PATH=")).unwrap();
    assert!(
        path.starts_with("PATH=/home/blue/app/bin:") && path.contains(":/opt/team/bin"),
        "{path}"
    );
    let out = run_in(
        &output,
        &[
            "sh",
            "-c",
            "cat /home/blue/app/pyvenv.cfg; head -1 /home/blue/bin/entrypoint; \
             ls /home/blue/app/bin/uwsgi /usr/bin/uwsgi 2>&1; \
             ls /home/blue/app/lib/python3.11/site-packages | grep -i uwsgi",
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("home = /usr/local/bin"), "{said}");
    assert!(said.contains("#!/usr/local/bin/python3.11"), "{said}");
    assert!(said.contains("/home/blue/app/bin/uwsgi\n"), "{said}");
    assert!(said.contains("'/usr/bin/uwsgi': No such file"), "{said}");
    assert!(said.contains("uWSGI-2.0.31.dist-info"), "{said}");
    let _port = lock("port-8080");
    let _run = serve_www(&output);
    let body =
        wait_http(8080, "/", std::time::Duration::from_secs(120)).expect("nginx answers on 8080");
    assert!(body.contains("service=www"), "{body}");
    assert!(body.contains("checksum=1122270825"), "{body}");
    let (status, page) = http_get(8081, "/").expect("supervisord answers on 8081");
    assert_eq!(status, 200);
    assert!(page.contains("uwsgi"), "{page}");
}
