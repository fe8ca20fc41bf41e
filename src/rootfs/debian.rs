//! Rootfs built from Debian with `mmdebstrap --mode=unshare` (rootless):
//! the [`Definition`] (package lists and hook of `layers/`), the mmdebstrap
//! command it runs through the sandbox's [`Runner`], and the one layer made
//! from its tarball. The cache key is the definition plus the archive
//! state (`archive`): a Debian update rebuilds, nothing else does, and one
//! archive state gives the same bytes (same `SOURCE_DATE_EPOCH`).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::cache::{Cache, KeyBuilder};
use crate::image::documents::host_architecture;
use crate::image::layer;
use crate::image::unpack;
use crate::output::Printer;
use crate::rootfs::archive::{self, ArchiveState};
use crate::rootfs::error::{io_err, RootfsError};
use crate::rootfs::{commit, load_cached, Rootfs};
use crate::sandbox::{HostCommand, Runner};

/// Packages of the base rootfs (`layers/base/packages`).
pub const BASE_PACKAGES: &str = include_str!("../../layers/base/packages");
/// Customize hook shared by base and compiler (`layers/base/setup.sh`).
pub const SETUP_HOOK: &str = include_str!("../../layers/base/setup.sh");
/// Packages added for the compiler (`layers/compiler/packages`).
pub const COMPILER_PACKAGES: &str = include_str!("../../layers/compiler/packages");
/// Debian suite the rootfs are built from.
pub const RELEASES: &str = include_str!("../../layers/releases");

/// A Debian release (its suite name) and the Python 3 it ships.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// `bookworm`.
    pub name: String,
    /// `3.11`.
    pub python: String,
}

/// The releases of layers/releases, the default first.
pub fn releases() -> Vec<Release> {
    RELEASES
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some(Release {
                name: words.next()?.to_string(),
                python: words.next()?.to_string(),
            })
        })
        .collect()
}

/// The release the built rootfs come from: the one named (`debian`), else
/// the one that ships `python`, else the default; exit 2 (listing what
/// there is) for a release or a Python none of them is.
pub fn choose_release(debian: Option<&str>, python: Option<&str>) -> Result<Release, RootfsError> {
    let all = releases();
    let offer = || {
        all.iter()
            .map(|r| format!("{} (Python {})", r.name, r.python))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (debian, python) {
        (Some(name), python) => {
            let release =
                all.iter()
                    .find(|r| r.name == name)
                    .ok_or_else(|| RootfsError::UnknownRelease {
                        asked: name.to_string(),
                        offer: offer(),
                    })?;
            match python {
                Some(p) if p != release.python => Err(RootfsError::ReleasePython {
                    release: release.name.clone(),
                    ships: release.python.clone(),
                    asked: p.to_string(),
                }),
                _ => Ok(release.clone()),
            }
        }
        (None, Some(p)) => {
            all.iter()
                .find(|r| r.python == p)
                .cloned()
                .ok_or_else(|| RootfsError::NoRelease {
                    python: p.to_string(),
                    offer: offer(),
                })
        }
        (None, None) => Ok(all[0].clone()),
    }
}

/// Refuses a mirror (`ASSEMBLE_DEBIAN_MIRROR`) whose suites are not the
/// release's (`RELEASE`, `RELEASE-updates`...): mmdebstrap would build what
/// the mirror names under the release's key. mmdebstrap's own sources
/// follow the release; a flat repository names no suite to check.
fn check_suites(def: &Definition, urls: &[String]) -> Result<(), RootfsError> {
    if def.mirror.trim().is_empty() {
        return Ok(());
    }
    let other: Vec<String> = urls
        .iter()
        .filter_map(|u| {
            let suite = u.rsplit_once("/dists/")?.1.trim_end_matches("/InRelease");
            (suite != def.release && !suite.starts_with(&format!("{}-", def.release)))
                .then(|| suite.to_string())
        })
        .collect();
    if other.is_empty() {
        return Ok(());
    }
    Err(RootfsError::MirrorSuite {
        release: def.release.clone(),
        suites: other.join(", "),
    })
}

/// The release named `name` (checked by [`choose_release`]), else the
/// default.
fn release_named(name: Option<&str>) -> Release {
    let all = releases();
    name.and_then(|n| all.iter().find(|r| r.name == n).cloned())
        .unwrap_or_else(|| all[0].clone())
}
/// The apt preferences of a locked build, in the chroot while mmdebstrap runs.
const PINS: &str = "etc/apt/preferences.d/assemble-locked";

/// A package list and hook that define a rootfs built with mmdebstrap.
#[derive(Clone, Debug)]
pub struct Definition {
    /// `base` or `compiler`.
    pub role: String,
    /// The Debian release (its suite).
    pub release: String,
    /// Packages to include.
    pub packages: Vec<String>,
    /// The Debian mirror (`ASSEMBLE_DEBIAN_MIRROR`; empty: mmdebstrap's choice).
    pub mirror: String,
}

impl Definition {
    /// The base definition plus the project's run-time packages, from
    /// `release` (None: the default).
    pub fn base(release: Option<&str>, run_deps: &[String]) -> Self {
        let mut packages = parse_package_list(BASE_PACKAGES);
        packages.extend(run_deps.iter().cloned());
        Self::new("base", release, packages)
    }

    /// The compiler definition: base, compiler packages, run and build
    /// packages, from `release` (None: the default).
    pub fn compiler(release: Option<&str>, run_deps: &[String], build_deps: &[String]) -> Self {
        let mut packages = parse_package_list(BASE_PACKAGES);
        packages.extend(parse_package_list(COMPILER_PACKAGES));
        packages.extend(run_deps.iter().cloned());
        packages.extend(build_deps.iter().cloned());
        Self::new("compiler", release, packages)
    }

    /// What a compiler made from a given base adds to it
    /// (`rootfs::derived`): the compiler packages, run and build packages,
    /// sorted.
    pub fn compiler_additions(run_deps: &[String], build_deps: &[String]) -> Vec<String> {
        let mut packages = parse_package_list(COMPILER_PACKAGES);
        packages.extend(run_deps.iter().cloned());
        packages.extend(build_deps.iter().cloned());
        packages.sort();
        packages.dedup();
        packages
    }

    fn new(role: &str, release: Option<&str>, mut packages: Vec<String>) -> Self {
        packages.sort();
        packages.dedup();
        Self {
            role: role.into(),
            release: release_named(release).name,
            packages,
            mirror: std::env::var(crate::env::ASSEMBLE_DEBIAN_MIRROR).unwrap_or_default(),
        }
    }

    /// What defines the rootfs apart from the archive state: the key its
    /// last known archive state is recorded under.
    pub fn key(&self) -> String {
        self.key_builder().finish()
    }

    /// Cache key of the rootfs: the definition and the archive state.
    pub fn key_with(&self, state: &ArchiveState) -> String {
        let mut k = self.key_builder();
        state.key_part(&mut k);
        k.finish()
    }

    fn key_builder(&self) -> KeyBuilder {
        // v2: the base layer carries an empty `./dev/` (v1 had no /dev at all).
        // v3: the archive state, SOURCE_DATE_EPOCH from it, the record.
        let mut k = KeyBuilder::new("rootfs-mmdebstrap-v3");
        k.part("role", self.role.as_bytes())
            .part("suite", self.release.as_bytes())
            .part("packages", self.packages.join(",").as_bytes())
            .part("hook", SETUP_HOOK.as_bytes())
            .part("arch", host_architecture().as_bytes())
            .part("mirror", self.mirror.as_bytes());
        k
    }

    /// The mmdebstrap command that makes this rootfs as a tar at `tar`:
    /// apt's lists copied out to `lists`, then `hook` as its customize hook,
    /// with `SOURCE_DATE_EPOCH` = `epoch` (never the user's: that one dates
    /// the image's own layers). Rootless (`--mode=unshare`); documentation,
    /// manuals and locales left out.
    ///
    /// With `pins` (a locked build), that apt preferences file is in the
    /// chroot while apt resolves (the essential set included), and removed
    /// before the hook.
    pub fn mmdebstrap(
        &self,
        mmdebstrap: Mmdebstrap,
        hook: &Path,
        lists: &Path,
        tar: &Path,
        epoch: u64,
        pins: Option<&Path>,
    ) -> HostCommand {
        let mut args: Vec<String> = mmdebstrap
            .mode
            .args()
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.extend([
            "--variant=essential".into(),
            "--format=tar".into(),
            format!("--include={}", self.packages.join(",")),
            "--skip=output/dev".into(),
            "--dpkgopt=path-exclude=/usr/share/doc/*".into(),
            "--dpkgopt=path-include=/usr/share/doc/*/copyright".into(),
            "--dpkgopt=path-exclude=/usr/share/man/*".into(),
            "--dpkgopt=path-exclude=/usr/share/locale/*".into(),
        ]);
        if let Some(pins) = pins {
            args.push(format!(
                "--setup-hook=mkdir -p \"$1/etc/apt/preferences.d\" && cp '{}' \"$1/{PINS}\"",
                pins.display()
            ));
            args.push(format!("--customize-hook=rm -f \"$1/{PINS}\""));
        }
        args.extend([
            format!(
                "--customize-hook=sync-out /var/lib/apt/lists {}",
                lists.display()
            ),
            format!("--customize-hook=sh {} \"$1\"", hook.display()),
            self.release.clone(),
            tar.display().to_string(),
        ]);
        if !self.mirror.is_empty() {
            args.push(self.mirror.clone());
        }
        HostCommand {
            what: format!("mmdebstrap of the {} rootfs", self.role),
            program: mmdebstrap.program,
            args,
            env: vec![(crate::env::SOURCE_DATE_EPOCH.to_string(), epoch.to_string())],
            stdin: None,
        }
    }
}

/// mmdebstrap as it runs here: the program and its mode.
#[derive(Clone, Debug)]
pub struct Mmdebstrap {
    /// The program.
    pub program: PathBuf,
    /// The mode.
    pub mode: Mode,
}

/// How mmdebstrap runs here; both modes give the same bytes for the same
/// archive state (tests/jobcontainer.rs builds both and compares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `--mode=unshare`: rootless, in a user namespace of its own.
    Unshare,
    /// `--mode=root --skip=chroot/mount`: root where user namespaces are
    /// refused (a CI job container, which has no `CAP_SYS_ADMIN` to mount
    /// with either): the maintainer scripts run chrooted without `/proc`,
    /// `/sys` or `/dev` mounted.
    Root,
}

impl Mode {
    /// The mode `runner`'s host commands can run mmdebstrap in, for the
    /// `role` rootfs (named in the error when there is none).
    pub fn here(role: &str, runner: &dyn Runner) -> Result<Self, RootfsError> {
        if runner.user_namespaces() {
            return Ok(Mode::Unshare);
        }
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return Ok(Mode::Root);
        }
        Err(RootfsError::NoMmdebstrapMode { role: role.into() })
    }

    /// mmdebstrap's options for it.
    pub fn args(self) -> &'static [&'static str] {
        match self {
            Mode::Unshare => &["--mode=unshare"],
            Mode::Root => &["--mode=root", "--skip=chroot/mount"],
        }
    }
}

fn parse_package_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Gets the rootfs for a definition: the archive state revalidated, then
/// the rootfs cached for it, or mmdebstrap on a miss. When the mirror
/// cannot be reached, the last known state serves, with one warning.
pub fn built(
    cache: &Cache,
    def: &Definition,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<Rootfs, RootfsError> {
    let def_key = def.key();
    let urls = archive::suites(&def.mirror, &def.release, cache, runner)?;
    check_suites(def, &urls)?;
    let last: Option<ArchiveState> = cache.get_json("rootfs", &format!("state-{def_key}"));
    let state = match (archive::revalidate(&urls, last.as_ref()), &last) {
        (Ok(state), _) => state,
        (Err(reason), Some(last)) => {
            if archive::first_warning(&reason) {
                printer.warn(&format!(
                    "cannot check the Debian archive for updates ({reason}); using the last \
                     known state ({})",
                    last.suites
                        .iter()
                        .map(|s| s.date.as_str())
                        .max_by_key(|d| crate::epoch::from_rfc2822(d))
                        .unwrap_or("?")
                ));
            }
            last.clone()
        }
        (Err(reason), None) => {
            return Err(RootfsError::ArchiveUnreachable {
                role: def.role.clone(),
                reason,
            })
        }
    };
    let key = def.key_with(&state);
    if let Some(r) = load_cached(cache, &key) {
        printer.step(&format!(
            "{} rootfs: cached ({}, Debian archive unchanged)",
            def.role,
            &key[..12]
        ));
        cache.put_json("rootfs", &format!("state-{def_key}"), &state)?;
        super::offer(cache, &r);
        return Ok(r);
    }
    let accept = |record: Option<&archive::DebianRecord>| match record {
        Some(r)
            if r.suites
                .iter()
                .map(|s| &s.sha256)
                .eq(state.suites.iter().map(|s| &s.sha256))
                && state.epoch().is_ok_and(|e| e == r.epoch) =>
        {
            Ok(())
        }
        _ => Err("it records another Debian archive state than its key".to_string()),
    };
    let name = format!("{} rootfs", def.role);
    if let Some(r) = super::from_remote(cache, &key, &name, accept, printer) {
        cache.put_json("rootfs", &format!("state-{def_key}"), &state)?;
        return Ok(r);
    }
    let why = match &last {
        Some(last) if *last != state => state.changes_since(last),
        Some(_) => "its cache entry is gone".to_string(),
        None => "first build of this definition here".to_string(),
    };
    let rootfs = make(
        &Make {
            cache,
            def,
            key: &key,
            state: &state,
            epoch: state.epoch()?,
            pins: None,
            why: &why,
        },
        runner,
        printer,
    )?;
    cache.put_json("rootfs", &format!("state-{def_key}"), &state)?;
    Ok(rootfs)
}

/// Builds the rootfs of `def` with the packages of a lock's `record` at
/// exactly their versions (the essential set included: apt preferences pin
/// each one) and its `SOURCE_DATE_EPOCH`, so that it is the rootfs the
/// build that wrote the lock had. Before mmdebstrap runs, the archive's
/// current `Packages` indexes are read: each locked package they no longer
/// have is named in one error (exit 2).
pub fn built_locked(
    cache: &Cache,
    def: &Definition,
    record: &archive::DebianRecord,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<Rootfs, RootfsError> {
    let mut k = def.key_builder();
    k.part("locked-epoch", record.epoch.to_string().as_bytes());
    for p in &record.packages {
        k.part(
            "locked",
            format!("{} {} {} {}", p.name, p.version, p.architecture, p.sha256).as_bytes(),
        );
    }
    let key = k.finish();
    if let Some(r) = load_cached(cache, &key) {
        printer.step(&format!(
            "{} rootfs: cached ({}, locked)",
            def.role,
            &key[..12]
        ));
        return Ok(r);
    }
    // The rootfs built here from the archive state the lock was written
    // in, when it is still cached: the locked packages exactly.
    let unlocked = def.key_with(&ArchiveState {
        suites: record.suites.clone(),
    });
    if let Some(r) = load_cached(cache, &unlocked).filter(|r| r.debian.as_ref() == Some(record)) {
        printer.step(&format!(
            "{} rootfs: cached ({}, the lock's archive state)",
            def.role,
            &unlocked[..12]
        ));
        return Ok(r);
    }
    let urls = archive::suites(&def.mirror, &def.release, cache, runner)?;
    check_suites(def, &urls)?;
    let missing = archive::missing_packages(record, &urls, host_architecture())?;
    if !missing.is_empty() {
        return Err(RootfsError::LockedPackagesGone {
            role: def.role.clone(),
            packages: missing,
        });
    }
    let state =
        archive::revalidate(&urls, None).map_err(|reason| RootfsError::ArchiveUnreachable {
            role: def.role.clone(),
            reason,
        })?;
    let pins: String = record
        .packages
        .iter()
        .map(|p| {
            format!(
                "Package: {}\nPin: version {}\nPin-Priority: 1001\n\n",
                p.name, p.version
            )
        })
        .collect();
    make(
        &Make {
            cache,
            def,
            key: &key,
            state: &state,
            epoch: record.epoch,
            pins: Some(&pins),
            why: "at the lock's versions",
        },
        runner,
        printer,
    )
}

/// One mmdebstrap run and the cache entry it makes.
struct Make<'a> {
    cache: &'a Cache,
    def: &'a Definition,
    /// The cache key of the result.
    key: &'a str,
    /// The archive state apt must use (checked after the run).
    state: &'a ArchiveState,
    /// `SOURCE_DATE_EPOCH` for mmdebstrap.
    epoch: u64,
    /// apt preferences pinning a lock's versions.
    pins: Option<&'a str>,
    /// Why it runs, for the progress line.
    why: &'a str,
}

/// Runs mmdebstrap for `m`, then makes the layer, the tree and the record,
/// and commits them under `m.key`.
fn make(m: &Make<'_>, runner: &dyn Runner, printer: &Printer) -> Result<Rootfs, RootfsError> {
    let (cache, def) = (m.cache, m.def);
    let mmdebstrap =
        runner
            .find_program("mmdebstrap")
            .ok_or_else(|| RootfsError::NoMmdebstrap {
                role: def.role.clone(),
            })?;
    let mode = Mode::here(&def.role, runner)?;
    printer.step(&format!(
        "{} rootfs: building with mmdebstrap ({} packages; {}){}",
        def.role,
        def.packages.len(),
        m.why,
        match mode {
            Mode::Unshare => "",
            Mode::Root => " in its root mode (no user namespaces here)",
        }
    ));
    let work = cache.work_dir(&format!("rootfs-{}", def.role))?;
    let hook = work.path().join("setup.sh");
    fs_err::write(&hook, SETUP_HOOK).map_err(io_err(&hook))?;
    let lists = work.path().join("lists");
    fs_err::create_dir(&lists).map_err(io_err(&lists))?;
    let pins = match m.pins {
        Some(text) => {
            let path = work.path().join("pins");
            fs_err::write(&path, text).map_err(io_err(&path))?;
            Some(path)
        }
        None => None,
    };
    let tar_path = work.path().join("rootfs.tar");
    let out = runner.run_host(&def.mmdebstrap(
        Mmdebstrap {
            program: mmdebstrap,
            mode,
        },
        &hook,
        &lists,
        &tar_path,
        m.epoch,
        pins.as_deref(),
    ))?;
    if !out.success {
        return Err(RootfsError::Mmdebstrap {
            role: def.role.clone(),
            status: out.status,
            tail: archive::failure_tail(&out.stderr),
        });
    }
    // `--skip=output/dev` leaves out mmdebstrap's /dev entries, the directory
    // included; the layer gets the directory back, empty, as the first entry
    // (where mmdebstrap puts it), so a runtime binding a read-only rootfs
    // finds its mount point, as in Debian's own images.
    let dev = dev_entry(&tar_path)?;
    let blob = layer::compress_tar_blob(
        io::Cursor::new(dev).chain(fs_err::File::open(&tar_path).map_err(io_err(&tar_path))?),
        cache.blobs().dir(),
    )?;
    let tree = work.path().join("tree");
    fs_err::create_dir(&tree).map_err(io_err(&tree))?;
    let file = fs_err::File::open(&tar_path).map_err(io_err(&tar_path))?;
    unpack::unpack(io::Cursor::new(dev).chain(io::BufReader::new(file)), &tree).map_err(
        |source| RootfsError::Unpack {
            source_name: format!("mmdebstrap {}", def.role),
            source,
        },
    )?;
    fs_err::remove_file(&tar_path).map_err(io_err(&tar_path))?;
    let record = archive::record(m.state, m.epoch, &lists, &tree)?;
    crate::fsutil::make_writable(&lists);
    fs_err::remove_dir_all(&lists).map_err(io_err(&lists))?;
    let created_by = format!(
        "mmdebstrap --variant=essential {} ({}: {})",
        def.release,
        def.role,
        def.packages.join(" ")
    );
    let rootfs = commit(
        cache,
        work,
        m.key,
        vec![blob],
        vec![created_by],
        Some(record),
    )?;
    super::offer(cache, &rootfs);
    Ok(rootfs)
}

/// The tar header of an empty `./dev/` directory (root-owned, 0755), dated
/// like the first entry of mmdebstrap's tarball (its root directory, whose
/// time mmdebstrap clamps to `SOURCE_DATE_EPOCH`).
fn dev_entry(tar_path: &Path) -> Result<[u8; 512], RootfsError> {
    let mut first = [0u8; 512];
    fs_err::File::open(tar_path)
        .and_then(|mut f| f.read_exact(&mut first))
        .map_err(io_err(tar_path))?;
    let mtime = tar::Header::from_byte_slice(&first).mtime().unwrap_or(0);
    let mut header = tar::Header::new_gnu();
    // Written as bytes: the tar crate drops a leading `./`, and mmdebstrap's
    // entries all have it.
    header.as_gnu_mut().expect("a GNU header").name[..6].copy_from_slice(b"./dev/");
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(0);
    header.set_mtime(mtime);
    header.set_cksum();
    let mut block = [0u8; 512];
    block.copy_from_slice(header.as_bytes());
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_releases_is_well_formed() {
        let all = releases();
        assert!(!all.is_empty());
        for line in RELEASES
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
        {
            assert!(
                line.is_empty() || line.split_whitespace().count() == 2,
                "{line:?}: RELEASE PYTHON"
            );
        }
        for (i, r) in all.iter().enumerate() {
            assert!(crate::spec::check_python(&r.python).is_ok(), "{r:?}");
            assert!(
                all[..i]
                    .iter()
                    .all(|o| o.name != r.name && o.python != r.python),
                "{r:?} twice"
            );
        }
    }

    #[test]
    fn a_mirror_of_another_release_is_refused() {
        let mut def = Definition::base(Some("trixie"), &[]);
        let urls = |suites: &[&str]| -> Vec<String> {
            suites
                .iter()
                .map(|s| format!("http://127.0.0.1:1/debian/dists/{s}/InRelease"))
                .collect()
        };
        def.mirror = "deb http://127.0.0.1:1/debian bookworm main".into();
        let err = check_suites(&def, &urls(&["bookworm"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("names suite bookworm") && err.contains("from Debian trixie"),
            "{err}"
        );
        assert!(check_suites(&def, &urls(&["trixie", "trixie-updates"])).is_ok());
        assert!(check_suites(&def, &["http://127.0.0.1:1/flat/InRelease".into()]).is_ok());
        def.mirror.clear();
        assert!(
            check_suites(&def, &urls(&["bookworm"])).is_ok(),
            "mmdebstrap's defaults"
        );
    }

    #[test]
    fn the_release_follows_the_python_asked_for_or_the_one_named() {
        let default = choose_release(None, None).unwrap();
        assert_eq!(
            (default.name.as_str(), default.python.as_str()),
            ("bookworm", "3.11")
        );
        assert_eq!(choose_release(None, Some("3.13")).unwrap().name, "trixie");
        assert_eq!(choose_release(Some("trixie"), None).unwrap().python, "3.13");
        assert_eq!(
            choose_release(Some("trixie"), Some("3.13")).unwrap().name,
            "trixie"
        );
        let err = choose_release(None, Some("3.12")).unwrap_err().to_string();
        assert!(
            err.contains("ships Python 3.12")
                && err.contains("bookworm (Python 3.11), trixie (Python 3.13)"),
            "{err}"
        );
        let err = choose_release(Some("sid"), None).unwrap_err().to_string();
        assert!(
            err.contains("\"sid\"") && err.contains("trixie (Python 3.13)"),
            "{err}"
        );
        let err = choose_release(Some("bookworm"), Some("3.13"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Debian bookworm ships Python 3.11, not 3.13"),
            "{err}"
        );
        // The release is part of what defines a rootfs.
        assert_ne!(
            Definition::base(Some("trixie"), &[]).key(),
            Definition::base(None, &[]).key()
        );
        assert_eq!(
            Definition::base(Some("bookworm"), &[]).key(),
            Definition::base(None, &[]).key()
        );
        let def = Definition::compiler(Some("trixie"), &[], &[]);
        let c = def.mmdebstrap(
            Mmdebstrap {
                program: "mmdebstrap".into(),
                mode: Mode::Unshare,
            },
            Path::new("/h"),
            Path::new("/l"),
            Path::new("/t.tar"),
            1,
            None,
        );
        assert!(c.args.iter().any(|a| a == "trixie"), "{:?}", c.args);
    }

    #[test]
    fn the_dev_entry_is_an_empty_root_owned_directory_dated_like_the_first_entry() {
        let t = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path("etc/").unwrap();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mtime(1_700_000_123);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
        let path = t.path().join("rootfs.tar");
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let block = dev_entry(&path).unwrap();
        let mut bytes = block.to_vec();
        bytes.extend(std::fs::read(&path).unwrap());
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries[0],
            (
                "./dev/".to_string(),
                tar::EntryType::Directory,
                0o755,
                0,
                1_700_000_123
            )
        );
        assert_eq!(entries[1].0, "etc/");
    }

    #[test]
    fn mmdebstrap_runs_rootless_with_the_definition_its_mirror_and_the_archive_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let archive = dir.path().join("archive");
        std::fs::create_dir_all(archive.join("dists/bookworm")).unwrap();
        std::fs::write(
            archive.join("dists/bookworm/InRelease"),
            "Origin: test\nDate: Tue, 14 Nov 2023 22:13:20 UTC\n",
        )
        .unwrap();
        let mut def = Definition::base(None, &["libpq5".into()]);
        def.mirror = format!(
            "deb [trusted=yes] file://{} bookworm main",
            archive.display()
        );
        let recorder = crate::sandbox::Recorder::answering(crate::sandbox::HostOutput {
            success: false,
            status: "exit status: 1".into(),
            stdout: Vec::new(),
            stderr: b"E: cannot reach http://user:s3cret@127.0.0.1:1/debian\n".to_vec(),
        });
        let printer = Printer::new(crate::output::Mode::Quiet, false);
        let err = built(&cache, &def, &recorder, &printer).unwrap_err();
        assert!(
            matches!(&err, RootfsError::Mmdebstrap { tail, .. } if tail.contains("cannot reach http://***@127.0.0.1:1/debian")),
            "{err}"
        );
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let cmds = recorder.host_commands.lock().unwrap();
        assert_eq!(
            cmds.len(),
            1,
            "one mmdebstrap run, no probe: the mirror is given"
        );
        let c = &cmds[0];
        assert_eq!(c.program, Path::new("mmdebstrap"));
        assert_eq!(
            c.args[..3],
            ["--mode=unshare", "--variant=essential", "--format=tar"]
        );
        assert!(def.packages.contains(&"libpq5".to_string()));
        assert!(c
            .args
            .contains(&format!("--include={}", def.packages.join(","))));
        let sync = c
            .args
            .iter()
            .position(|a| a.starts_with("--customize-hook=sync-out /var/lib/apt/lists "))
            .expect("apt's lists copied out");
        let setup = c
            .args
            .iter()
            .position(|a| a.starts_with("--customize-hook=sh ") && a.ends_with("setup.sh \"$1\""))
            .expect("the setup hook");
        assert!(
            sync < setup,
            "the lists are copied out before setup.sh empties them"
        );
        let n = c.args.len();
        assert_eq!(c.args[n - 3], "bookworm");
        assert!(c.args[n - 2].ends_with("/rootfs.tar"), "{:?}", c.args);
        assert_eq!(c.args[n - 1], def.mirror);
        // The archive's newest Date, never the user's SOURCE_DATE_EPOCH.
        assert_eq!(
            c.env,
            [("SOURCE_DATE_EPOCH".to_string(), "1700000000".to_string())]
        );
        assert_eq!(c.stdin, None);
        assert!(load_cached(&cache, &def.key()).is_none(), "nothing cached");
        assert!(
            cache
                .get_json::<ArchiveState>("rootfs", &format!("state-{}", def.key()))
                .is_none(),
            "no state recorded for a rootfs that was not made"
        );
    }

    #[test]
    fn an_unreachable_mirror_with_no_known_state_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut def = Definition::base(None, &[]);
        def.mirror = "deb http://user:s3cret@127.0.0.1:1/debian bookworm main".into();
        let recorder = crate::sandbox::Recorder::default();
        let printer = Printer::new(crate::output::Mode::Quiet, false);
        let err = built(&cache, &def, &recorder, &printer).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, RootfsError::ArchiveUnreachable { .. }),
            "{text}"
        );
        assert!(
            text.contains("http://127.0.0.1:1/debian/dists/bookworm/InRelease"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            recorder.host_commands.lock().unwrap().is_empty(),
            "mmdebstrap never ran"
        );
    }

    #[test]
    fn the_key_changes_with_the_archive_state() {
        let def = Definition::base(None, &[]);
        let state = |sha: &str| ArchiveState {
            suites: vec![archive::SuiteState {
                url: "http://127.0.0.1:1/debian/dists/bookworm/InRelease".into(),
                sha256: sha.into(),
                date: "Tue, 14 Nov 2023 22:13:20 UTC".into(),
                etag: None,
                last_modified: None,
            }],
        };
        assert_eq!(def.key_with(&state("a")), def.key_with(&state("a")));
        assert_ne!(def.key_with(&state("a")), def.key_with(&state("b")));
        assert_ne!(def.key_with(&state("a")), def.key());
    }

    #[test]
    fn definition_key_changes_with_packages() {
        assert_ne!(
            Definition::base(None, &[]).key(),
            Definition::base(None, &["libpq5".into()]).key()
        );
        assert_ne!(
            Definition::base(None, &[]).key(),
            Definition::compiler(None, &[], &[]).key()
        );
    }
}
