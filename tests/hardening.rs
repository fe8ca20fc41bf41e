//! Hardening: concurrent builds on one cache, secrets kept out of logs,
//! layers and the compile sandbox, and a full filesystem.

mod support;

use std::process::{Command, Stdio};

use support::*;

#[test]
fn two_builds_sharing_one_cache_at_once_both_succeed_with_one_digest() {
    let _ = image();
    let tmp = tempfile::tempdir().unwrap();
    // --rebuild makes both compile and install at the same time, racing for
    // the same cache entries.
    let spawn = |n: &str| {
        build_cmd("milborne==0.4.0", &tmp.path().join(n))
            .arg("--rebuild")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(digest_of(&a), digest_of(&b));
    assert_eq!(digest_of(&a), image_digest());
}

#[test]
fn secrets_reach_no_log_no_layer_and_not_the_compile_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    // A home with registry credentials and an SSH key, as on a CI runner.
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(
        home.join(".docker/config.json"),
        r#"{"auths":{"127.0.0.1:1":{"auth":"c25vb3A6ZG9ja2VyLXNlY3JldA=="}}}"#,
    )
    .unwrap();
    std::fs::write(home.join(".ssh/id_ed25519"), "ssh-secret-key-material").unwrap();
    // A package whose setup.py tries to read them, and records what it saw
    // in a file it ships.
    let project = tmp.path().join("snoop");
    std::fs::create_dir_all(project.join("snoop")).unwrap();
    std::fs::write(project.join("snoop/__init__.py"), "").unwrap();
    std::fs::write(
        project.join("setup.py"),
        format!(
            r#"import os
from setuptools import setup
seen = []
for path in [{docker:?}, {ssh:?}, os.path.expanduser("~/.docker/config.json"), "/root/.docker/config.json"]:
    try:
        seen.append(path + "=" + open(path).read())
    except OSError as e:
        seen.append(path + " unreadable: " + type(e).__name__)
seen.append("HOME=" + os.environ.get("HOME", ""))
seen.append("ENV=" + " ".join(sorted(os.environ)))
os.makedirs("snoop", exist_ok=True)
open("snoop/seen.txt", "w").write("\n".join(seen) + "\n")
setup(name="snoop", version="1.0", packages=["snoop"], package_data={{"snoop": ["seen.txt"]}})
"#,
            docker = home.join(".docker/config.json"),
            ssh = home.join(".ssh/id_ed25519"),
        ),
    )
    .unwrap();
    std::fs::write(project.join("pyproject.toml"), "[build-system]\nrequires = [\"setuptools>=61\", \"wheel\"]\nbuild-backend = \"setuptools.build_meta\"\n").unwrap();
    // Index credentials in the URL: pypiserver ignores them for downloads.
    let index = index().replace("http://", "http://ci-user:index-pa55word@");
    let out = assemble()
        .env("HOME", &home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("ASSEMBLE_LOG", "debug")
        .arg("--verbose")
        .arg(&project)
        .arg("--index-url")
        .arg(&index)
        .arg("--cache-dir")
        .arg(cache())
        .arg("--output")
        .arg(tmp.path().join("oci"))
        .arg("--result-file")
        .arg(tmp.path().join("result.json"))
        .output()
        .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{logs}");
    for secret in [
        "index-pa55word",
        "docker-secret",
        "c25vb3A6ZG9ja2VyLXNlY3JldA",
        "ssh-secret-key-material",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs");
        assert!(
            !read(&tmp.path().join("result.json")).contains(secret),
            "{secret} in the result file"
        );
    }
    // Every layer, uncompressed, and the config: no secret anywhere.
    let blobs = tmp.path().join("oci/blobs/sha256");
    let mut seen_txt = String::new();
    for e in std::fs::read_dir(&blobs).unwrap().flatten() {
        let raw = std::fs::read(e.path()).unwrap();
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let out = Command::new("gzip")
                .arg("-dc")
                .arg(e.path())
                .output()
                .unwrap();
            out.stdout
        } else {
            raw
        };
        let text = String::from_utf8_lossy(&text);
        for secret in [
            "index-pa55word",
            "docker-secret",
            "c25vb3A6ZG9ja2VyLXNlY3JldA",
            "ssh-secret-key-material",
        ] {
            assert!(
                !text.contains(secret),
                "{secret} in blob {:?}",
                e.file_name()
            );
        }
        if let Some(i) = text.find("unreadable: ") {
            seen_txt = text[i.saturating_sub(400)..(i + 400).min(text.len())].to_string();
        }
    }
    assert!(
        seen_txt.contains("unreadable"),
        "setup.py ran in the sandbox and could not read the host's files"
    );
}

#[test]
fn a_full_filesystem_fails_with_exit_1_and_leaves_nothing_that_looks_complete() {
    let _ = image();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    // A 16 MiB tmpfs in a mount namespace of our own: the image needs ~90 MB.
    let script = format!(
        "mount -t tmpfs -o size=16m tmpfs {mnt} && {bin} milborne==0.4.0 --index-url {index} --cache-dir {cache} --output {mnt}/oci; code=$?; ls -a {mnt}/oci {mnt}/oci/blobs/sha256 > {listing} 2>&1; exit $code",
        mnt = mnt.display(),
        bin = bin().display(),
        index = index(),
        cache = cache().display(),
        listing = tmp.path().join("listing").display(),
    );
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("No space left on device") || err.contains("os error 28"),
        "{err}"
    );
    let listing = read(&tmp.path().join("listing"));
    assert!(
        !listing.contains("index.json"),
        "no index.json after a failed write:\n{listing}"
    );
    assert!(
        !listing
            .lines()
            .any(|l| l.starts_with(".blob-") || l.starts_with(".tmp-")),
        "no temporary file left:\n{listing}"
    );
}

#[test]
fn a_wheel_with_a_member_outside_the_venv_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let wheel = tmp.path().join("evil-1.0-py3-none-any.whl");
    let script = "import sys, zipfile
z = zipfile.ZipFile(sys.argv[1], 'w')
z.writestr('evil/__init__.py', '')
z.writestr('evil-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: evil\\nVersion: 1.0\\n')
z.writestr('evil-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')
z.writestr('../../../../tmp/escaped-by-wheel', 'x')
z.writestr('evil-1.0.dist-info/RECORD', '')
z.close()";
    assert!(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&wheel)
        .status()
        .unwrap()
        .success());
    let out = build_cmd(&wheel, &tmp.path().join("oci")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("../../../../tmp/escaped-by-wheel") && err.contains("outside the virtualenv"),
        "{err}"
    );
    assert!(!std::path::Path::new("/tmp/escaped-by-wheel").exists());
    assert!(!tmp.path().join("oci/index.json").exists());
}
