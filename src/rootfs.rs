//! The base and compiler root filesystems.
//!
//! A rootfs is a list of layer blobs (in the cache's blob store, never
//! recompressed once there) plus the same layers unpacked into a tree that
//! the sandbox uses as its root. Sources: built from `layers/base` and
//! `layers/compiler` with `mmdebstrap --mode=unshare` (rootless), a tarball,
//! an OCI layout, or a registry image (`docker://REF`, pulled into a layout
//! first). Each is cached under a key derived from what defines it,
//! so a second build neither runs mmdebstrap nor unpacks again.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder as GzDecoder;

use crate::cache::{Cache, CacheError, KeyBuilder};
use crate::digest::{Digest, HashingReader};
use crate::image::documents::host_architecture;
use crate::image::layer::{self, LayerBlob, LayerError};
use crate::image::layout::Layout;
use crate::image::unpack::{self, UnpackError};
use crate::image::{media, BlobStore, Image, ImageError};
use crate::output::Printer;
use crate::sandbox::{HostCommand, Runner, SandboxError};

/// Packages of the base rootfs (`layers/base/packages`).
pub const BASE_PACKAGES: &str = include_str!("../layers/base/packages");
/// Customize hook shared by base and compiler (`layers/base/setup.sh`).
pub const SETUP_HOOK: &str = include_str!("../layers/base/setup.sh");
/// Packages added for the compiler (`layers/compiler/packages`).
pub const COMPILER_PACKAGES: &str = include_str!("../layers/compiler/packages");
/// Debian suite the rootfs are built from.
pub const SUITE: &str = "bookworm";

/// Failure to get a root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// mmdebstrap is needed and absent.
    #[error(
        "mmdebstrap is not installed, and it is needed to build the {role} rootfs; install it \
         (Debian: apt-get install mmdebstrap uidmap) or pass --base FILE.tar or --base oci:DIR"
    )]
    NoMmdebstrap {
        /// base or compiler.
        role: String,
    },
    /// mmdebstrap ran and failed.
    #[error(
        "mmdebstrap failed to build the {role} rootfs ({status}); as a normal user it needs entries \
         for you in /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids \
         100000-165535 $USER); its last lines:\n    {tail}"
    )]
    Mmdebstrap {
        /// base or compiler.
        role: String,
        /// Exit status.
        status: String,
        /// Last lines of its output.
        tail: String,
    },
    /// A given base cannot be used.
    #[error("cannot use base {source_name}: {reason}")]
    BadBase {
        /// What the user named.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// The interpreter asked for is not in the base.
    #[error("the base has no python{wanted} (it has: {found}); pick one of those with --python, or use a base that has python{wanted}")]
    NoPython {
        /// What was asked for.
        wanted: String,
        /// What there is.
        found: String,
    },
    /// Unpacking a layer failed.
    #[error("cannot unpack a layer of {source_name}")]
    Unpack {
        /// The base named.
        source_name: String,
        #[source]
        source: UnpackError,
    },
    /// A given base's file cannot be read.
    #[error("cannot use base {source_name}: cannot read it")]
    ReadBase {
        /// What the user named.
        source_name: String,
        #[source]
        source: io::Error,
    },
    /// A given base's image cannot be read.
    #[error("cannot use base {source_name}")]
    UnusableBase {
        /// What the user named.
        source_name: String,
        #[source]
        source: ImageError,
    },
    /// A base layer's media type cannot be read.
    #[error("cannot use base {source_name}: its layer {digest} cannot be read")]
    Layer {
        /// What the user named.
        source_name: String,
        /// The layer.
        digest: Digest,
        #[source]
        source: io::Error,
    },
    /// mmdebstrap could not be run.
    #[error(transparent)]
    Run(#[from] SandboxError),
    /// Writing a layer failed.
    #[error(transparent)]
    WriteLayer(#[from] LayerError),
    /// Blob store failure.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Cache failure.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Other file failure.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl RootfsError {
    /// True when the user's input or machine setup is at fault (exit 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            RootfsError::NoMmdebstrap { .. }
            | RootfsError::BadBase { .. }
            | RootfsError::NoPython { .. }
            | RootfsError::ReadBase { .. }
            | RootfsError::UnusableBase { .. }
            | RootfsError::Layer { .. } => true,
            RootfsError::Unpack { source, .. } => source.is_bad_input(),
            _ => false,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the base comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseSource {
    /// Built from `layers/base` with mmdebstrap.
    Built,
    /// A tar or tar.gz file.
    Tarball(PathBuf),
    /// An OCI layout and an optional tag.
    Layout(PathBuf, Option<String>),
    /// An image in a registry (`docker://REF`).
    Registry(crate::registry::Reference),
}

impl BaseSource {
    /// Parses `--base`: `docker://REF`, `oci:DIR[:tag]` or `FILE.tar[.gz]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = split_layout_ref(rest);
            return Ok(BaseSource::Layout(dir, tag));
        }
        if s.starts_with("docker://") {
            return crate::registry::Reference::parse(s)
                .map(BaseSource::Registry)
                .map_err(|e| e.to_string());
        }
        let lower = s.to_ascii_lowercase();
        if [".tar", ".tar.gz", ".tgz"]
            .iter()
            .any(|e| lower.ends_with(e))
        {
            return Ok(BaseSource::Tarball(PathBuf::from(s)));
        }
        Err(format!(
            "--base {s:?} is not docker://REF, oci:DIR[:TAG] or a FILE.tar / FILE.tar.gz"
        ))
    }
}

/// Splits `DIR[:TAG]`; a colon followed by something with a slash is part of the path.
pub fn split_layout_ref(s: &str) -> (PathBuf, Option<String>) {
    match s.rsplit_once(':') {
        Some((dir, tag)) if !tag.is_empty() && !tag.contains('/') && !dir.is_empty() => {
            (PathBuf::from(dir), Some(tag.to_string()))
        }
        _ => (PathBuf::from(s), None),
    }
}

/// An unpacked root filesystem and the layers it is made of.
#[derive(Clone, Debug)]
pub struct Rootfs {
    /// Cache key.
    pub key: String,
    /// The unpacked tree (read-only use).
    pub tree: PathBuf,
    /// Layer blobs, bottom first, in the cache's blob store.
    pub layers: Vec<LayerBlob>,
    /// One history line per layer.
    pub created_by: Vec<String>,
    /// True when it came from the cache, false when made by this run.
    pub cached: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    layers: Vec<LayerBlob>,
    created_by: Vec<String>,
}

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

fn load_cached(cache: &Cache, key: &str) -> Option<Rootfs> {
    let dir = cache.entry("rootfs", key);
    let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
    if !meta.layers.iter().all(|l| cache.blobs().has(&l.digest)) || !dir.join("tree").is_dir() {
        return None;
    }
    Some(Rootfs {
        key: key.to_string(),
        tree: dir.join("tree"),
        layers: meta.layers,
        created_by: meta.created_by,
        cached: true,
    })
}

fn commit(
    cache: &Cache,
    work: tempfile::TempDir,
    key: &str,
    layers: Vec<LayerBlob>,
    created_by: Vec<String>,
) -> Result<Rootfs, RootfsError> {
    prepare_tree(&work.path().join("tree"))?;
    let meta = Meta {
        layers: layers.clone(),
        created_by: created_by.clone(),
    };
    let meta_path = work.path().join("meta.json");
    fs_err::write(
        &meta_path,
        serde_json::to_vec_pretty(&meta).expect("meta serialises"),
    )
    .map_err(io_err(&meta_path))?;
    let dir = cache.commit_dir(work, "rootfs", key)?;
    load_cached(cache, key)
        .map(|r| Rootfs { cached: false, ..r })
        .ok_or_else(|| RootfsError::Io {
            path: dir,
            source: io::Error::other("cache entry vanished after it was written"),
        })
}

/// Creates the mount points the sandbox binds onto, so that the read-only
/// root needs no change at run time. The tree is never packed into a layer.
fn prepare_tree(tree: &Path) -> Result<(), RootfsError> {
    for d in [
        "assemble/wheelhouse",
        "assemble/project",
        "assemble/src",
        "assemble/tools",
        "assemble/out",
        crate::contract::VENV.trim_start_matches('/'),
        "tmp",
        "dev",
        "proc",
    ] {
        let p = tree.join(d);
        fs_err::create_dir_all(&p).map_err(io_err(&p))?;
    }
    let resolv = tree.join("etc/resolv.conf");
    if std::fs::symlink_metadata(&resolv)
        .map(|m| !m.is_file())
        .unwrap_or(true)
    {
        let _ = std::fs::remove_file(&resolv);
        if tree.join("etc").is_dir() {
            fs_err::write(&resolv, b"").map_err(io_err(&resolv))?;
        }
    }
    Ok(())
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

/// Gets the base rootfs from a tarball: its bytes become the layer as they are.
pub fn from_tarball(cache: &Cache, path: &Path, printer: &Printer) -> Result<Rootfs, RootfsError> {
    let name = path.display().to_string();
    let (digest, size) =
        crate::digest::digest_file(path).map_err(|source| RootfsError::ReadBase {
            source_name: name.clone(),
            source,
        })?;
    let key = KeyBuilder::new("rootfs-tarball-v1")
        .part("digest", digest.to_string().as_bytes())
        .finish();
    if let Some(r) = load_cached(cache, &key) {
        printer.step(&format!("base rootfs: cached ({name})"));
        return Ok(r);
    }
    printer.step(&format!("base rootfs: unpacking {name}"));
    let mut magic = [0u8; 2];
    let gzip = fs_err::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|_| magic == [0x1f, 0x8b])
        .unwrap_or(false);
    cache.blobs().import_path(path, &digest)?;
    let work = cache.work_dir("rootfs-tarball")?;
    let tree = work.path().join("tree");
    fs_err::create_dir(&tree).map_err(io_err(&tree))?;
    let file = io::BufReader::new(fs_err::File::open(path).map_err(io_err(path))?);
    let (diff_id, media_type) = if gzip {
        (
            unpack_hashing(GzDecoder::new(file), &tree, &name)?,
            media::LAYER_TAR_GZIP,
        )
    } else {
        (unpack_hashing(file, &tree, &name)?, media::LAYER_TAR)
    };
    let blob = LayerBlob {
        digest,
        diff_id,
        size,
        media_type: media_type.to_string(),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    commit(
        cache,
        work,
        &key,
        vec![blob],
        vec![format!("base tarball {file_name}")],
    )
}

/// Unpacks a tar stream and returns the digest of the whole stream, trailing
/// padding included (the layer's diff_id).
fn unpack_hashing(reader: impl Read, tree: &Path, name: &str) -> Result<Digest, RootfsError> {
    let mut hashing = HashingReader::new(reader);
    unpack::unpack(&mut hashing, tree).map_err(|source| RootfsError::Unpack {
        source_name: name.to_string(),
        source,
    })?;
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| RootfsError::Unpack {
        source_name: name.to_string(),
        source: UnpackError::Read(e),
    })?;
    Ok(hashing.finish().0)
}

/// Gets the base rootfs from an OCI layout: its layer blobs are used as they are.
pub fn from_layout(
    cache: &Cache,
    dir: &Path,
    tag: Option<&str>,
    printer: &Printer,
) -> Result<Rootfs, RootfsError> {
    let name = format!(
        "oci:{}{}",
        dir.display(),
        tag.map(|t| format!(":{t}")).unwrap_or_default()
    );
    let image = Layout::open(dir)
        .and_then(|l| l.image(tag))
        .map_err(|source| RootfsError::UnusableBase {
            source_name: name.clone(),
            source,
        })?;
    from_image(cache, &image, &name, printer)
}

/// Gets the base rootfs from an image (named `name` in messages and
/// history): its layer blobs are used as they are.
pub fn from_image(
    cache: &Cache,
    image: &Image,
    name: &str,
    printer: &Printer,
) -> Result<Rootfs, RootfsError> {
    let bad = |reason: String| RootfsError::BadBase {
        source_name: name.to_string(),
        reason,
    };
    let key = KeyBuilder::new("rootfs-layout-v1")
        .part("manifest", image.digest().to_string().as_bytes())
        .finish();
    if let Some(r) = load_cached(cache, &key) {
        printer.step(&format!("base rootfs: cached ({name})"));
        return Ok(r);
    }
    let config = image.config().map_err(|source| RootfsError::UnusableBase {
        source_name: name.to_string(),
        source,
    })?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != image.layers().len() {
        return Err(bad(format!(
            "its config lists {} diff_ids for {} layers",
            diff_ids.len(),
            image.layers().len()
        )));
    }
    printer.step(&format!(
        "base rootfs: unpacking {} layers of {name}",
        image.layers().len()
    ));
    let work = cache.work_dir("rootfs-layout")?;
    let tree = work.path().join("tree");
    fs_err::create_dir(&tree).map_err(io_err(&tree))?;
    let mut layers = Vec::new();
    for (blob, expected_diff) in image.layers().iter().zip(diff_ids) {
        image.source().copy_into(blob, cache.blobs())?;
        let diff_id = unpack_blob(cache, &blob.digest, &blob.media_type, &tree, name)?;
        if diff_id.to_string() != *expected_diff {
            return Err(bad(format!(
                "layer {} unpacks to {diff_id}, but the config says {expected_diff}",
                blob.digest
            )));
        }
        // Docker's layer media type names the same bytes: OCI's name goes in our manifest.
        let media_type = if blob.media_type == media::DOCKER_LAYER_TAR_GZIP {
            media::LAYER_TAR_GZIP.to_string()
        } else {
            blob.media_type.clone()
        };
        layers.push(LayerBlob {
            digest: blob.digest.clone(),
            diff_id,
            size: blob.size,
            media_type,
        });
    }
    let created_by = layers
        .iter()
        .enumerate()
        .map(|(i, _)| format!("base layer {} of {name}", i + 1))
        .collect();
    commit(cache, work, &key, layers, created_by)
}

/// Unpacks a layer blob of the cache into `tree`; returns its diff_id.
fn unpack_blob(
    cache: &Cache,
    digest: &Digest,
    media_type: &str,
    tree: &Path,
    name: &str,
) -> Result<Digest, RootfsError> {
    let path = cache.blobs().path(digest);
    let file = io::BufReader::new(fs_err::File::open(&path).map_err(io_err(&path))?);
    let reader = layer::decoder(media_type, file).map_err(|source| RootfsError::Layer {
        source_name: name.to_string(),
        digest: digest.clone(),
        source,
    })?;
    unpack_hashing(reader, tree, name)
}

/// Gets a rootfs from layer blobs known by digest (an offline store): the
/// blobs go into the cache as they are and are unpacked under `key`, the
/// key the online build used, so both builds share one cache entry.
pub fn from_blobs(
    cache: &Cache,
    key: &str,
    layers: &[LayerBlob],
    created_by: &[String],
    source: &BlobStore,
    name: &str,
    printer: &Printer,
) -> Result<Rootfs, RootfsError> {
    if let Some(r) = load_cached(cache, key) {
        printer.step(&format!("{name}: cached ({})", &key[..12.min(key.len())]));
        return Ok(r);
    }
    printer.step(&format!(
        "{name}: unpacking {} layers from the offline store",
        layers.len()
    ));
    let work = cache.work_dir("rootfs-store")?;
    let tree = work.path().join("tree");
    fs_err::create_dir(&tree).map_err(io_err(&tree))?;
    for blob in layers {
        cache.blobs().import(source, &blob.digest)?;
        let diff_id = unpack_blob(cache, &blob.digest, &blob.media_type, &tree, name)?;
        if diff_id != blob.diff_id {
            return Err(RootfsError::BadBase {
                source_name: name.to_string(),
                reason: format!(
                    "layer {} unpacks to {diff_id}, not {}",
                    blob.digest, blob.diff_id
                ),
            });
        }
    }
    let r = commit(cache, work, key, layers.to_vec(), created_by.to_vec())?;
    Ok(Rootfs { cached: false, ..r })
}

/// Interpreter versions (`3.11`) the tree has in /usr/bin.
pub fn python_versions(tree: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(tree.join("usr/bin"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let v = name.strip_prefix("python")?;
            let (a, b) = v.split_once('.')?;
            (a.chars().all(|c| c.is_ascii_digit())
                && !b.is_empty()
                && b.chars().all(|c| c.is_ascii_digit()))
            .then(|| v.to_string())
        })
        .collect();
    found.sort();
    found
}

/// Picks the interpreter: the one asked for, else what `python3` points at.
pub fn choose_python(tree: &Path, wanted: Option<&str>) -> Result<String, RootfsError> {
    let found = python_versions(tree);
    let list = || {
        if found.is_empty() {
            "no python at all".to_string()
        } else {
            found
                .iter()
                .map(|v| format!("python{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if let Some(w) = wanted {
        return if found.iter().any(|f| f == w) {
            Ok(w.to_string())
        } else {
            Err(RootfsError::NoPython {
                wanted: w.to_string(),
                found: list(),
            })
        };
    }
    if let Ok(target) = std::fs::read_link(tree.join("usr/bin/python3")) {
        if let Some(v) = target.to_string_lossy().strip_prefix("python") {
            if found.iter().any(|f| f == v) {
                return Ok(v.to_string());
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(RootfsError::NoPython {
            wanted: "3".into(),
            found: list(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_source_forms() {
        assert_eq!(
            BaseSource::parse("oci:/x/y:1.0").unwrap(),
            BaseSource::Layout("/x/y".into(), Some("1.0".into()))
        );
        assert_eq!(
            BaseSource::parse("oci:./a").unwrap(),
            BaseSource::Layout("./a".into(), None)
        );
        assert_eq!(
            BaseSource::parse("b.tar.gz").unwrap(),
            BaseSource::Tarball("b.tar.gz".into())
        );
        assert!(BaseSource::parse("b.zip").is_err());
        assert!(
            matches!(BaseSource::parse("docker://127.0.0.1:5000/x/y:1").unwrap(), BaseSource::Registry(r) if r.repository == "x/y")
        );
        assert!(BaseSource::parse("docker://127.0.0.1:5000/X").is_err());
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

    #[test]
    fn python_choice_follows_the_python3_link_and_lists_the_others() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("python3.11"), "").unwrap();
        std::fs::write(bin.join("python3.12"), "").unwrap();
        std::os::unix::fs::symlink("python3.12", bin.join("python3")).unwrap();
        assert_eq!(choose_python(t.path(), None).unwrap(), "3.12");
        assert_eq!(choose_python(t.path(), Some("3.11")).unwrap(), "3.11");
        let e = choose_python(t.path(), Some("2.7"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("python3.11, python3.12"), "{e}");
    }
}
