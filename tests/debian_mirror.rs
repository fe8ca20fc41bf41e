//! The Debian mirror the tests control (tests/debian-mirror.sh): `assemble
//! base` builds the base and the compiler from it alone, in a network
//! namespace where nothing but its loopback server can be reached, and a
//! bumped package is what apt, looking at the new base, sees next.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::debian_mirror::{mirror_copy, mirror_dir, DebianMirror, LoopbackNet, SUITE};
use support::*;

/// The package the test bumps: in the base, and no other package pins its
/// version, so the bumped one is installable.
const BUMPED: &str = "ca-certificates";

/// The tree `assemble base` printed for `role` (`base PATH`).
fn tree_of(stdout: &str, role: &str) -> PathBuf {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{role} ")))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no {role} tree in the output of assemble base:\n{stdout}"))
}

/// `Date:` of an InRelease, in seconds.
fn release_date(in_release: &str) -> i64 {
    let date = in_release
        .lines()
        .find_map(|l| l.strip_prefix("Date: "))
        .expect("InRelease has a Date");
    let out = run(Command::new("date").arg("-d").arg(date).arg("+%s"));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Asks apt about `package` in the base `tree` against `mirror`: update,
/// policy, and a download that checks the .deb against the signed index.
/// The base has no apt (mmdebstrap's essential variant leaves it out), so
/// this is the host's apt (the same bookworm apt) reading the base's dpkg
/// database as its installed state, with nothing of the host's apt
/// configuration. Returns apt-cache policy's output.
fn apt_policy(net: &LoopbackNet, tree: &Path, mirror: &DebianMirror, package: &str) -> String {
    need("apt-get");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for d in [
        "empty",
        "lists/partial",
        "cache/archives/partial",
        "download",
    ] {
        std::fs::create_dir_all(w.join(d)).unwrap();
    }
    std::fs::write(
        w.join("sources.list"),
        format!(
            "deb [signed-by={}] {} {SUITE} main\n",
            mirror.key().display(),
            mirror.url()
        ),
    )
    .unwrap();
    let (w, status) = (w.display(), tree.join("var/lib/dpkg/status"));
    std::fs::write(
        work.path().join("apt.conf"),
        format!(
            "Dir::Etc::main \"/dev/null\";\n\
             Dir::Etc::parts \"{w}/empty\";\n\
             Dir::Etc::SourceList \"{w}/sources.list\";\n\
             Dir::Etc::SourceParts \"{w}/empty\";\n\
             Dir::Etc::Preferences \"/dev/null\";\n\
             Dir::Etc::PreferencesParts \"{w}/empty\";\n\
             Dir::Etc::Trusted \"/dev/null\";\n\
             Dir::Etc::TrustedParts \"{w}/empty\";\n\
             Dir::State::Lists \"{w}/lists\";\n\
             Dir::State::status \"{}\";\n\
             Dir::Cache \"{w}/cache\";\n\
             Debug::NoLocking \"true\";\n\
             APT::Sandbox::User \"root\";\n",
            status.display()
        ),
    )
    .unwrap();
    let apt = |program: &str, args: &[&str]| {
        let mut c = Command::new(program);
        c.args(args)
            .env("APT_CONFIG", work.path().join("apt.conf"))
            .current_dir(work.path().join("download"));
        let out = run(net.wrap(&c));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{program} {args:?} failed:\n{stderr}");
        // An index apt cannot verify is only a warning in some cases: none allowed.
        assert!(
            !stderr.contains("W:") && !stderr.contains("E:"),
            "{program} {args:?} complained:\n{stderr}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    apt("apt-get", &["-q", "update"]);
    let policy = apt("apt-cache", &["policy", package]);
    apt("apt-get", &["-q", "download", package]);
    let debs = std::fs::read_dir(work.path().join("download"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".deb"))
        .count();
    assert_eq!(debs, 1, "apt-get download fetched the .deb");
    policy
}

#[test]
fn base_and_compiler_build_from_the_local_mirror_alone_and_apt_sees_a_bump() {
    let tmp = tempfile::tempdir_in(shared()).unwrap();
    // A copy: the bump below must not change the run's mirror.
    let dir = mirror_copy(&tmp.path().join("mirror"));
    let net = LoopbackNet::new();
    // Nothing but loopback in the namespace the build runs in.
    let links = run(net.wrap(Command::new("ip").args(["-o", "link", "show"])));
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "only lo: {links}");
    assert!(links.contains(": lo:"), "{links}");

    let mirror = DebianMirror::serve_in(&dir, &net);
    let cache = tmp.path().join("cache");
    let out = run(net.wrap(
        assemble()
            .arg("base")
            .arg("--cache-dir")
            .arg(&cache)
            .env("ASSEMBLE_DEBIAN_MIRROR", mirror.line()),
    ));
    assert!(out.status.success(), "assemble base from the local mirror");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let base = tree_of(&stdout, "base");
    let compiler = tree_of(&stdout, "compiler");
    assert!(base.join("usr/bin/python3").exists(), "python3 in the base");
    assert!(compiler.join("usr/bin/gcc").exists(), "gcc in the compiler");
    // Both builds read the mirror's signed index and fetched their packages from it.
    let requests = mirror.requests();
    let count = |needle: &str| requests.iter().filter(|r| r.contains(needle)).count();
    assert!(
        count(&format!("GET /dists/{SUITE}/InRelease")) >= 2,
        "{requests:?}"
    );
    assert!(count("GET /pool/main/") > 100, "{requests:?}");
    assert!(
        requests.iter().any(|r| r.contains("/pool/main/gcc-12_")),
        "the compiler's gcc came from the mirror: {requests:?}"
    );
    let sources = read(&base.join("etc/apt/sources.list"));
    assert_eq!(sources.trim(), mirror.line(), "the base's sources.list");

    let before = mirror.in_release();
    let (old, new) = mirror.bump(BUMPED);
    assert_eq!(new, format!("{old}+assemble1"));
    let after = mirror.in_release();
    assert_ne!(before, after, "the bump changed InRelease");
    assert!(
        release_date(&after) > release_date(&before),
        "the bumped InRelease is newer"
    );
    let verify = run(Command::new("gpgv")
        .arg("--keyring")
        .arg(mirror.key())
        .arg(dir.join(format!("archive/dists/{SUITE}/InRelease"))));
    assert!(
        verify.status.success(),
        "the bumped InRelease is signed by the mirror's key"
    );

    let policy = apt_policy(&net, &base, &mirror, BUMPED);
    assert!(
        policy.contains(&format!("Installed: {old}")),
        "the base has {BUMPED} {old}:\n{policy}"
    );
    assert!(
        policy.contains(&format!("Candidate: {new}")),
        "apt in the base sees {BUMPED} {new}:\n{policy}"
    );
}

#[test]
fn bump_of_a_package_the_mirror_lacks_exits_2() {
    let tmp = tempfile::tempdir_in(shared()).unwrap();
    let dir = mirror_copy(&tmp.path().join("mirror"));
    let out = run(Command::new("bash")
        .arg(repo().join("tests/debian-mirror.sh"))
        .arg("bump")
        .arg(&dir)
        .arg("no-such-package"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no package no-such-package"));
    // The run's mirror is untouched by a copy's bumps and failures.
    assert!(mirror_dir()
        .join("archive/dists/bookworm/InRelease")
        .exists());
}
