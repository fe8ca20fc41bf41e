//! The sandbox of root where user namespaces are refused (a CI job
//! container keeps `CAP_SYS_CHROOT` and `CAP_MKNOD`, not `CAP_SYS_ADMIN`):
//! the command runs chrooted into a private copy of the plan's root made
//! of hard links (a "farm", one per root and build), as the plan's uid and
//! gid (dropped after the chroot). Nothing can be mounted: what a plan
//! binds is moved into the farm for the run (renamed: the cache and the
//! farm share a filesystem; copied where they do not) and back after it,
//! owned by the plan's user while it runs; what it binds read-only is
//! linked in; `/tmp` is emptied; `/dev` holds null, zero, full, random and
//! urandom (mknod); there is no `/proc`.
//!
//! `assemble run` uses it too (a smoke test in a job container): the
//! user's volumes are copied in, not moved (they are the user's files),
//! and a read-write one is copied back when the container ends (a killed
//! run leaves it as it was); the image's writable places are made in the
//! farm; `/dev/stdout` and `/dev/stderr` are pipes that assemble copies to
//! its own (without `/proc` they could not name the descriptors); the
//! entrypoint leads a session of its own, and a stop signals it, then
//! kills its process group and every process descending from it.
//!
//! A farm is removed when its run ends; one left by a killed assemble is
//! removed by the next run beside it (its lock file, `.chroot-*.lock`, is
//! no longer held).
//!
//! What it does not isolate: the network (no network namespace without
//! `CAP_SYS_ADMIN`), and the host's processes (no pid namespace). The
//! command is uid 1000, not root: the tree's files, root's, are read-only
//! to it, as are the job's other files and processes. Files of the tree
//! owned by the plan's user are copied into the farm, not linked.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::output::Printer;
use crate::sandbox::capture::{capture, describe_status};
use crate::sandbox::error::SandboxError;
use crate::sandbox::supervise::{end_descendants, supervise, Signals, Started};
use crate::sandbox::{exit_code, find_on_path, Mount, Output, Plan, Runner};

/// The host's resolver configuration, copied in when the plan keeps the
/// network.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The chroot runner.
#[derive(Debug, Default)]
pub struct Chroot {
    /// Strings to mask in captured output (index credentials).
    pub secrets: Vec<String>,
    /// The farm of each root used in this build; its lock is held for a
    /// run (a farm takes one plan at a time).
    farms: Mutex<Vec<(PathBuf, Farm)>>,
}

impl Clone for Chroot {
    fn clone(&self) -> Self {
        Self {
            secrets: self.secrets.clone(),
            farms: Mutex::new(Vec::new()),
        }
    }
}

impl Chroot {
    /// Checks that this process may chroot and make a farm's `/dev`: root
    /// with `CAP_SYS_CHROOT` and `CAP_MKNOD`.
    pub fn probe() -> Result<Self, SandboxError> {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(SandboxError::ChrootRefused {
                detail: "not root".into(),
            });
        }
        let program = find_on_path("true").unwrap_or_else(|| PathBuf::from("/bin/true"));
        let mut probe = Command::new(program);
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only chroot(2), async-signal-safe, on a constant.
        unsafe {
            use std::os::unix::process::CommandExt;
            probe.pre_exec(|| {
                if libc::chroot(c"/".as_ptr()) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        match probe.status() {
            Ok(s) if s.success() => {}
            Ok(s) => {
                return Err(SandboxError::ChrootRefused {
                    detail: describe_status(&s),
                })
            }
            Err(e) => {
                return Err(SandboxError::ChrootRefused {
                    detail: e.to_string(),
                })
            }
        }
        can_mknod().map_err(|e| SandboxError::ChrootRefused {
            detail: format!("cannot make device nodes, CAP_MKNOD dropped? ({e})"),
        })?;
        Ok(Self::default())
    }

    fn run_captured(&self, plan: &Plan, echo: Option<&Printer>) -> Result<i32, SandboxError> {
        let mut farms = self.farms.lock().expect("farms lock");
        let farm = match farms.iter().find(|(root, _)| *root == plan.root) {
            Some((_, farm)) => farm.path().to_path_buf(),
            None => {
                let farm = Farm::make(&plan.root, plan.uid).map_err(SandboxError::Spawn)?;
                let path = farm.path().to_path_buf();
                farms.push((plan.root.clone(), farm));
                path
            }
        };
        let staged = Staged::enter(plan, &farm, Binds::Move).map_err(SandboxError::Spawn)?;
        let cmd = match command(plan, &farm, false) {
            Ok(cmd) => cmd,
            Err(e) => {
                let _ = staged.leave();
                return Err(e);
            }
        };
        tracing::debug!(what = %plan.what, argv = ?plan.argv, "sandbox (chroot)");
        let captured = capture(cmd, &plan.what, &self.secrets, echo);
        staged.leave().map_err(SandboxError::Spawn)?;
        let (status, tail) = captured?;
        if status.success() {
            return Ok(0);
        }
        Err(SandboxError::Failed {
            what: plan.what.clone(),
            status: describe_status(&status),
            tail,
        })
    }

    /// `assemble run`: the entrypoint in a farm of its own, supervised as
    /// bubblewrap's is (see the module's documentation for what differs).
    fn run_interactive(
        &self,
        plan: &Plan,
        stop_timeout: std::time::Duration,
        printer: &Printer,
    ) -> Result<i32, SandboxError> {
        // Installed before any work: a stop signal sent while the farm is
        // made is forwarded once the entrypoint is there.
        let signals = Signals::install().map_err(SandboxError::Spawn)?;
        let farm = Farm::make(&plan.root, plan.uid).map_err(SandboxError::Spawn)?;
        let staged = Staged::enter(plan, farm.path(), Binds::Copy).map_err(SandboxError::Spawn)?;
        let result = (|| {
            let pumps = Pumps::start(farm.path()).map_err(SandboxError::Spawn)?;
            let mut cmd = command(plan, farm.path(), true)?;
            cmd.stdin(std::process::Stdio::inherit())
                .stdout(std::process::Stdio::inherit())
                .stderr(std::process::Stdio::inherit());
            // SAFETY: prctl(2) with PR_SET_CHILD_SUBREAPER and a constant:
            // orphans of the entrypoint's processes come back to this one,
            // where a stop finds them.
            unsafe {
                libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
            }
            printer.step(&format!(
                "run: {} as {}:{} (chroot)",
                plan.argv.join(" "),
                plan.uid,
                plan.gid
            ));
            let child = cmd.spawn().map_err(SandboxError::Spawn)?;
            let started = Started::Group(child.id() as i32);
            let status = supervise(child, started, &signals, stop_timeout, printer);
            // What is left of the container goes with its entrypoint, as
            // an engine's stop takes the whole container.
            end_descendants();
            pumps.finish();
            status
        })();
        let left = staged.leave().map_err(SandboxError::Spawn);
        let status = result?;
        left?;
        Ok(exit_code(&status))
    }
}

/// The command for `plan` in `farm`: chrooted, in the plan's directory, as
/// the plan's user (`session`: leading a session of its own).
fn command(plan: &Plan, farm: &Path, session: bool) -> Result<Command, SandboxError> {
    if plan.uid == 0 {
        // Root in a chroot keeps the job's root: it could leave the chroot
        // and write to the cached trees through their links.
        return Err(SandboxError::ChrootAsRoot {
            what: plan.what.clone(),
        });
    }
    let program = inside_program(plan, farm).ok_or_else(|| SandboxError::Failed {
        what: plan.what.clone(),
        status: "no such program".into(),
        tail: vec![format!("{} is not in the root filesystem", plan.argv[0])],
    })?;
    let mut cmd = Command::new(&program);
    cmd.args(&plan.argv[1..])
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)));
    let root = c_path(farm)?;
    let cwd = CString::new(plan.cwd.as_bytes()).map_err(|e| SandboxError::Spawn(e.into()))?;
    let (uid, gid) = (plan.uid, plan.gid);
    // SAFETY: the closure runs in the child between fork and exec and
    // calls only async-signal-safe functions (setsid, prctl, chroot,
    // chdir, setgroups, setgid, setuid) on memory made before the fork.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            if session && libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The tree's setuid programs (su, passwd) give nothing.
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            check(libc::chroot(root.as_ptr()))?;
            check(libc::chdir(cwd.as_ptr()))?;
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(gid))?;
            check(libc::setuid(uid))?;
            Ok(())
        });
    }
    Ok(cmd)
}

impl Runner for Chroot {
    fn run(&self, plan: &Plan, output: Output<'_>) -> Result<i32, SandboxError> {
        match output {
            Output::Capture { echo } => self.run_captured(plan, echo),
            Output::Interactive {
                stop_timeout,
                printer,
            } => self.run_interactive(plan, stop_timeout, printer),
        }
    }
}

/// Whether a device node can be made here (what a farm's `/dev` needs).
fn can_mknod() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = c_path(&dir.path().join("null")).map_err(std::io::Error::other)?;
    // SAFETY: mknod(2) of /dev/null's node in a directory made here and
    // removed with it.
    if unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn c_path(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|e| SandboxError::Spawn(e.into()))
}

/// The plan's program as a path inside the farm: itself when it has a `/`,
/// else the first of the plan's `PATH` that the farm has.
fn inside_program(plan: &Plan, farm: &Path) -> Option<String> {
    let name = plan.argv.first()?;
    if name.contains('/') {
        return Some(name.clone());
    }
    let path = plan
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    path.split(':')
        .map(|dir| format!("{}/{name}", dir.trim_end_matches('/')))
        .find(|p| farm.join(p.trim_start_matches('/')).is_file())
}

/// The farm's path for `dest` (an absolute path inside), refusing a
/// symlink among its parents: a root filesystem (a given base, a cache
/// entry) must not send what root moves or makes to a path outside the
/// farm.
fn farm_path(farm: &Path, dest: &str) -> std::io::Result<PathBuf> {
    let mut at = farm.to_path_buf();
    let parts: Vec<&str> = dest.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(std::io::Error::other(format!(
            "{dest}: the root itself cannot be a mount here"
        )));
    }
    for (i, part) in parts.iter().enumerate() {
        if *part == ".." || *part == "." {
            return Err(std::io::Error::other(format!("{dest}: not a plain path")));
        }
        at.push(part);
        let last = i + 1 == parts.len();
        if !last
            && at
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(std::io::Error::other(format!(
                "the root filesystem has a symlink at {}: refused (it would lead outside it)",
                at.strip_prefix(farm).unwrap_or(&at).display()
            )));
        }
    }
    Ok(at)
}

/// How old a farm without a lock file must be to be taken for abandoned:
/// a farm's lock is made and held before its directory, so only a farm
/// whose removal was cut short has none.
const LOCKLESS_FARM_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// A private copy of a root, beside it (the same filesystem, for hard
/// links), its lock file held while it lives; removed when dropped.
#[derive(Debug)]
struct Farm {
    dir: PathBuf,
    lock: PathBuf,
    _held: std::fs::File,
}

impl Farm {
    /// `tree`'s farm: its directories made, its files linked (copied when
    /// `uid` owns them), its symlinks made again; `/dev`'s nodes made.
    /// The farms beside it that killed runs left are removed first.
    fn make(tree: &Path, uid: u32) -> std::io::Result<Self> {
        let parent = tree.parent().unwrap_or(Path::new("/"));
        remove_abandoned_farms(parent);
        // The lock first, held, then the directory named after it: a farm
        // is never seen without its lock held.
        let (held, lock) = tempfile::Builder::new()
            .prefix(".chroot-")
            .suffix(".lock")
            .tempfile_in(parent)?
            .keep()
            .map_err(|e| e.error)?;
        flock(&held, false)?;
        let name = lock.file_name().unwrap_or_default().to_string_lossy();
        let dir = parent.join(name.trim_end_matches(".lock"));
        if let Err(e) = std::fs::create_dir(&dir) {
            let _ = std::fs::remove_file(&lock);
            return Err(e);
        }
        let farm = Farm {
            dir,
            lock,
            _held: held,
        };
        place_tree(
            tree,
            farm.path(),
            Place::Link {
                copy_uid: Some(uid),
            },
        )?;
        make_dev(farm.path())?;
        Ok(farm)
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        // The directory first, the lock still held.
        let _ = remove(&self.dir);
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// A farm's lock file: `.chroot-XXXX.lock` beside it.
fn lock_path(farm: &Path) -> PathBuf {
    let mut name = farm.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    farm.with_file_name(name)
}

/// Takes an exclusive lock on `file`; with `try_only`, false when another
/// process holds it.
fn flock(file: &std::fs::File, try_only: bool) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    let op = if try_only {
        libc::LOCK_EX | libc::LOCK_NB
    } else {
        libc::LOCK_EX
    };
    // SAFETY: flock(2) on a descriptor this File owns.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if try_only && e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(e)
}

/// Removes the farms in `dir` that no live run holds: their lock is free
/// (taken, and held while the farm is removed), or they have none and are
/// older than [`LOCKLESS_FARM_AGE`].
fn remove_abandoned_farms(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".chroot-") || name.ends_with(".lock") {
            continue;
        }
        let farm = entry.path();
        let lock = lock_path(&farm);
        let held = std::fs::File::open(&lock);
        let abandoned = match &held {
            Ok(file) => flock(file, true).unwrap_or(false),
            Err(_) => farm
                .symlink_metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > LOCKLESS_FARM_AGE),
        };
        if abandoned {
            tracing::debug!(farm = %farm.display(), "removing a farm a killed run left");
            let _ = remove(&farm);
            let _ = std::fs::remove_file(&lock);
        }
        drop(held);
    }
}

/// `/dev` in a farm: null, zero, full, random and urandom, made as Docker
/// makes them (what the tree had there gives way).
fn make_dev(farm: &Path) -> std::io::Result<()> {
    let dev = farm_path(farm, "/dev")?;
    if dev.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(&dev)?;
    }
    std::fs::create_dir_all(&dev)?;
    for (name, minor) in [
        ("null", 3),
        ("zero", 5),
        ("full", 7),
        ("random", 8),
        ("urandom", 9),
    ] {
        let _ = std::fs::remove_file(dev.join(name));
        let node = c_path(&dev.join(name)).map_err(std::io::Error::other)?;
        // SAFETY: mknod(2) on a path made here; a device node of memory
        // devices (major 1).
        let r = unsafe {
            libc::mknod(
                node.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(1, minor),
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
        std::fs::set_permissions(dev.join(name), std::fs::Permissions::from_mode(0o666))?;
    }
    Ok(())
}

/// `/dev/stdout` and `/dev/stderr` of an interactive run: pipes whose
/// lines assemble copies to its own standard output and error.
struct Pumps {
    /// A write end of each pipe, held so that the copy never reads an end
    /// of file while the container runs.
    keep: Vec<std::fs::File>,
    done: std::sync::mpsc::Receiver<()>,
    count: usize,
}

impl Pumps {
    fn start(farm: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let dev = farm_path(farm, "/dev")?;
        unmoved(farm, &dev, true)?;
        let (tx, done) = std::sync::mpsc::channel();
        let mut keep = Vec::new();
        for (name, to) in [
            ("stdout", libc::STDOUT_FILENO),
            ("stderr", libc::STDERR_FILENO),
        ] {
            let path = dev.join(name);
            let _ = remove(&path);
            let c = c_path(&path).map_err(std::io::Error::other)?;
            // SAFETY: mkfifo(2) on a path made here.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o666) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
            // The read end first (non-blocking: no writer yet), then a
            // writer held here, then the read end made blocking.
            let reader = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)?;
            keep.push(std::fs::OpenOptions::new().write(true).open(&path)?);
            set_blocking(&reader)?;
            let tx = tx.clone();
            std::thread::spawn(move || {
                copy_to_fd(reader, to);
                let _ = tx.send(());
            });
        }
        Ok(Self {
            keep,
            done,
            count: 2,
        })
    }

    /// Lets the copies end once the container's writers are gone, waiting
    /// a little for what they still hold.
    fn finish(self) {
        drop(self.keep);
        for _ in 0..self.count {
            if self
                .done
                .recv_timeout(std::time::Duration::from_secs(2))
                .is_err()
            {
                break;
            }
        }
    }
}

fn set_blocking(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: fcntl(2) reading and setting the flags of a descriptor this
    // File owns.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Copies `reader` to the descriptor `fd` until its end.
fn copy_to_fd(mut reader: std::fs::File, fd: libc::c_int) {
    use std::io::Read;
    let mut buf = [0u8; 8192];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut at = 0;
        while at < n {
            // SAFETY: write(2) of the part of a live buffer not yet written
            // to one of this process's standard descriptors.
            let w = unsafe { libc::write(fd, buf[at..n].as_ptr().cast(), n - at) };
            if w <= 0 {
                return;
            }
            at += w as usize;
        }
    }
}

/// Checks that `at` (in `farm`) is still reached without a symlink: none
/// among its parents, and with `real`, `at` itself is none either.
fn unmoved(farm: &Path, at: &Path, real: bool) -> std::io::Result<()> {
    let rel = at
        .strip_prefix(farm)
        .map_err(|_| std::io::Error::other(format!("{}: not in the farm", at.display())))?;
    let mut p = farm.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        p.push(part);
        let last = i + 1 == parts.len();
        if last && !real {
            break;
        }
        match p.symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(std::io::Error::other(format!(
                    "the command left a symlink at /{}: not followed",
                    p.strip_prefix(farm).unwrap_or(&p).display()
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How [`place_tree`] places files.
#[derive(Clone, Copy)]
enum Place {
    /// Hard links (copies of the files `copy_uid` owns, and of those a group
    /// or anyone may write).
    Link { copy_uid: Option<u32> },
    /// Copies.
    Copy,
}

/// `src` (a directory or a file) made again at `dst`, keeping modes and
/// owners; files placed as `how` says.
fn place_tree(src: &Path, dst: &Path, how: Place) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(src)
        .follow_links(false)
        .follow_root_links(false)
    {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry.path().strip_prefix(src).expect("under src");
        let to = if rel.as_os_str().is_empty() {
            dst.to_path_buf()
        } else {
            dst.join(rel)
        };
        let meta = entry.path().symlink_metadata()?;
        let kind = meta.file_type();
        if kind.is_dir() {
            if !to.is_dir() {
                std::fs::create_dir(&to)?;
            }
            std::fs::set_permissions(&to, meta.permissions())?;
            std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &to)?;
            std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
        } else if kind.is_file() {
            // A file the command could write through a link (its own, or
            // writable by a group or anyone) is copied: a link would let it
            // change the cached tree.
            let link = match how {
                Place::Link { copy_uid } => {
                    copy_uid != Some(meta.uid()) && meta.permissions().mode() & 0o022 == 0
                }
                Place::Copy => false,
            };
            if link {
                std::fs::hard_link(entry.path(), &to)?;
            } else {
                std::fs::copy(entry.path(), &to)?;
                std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
            }
        }
        // Device nodes, fifos and sockets of a tree are left out.
    }
    Ok(())
}

/// Gives `path` and everything under it to `uid`:`gid`.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(path)
        .follow_links(false)
        .follow_root_links(false)
    {
        let entry = entry.map_err(std::io::Error::other)?;
        std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
    }
    Ok(())
}

/// `at` copied over `src`: beside it first, then swapped in, so that
/// `src` is whole at every moment (the old one or the new one).
fn copy_back(at: &Path, src: &Path) -> std::io::Result<()> {
    let name = src.file_name().unwrap_or_default().to_string_lossy();
    let parent = src.parent().unwrap_or(Path::new("/"));
    let new = parent.join(format!(".{name}.assemble-new-{}", std::process::id()));
    let old = parent.join(format!(".{name}.assemble-old-{}", std::process::id()));
    remove(&new)?;
    place_tree(at, &new, Place::Copy)?;
    std::fs::rename(src, &old)?;
    std::fs::rename(&new, src)?;
    remove(&old)
}

/// A file at `to` with the bytes of the open descriptor `fd` (read from
/// its start, its offset left alone).
fn copy_from_fd(fd: i32, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    // SAFETY: the caller keeps `fd` open for the run (the plan's files);
    // the borrow ends before this function returns.
    let file = std::fs::File::from(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?,
    );
    let mut out = std::fs::File::create(to)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            return Ok(());
        }
        std::io::Write::write_all(&mut out, &buf[..n])?;
        at += n as u64;
    }
}

/// Removes a file or a tree.
fn remove(path: &Path) -> std::io::Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// One change a run made to a farm, undone after it.
enum Change {
    /// A bind's source moved in (renamed), with its owner before.
    Moved {
        src: PathBuf,
        at: PathBuf,
        owner: (u32, u32),
    },
    /// A bind's source copied in (another filesystem, or the user's
    /// volume), copied back after with `owner` (its owner before), or as
    /// the run left it.
    Copied {
        src: PathBuf,
        at: PathBuf,
        owner: Option<(u32, u32)>,
    },
    /// Something made for the run (a read-only bind's links, a tmpfs, a
    /// parent directory, `/tmp`, resolv.conf): removed.
    Made(PathBuf),
    /// What the farm had at a mount's place, set aside.
    Hidden { at: PathBuf, aside: PathBuf },
}

/// How a plan's binds reach the farm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Binds {
    /// Moved in and out, owned by the plan's user meanwhile (a build's own
    /// directories), read-only ones linked.
    Move,
    /// Copied in, with their owners, and the read-write ones copied back
    /// (the user's volumes of `assemble run`).
    Copy,
}

/// The farm as a plan sees it; [`Staged::leave`] undoes it.
struct Staged {
    farm: PathBuf,
    changes: Vec<Change>,
}

impl Staged {
    /// Moves, links and makes the plan's mounts into `farm`.
    fn enter(plan: &Plan, farm: &Path, binds: Binds) -> std::io::Result<Self> {
        let mut staged = Staged {
            farm: farm.to_path_buf(),
            changes: Vec::new(),
        };
        let result = staged.stage(plan, farm, binds);
        match result {
            Ok(()) => Ok(staged),
            Err(e) => {
                let _ = staged.leave();
                Err(e)
            }
        }
    }

    fn stage(&mut self, plan: &Plan, farm: &Path, binds: Binds) -> std::io::Result<()> {
        let tmp = self.clear(farm, "/tmp")?;
        std::fs::create_dir(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
        let resolv = Path::new(HOST_RESOLV_CONF);
        if plan.share_net && resolv.is_file() {
            let at = self.clear(farm, "/etc/resolv.conf")?;
            std::fs::copy(resolv, &at)?;
        }
        for m in &plan.mounts {
            let at = self.clear(farm, m.dest())?;
            match m {
                Mount::Bind(src, _) if binds == Binds::Copy => {
                    // Copied back only once whole: a copy cut short is
                    // removed, the user's files left as they are.
                    if let Err(e) = place_tree(src, &at, Place::Copy) {
                        self.changes.push(Change::Made(at.clone()));
                        return Err(e);
                    }
                    self.changes.push(Change::Copied {
                        src: src.clone(),
                        at: at.clone(),
                        owner: None,
                    });
                }
                Mount::ReadOnly(src, _) if binds == Binds::Copy => {
                    self.changes.push(Change::Made(at.clone()));
                    place_tree(src, &at, Place::Copy)?;
                }
                Mount::Bind(src, _) => {
                    let meta = src.symlink_metadata()?;
                    let owner = (meta.uid(), meta.gid());
                    match std::fs::rename(src, &at) {
                        Ok(()) => self.changes.push(Change::Moved {
                            src: src.clone(),
                            at: at.clone(),
                            owner,
                        }),
                        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                            if let Err(e) = place_tree(src, &at, Place::Copy) {
                                self.changes.push(Change::Made(at.clone()));
                                return Err(e);
                            }
                            self.changes.push(Change::Copied {
                                src: src.clone(),
                                at: at.clone(),
                                owner: Some(owner),
                            });
                        }
                        Err(e) => return Err(e),
                    }
                    chown_tree(&at, plan.uid, plan.gid)?;
                }
                Mount::ReadOnly(src, _) => {
                    self.changes.push(Change::Made(at.clone()));
                    if let Err(e) = place_tree(
                        src,
                        &at,
                        Place::Link {
                            copy_uid: Some(plan.uid),
                        },
                    ) {
                        if e.raw_os_error() != Some(libc::EXDEV) {
                            return Err(e);
                        }
                        remove(&at)?;
                        place_tree(src, &at, Place::Copy)?;
                    }
                }
                Mount::Tmpfs(_) | Mount::TmpfsMode(..) | Mount::Dir(..) => {
                    let mode = match m {
                        Mount::TmpfsMode(_, mode) | Mount::Dir(_, mode) => *mode,
                        _ => 0o755,
                    };
                    self.changes.push(Change::Made(at.clone()));
                    std::fs::create_dir(&at)?;
                    std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode))?;
                    chown_tree(&at, plan.uid, plan.gid)?;
                }
                Mount::File { fd, mode, .. } => {
                    self.changes.push(Change::Made(at.clone()));
                    copy_from_fd(*fd, &at)?;
                    std::fs::set_permissions(&at, std::fs::Permissions::from_mode(*mode))?;
                    std::os::unix::fs::lchown(&at, Some(plan.uid), Some(plan.gid))?;
                }
                Mount::Symlink(target, _) => {
                    self.changes.push(Change::Made(at.clone()));
                    std::os::unix::fs::symlink(target, &at)?;
                    std::os::unix::fs::lchown(&at, Some(plan.uid), Some(plan.gid))?;
                }
            }
        }
        Ok(())
    }

    /// The farm's path for `dest`, made free: what is there set aside, the
    /// missing parents made (removed after).
    fn clear(&mut self, farm: &Path, dest: &str) -> std::io::Result<PathBuf> {
        let at = farm_path(farm, dest)?;
        if at.symlink_metadata().is_ok() {
            let aside = at.with_file_name(format!(
                ".assemble-aside-{}-{}",
                self.changes.len(),
                at.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            std::fs::rename(&at, &aside)?;
            self.changes.push(Change::Hidden {
                at: at.clone(),
                aside,
            });
        } else if let Some(parent) = at.parent() {
            let mut missing = Vec::new();
            let mut p = parent.to_path_buf();
            while !p.exists() && p.starts_with(farm) {
                missing.push(p.clone());
                p = p.parent().unwrap_or(farm).to_path_buf();
            }
            for dir in missing.iter().rev() {
                std::fs::create_dir(dir)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
                self.changes.push(Change::Made(dir.clone()));
            }
            // Whatever the run puts there goes with it.
            self.changes.push(Change::Made(at.clone()));
        }
        Ok(at)
    }

    /// Undoes every change, last first; the first failure is returned
    /// after all were tried. The command may have replaced what was
    /// staged by symlinks: every path in the farm is checked again (no
    /// symlink on the way, none at a bind's place) before root touches it.
    fn leave(mut self) -> std::io::Result<()> {
        let mut first = None;
        while let Some(change) = self.changes.pop() {
            let inside = match &change {
                Change::Moved { at, .. } | Change::Copied { at, .. } => {
                    unmoved(&self.farm, at, true)
                }
                Change::Made(at) | Change::Hidden { at, .. } => unmoved(&self.farm, at, false),
            };
            if let Err(e) = inside {
                first.get_or_insert(e);
                continue;
            }
            let done = match change {
                Change::Moved { src, at, owner } => {
                    chown_tree(&at, owner.0, owner.1).and_then(|()| std::fs::rename(&at, &src))
                }
                Change::Copied { src, at, owner } => owner
                    .map_or(Ok(()), |(u, g)| chown_tree(&at, u, g))
                    .and_then(|()| copy_back(&at, &src))
                    .and_then(|()| remove(&at)),
                Change::Made(path) => remove(&path),
                Change::Hidden { at, aside } => {
                    remove(&at).and_then(|()| std::fs::rename(&aside, &at))
                }
            };
            if let Err(e) = done {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_is_found_on_the_plans_path_inside_the_farm() {
        let farm = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(farm.path().join("usr/bin")).unwrap();
        std::fs::write(farm.path().join("usr/bin/python3"), b"").unwrap();
        let plan = Plan {
            what: "t".into(),
            root: "/r".into(),
            writable_root: false,
            mounts: vec![],
            env: vec![("PATH".into(), "/opt/venv/bin:/usr/bin".into())],
            uid: 1000,
            gid: 1000,
            cwd: "/".into(),
            share_net: false,
            argv: vec!["python3".into()],
        };
        assert_eq!(
            inside_program(&plan, farm.path()).as_deref(),
            Some("/usr/bin/python3")
        );
        let mut absolute = plan.clone();
        absolute.argv = vec!["/assemble/uv".into()];
        assert_eq!(
            inside_program(&absolute, farm.path()).as_deref(),
            Some("/assemble/uv")
        );
        let mut missing = plan;
        missing.argv = vec!["gcc".into()];
        assert_eq!(inside_program(&missing, farm.path()), None);
    }

    #[test]
    fn farms_that_killed_runs_left_are_removed_and_live_ones_kept() {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: a farm's /dev nodes need root (mknod)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/os-release"), b"x").unwrap();
        // A farm whose run was killed: its lock file is there, held by nobody.
        let left = dir.path().join(".chroot-left");
        std::fs::create_dir_all(left.join("etc")).unwrap();
        std::fs::write(lock_path(&left), b"").unwrap();
        // One without a lock file (its removal cut short), young: kept.
        let young = dir.path().join(".chroot-young");
        std::fs::create_dir(&young).unwrap();
        // SAFETY: getuid(2) has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let live = Farm::make(&tree, uid + 1).unwrap();
        assert!(live.path().join("etc/os-release").is_file());
        assert!(!left.exists() && !lock_path(&left).exists(), "abandoned");
        assert!(young.exists(), "no lock, not old: kept");
        // Another run beside it keeps the live one.
        let other = Farm::make(&tree, uid + 1).unwrap();
        assert!(live.path().exists());
        let (live_path, other_path) = (live.path().to_path_buf(), other.path().to_path_buf());
        drop(live);
        drop(other);
        assert!(!live_path.exists() && !lock_path(&live_path).exists());
        assert!(!other_path.exists());
    }

    #[test]
    fn leaving_follows_no_symlink_the_command_left() {
        let dir = tempfile::tempdir().unwrap();
        let farm = dir.path().join("farm");
        std::fs::create_dir_all(farm.join("home/blue")).unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        std::fs::write(vol.join("v"), b"the user's").unwrap();
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let plan = Plan {
            what: "t".into(),
            root: farm.clone(),
            writable_root: false,
            mounts: vec![
                Mount::TmpfsMode("/home/blue/config/app".into(), 0o755),
                Mount::Bind(vol.clone(), "/home/blue/vol".into()),
            ],
            env: vec![],
            uid,
            gid,
            cwd: "/".into(),
            share_net: true,
            argv: vec!["true".into()],
        };
        let staged = Staged::enter(&plan, &farm, Binds::Copy).unwrap();
        assert_eq!(
            std::fs::read(farm.join("home/blue/vol/v")).unwrap(),
            b"the user's"
        );
        // The command swaps its home for a symlink to the job's files.
        let outside = dir.path().join("job");
        std::fs::create_dir_all(outside.join("config/app")).unwrap();
        std::fs::create_dir_all(outside.join("vol")).unwrap();
        std::fs::write(outside.join("config/app/x"), b"job").unwrap();
        std::fs::write(outside.join("vol/y"), b"job").unwrap();
        std::fs::rename(farm.join("home/blue"), farm.join("home/moved")).unwrap();
        std::os::unix::fs::symlink(&outside, farm.join("home/blue")).unwrap();
        let err = staged.leave().unwrap_err();
        assert!(err.to_string().contains("symlink at /home/blue"), "{err}");
        assert_eq!(std::fs::read(outside.join("config/app/x")).unwrap(), b"job");
        assert_eq!(std::fs::read(outside.join("vol/y")).unwrap(), b"job");
        assert_eq!(std::fs::read(vol.join("v")).unwrap(), b"the user's");
        assert!(!vol.join("y").exists(), "nothing copied back from outside");
    }

    #[test]
    fn a_volume_is_copied_back_only_when_its_copy_was_whole() {
        let dir = tempfile::tempdir().unwrap();
        let farm = dir.path().join("farm");
        std::fs::create_dir_all(&farm).unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        std::fs::write(vol.join("a"), b"kept").unwrap();
        // A directory the copy cannot read stops it half-way.
        std::fs::create_dir(vol.join("closed")).unwrap();
        std::fs::write(vol.join("closed/b"), b"kept too").unwrap();
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        if uid == 0 {
            eprintln!("SKIPPED: root reads a directory of mode 000");
            return;
        }
        std::fs::set_permissions(vol.join("closed"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        let plan = Plan {
            what: "t".into(),
            root: farm.clone(),
            writable_root: false,
            mounts: vec![Mount::Bind(vol.clone(), "/vol".into())],
            env: vec![],
            uid,
            gid,
            cwd: "/".into(),
            share_net: false,
            argv: vec!["true".into()],
        };
        assert!(Staged::enter(&plan, &farm, Binds::Copy).is_err());
        std::fs::set_permissions(vol.join("closed"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        assert_eq!(std::fs::read(vol.join("a")).unwrap(), b"kept");
        assert_eq!(std::fs::read(vol.join("closed/b")).unwrap(), b"kept too");
        assert!(!farm.join("vol").exists());
    }

    #[test]
    fn a_symlink_among_a_mounts_parents_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let farm = dir.path().join("farm");
        std::fs::create_dir(&farm).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), farm.join("home")).unwrap();
        let err = farm_path(&farm, "/home/blue/app").unwrap_err();
        assert!(err.to_string().contains("symlink at home"), "{err}");
        assert!(
            farm_path(&farm, "/home").is_ok(),
            "the last part is set aside, not followed"
        );
        assert!(farm_path(&farm, "/a/../b").is_err());
    }

    #[test]
    fn a_run_leaves_the_farm_and_the_binds_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let farm = dir.path().join("farm");
        std::fs::create_dir_all(farm.join("home/blue/app")).unwrap();
        std::fs::write(farm.join("home/blue/app/old"), b"tree").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("in"), b"host").unwrap();
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::write(ro.join("wheel"), b"w").unwrap();
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let plan = Plan {
            what: "t".into(),
            root: farm.clone(),
            writable_root: false,
            mounts: vec![
                Mount::Bind(out.clone(), "/home/blue/app".into()),
                Mount::ReadOnly(ro.clone(), "/assemble/wheelhouse".into()),
                Mount::Tmpfs("/assemble/scratch".into()),
            ],
            env: vec![],
            uid,
            gid,
            cwd: "/".into(),
            share_net: false,
            argv: vec!["true".into()],
        };
        let staged = Staged::enter(&plan, &farm, Binds::Move).unwrap();
        assert_eq!(
            std::fs::read(farm.join("home/blue/app/in")).unwrap(),
            b"host"
        );
        assert_eq!(
            std::fs::read(farm.join("assemble/wheelhouse/wheel")).unwrap(),
            b"w"
        );
        assert!(farm.join("assemble/scratch").is_dir());
        assert!(farm.join("tmp").is_dir());
        // What the command writes in a bind stays there.
        std::fs::write(farm.join("home/blue/app/made"), b"by the run").unwrap();
        staged.leave().unwrap();
        assert_eq!(std::fs::read(out.join("made")).unwrap(), b"by the run");
        assert_eq!(std::fs::read(out.join("in")).unwrap(), b"host");
        assert_eq!(
            std::fs::read(farm.join("home/blue/app/old")).unwrap(),
            b"tree"
        );
        assert!(!farm.join("assemble").exists(), "made for the run, removed");
        assert!(!farm.join("tmp").exists());
        assert_eq!(std::fs::read(ro.join("wheel")).unwrap(), b"w");
    }
}
