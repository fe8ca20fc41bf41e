//! `assemble clean` and `assemble purge` remove what assemble wrote and
//! nothing else; the files marked "must survive" stand for a user's data.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assemble::digest::Digest;
use support::*;

/// A small but real OCI layout (one image, tagged `1.0`) written with the
/// library's own layout code; returns its blob bytes and manifest digest.
fn layout(dir: &Path) -> (u64, Digest) {
    let layout = assemble::image::layout::Layout::create(dir).unwrap();
    let layer = layout.blobs().put_bytes(&[7u8; 3000]).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = layout.blobs().put_bytes(config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.to_string(), "size": 3000}],
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = layout.blobs().put_bytes(&bytes).unwrap();
    layout.tag(&digest, bytes.len() as u64, "1.0").unwrap();
    (3000 + config.len() as u64 + bytes.len() as u64, digest)
}

fn keep(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, "must survive").unwrap();
    path.to_path_buf()
}

fn survived(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t == "must survive")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn clean(output: &Path, home: &Path) -> Command {
    let mut c = assemble();
    c.env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .arg("clean")
        .arg("--output")
        .arg(output);
    c
}

#[test]
fn clean_removes_the_layout_and_keeps_a_users_file_beside_it() {
    // Regression: `clean --output DIR` removed DIR whole, a user's file included.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    layout(&out.join("oci"));
    let notes = keep(&out.join("notes.txt"));
    keep(&out.join("oci/README"));
    std::fs::write(out.join(".tmp-a1B2c3"), "partial").unwrap();
    let done = run(clean(&out, tmp.path()));
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(survived(&notes) && survived(&out.join("oci/README")));
    for gone in [
        "oci/oci-layout",
        "oci/index.json",
        "oci/blobs",
        ".tmp-a1B2c3",
    ] {
        assert!(!out.join(gone).exists(), "{gone} is assemble's and goes");
    }
    let text = stderr(&done);
    assert!(
        text.contains("kept") && text.contains("notes.txt"),
        "{text}"
    );
    assert!(text.contains("kept") && text.contains("README"), "{text}");
}

/// Bytes of a layout's files that clean removes: blobs, oci-layout, index.json.
fn layout_bytes(dir: &Path, blobs: u64) -> u64 {
    blobs
        + std::fs::metadata(dir.join("oci-layout")).unwrap().len()
        + std::fs::metadata(dir.join("index.json")).unwrap().len()
}

#[test]
fn clean_of_a_build_dir_holding_only_layouts_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("build");
    let (blobs, _) = layout(&out.join("oci"));
    let bytes = layout_bytes(&out.join("oci"), blobs);
    let done = run(clean(&out, tmp.path()));
    assert!(done.status.success());
    assert!(!out.exists(), "an empty output directory goes");
    let text = stderr(&done);
    assert!(
        text.contains(&format!("freed {}", assemble::housekeeping::human(bytes))),
        "{text}"
    );
}

#[test]
fn plain_clean_leaves_another_tools_build_directory() {
    // Regression: `assemble clean` removed ./build holding only setuptools' output.
    let tmp = tempfile::tempdir().unwrap();
    let ext = keep(&tmp.path().join("build/lib.linux-x86_64/ext.so"));
    let done = run(assemble()
        .current_dir(tmp.path())
        .env("HOME", tmp.path())
        .arg("clean"));
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(survived(&ext));
    assert!(stderr(&done).contains("freed 0 B"), "{}", stderr(&done));
}

#[test]
fn clean_refuses_the_home_directory() {
    // Regression: `clean --output ~` removed the home directory, SSH keys included.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let key = keep(&home.join(".ssh/id_ed25519"));
    layout(&home.join("oci"));
    let done = clean(&home, &home).output().unwrap();
    assert_eq!(done.status.code(), Some(2), "{}", stderr(&done));
    assert!(
        stderr(&done).contains("home directory"),
        "{}",
        stderr(&done)
    );
    assert!(survived(&key));
    assert!(
        home.join("oci/index.json").is_file(),
        "nothing at all is removed"
    );
}

/// Runs the binary in a sandbox whose whole filesystem is read-only, so
/// that even a clean that tried to delete `/` could not.
fn sandboxed(shell: &str) -> Output {
    need("bwrap");
    let tmp_out = tempfile::tempdir().unwrap();
    Command::new("bwrap")
        .args(["--unshare-user", "--ro-bind", "/", "/", "--dev", "/dev"])
        .args(["--proc", "/proc", "--tmpfs", "/tmp", "--die-with-parent"])
        // The checkout may live under /tmp (CI clones there): bind the
        // binary back over the private /tmp, read-only like the rest.
        .arg("--ro-bind")
        .arg(bin())
        .arg(bin())
        .arg("--setenv")
        .arg("BIN")
        .arg(bin())
        .args(["--", "sh", "-c", shell])
        .current_dir(tmp_out.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn clean_and_purge_refuse_the_root_directory() {
    // Regression: `clean --output /` started deleting the filesystem.
    let out = sandboxed(
        "HOME=/tmp \"$BIN\" clean --output /; echo rc=$?; \
         ASSEMBLE_CACHE_DIR=/ HOME=/tmp \"$BIN\" purge --output /tmp/none; echo rc=$?",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let err = stderr(&out);
    assert_eq!(
        text.lines().filter(|l| *l == "rc=2").count(),
        2,
        "{text}\n{err}"
    );
    assert_eq!(err.matches("it is the root directory").count(), 2, "{err}");
}

#[test]
fn clean_refuses_a_mount_point() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    need("bwrap");
    // A tmpfs mounted at mnt in a mount namespace of the test's own; the
    // marker is written inside, then clean is pointed at the mount.
    let out = Command::new("bwrap")
        .args(["--unshare-user", "--ro-bind", "/", "/", "--dev", "/dev"])
        .args(["--proc", "/proc", "--die-with-parent", "--tmpfs"])
        .arg(&mnt)
        .arg("--setenv")
        .arg("BIN")
        .arg(bin())
        .arg("--setenv")
        .arg("MNT")
        .arg(&mnt)
        .args([
            "--",
            "sh",
            "-c",
            "echo 'must survive' > \"$MNT/marker\"; HOME=/tmp \"$BIN\" clean --output \"$MNT\"; \
             echo rc=$?; cat \"$MNT/marker\"",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rc=2"), "{text}\n{}", stderr(&out));
    assert!(text.contains("must survive"), "{text}");
    assert!(stderr(&out).contains("mount point"), "{}", stderr(&out));
}

#[test]
fn clean_of_a_symlinked_output_reports_and_removes_the_targets_layout() {
    // Regression: clean of a symlinked output reported the target's size and
    // removed only the link.
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    let (blobs, _) = layout(&real);
    let bytes = layout_bytes(&real, blobs);
    let notes = keep(&real.join("notes.txt"));
    let link = tmp.path().join("build");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let done = run(clean(&link, tmp.path()));
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(link.is_symlink(), "the link is the user's and stays");
    assert!(!real.join("index.json").exists() && !real.join("blobs").exists());
    assert!(survived(&notes));
    let text = stderr(&done);
    let real = std::fs::canonicalize(&real).unwrap();
    assert!(
        text.contains(&format!("OCI layout {}", real.display())),
        "the report names what was really removed: {text}"
    );
    assert!(
        text.contains(&format!("freed {}", assemble::housekeeping::human(bytes))),
        "the report counts what was really removed: {text}"
    );
}

#[test]
fn clean_removes_assembles_archives_and_keeps_other_tars() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (_, digest) = layout(&src);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let image = assemble::image::layout::Layout::open(&src)
        .unwrap()
        .image_by_digest(&digest)
        .unwrap();
    for (kind, name) in [("oci-archive", "a.tar"), ("docker-archive", "b.tar")] {
        let spec = assemble::image::archive::ArchiveSpec::parse(&format!(
            "{kind}:{}",
            out.join(name).display()
        ))
        .unwrap();
        assemble::image::archive::write(&spec, &image, "1.0", "x:1.0", 0).unwrap();
    }
    // A tar of another tool, even one holding a layout, is not assemble's.
    let other = out.join("other.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&other)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let done = run(clean(&out, tmp.path()));
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(!out.join("a.tar").exists() && !out.join("b.tar").exists());
    assert!(other.is_file(), "another tool's tar stays");
}

#[test]
fn dry_run_lists_what_would_go_and_removes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("build");
    layout(&out.join("oci"));
    let cache = tmp.path().join("cache");
    assemble::cache::Cache::open(&cache).unwrap();
    for cmd in ["clean", "purge"] {
        let done = run(assemble()
            .env("HOME", tmp.path())
            .arg(cmd)
            .arg("--dry-run")
            .arg("--output")
            .arg(&out)
            .arg("--cache-dir")
            .arg(&cache));
        assert!(done.status.success(), "{}", stderr(&done));
        let text = stderr(&done);
        assert!(text.contains("would remove OCI layout"), "{text}");
        assert!(text.contains("would free"), "{text}");
        if cmd == "purge" {
            assert!(text.contains("would remove cache"), "{text}");
        }
        assert!(out.join("oci/index.json").is_file() && cache.join("CACHEDIR.TAG").is_file());
    }
}

#[test]
fn purge_removes_only_a_cache_carrying_assembles_marker() {
    // Regression: purge removed whatever ASSEMBLE_CACHE_DIR named, whole.
    let tmp = tempfile::tempdir().unwrap();
    let not_cache = tmp.path().join("data");
    let precious = keep(&not_cache.join("precious.db"));
    let done = assemble()
        .env("HOME", tmp.path())
        .env("ASSEMBLE_CACHE_DIR", &not_cache)
        .arg("purge")
        .arg("--output")
        .arg(tmp.path().join("none"))
        .output()
        .unwrap();
    assert_eq!(done.status.code(), Some(2), "{}", stderr(&done));
    assert!(
        stderr(&done).contains(&not_cache.display().to_string()),
        "{}",
        stderr(&done)
    );
    assert!(survived(&precious));

    let cache = tmp.path().join("cache");
    let c = assemble::cache::Cache::open(&cache).unwrap();
    c.blobs().put_bytes(&[1u8; 2048]).unwrap();
    let out = tmp.path().join("build");
    let mine = keep(&out.join("mine.txt"));
    let done = run(assemble()
        .env("HOME", tmp.path())
        .env("ASSEMBLE_CACHE_DIR", &cache)
        .arg("purge")
        .arg("--output")
        .arg(&out));
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(!cache.exists(), "a marked cache goes");
    assert!(survived(&mine), "the output's own files stay");
    let freed = assemble::housekeeping::human(2048 + assemble::cache::MARKER_TEXT.len() as u64);
    assert!(
        stderr(&done).contains(&format!("freed {freed}")),
        "{}",
        stderr(&done)
    );
}

#[test]
fn an_empty_assemble_cache_dir_exits_2_and_the_default_cache_survives() {
    // Regression: ASSEMBLE_CACHE_DIR= was read as unset, so a CI variable
    // that lost its value purged the real cache.
    let tmp = tempfile::tempdir().unwrap();
    let default = tmp.path().join("xdg/assemble");
    assemble::cache::Cache::open(&default).unwrap();
    let blob = keep(&default.join("blobs/sha256/keepme"));
    let done = assemble()
        .env("HOME", tmp.path())
        .env("XDG_CACHE_HOME", tmp.path().join("xdg"))
        .env("ASSEMBLE_CACHE_DIR", "")
        .arg("purge")
        .arg("--output")
        .arg(tmp.path().join("none"))
        .output()
        .unwrap();
    assert_eq!(done.status.code(), Some(2), "{}", stderr(&done));
    assert!(stderr(&done).contains("ASSEMBLE_CACHE_DIR is set but empty"));
    assert!(survived(&blob));
}

#[test]
fn purge_refuses_the_home_directory_even_with_a_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let key = keep(&home.join(".ssh/id_ed25519"));
    std::fs::write(
        home.join(assemble::cache::MARKER),
        assemble::cache::MARKER_TEXT,
    )
    .unwrap();
    let done = assemble()
        .env("HOME", &home)
        .arg("purge")
        .arg("--cache-dir")
        .arg(&home)
        .arg("--output")
        .arg(tmp.path().join("none"))
        .output()
        .unwrap();
    assert_eq!(done.status.code(), Some(2), "{}", stderr(&done));
    assert!(stderr(&done).contains("home directory"));
    assert!(survived(&key));
}
