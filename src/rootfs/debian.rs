//! Rootfs built from Debian with `mmdebstrap --mode=unshare` (rootless):
//! the [`Definition`] (package lists and hook of `layers/`), the mmdebstrap
//! command it runs through the sandbox's [`Runner`], and the one layer made
//! from its tarball.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::cache::{Cache, KeyBuilder};
use crate::image::documents::host_architecture;
use crate::image::layer;
use crate::image::unpack;
use crate::output::Printer;
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
pub const SUITE: &str = "bookworm";

/// A package list and hook that define a rootfs built with mmdebstrap.
#[derive(Clone, Debug)]
pub struct Definition {
    /// `base` or `compiler`.
    pub role: String,
    /// Packages to include.
    pub packages: Vec<String>,
    /// The Debian mirror (`ASSEMBLE_DEBIAN_MIRROR`; empty: mmdebstrap's choice).
    pub mirror: String,
}

impl Definition {
    /// The base definition plus the project's run-time packages.
    pub fn base(run_deps: &[String]) -> Self {
        let mut packages = parse_package_list(BASE_PACKAGES);
        packages.extend(run_deps.iter().cloned());
        Self::new("base", packages)
    }

    /// The compiler definition: base, compiler packages, run and build packages.
    pub fn compiler(run_deps: &[String], build_deps: &[String]) -> Self {
        let mut packages = parse_package_list(BASE_PACKAGES);
        packages.extend(parse_package_list(COMPILER_PACKAGES));
        packages.extend(run_deps.iter().cloned());
        packages.extend(build_deps.iter().cloned());
        Self::new("compiler", packages)
    }

    fn new(role: &str, mut packages: Vec<String>) -> Self {
        packages.sort();
        packages.dedup();
        Self {
            role: role.into(),
            packages,
            mirror: std::env::var(crate::env::ASSEMBLE_DEBIAN_MIRROR).unwrap_or_default(),
        }
    }

    /// Cache key: everything that defines the result.
    pub fn key(&self) -> String {
        // v2: the base layer carries an empty `./dev/` (v1 had no /dev at all).
        let mut k = KeyBuilder::new("rootfs-mmdebstrap-v2");
        k.part("role", self.role.as_bytes())
            .part("suite", SUITE.as_bytes())
            .part("packages", self.packages.join(",").as_bytes())
            .part("hook", SETUP_HOOK.as_bytes())
            .part("arch", host_architecture().as_bytes())
            .part("mirror", self.mirror.as_bytes());
        k.finish()
    }

    /// The mmdebstrap command that makes this rootfs as a tar at `tar`,
    /// running `hook` as its customize hook. Rootless (`--mode=unshare`);
    /// documentation, manuals and locales left out.
    pub fn mmdebstrap(&self, program: PathBuf, hook: &Path, tar: &Path) -> HostCommand {
        let mut args = vec![
            "--mode=unshare".to_string(),
            "--variant=essential".into(),
            "--format=tar".into(),
            format!("--include={}", self.packages.join(",")),
            "--skip=output/dev".into(),
            "--dpkgopt=path-exclude=/usr/share/doc/*".into(),
            "--dpkgopt=path-include=/usr/share/doc/*/copyright".into(),
            "--dpkgopt=path-exclude=/usr/share/man/*".into(),
            "--dpkgopt=path-exclude=/usr/share/locale/*".into(),
            format!("--customize-hook=sh {} \"$1\"", hook.display()),
            SUITE.into(),
            tar.display().to_string(),
        ];
        if !self.mirror.is_empty() {
            args.push(self.mirror.clone());
        }
        HostCommand {
            what: format!("mmdebstrap of the {} rootfs", self.role),
            program,
            args,
            env: Vec::new(),
            stdin: None,
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

/// Gets the rootfs for a definition, running mmdebstrap on a cache miss.
pub fn built(
    cache: &Cache,
    def: &Definition,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<Rootfs, RootfsError> {
    let key = def.key();
    if let Some(r) = load_cached(cache, &key) {
        printer.step(&format!("{} rootfs: cached ({})", def.role, &key[..12]));
        return Ok(r);
    }
    let mmdebstrap =
        runner
            .find_program("mmdebstrap")
            .ok_or_else(|| RootfsError::NoMmdebstrap {
                role: def.role.clone(),
            })?;
    printer.step(&format!(
        "{} rootfs: building with mmdebstrap ({} packages, once per definition)",
        def.role,
        def.packages.len()
    ));
    let work = cache.work_dir(&format!("rootfs-{}", def.role))?;
    let hook = work.path().join("setup.sh");
    fs_err::write(&hook, SETUP_HOOK).map_err(io_err(&hook))?;
    let tar_path = work.path().join("rootfs.tar");
    let out = runner.run_host(&def.mmdebstrap(mmdebstrap, &hook, &tar_path))?;
    if !out.success {
        let text = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = text.lines().collect();
        return Err(RootfsError::Mmdebstrap {
            role: def.role.clone(),
            status: out.status,
            tail: lines[lines.len().saturating_sub(15)..].join("\n    "),
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
    let created_by = format!(
        "mmdebstrap --variant=essential {SUITE} ({}: {})",
        def.role,
        def.packages.join(" ")
    );
    commit(cache, work, &key, vec![blob], vec![created_by])
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
    fn mmdebstrap_runs_rootless_with_the_definition_and_its_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut def = Definition::base(&["libpq5".into()]);
        def.mirror = "http://127.0.0.1:1/debian".into();
        let recorder = crate::sandbox::Recorder::answering(crate::sandbox::HostOutput {
            success: false,
            status: "exit status: 1".into(),
            stdout: Vec::new(),
            stderr: b"E: cannot reach the mirror\n".to_vec(),
        });
        let printer = Printer::new(crate::output::Mode::Quiet, false);
        let err = built(&cache, &def, &recorder, &printer).unwrap_err();
        assert!(
            matches!(&err, RootfsError::Mmdebstrap { tail, .. } if tail.contains("cannot reach the mirror")),
            "{err}"
        );
        let cmds = recorder.host_commands.lock().unwrap();
        assert_eq!(cmds.len(), 1, "one mmdebstrap run");
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
        assert!(c
            .args
            .iter()
            .any(|a| a.starts_with("--customize-hook=sh ") && a.ends_with("setup.sh \"$1\"")));
        let n = c.args.len();
        assert_eq!(c.args[n - 3], SUITE);
        assert!(c.args[n - 2].ends_with("/rootfs.tar"), "{:?}", c.args);
        assert_eq!(c.args[n - 1], "http://127.0.0.1:1/debian");
        assert_eq!(c.stdin, None);
        assert!(load_cached(&cache, &def.key()).is_none(), "nothing cached");
    }

    #[test]
    fn definition_key_changes_with_packages() {
        assert_ne!(
            Definition::base(&[]).key(),
            Definition::base(&["libpq5".into()]).key()
        );
        assert_ne!(
            Definition::base(&[]).key(),
            Definition::compiler(&[], &[]).key()
        );
    }
}
