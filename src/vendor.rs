//! The offline store (`vendor/`): everything an air-gapped build needs.
//!
//! ```text
//! vendor/pylock.toml          a PEP 751 lock of the store's wheels (by path), and
//!                             in [tool.assemble.store] what the store holds:
//!                             requirement, python, the base and compiler rootfs
//!                             (cache key, layer blobs), the project's wheel, and
//!                             every file's sha256
//! vendor/blobs/sha256/<hex>   the rootfs layer blobs, the same bytes as the cache
//! vendor/wheels/*.whl         every wheel the image installs, compiled online
//! vendor/constraints.txt      the pip constraints used, when there were any
//! ```
//!
//! The wheels are stored compiled (the output of `pip wheel` in the compiler
//! rootfs), so an offline build needs no build dependency and no compiler
//! run. A bundle is the store as one tar file, its lock inside; reading one
//! checks every file against the lock before anything is used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::digest::{digest_file, Digest, InvalidDigest};
use crate::fsutil::WriteError;
use crate::image::layer::{Content, Entry, Kind, Layer, LayerBlob, LayerError, Owner};
use crate::image::unpack::UnpackError;
use crate::image::{BlobStore, ImageError};
use crate::python::{ProjectWheel, Wheelhouse};
use crate::rootfs::Rootfs;

/// The offline store or its bundle cannot be used or written.
#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    /// There is no lock to read.
    #[error(
        "no usable offline store at {dir}; fill it with `assemble vendor REQUIREMENT` where the \
         network is reachable"
    )]
    NoStore {
        /// The store.
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The lock is not a pylock.toml with the store's table.
    #[error("{path} is not the lock of an assemble offline store: {why}")]
    BadLock {
        /// The lock file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The store was filled by an assemble that wrote `assemble.lock`.
    #[error(
        "{dir} was filled by an older assemble (its lock is assemble.lock, the lock is now \
         pylock.toml): run `assemble vendor` again where the network is reachable"
    )]
    OldStore {
        /// The store.
        dir: PathBuf,
    },
    /// The lock is of a format this assemble does not read.
    #[error("{path} has format {format}, which this assemble does not read")]
    LockFormat {
        /// The lock file.
        path: PathBuf,
        /// Its format.
        format: u32,
    },
    /// The lock names a wheel with a malformed sha256.
    #[error("the lock gives the wheel {file} an unusable sha256")]
    WheelDigest {
        /// The wheel's file name.
        file: String,
        #[source]
        source: InvalidDigest,
    },
    /// A file the lock names is not in the store.
    #[error(
        "{what} is missing from the offline store ({}); run `assemble vendor` again where the \
         network is reachable",
        .path.display()
    )]
    Missing {
        /// What the file is (`the django 4.2.30 wheel`).
        what: String,
        /// Where it should be.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of the store is not what the lock says.
    #[error(
        "{what} in the offline store ({}) is damaged: its digest is {found}, the lock says {expected}",
        .path.display()
    )]
    Damaged {
        /// What the file is.
        what: String,
        /// Where it is.
        path: PathBuf,
        /// Its digest.
        found: Digest,
        /// The lock's.
        expected: Digest,
    },
    /// The bundle cannot be opened.
    #[error("cannot read bundle {}", .path.display())]
    ReadBundle {
        /// The bundle.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bundle is not a tar assemble can unpack.
    #[error("bundle {} is damaged or not a bundle", .path.display())]
    BadBundle {
        /// The bundle.
        path: PathBuf,
        #[source]
        source: UnpackError,
    },
    /// The bundle's files do not match its lock.
    #[error("bundle {} does not match its lock", .path.display())]
    BundleMismatch {
        /// The bundle.
        path: PathBuf,
        #[source]
        source: Box<VendorError>,
    },
    /// The store's blob directory.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A file could not be written into place.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The bundle's tar could not be written.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Other file access.
    #[error("cannot access {}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl VendorError {
    /// True when the store or bundle given is unusable (exit 2), as opposed
    /// to a failure writing one.
    pub fn is_bad_input(&self) -> bool {
        match self {
            VendorError::Image(e) => e.is_bad_input(),
            VendorError::Write(_) | VendorError::Layer(_) | VendorError::Io { .. } => false,
            _ => true,
        }
    }
}

/// Name of the lock file: a PEP 751 lock of the store's wheels, with the
/// store's own record (rootfs blobs, the project, every wheel's sha256) in
/// `[tool.assemble.store]`.
pub const LOCK: &str = "pylock.toml";
/// The lock's name before it was a PEP 751 lock.
const OLD_LOCK: &str = "assemble.lock";

/// A rootfs in the store.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LockedRootfs {
    /// The cache key the online build used.
    pub key: String,
    /// Its layer blobs.
    pub layers: Vec<LayerBlob>,
    /// History lines.
    pub created_by: Vec<String>,
}

/// `assemble.lock`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Lock {
    /// Format version.
    pub format: u32,
    /// The requirement, as given to `assemble vendor`.
    pub requirement: String,
    /// Interpreter version.
    pub python: String,
    /// Base rootfs.
    pub base: LockedRootfs,
    /// Compiler rootfs.
    pub compiler: LockedRootfs,
    /// The image a given base was (its manifest annotations name it), so
    /// that the offline build's image is the online one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<crate::image::BaseImage>,
    /// The project's own wheel.
    pub project: ProjectWheel,
    /// The constraints the wheels were resolved with (kept as a record: the
    /// wheels already satisfy them), and the file's sha256.
    #[serde(default)]
    pub constraints: Option<String>,
    /// Every wheel, by file name, with its sha256 (hex).
    pub wheels: BTreeMap<String, String>,
}

/// What a build used, to be kept in the store.
#[derive(Clone, Copy)]
pub struct Contents<'a> {
    /// The requirement as given.
    pub requirement: &'a str,
    /// Interpreter version.
    pub python: &'a str,
    /// Base rootfs.
    pub base: &'a Rootfs,
    /// The image a given base is.
    pub base_image: Option<&'a crate::image::BaseImage>,
    /// Compiler rootfs.
    pub compiler: &'a Rootfs,
    /// The compiled wheels.
    pub wheelhouse: &'a Wheelhouse,
    /// The constraints file, if any.
    pub constraints: Option<&'a [u8]>,
    /// uv's wheel (the installer offline builds run).
    pub uv_wheel: &'a Path,
}

/// An offline store on disk.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

/// Copies `file` into `dir` under its name unless the same bytes are
/// there (through a temporary name); returns its sha256.
fn copy_if_changed(file: &Path, dir: &Path) -> Result<Digest, VendorError> {
    let (digest, _) = digest_file(file).map_err(io(file))?;
    let dest = dir.join(file.file_name().expect("a file has a name"));
    let present = dest.is_file()
        && digest_file(&dest)
            .map(|(d, _)| d == digest)
            .unwrap_or(false);
    if !present {
        let tmp = crate::fsutil::temp_file(dir, ".copy-").map_err(io(dir))?;
        fs_err::copy(file, tmp.path()).map_err(io(&dest))?;
        tmp.persist(&dest).map_err(|e| io(&dest)(e.error))?;
    }
    Ok(digest)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VendorError + '_ {
    move |source| VendorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// The store at `dir` (which may not exist yet).
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Directory of the wheels.
    pub fn wheels(&self) -> PathBuf {
        self.dir.join("wheels")
    }

    /// The tools assemble runs (uv's wheel).
    pub fn tools(&self) -> PathBuf {
        self.dir.join("tools")
    }

    /// The rootfs blobs.
    pub fn blobs(&self) -> Result<BlobStore, VendorError> {
        Ok(BlobStore::open(self.dir.join("blobs").join("sha256"))?)
    }

    /// Adds what a build used to the store, copying only what is missing,
    /// then writes the lock (last, atomically).
    pub fn fill(&self, cache_blobs: &BlobStore, what: &Contents) -> Result<Lock, VendorError> {
        let Contents {
            requirement,
            python,
            base,
            base_image,
            compiler,
            wheelhouse,
            constraints,
            uv_wheel,
        } = *what;
        let blobs = self.blobs()?;
        let constraints = match constraints {
            Some(c) => {
                crate::fsutil::write_atomic(&self.dir.join("constraints.txt"), c)?;
                Some(Digest::of(c).hex().to_string())
            }
            None => None,
        };
        for l in base.layers.iter().chain(&compiler.layers) {
            blobs.import(cache_blobs, &l.digest)?;
        }
        let tools = self.tools();
        fs_err::create_dir_all(&tools).map_err(io(&tools))?;
        copy_if_changed(uv_wheel, &tools)?;
        let wheels_dir = self.wheels();
        fs_err::create_dir_all(&wheels_dir).map_err(io(&wheels_dir))?;
        let mut wheels = BTreeMap::new();
        for e in fs_err::read_dir(&wheelhouse.dir)
            .map_err(io(&wheelhouse.dir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".whl") {
                continue;
            }
            let digest = copy_if_changed(&e.path(), &wheels_dir)?;
            wheels.insert(name, digest.hex().to_string());
        }
        let locked = |r: &Rootfs| LockedRootfs {
            key: r.key.clone(),
            layers: r.layers.clone(),
            created_by: r.created_by.clone(),
        };
        let lock = Lock {
            format: 1,
            requirement: requirement.to_string(),
            python: python.to_string(),
            base: locked(base),
            compiler: locked(compiler),
            base_image: base_image.cloned(),
            project: wheelhouse.project.clone(),
            constraints,
            wheels,
        };
        let text = crate::python::lock::render_store(
            &lock.requirement,
            &lock.python,
            &wheelhouse.project.name,
            &lock.wheels,
            &lock,
        );
        crate::fsutil::write_atomic(&self.dir.join(LOCK), text.as_bytes())?;
        Ok(lock)
    }

    /// Reads the lock and checks that every file it names is present with
    /// its sha256; a missing or changed file is named in the error (exit 2).
    pub fn verify(&self) -> Result<Lock, VendorError> {
        let lock_path = self.dir.join(LOCK);
        if !lock_path.exists() && self.dir.join(OLD_LOCK).is_file() {
            return Err(VendorError::OldStore {
                dir: self.dir.clone(),
            });
        }
        let text = std::fs::read_to_string(&lock_path).map_err(|source| VendorError::NoStore {
            dir: self.dir.clone(),
            source,
        })?;
        let lock: Lock =
            crate::python::lock::read_store(&text).map_err(|why| VendorError::BadLock {
                path: lock_path.clone(),
                why,
            })?;
        if lock.format != 1 {
            return Err(VendorError::LockFormat {
                path: lock_path,
                format: lock.format,
            });
        }
        let blobs = self.blobs()?;
        for l in lock.base.layers.iter().chain(&lock.compiler.layers) {
            let path = blobs.path(&l.digest);
            check(&path, &l.digest, &format!("rootfs layer {}", l.digest))?;
        }
        for (file, sha) in &lock.wheels {
            let expected: Digest =
                format!("sha256:{sha}")
                    .parse()
                    .map_err(|source| VendorError::WheelDigest {
                        file: file.clone(),
                        source,
                    })?;
            let what = match crate::spec::wheel_name_version(Path::new(file)) {
                Some((n, v)) => format!("the {n} {v} wheel"),
                None => file.clone(),
            };
            check(&self.wheels().join(file), &expected, &what)?;
        }
        // uv, which installs the venv offline (a store vendored before
        // assemble used uv has none: vendor again).
        if let Ok(pin) = crate::python::uv::pinned() {
            let expected: Digest = format!("sha256:{}", pin.wheel_sha256)
                .parse()
                .expect("a pinned sha256 is a digest");
            check(
                &self.tools().join(pin.wheel),
                &expected,
                &format!("uv's wheel (tools/{})", pin.wheel),
            )?;
        }
        Ok(lock)
    }

    /// Writes the store as one tar file (the lock inside), atomically.
    pub fn write_bundle(&self, lock: &Lock, file: &Path, epoch: u64) -> Result<(), VendorError> {
        let mut tar = Layer::new();
        let add_file = |tar: &mut Layer, rel: String, src: PathBuf| {
            tar.add(
                Entry {
                    path: rel,
                    kind: Kind::File(Content::File(src)),
                    mode: 0o644,
                    owner: Owner::ROOT,
                    xattrs: Vec::new(),
                },
                Owner::ROOT,
            )
        };
        add_file(&mut tar, LOCK.into(), self.dir.join(LOCK));
        for l in lock.base.layers.iter().chain(&lock.compiler.layers) {
            add_file(
                &mut tar,
                format!("blobs/sha256/{}", l.digest.hex()),
                self.blobs()?.path(&l.digest),
            );
        }
        for w in lock.wheels.keys() {
            add_file(&mut tar, format!("wheels/{w}"), self.wheels().join(w));
        }
        // uv's wheel, which offline builds install with.
        let mut tools: Vec<String> = std::fs::read_dir(self.tools())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".whl"))
            .collect();
        tools.sort();
        for t in tools {
            add_file(&mut tar, format!("tools/{t}"), self.tools().join(&t));
        }
        crate::fsutil::write_with(file, ".bundle-", 0o644, |out| {
            tar.write_tar(out, epoch)?;
            Ok(())
        })
    }

    /// Unpacks a bundle into `dir` (safely) and verifies it against its lock.
    pub fn from_bundle(file: &Path, dir: &Path) -> Result<(Store, Lock), VendorError> {
        let f = std::fs::File::open(file).map_err(|source| VendorError::ReadBundle {
            path: file.to_path_buf(),
            source,
        })?;
        crate::image::unpack::unpack(std::io::BufReader::new(f), dir).map_err(|source| {
            VendorError::BadBundle {
                path: file.to_path_buf(),
                source,
            }
        })?;
        let store = Store::at(dir);
        let lock = store
            .verify()
            .map_err(|source| VendorError::BundleMismatch {
                path: file.to_path_buf(),
                source: Box::new(source),
            })?;
        Ok((store, lock))
    }
}

/// Checks that the store's file at `path` (`what`, for messages) has the
/// lock's digest.
fn check(path: &Path, expected: &Digest, what: &str) -> Result<(), VendorError> {
    match digest_file(path) {
        Err(source) => Err(VendorError::Missing {
            what: what.to_string(),
            path: path.to_path_buf(),
            source,
        }),
        Ok((found, _)) if &found != expected => Err(VendorError::Damaged {
            what: what.to_string(),
            path: path.to_path_buf(),
            found,
            expected: expected.clone(),
        }),
        Ok(_) => Ok(()),
    }
}
