//! The emulated CI job container (tests/jobcontainer.sh) is what issue 15's
//! tests need it to be: a Docker job container's capabilities and seccomp
//! rules, in which user namespaces and mounts fail as in a real job, chroot
//! works for root only, and nothing run inside can write to the host outside
//! the directories the test names.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use support::*;

/// Docker's default capabilities (moby's `DefaultCapabilities`): chown,
/// dac_override, fowner, fsetid, kill, setgid, setuid, setpcap,
/// net_bind_service, net_raw, sys_chroot, mknod, audit_write, setfcap.
const DOCKER_CAPS: u64 = 0xa804_25fb;
const CAP_SYS_ADMIN: u64 = 1 << 21;

/// A temp dir in /tmp that uid 1000 can write too.
fn shared_tmp() -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix("assemble-jobctr-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    tmp
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `/proc/self/status` field `name`, as seen inside.
fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("{name} missing from /proc/self/status:\n{status}"))
        .trim()
        .to_string()
}

fn caps(status: &str, name: &str) -> u64 {
    u64::from_str_radix(&status_field(status, name), 16).unwrap()
}

#[test]
fn root_there_has_dockers_capabilities_without_sys_admin_and_the_filter() {
    if !job_container_available("root_there_has_dockers_capabilities") {
        return;
    }
    let out = in_job_container(JobUser::Root, &[], "id -u; cat /proc/self/status");
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(text.lines().next(), Some("0"));
    for set in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(caps(&text, set), DOCKER_CAPS, "{set}");
        assert_eq!(caps(&text, set) & CAP_SYS_ADMIN, 0, "{set}");
    }
    assert_eq!(caps(&text, "CapInh"), 0);
    assert_eq!(caps(&text, "CapAmb"), 0);
    assert_eq!(status_field(&text, "Seccomp"), "2", "a seccomp filter");
    assert_eq!(
        status_field(&text, "NoNewPrivs"),
        "0",
        "Docker leaves it unset"
    );
}

#[test]
fn uid_1000_there_has_no_capabilities_and_the_filter() {
    if !job_container_available("uid_1000_there_has_no_capabilities") {
        return;
    }
    let out = in_job_container(
        JobUser::Uid1000,
        &[],
        "id -u; id -g; id -G; cat /proc/self/status",
    );
    assert!(out.status.success());
    let text = stdout(&out);
    let ids: Vec<&str> = text.lines().take(3).collect();
    assert_eq!(ids, ["1000", "1000", "1000"], "uid, gid, no other groups");
    assert_eq!(caps(&text, "CapBnd"), DOCKER_CAPS);
    for set in ["CapPrm", "CapEff", "CapInh", "CapAmb"] {
        assert_eq!(caps(&text, set), 0, "{set}");
    }
    assert_eq!(status_field(&text, "Seccomp"), "2");
}

#[test]
fn no_new_privs_is_set_when_asked() {
    if !job_container_available("no_new_privs_is_set_when_asked") {
        return;
    }
    let out = Command::new("bash")
        .arg(repo().join("tests/jobcontainer.sh"))
        .args(["--no-new-privs", "--", "cat", "/proc/self/status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status_field(&stdout(&out), "NoNewPrivs"), "1");
}

/// The emulated job's root is the host's root (the initial user namespace),
/// as in a rootful Docker's job container: only the read-only mounts keep
/// it from writing to the host.
#[test]
fn root_there_is_root_of_the_initial_user_namespace() {
    if !job_container_available("root_there_is_root_of_the_initial_user_namespace") {
        return;
    }
    let host_ns = std::fs::read_link("/proc/self/ns/user").unwrap();
    let out = in_job_container(
        JobUser::Root,
        &[],
        "readlink /proc/self/ns/user; cat /proc/self/uid_map",
    );
    assert!(out.status.success());
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(host_ns.to_str().unwrap()));
    let map: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "0", "4294967295"], "the identity map");
}

#[test]
fn user_namespaces_and_mounts_fail_there_as_in_a_real_job() {
    if !job_container_available("user_namespaces_and_mounts_fail_there") {
        return;
    }
    need("bwrap");
    let tmp = shared_tmp();
    let dir = tmp.path();
    // clone(CLONE_NEWUSER) and clone3 called directly: the filter answers
    // EPERM and ENOSYS (the kernel alone would let an unprivileged user make
    // a user namespace, and answer clone3(NULL, 0) with EINVAL).
    let probe = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)
if r == 0:
    os._exit(0)
print("clone", r, os.strerror(ctypes.get_errno()))
r = libc.syscall(435, None, 0)
print("clone3", r, os.strerror(ctypes.get_errno()))
"#;
    std::fs::write(dir.join("probe.py"), probe).unwrap();
    for user in [JobUser::Root, JobUser::Uid1000] {
        let mnt = dir.join(format!("mnt-{user:?}"));
        std::fs::create_dir(&mnt).unwrap();
        let script = format!(
            "bwrap --unshare-user --ro-bind / / true; echo bwrap $?
             unshare -U true; echo unshare $?
             mount -t tmpfs none {mnt}; echo mount $?
             /usr/bin/python3 {probe}",
            mnt = mnt.display(),
            probe = dir.join("probe.py").display()
        );
        let out = in_job_container(user, &[dir], &script);
        assert!(out.status.success());
        let text = stdout(&out);
        let err = stderr(&out);
        for tool in ["bwrap", "unshare", "mount"] {
            let rc = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{tool} ")))
                .unwrap();
            assert_ne!(rc, "0", "{tool} as {user:?} must fail");
        }
        assert!(err.contains("bwrap: No permissions to create new namespace"));
        assert!(err.contains("unshare: unshare failed: Operation not permitted"));
        assert!(
            text.contains("clone -1 Operation not permitted"),
            "{user:?}"
        );
        assert!(
            text.contains("clone3 -1 Function not implemented"),
            "{user:?}"
        );
    }
}

/// `chroot DIR /bin/true`, with DIR holding /bin/true and its libraries.
fn chroot_tree(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("root");
    let mut files = vec!["/usr/bin/true".to_string()];
    let ldd = run(Command::new("ldd").arg("/usr/bin/true"));
    assert!(ldd.status.success());
    files.extend(
        stdout(&ldd)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
            .map(str::to_string),
    );
    for f in files {
        let dest = root.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dest).unwrap();
    }
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    root
}

#[test]
fn chroot_works_there_for_root_only() {
    if !job_container_available("chroot_works_there_for_root_only") {
        return;
    }
    let tmp = shared_tmp();
    let root = chroot_tree(tmp.path());
    let script = format!("chroot {} /bin/true", root.display());
    // /tmp there is private: the test's directory is bound in.
    let out = in_job_container(JobUser::Root, &[tmp.path()], &script);
    assert!(out.status.success(), "root keeps CAP_SYS_CHROOT");
    let out = in_job_container(JobUser::Uid1000, &[tmp.path()], &script);
    assert!(!out.status.success(), "uid 1000 has no CAP_SYS_CHROOT");
    assert!(stderr(&out).contains("cannot change root directory"));
    assert!(stderr(&out).contains("Operation not permitted"));
}

/// proot (ptrace, which Docker's profile allows on kernels 4.8 and later)
/// gives uid 1000 there the root change that chroot refuses it.
#[test]
fn proot_works_there_for_uid_1000() {
    if !job_container_available("proot_works_there_for_uid_1000") {
        return;
    }
    need("proot");
    let tmp = shared_tmp();
    let root = chroot_tree(tmp.path());
    let script = format!("proot -r {} -w / /bin/true", root.display());
    let out = in_job_container(JobUser::Uid1000, &[tmp.path()], &script);
    assert!(out.status.success(), "proot as uid 1000");
}

/// Nothing run there writes to the host outside the directories named: the
/// job is the host's root with CAP_DAC_OVERRIDE, so this is what keeps a
/// test of the chroot mode from damaging the host. (The sysctl written is
/// given its own value: harmless even if the guard failed.)
#[test]
fn root_there_writes_only_to_the_named_directories() {
    if !job_container_available("root_there_writes_only_to_the_named_directories") {
        return;
    }
    let tmp = shared_tmp();
    let named = tmp.path().join("named");
    let other = tmp.path().join("other");
    std::fs::create_dir(&named).unwrap();
    std::fs::create_dir(&other).unwrap();
    let script = format!(
        "touch {named}/file && echo named ok
         touch {other}/file || echo other refused
         touch /var/tmp/assemble-jobctr-probe || echo var-tmp refused
         v=$(cat /proc/sys/user/max_user_namespaces)
         echo $v > /proc/sys/user/max_user_namespaces || echo sysctl refused
         touch /tmp/private && echo private-tmp ok
         mknod {named}/null c 1 3 && echo mknod ok",
        named = named.display(),
        other = other.display()
    );
    let out = in_job_container(JobUser::Root, &[&named], &script);
    assert!(out.status.success());
    let text = stdout(&out);
    for line in [
        "named ok",
        "other refused",
        "var-tmp refused",
        "sysctl refused",
        "private-tmp ok",
        "mknod ok",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}");
    }
    assert!(named.join("file").exists());
    assert!(!other.join("file").exists());
    assert!(!Path::new("/var/tmp/assemble-jobctr-probe").exists());
    assert!(!Path::new("/tmp/private").exists(), "/tmp there is private");
}

/// A cache under `dir` holding the run's current base and compiler rootfs
/// (those `assemble base` names) and their layer blobs, nothing else: a
/// runner that builds the Python side itself. Without the Debian sources
/// learnt from mmdebstrap, which a fresh runner learns again. Hard links
/// into the run's cache, or with `owner` a copy owned by that uid (a plain
/// user's own cache).
fn rootfs_only_cache(dir: &Path, name: &str, owner: Option<u32>) -> std::path::PathBuf {
    let shared = support::cache();
    let out = run(assemble().arg("base").arg("--cache-dir").arg(&shared));
    assert!(out.status.success(), "{}", stderr(&out));
    let cache = dir.join(name);
    let (rootfs, blobs) = (cache.join("rootfs"), cache.join("blobs/sha256"));
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::create_dir_all(&blobs).unwrap();
    let mode = if owner.is_some() { "-a" } else { "-al" };
    let copy = |from: &Path, to: &Path| {
        let out = run(Command::new("cp").arg(mode).arg(from).arg(to));
        assert!(out.status.success(), "{}", stderr(&out));
    };
    for line in stdout(&out).lines() {
        let Some((_, tree)) = line.split_once(' ') else {
            continue;
        };
        let entry = Path::new(tree).parent().unwrap();
        copy(entry, &rootfs);
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.join("meta.json")).unwrap()).unwrap();
        for layer in meta["layers"].as_array().unwrap() {
            let hex = layer["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:");
            copy(&shared.join("blobs/sha256").join(hex), &blobs);
        }
    }
    // The archive states, so that the same keys are found.
    for entry in std::fs::read_dir(shared.join("rootfs")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("state-")
        {
            copy(&path, &rootfs);
        }
    }
    if let Some(uid) = owner {
        let chown = run(Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{uid}"))
            .arg(&cache));
        assert!(chown.status.success(), "{}", stderr(&chown));
    }
    cache
}

/// `dir`'s assemble run by `cmd` (a command prefix) with `args`, through
/// `env` with a clean environment and `vars` last.
fn assemble_in(mut cmd: Command, vars: &[String], dir: &Path) -> Command {
    cmd.args(["env", "-i"])
        .arg(format!("PATH={}", std::env::var("PATH").unwrap()))
        .arg("HOME=/tmp")
        .arg("SOURCE_DATE_EPOCH=1700000000")
        .arg("PIP_CONFIG_FILE=/dev/null")
        .args(vars)
        .arg(dir.join("assemble"));
    cmd
}

/// The fixture built from the run's index with `cache_dir`, its layout and
/// result file under `dir` (named by `name`), run by `cmd` (a command
/// prefix) with `vars` (see [`assemble_in`]).
fn build_fixture(
    cmd: Command,
    vars: &[String],
    dir: &Path,
    cache_dir: &Path,
    name: &str,
) -> std::process::Output {
    assemble_in(cmd, vars, dir)
        .arg("milborne==0.4.0")
        .arg("--index-url")
        .arg(index())
        .arg("--cache-dir")
        .arg(cache_dir)
        .arg("--output")
        .arg(dir.join(format!("oci-{name}")))
        .arg("--result-file")
        .arg(dir.join(format!("{name}.json")))
        .output()
        .unwrap()
}

fn result(dir: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap()
}

/// A directory in /tmp with the assemble binary, writable by uid 1000.
fn job_dir() -> tempfile::TempDir {
    let tmp = shared_tmp();
    std::fs::copy(bin(), tmp.path().join("assemble")).unwrap();
    tmp
}

/// In a job container, where user namespaces are refused, the build runs
/// its commands chrooted as root (as uid 1000 in a private copy of the
/// root), under proot as uid 1000 (or as root when asked), says so, and
/// makes the image the user-namespace sandbox makes from the same inputs.
#[test]
fn a_build_in_a_job_container_runs_under_chroot_or_proot_and_makes_the_same_image() {
    if !job_container_available("a_build_in_a_job_container_runs_under_chroot_or_proot") {
        return;
    }
    need("proot");
    let tmp = job_dir();
    let dir = tmp.path();
    // On the host: user namespaces.
    let host_cache = rootfs_only_cache(dir, "host-cache", None);
    let out = build_fixture(Command::new("nice"), &[], dir, &host_cache, "userns");
    assert!(out.status.success(), "{}", stderr(&out));
    let userns = result(dir, "userns");
    assert_eq!(userns["isolation"], "userns");
    let proot_asked = ["ASSEMBLE_ISOLATION=proot".to_string()];
    for (user, owner, vars, isolation, said) in [
        (
            JobUser::Root,
            None,
            &[][..],
            "chroot",
            "sandbox: chroot (no user namespaces here",
        ),
        (
            JobUser::Root,
            None,
            &proot_asked[..],
            "proot",
            "sandbox: proot (asked",
        ),
        (
            JobUser::Uid1000,
            Some(1000),
            &[][..],
            "proot",
            "sandbox: proot (no user namespaces here",
        ),
    ] {
        let name = format!("{user:?}-{isolation}");
        let cache = rootfs_only_cache(dir, &format!("cache-{name}"), owner);
        let out = build_fixture(job_container(user, &[dir]), vars, dir, &cache, &name);
        let err = stderr(&out);
        assert!(out.status.success(), "{name}:\n{err}");
        assert!(err.contains(said), "{name}: {err}");
        assert!(
            err.contains("compiling 1 (milborne 0.4.0)"),
            "the sdist compiled there:\n{err}"
        );
        let doc = result(dir, &name);
        assert_eq!(doc["isolation"], isolation, "{doc}");
        assert_eq!(doc["digest"], userns["digest"], "{name}: the same image");
        // The private copies of the root filesystems are gone.
        let farms = walkdir::WalkDir::new(cache.join("rootfs"))
            .max_depth(2)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".chroot-"))
            .count();
        assert_eq!(farms, 0, "{name}");
    }
}

/// Without isolation, asked for, as uid 1000 in a job container where no
/// sandbox but proot works (no user namespaces, not root): the
/// job's own filesystem (this host's: Debian's Python 3.11, its headers,
/// gcc) is the compiler, the venv is made in a staging directory and
/// moved, and the image is the one the user-namespace sandbox makes from
/// the same inputs. What cannot run without one is refused, exit 2.
#[test]
fn a_build_without_isolation_uses_the_jobs_own_filesystem_and_makes_the_same_image() {
    if !job_container_available("a_build_without_isolation_uses_the_jobs_own_filesystem") {
        return;
    }
    let tmp = job_dir();
    let dir = tmp.path();
    let host_cache = rootfs_only_cache(dir, "host-cache", None);
    let out = build_fixture(Command::new("nice"), &[], dir, &host_cache, "userns");
    assert!(out.status.success(), "{}", stderr(&out));
    let userns = result(dir, "userns");
    let vars = ["ASSEMBLE_ISOLATION=none".to_string()];
    let cache = rootfs_only_cache(dir, "cache-none", Some(1000));
    let out = build_fixture(
        job_container(JobUser::Uid1000, &[dir]),
        &vars,
        dir,
        &cache,
        "none",
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for said in [
        "sandbox: none (asked: the build's commands run in this machine's own filesystem",
        "compiler: this machine's own filesystem (--isolation none)",
        "compiling 1 (milborne 0.4.0)",
    ] {
        assert!(err.contains(said), "{said}:\n{err}");
    }
    let doc = result(dir, "none");
    assert_eq!(doc["isolation"], "none", "{doc}");
    assert_eq!(
        doc["digest"], userns["digest"],
        "the same image:\n{doc}\n{userns}"
    );
    // The paths a requirements file names inside (the project directory's
    // wheel, `-r FILE`) are the host's too.
    let requirements = dir.join("requirements.txt");
    std::fs::write(&requirements, "milborne==0.4.0\n").unwrap();
    // A copy in the test's directory: the job container's /tmp is its own,
    // and the checkout may be under the host's.
    let fixture = dir.join("milborne");
    let out = run(Command::new("cp")
        .arg("-r")
        .arg(repo().join("tests/fixtures/milborne"))
        .arg(&fixture));
    assert!(out.status.success(), "{}", stderr(&out));
    for (name, args) in [
        ("project", vec![fixture.to_str().unwrap()]),
        ("file", vec!["-r", requirements.to_str().unwrap()]),
    ] {
        let out = assemble_in(job_container(JobUser::Uid1000, &[dir]), &vars, dir)
            .args(&args)
            .arg("--index-url")
            .arg(index())
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--output")
            .arg(dir.join(format!("oci-{name}")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
    // A given compiler, `assemble run` and `vendor`: refused, exit 2.
    let refused = |args: &[&str], said: &str| {
        let out = assemble_in(job_container(JobUser::Uid1000, &[dir]), &vars, dir)
            .args(args)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {said}:\n{err}");
    };
    let (layout, cache, store) = (dir.join("oci-none"), cache.display(), dir.join("store"));
    let (cache_dir, given) = (cache.to_string(), format!("oci:{}", layout.display()));
    refused(
        &[
            "milborne==0.4.0",
            "--compiler",
            &given,
            "--cache-dir",
            &cache_dir,
        ],
        "cannot run without isolation: with --isolation none this machine is the compiler",
    );
    refused(
        &[
            "vendor",
            "milborne==0.4.0",
            "--cache-dir",
            &cache_dir,
            "--vendor",
            store.to_str().unwrap(),
        ],
        "assemble vendor cannot run without isolation",
    );
    refused(
        &[
            "run",
            "--isolation",
            "none",
            layout.to_str().unwrap(),
            "true",
        ],
        "none runs build steps only",
    );
}

/// `assemble run` as root in a job container: chrooted (said), `start www`
/// serves through nginx and uwsgi with the `/config` volume read, a
/// SIGTERM stops supervisord's services in order, and a read-write
/// volume gets what the container wrote; the private copy of the image's
/// tree is gone after each run. As uid 1000 there it is refused, naming
/// what is missing.
#[test]
fn assemble_run_in_a_job_container_serves_under_chroot_as_root() {
    if !job_container_available("assemble_run_in_a_job_container_serves_under_chroot") {
        return;
    }
    let tmp = job_dir();
    let dir = tmp.path();
    let layout = dir.join("oci");
    let copy = run(Command::new("cp").arg("-a").arg(image()).arg(&layout));
    assert!(copy.status.success(), "{}", stderr(&copy));
    let config = dir.join("config/app");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("90_override.ini"),
        "[app]\nenvironment = from-the-job\n",
    )
    .unwrap();
    let media = dir.join("media");
    std::fs::create_dir(&media).unwrap();
    // Kept with its owner and mode, as an engine keeps them: blue may write.
    std::fs::set_permissions(&media, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(media.join("kept"), "the job's").unwrap();
    let stop = dir.join("stop");
    let (out_log, err_log) = (dir.join("run.out"), dir.join("run.err"));
    // The run in the background; SIGTERM once the test has seen it serve.
    let script = format!(
        "{bin} run --cache-dir {dir}/run-cache -v {dir}/config:/config:ro {dir}/oci start www \
         >{out} 2>{err} & pid=$!; \
         while [ ! -e {stop} ] && kill -0 $pid 2>/dev/null; do sleep 0.2; done; \
         kill -TERM $pid 2>/dev/null; wait $pid",
        bin = dir.join("assemble").display(),
        dir = dir.display(),
        out = out_log.display(),
        err = err_log.display(),
        stop = stop.display(),
    );
    let _port = lock("port-8080");
    let mut job = job_container(JobUser::Root, &[dir]);
    job.args(["sh", "-c", &script]);
    let child = spawn_with_deathsig(&mut job);
    let body = wait_http(8080, "/", std::time::Duration::from_secs(120));
    std::fs::write(&stop, "").unwrap();
    let out = child.wait_with_output().unwrap();
    let (log_out, log_err) = (read(&out_log), read(&err_log));
    let body =
        body.unwrap_or_else(|| panic!("nginx never answered on 8080:\n{log_err}\n{log_out}"));
    assert!(body.contains("service=www"), "{body}");
    assert!(body.contains("environment=from-the-job"), "{body}");
    assert!(body.contains("uid=1000"), "{body}");
    assert!(
        log_err.contains("sandbox: chroot (no user namespaces here"),
        "{log_err}"
    );
    assert!(log_err.contains("run: SIGTERM received"), "{log_err}");
    assert!(
        out.status.success(),
        "the entrypoint stopped cleanly:\n{log_err}\n{log_out}"
    );
    let (nginx, uwsgi) = (
        log_out.find("stopped: nginx (exit status 0)"),
        log_out.find("stopped: uwsgi (exit status 0)"),
    );
    assert!(
        nginx.is_some() && uwsgi.is_some() && nginx < uwsgi,
        "supervisord stopped nginx, then uwsgi:\n{log_out}"
    );
    // A read-write volume: what the container wrote comes back.
    let script = format!(
        "{bin} run --cache-dir {dir}/run-cache -v {dir}/media:/media {dir}/oci \
         sh -c 'cat /media/kept && echo made > /media/made && rm /media/kept'",
        bin = dir.join("assemble").display(),
        dir = dir.display(),
    );
    let out = in_job_container(JobUser::Root, &[dir], &script);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("the job's"), "{}", stdout(&out));
    assert_eq!(read(&media.join("made")), "made\n");
    assert!(!media.join("kept").exists(), "removed by the container");
    let farms: Vec<_> = std::fs::read_dir(dir.join("run-cache/run"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".chroot-"))
        .map(|e| e.file_name())
        .collect();
    assert!(farms.is_empty(), "{farms:?}");
    // A daemon that forked twice and left the session ends with the run.
    let script = format!(
        "{bin} run --cache-dir {dir}/run-cache {dir}/oci sh -c 'n=1007; (setsid sleep $n &); echo started'; \
         sleep 0.5; if pgrep -f 'sleep 100[7]' >/dev/null; then echo LEFT; else echo GONE; fi",
        bin = dir.join("assemble").display(),
        dir = dir.display(),
    );
    let out = in_job_container(JobUser::Root, &[dir], &script);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("started"), "{}", stdout(&out));
    assert!(stdout(&out).contains("GONE"), "{}", stdout(&out));
    // An orphan that ends while the container runs is reaped then, not
    // kept as a zombie of assemble until the end.
    let script = format!(
        "{bin} run --cache-dir {dir}/run-cache {dir}/oci sh -c 'n=0.2; (setsid sleep $n &); sleep 4' \
         2>{dir}/orphan.err & pid=$!; \
         while ! grep -q 'run: ' {dir}/orphan.err; do sleep 0.1; done; sleep 2.5; \
         echo zombies=$(ps -o stat= --ppid $pid | grep -c Z); wait $pid",
        bin = dir.join("assemble").display(),
        dir = dir.display(),
    );
    let out = in_job_container(JobUser::Root, &[dir], &script);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("zombies=0"), "{}", stdout(&out));
    // uid 1000 there: no user namespaces, no chroot; proot cannot run it.
    let script = format!(
        "{bin} run --cache-dir {dir}/run-cache-1000 {dir}/oci true",
        bin = dir.join("assemble").display(),
        dir = dir.display(),
    );
    let out = in_job_container(JobUser::Uid1000, &[dir], &script);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("userns: user namespaces are refused")
            && err.contains("chroot: cannot chroot (not root)"),
        "{err}"
    );
}

/// Asked for user namespaces where they are refused, or where nothing
/// works: exit 2, each isolation tried and why it failed, and what the
/// job's owner can change (no sysctl a job cannot set).
#[test]
fn a_job_container_where_no_isolation_works_is_told_what_to_change() {
    if !job_container_available("a_job_container_where_no_isolation_works") {
        return;
    }
    let tmp = job_dir();
    let dir = tmp.path();
    let cache = dir.join("cache");
    std::fs::create_dir(&cache).unwrap();
    let out = build_fixture(
        job_container(JobUser::Root, &[dir]),
        &["ASSEMBLE_ISOLATION=userns".into()],
        dir,
        &cache,
        "asked",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot create a user namespace"),
        "{}",
        stderr(&out)
    );
    // Neither bwrap nor proot on PATH (the binary is named by its path).
    let empty = dir.join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let out = build_fixture(
        job_container(JobUser::Uid1000, &[dir]),
        &[format!("PATH={}", empty.display())],
        dir,
        &cache,
        "none",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for said in [
        "no sandbox works here",
        "userns: bubblewrap (bwrap) is not installed",
        "proot: proot is not installed",
        "chroot: cannot chroot (not root)",
        "install proot in the job image",
        "allow user namespaces",
    ] {
        assert!(err.contains(said), "{said}:\n{err}");
    }
    assert!(!err.contains("sysctl"), "{err}");
}

/// The layer digest of each rootfs `assemble base` printed (`base PATH`,
/// `compiler PATH`), from the `meta.json` beside each tree.
fn rootfs_layers(out: &std::process::Output) -> Vec<(String, String)> {
    stdout(out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(role, tree)| {
            let meta: serde_json::Value = serde_json::from_slice(
                &std::fs::read(Path::new(tree).parent().unwrap().join("meta.json")).unwrap(),
            )
            .unwrap();
            (role.to_string(), meta["layers"].to_string())
        })
        .collect()
}

/// In a job container, root builds the root filesystems with mmdebstrap's
/// root mode (no user namespaces, no mounts), byte for byte what its
/// unshare mode makes from the same archive state; uid 1000 there, which
/// can do neither, is told what to do instead.
#[test]
fn root_filesystems_built_in_a_job_container_as_root_are_the_unshare_ones() {
    if !job_container_available("root_filesystems_built_in_a_job_container") {
        return;
    }
    use support::debian_mirror::{mirror_copy, DebianMirror};
    let tmp = job_dir();
    let dir = tmp.path();
    let mirror = DebianMirror::serve(&mirror_copy(&dir.join("mirror")));
    let vars = [format!("ASSEMBLE_DEBIAN_MIRROR={}", mirror.line())];
    let base = |cmd: Command, cache: &Path| {
        let cache = cache.to_path_buf();
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        assemble_in(cmd, &vars, dir)
            .arg("base")
            .arg("--cache-dir")
            .arg(&cache)
            .output()
            .unwrap()
    };
    let out = base(Command::new("nice"), &dir.join("host-cache"));
    assert!(out.status.success(), "{}", stderr(&out));
    let unshare = rootfs_layers(&out);
    assert_eq!(unshare.len(), 2, "{}", stdout(&out));
    let out = base(
        job_container(JobUser::Root, &[dir]),
        &dir.join("root-cache"),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("in its root mode (no user namespaces here)"),
        "{err}"
    );
    assert_eq!(rootfs_layers(&out), unshare, "the same layers");
    let out = base(
        job_container(JobUser::Uid1000, &[dir]),
        &dir.join("user-cache"),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("mmdebstrap needs user namespaces (its unshare mode)")
            && err.contains("find the root filesystems in the build cache"),
        "{err}"
    );
}

/// The static binary (`make release`, named by ASSEMBLE_STATIC_BIN: .ci/run
/// builds it, then runs this test) needs no libc: it runs as the only file
/// of an empty root (chrooted as root in a job container; under proot
/// otherwise) and says its version.
#[test]
fn the_static_binary_runs_in_an_empty_root() {
    let Some(bin) = std::env::var_os("ASSEMBLE_STATIC_BIN") else {
        eprintln!("SKIPPED the_static_binary_runs_in_an_empty_root: ASSEMBLE_STATIC_BIN is not set (.ci/run sets it after make release)");
        return;
    };
    let tmp = shared_tmp();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(&bin, root.join("assemble")).unwrap();
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let out = if unsafe { libc::geteuid() } == 0 {
        let script = format!("chroot {} /assemble --version", root.display());
        in_job_container(JobUser::Root, &[tmp.path()], &script)
    } else {
        need("proot");
        run(Command::new("proot")
            .arg("-r")
            .arg(&root)
            .args(["/assemble", "--version"]))
    };
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("assemble "), "{}", stdout(&out));
}
