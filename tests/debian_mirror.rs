//! The Debian mirror the tests control (tests/debian-mirror.sh): `assemble
//! base` builds the base and the compiler from it alone, in a network
//! namespace where nothing but its loopback server can be reached; the same
//! archive state gives the same bytes with an empty cache; a bumped package
//! is what apt, looking at the new base, sees next, and what the next build
//! rebuilds for; an unreachable mirror serves the last known state.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// `assemble base` with `cache`, from `mirror_line`, inside `net`.
fn assemble_base(net: &LoopbackNet, cache: &Path, mirror_line: &str) -> Output {
    let out = run(net.wrap(
        assemble()
            .arg("base")
            .arg("--cache-dir")
            .arg(cache)
            .env("ASSEMBLE_DEBIAN_MIRROR", mirror_line)
            // The user's epoch is the image's: the base never sees it.
            .env("SOURCE_DATE_EPOCH", "1234"),
    ));
    assert!(
        out.status.success(),
        "assemble base from the local mirror:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The cache's record of the `role` rootfs that `assemble base` printed:
/// its layers and its Debian record (`meta.json` beside the tree).
fn meta_of(out: &Output, role: &str) -> serde_json::Value {
    let tree = tree_of(&String::from_utf8_lossy(&out.stdout), role);
    serde_json::from_str(&read(&tree.parent().unwrap().join("meta.json"))).unwrap()
}

/// The digest of the one layer of the `role` rootfs.
fn layer_digest(out: &Output, role: &str) -> String {
    let meta = meta_of(out, role);
    let layers = meta["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{meta}");
    layers[0]["digest"].as_str().unwrap().to_string()
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
fn base_and_compiler_build_from_the_local_mirror_alone_reproducibly_and_rebuild_on_a_bump() {
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
    let out = assemble_base(&net, &cache, &mirror.line());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let base = tree_of(&stdout, "base");
    let compiler = tree_of(&stdout, "compiler");
    assert!(base.join("usr/bin/python3").exists(), "python3 in the base");
    assert!(compiler.join("usr/bin/gcc").exists(), "gcc in the compiler");
    // Both builds read the mirror's signed index and fetched their packages from it.
    let requests = mirror.requests();
    let count =
        |requests: &[String], needle: &str| requests.iter().filter(|r| r.contains(needle)).count();
    let in_release = format!("GET /dists/{SUITE}/InRelease");
    assert!(count(&requests, &in_release) >= 2, "{requests:?}");
    assert!(count(&requests, "GET /pool/main/") > 100, "{requests:?}");
    assert!(
        requests.iter().any(|r| r.contains("/pool/main/gcc-12_")),
        "the compiler's gcc came from the mirror: {requests:?}"
    );
    // Nothing of the host or the mirror in the base (setup.sh normalises it).
    assert_eq!(
        read(&base.join("etc/apt/sources.list")),
        "",
        "the base's sources.list"
    );
    assert_eq!(read(&base.join("etc/hostname")), "localhost\n");

    // The record: the archive state, its newest Date as the epoch (not the
    // user's 1234), and each installed package with the hash of the mirror's .deb.
    let date = release_date(&mirror.in_release());
    let record = &meta_of(&out, "base")["debian"];
    assert_eq!(record["epoch"], date, "{record}");
    let suites = record["suites"].as_array().unwrap();
    assert_eq!(suites.len(), 1, "{record}");
    assert_eq!(
        suites[0]["url"],
        format!("{}dists/{SUITE}/InRelease", mirror.url())
    );
    let packages = record["packages"].as_array().unwrap();
    let ca = packages
        .iter()
        .find(|p| p["name"] == BUMPED)
        .unwrap_or_else(|| panic!("{BUMPED} in the record: {record}"));
    let deb = std::fs::read_dir(dir.join("archive/pool/main"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{BUMPED}_"))
        })
        .unwrap();
    let sha = run(Command::new("sha256sum").arg(&deb));
    let sha = String::from_utf8_lossy(&sha.stdout);
    assert_eq!(ca["sha256"], sha.split_whitespace().next().unwrap(), "{ca}");
    assert!(
        packages.iter().any(|p| p["name"] == "dash"),
        "essential packages too"
    );

    // The same archive state with a second, empty cache: the same bytes.
    let cache2 = tmp.path().join("cache2");
    let out2 = assemble_base(&net, &cache2, &mirror.line());
    for role in ["base", "compiler"] {
        assert_eq!(
            layer_digest(&out, role),
            layer_digest(&out2, role),
            "the {role} layer from two empty caches and one archive state"
        );
    }
    // Nothing changed: the cached rootfs serve after one conditional request
    // for both (the server answers 304), and mmdebstrap does not run.
    let before = mirror.requests().len();
    let again = assemble_base(&net, &cache2, &mirror.line());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!stderr.contains("mmdebstrap ("), "{stderr}");
    assert_eq!(
        stderr.matches("Debian archive unchanged").count(),
        2,
        "{stderr}"
    );
    assert_eq!(mirror.requests()[before..], [in_release], "{stderr}");

    let old_in_release = mirror.in_release();
    let (old, new) = mirror.bump(BUMPED);
    assert_eq!(new, format!("{old}+assemble1"));
    let after = mirror.in_release();
    assert_ne!(old_in_release, after, "the bump changed InRelease");
    assert!(
        release_date(&after) > release_date(&old_in_release),
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

    // The next build with the first cache rebuilds both, and says why.
    let bumped = assemble_base(&net, &cache, &mirror.line());
    let stderr = String::from_utf8_lossy(&bumped.stderr).into_owned();
    for role in ["base", "compiler"] {
        assert!(
            stderr.lines().any(
                |l| l.contains(&format!("{role} rootfs: building with mmdebstrap"))
                    && l.contains("Debian updated bookworm")
            ),
            "{stderr}"
        );
        assert_ne!(
            layer_digest(&out, role),
            layer_digest(&bumped, role),
            "the {role} layer after the bump"
        );
    }
    let record = &meta_of(&bumped, "base")["debian"];
    assert_eq!(record["epoch"], release_date(&after), "{record}");
    assert!(
        record["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == BUMPED && p["version"] == new.as_str()),
        "{record}"
    );

    // The mirror gone: the last known state serves, with one warning line.
    let line = mirror.line();
    drop(mirror);
    let offline = assemble_base(&net, &cache, &line);
    let stderr = String::from_utf8_lossy(&offline.stderr).into_owned();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("cannot check the Debian archive for updates")
            && warnings[0].contains(&format!("dists/{SUITE}/InRelease")),
        "{stderr}"
    );
    assert!(!stderr.contains("mmdebstrap ("), "{stderr}");
    for role in ["base", "compiler"] {
        assert_eq!(layer_digest(&offline, role), layer_digest(&bumped, role));
    }
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

/// The stanzas of the mirror's `Packages` index for the host architecture
/// that name one of `names`, as a lock's Debian packages.
fn locked_packages(dir: &Path, names: &[&str]) -> Vec<assemble::rootfs::DebPackage> {
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let arch = String::from_utf8_lossy(&arch.stdout).trim().to_string();
    let index = read(&dir.join(format!("archive/dists/{SUITE}/main/binary-{arch}/Packages")));
    let field = |stanza: &str, name: &str| {
        stanza
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_default()
            .to_string()
    };
    let packages: Vec<_> = index
        .split("\n\n")
        .filter(|s| names.contains(&field(s, "Package").as_str()))
        .map(|s| assemble::rootfs::DebPackage {
            name: field(s, "Package"),
            version: field(s, "Version"),
            architecture: field(s, "Architecture"),
            sha256: field(s, "SHA256"),
        })
        .collect();
    assert_eq!(
        packages.len(),
        names.len(),
        "{names:?} in the mirror's index"
    );
    packages
}

#[test]
fn a_locked_base_is_the_locked_one_and_names_each_package_the_mirror_no_longer_has() {
    use assemble::rootfs::{built, built_locked, Definition};
    let tmp = tempfile::tempdir_in(shared()).unwrap();
    let dir = mirror_copy(&tmp.path().join("mirror"));
    let mirror = DebianMirror::serve(&dir);
    let printer = assemble::output::Printer::new(assemble::output::Mode::Quiet, false);
    let mut def = Definition::base(None, &[]);
    def.mirror = mirror.line();
    let cache = |name: &str| assemble::cache::Cache::open(&tmp.path().join(name)).unwrap();

    // A base, then the same from its record with another empty cache: the
    // packages pinned at the record's versions, the record's epoch.
    let first = built(&cache("c1"), &def, &assemble::sandbox::HostOnly, &printer).unwrap();
    let record = first
        .debian
        .clone()
        .expect("a built base has a Debian record");
    let locked = built_locked(
        &cache("c2"),
        &def,
        &record,
        &assemble::sandbox::HostOnly,
        &printer,
    )
    .unwrap();
    assert_eq!(locked.layers[0].digest, first.layers[0].digest);
    let locked_record = locked.debian.expect("a locked base has a record too");
    assert_eq!(locked_record.packages, record.packages);
    assert_eq!(locked_record.epoch, record.epoch);

    // Two packages of the lock bumped (the old .debs removed, as Debian
    // does): exit 2 naming both, before any mmdebstrap run.
    let wanted = locked_packages(&dir, &["ca-certificates", "dash", "libc6"]);
    let (ca_old, _) = mirror.bump("ca-certificates");
    let (dash_old, _) = mirror.bump("dash");
    let record = assemble::rootfs::DebianRecord {
        epoch: record.epoch,
        suites: record.suites,
        packages: wanted,
    };
    let recorder = assemble::sandbox::Recorder::default();
    let err = built_locked(&cache("c3"), &def, &record, &recorder, &printer).unwrap_err();
    let text = err.to_string();
    assert!(err.is_bad_input(), "exit 2: {text}");
    assert!(
        text.contains(&format!("ca-certificates={ca_old} (all)")),
        "{text}"
    );
    assert!(text.contains(&format!("dash={dash_old} (")), "{text}");
    assert!(!text.contains("libc6"), "libc6 is still there: {text}");
    assert!(
        recorder.host_commands.lock().unwrap().is_empty(),
        "mmdebstrap never ran"
    );

    // The archive moved (the two bumps; that a bump rebuilds the base
    // without a lock is the first test's): with the lock written before, it
    // is the cached base, the same layer, and nothing runs.
    let original = first.debian.as_ref().expect("a record");
    let recorder = assemble::sandbox::Recorder::default();
    let again = built_locked(&cache("c1"), &def, original, &recorder, &printer).unwrap();
    assert_eq!(again.layers[0].digest, first.layers[0].digest);
    assert!(
        recorder.host_commands.lock().unwrap().is_empty(),
        "with the lock, no rebuild"
    );
}
