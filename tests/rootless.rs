//! The whole build, mmdebstrap included, as an unprivileged user (uid ≠ 0).
//! As root, the test runs it as a dedicated user made for the purpose;
//! as a normal user it runs it as that user.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use support::*;

const USER: &str = "assemble-rootless";

fn ensure_user() {
    if Command::new("id")
        .arg("-u")
        .arg(USER)
        .output()
        .unwrap()
        .status
        .success()
    {
        return;
    }
    let out = run(Command::new("useradd").args(["--create-home", "--shell", "/bin/bash", USER]));
    assert!(out.status.success(), "useradd {USER}");
}

fn ensure_subids() {
    // mmdebstrap's unshare mode maps a range of subordinate ids (newuidmap).
    for file in ["/etc/subuid", "/etc/subgid"] {
        if !read(std::path::Path::new(file))
            .lines()
            .any(|l| l.starts_with(&format!("{USER}:")))
        {
            let out = run(Command::new("usermod").args([
                "--add-subuids",
                "300000-365535",
                "--add-subgids",
                "300000-365535",
                USER,
            ]));
            assert!(out.status.success(), "usermod --add-subuids for {USER}");
            return;
        }
    }
}

#[test]
fn whole_build_runs_as_an_unprivileged_user() {
    let index = index();
    let tmp = tempfile::Builder::new()
        .prefix("assemble-rootless-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The binary and the project are copied where the user can read them:
    // the checkout may sit under a home the user cannot enter.
    std::fs::copy(bin(), dir.join("assemble")).unwrap();
    assert!(Command::new("cp")
        .arg("-r")
        .arg(repo().join("tests/fixtures/milborne"))
        .arg(dir.join("milborne"))
        .status()
        .unwrap()
        .success());
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    let as_user = |program: &str| -> Command {
        if is_root {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                USER,
                "--regid",
                USER,
                "--init-groups",
                "env",
                "-i",
            ])
            .arg(format!("HOME=/home/{USER}"))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin")
            .arg("SOURCE_DATE_EPOCH=1700000000")
            .arg("PIP_CONFIG_FILE=/dev/null")
            .arg(program);
            c
        } else {
            Command::new(program)
        }
    };
    if is_root {
        ensure_user();
        ensure_subids();
        assert!(Command::new("chown")
            .args(["-R", &format!("{USER}:{USER}")])
            .arg(dir)
            .status()
            .unwrap()
            .success());
    }
    let uid = String::from_utf8(as_user("id").arg("-u").output().unwrap().stdout).unwrap();
    assert_ne!(uid.trim(), "0", "the build runs unprivileged");

    let out = run(as_user(dir.join("assemble").to_str().unwrap())
        .arg(dir.join("milborne"))
        .arg("--index-url")
        .arg(&index)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--output")
        .arg(dir.join("oci")));
    assert!(out.status.success(), "rootless build failed");
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(dir.join("oci/index.json")).unwrap().uid();
    assert_eq!(
        owner.to_string(),
        uid.trim(),
        "output written by the unprivileged user"
    );
    let inspect = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:0.4.0", dir.join("oci").display())));
    assert!(inspect.status.success());
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), digest_of(&out));

    // A base with apt gets what the image runs from it, and makes its own
    // compiler, as that user too: apt as root of a user namespace over the
    // user's subordinate ids, the tree passed in and out as tar streams
    // (the namespace reads none of the user's files).
    let base = dir.join("plain-base.tar");
    std::fs::copy(plain_base(), &base).unwrap();
    let out = run(as_user(dir.join("assemble").to_str().unwrap())
        .arg(dir.join("milborne"))
        .arg("--base")
        .arg(&base)
        .arg("--index-url")
        .arg(&index)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--output")
        .arg(dir.join("oci-derived")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rootless build on a base with apt failed"
    );
    assert!(
        err.contains(
            "base rootfs: completing it with its apt: nginx-light supervisor and user blue"
        ) && err.contains("compiler rootfs: made from the base with its apt")
            && !err.contains("warning"),
        "{err}"
    );
    assert!(err.contains("building the project's wheel"), "{err}");
}
