//! The offline store (`vendor/`): everything an air-gapped build needs.
//!
//! ```text
//! vendor/assemble.lock        what the store holds: requirement, python, the
//!                             base and compiler rootfs (cache key, layer blobs),
//!                             the project's wheel, and every file's sha256
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

use crate::digest::{digest_file, Digest};
use crate::image::layer::{Content, Entry, Kind, Layer, LayerBlob, Owner};
use crate::image::BlobStore;
use crate::python::{ProjectWheel, Wheelhouse};
use crate::rootfs::Rootfs;
use crate::Error;

/// Name of the lock file.
pub const LOCK: &str = "assemble.lock";

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
    /// Compiler rootfs.
    pub compiler: &'a Rootfs,
    /// The compiled wheels.
    pub wheelhouse: &'a Wheelhouse,
    /// The constraints file, if any.
    pub constraints: Option<&'a [u8]>,
}

/// An offline store on disk.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
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

    /// The rootfs blobs.
    pub fn blobs(&self) -> Result<BlobStore, Error> {
        Ok(BlobStore::open(self.dir.join("blobs").join("sha256"))?)
    }

    /// Adds what a build used to the store, copying only what is missing,
    /// then writes the lock (last, atomically).
    pub fn fill(&self, cache_blobs: &BlobStore, what: &Contents) -> Result<Lock, Error> {
        let Contents {
            requirement,
            python,
            base,
            compiler,
            wheelhouse,
            constraints,
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
            let (digest, _) = digest_file(&e.path()).map_err(io(&e.path()))?;
            let dest = wheels_dir.join(&name);
            let present = dest.is_file()
                && digest_file(&dest)
                    .map(|(d, _)| d == digest)
                    .unwrap_or(false);
            if !present {
                let tmp =
                    crate::fsutil::temp_file(&wheels_dir, ".wheel-").map_err(io(&wheels_dir))?;
                fs_err::copy(e.path(), tmp.path()).map_err(io(&dest))?;
                tmp.persist(&dest).map_err(|e| io(&dest)(e.error))?;
            }
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
            project: wheelhouse.project.clone(),
            constraints,
            wheels,
        };
        let bytes = serde_json::to_vec_pretty(&lock).expect("the lock serialises");
        crate::fsutil::write_atomic(&self.dir.join(LOCK), &bytes)?;
        Ok(lock)
    }

    /// Reads the lock and checks that every file it names is present with
    /// its sha256; a missing or changed file is named in the error (exit 2).
    pub fn verify(&self) -> Result<Lock, Error> {
        let lock_path = self.dir.join(LOCK);
        let text = fs_err::read(&lock_path).map_err(|e| Error::Usage(format!("no usable offline store at {}: {e}; fill it with `assemble vendor REQUIREMENT` where the network is reachable", self.dir.display())))?;
        let lock: Lock = serde_json::from_slice(&text).map_err(|e| {
            Error::Usage(format!(
                "{} is not an assemble lock file: {e}",
                lock_path.display()
            ))
        })?;
        if lock.format != 1 {
            return Err(Error::Usage(format!(
                "{} has format {}, which this assemble does not read",
                lock_path.display(),
                lock.format
            )));
        }
        let blobs = self.blobs()?;
        for l in lock.base.layers.iter().chain(&lock.compiler.layers) {
            let path = blobs.path(&l.digest);
            check(&path, &l.digest, &format!("rootfs layer {}", l.digest))?;
        }
        for (file, sha) in &lock.wheels {
            let expected: Digest = format!("sha256:{sha}")
                .parse()
                .map_err(|e: crate::digest::InvalidDigest| Error::Usage(e.to_string()))?;
            let what = match crate::spec::wheel_name_version(Path::new(file)) {
                Some((n, v)) => format!("the {n} {v} wheel"),
                None => file.clone(),
            };
            check(&self.wheels().join(file), &expected, &what)?;
        }
        Ok(lock)
    }

    /// Writes the store as one tar file (the lock inside), atomically.
    pub fn write_bundle(&self, lock: &Lock, file: &Path, epoch: u64) -> Result<(), Error> {
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
        crate::fsutil::write_with(file, ".bundle-", 0o644, |out| {
            tar.write_tar(out, epoch)?;
            Ok(())
        })
    }

    /// Unpacks a bundle into `dir` (safely) and verifies it against its lock.
    pub fn from_bundle(file: &Path, dir: &Path) -> Result<(Store, Lock), Error> {
        let f = fs_err::File::open(file)
            .map_err(|e| Error::Usage(format!("cannot read bundle {}: {e}", file.display())))?;
        crate::image::unpack::unpack(std::io::BufReader::new(f), dir).map_err(|e| {
            Error::Usage(format!(
                "bundle {} is damaged or not a bundle: {e}",
                file.display()
            ))
        })?;
        let store = Store::at(dir);
        let lock = store.verify().map_err(|e| {
            Error::Usage(format!(
                "bundle {} does not match its lock: {e}",
                file.display()
            ))
        })?;
        Ok((store, lock))
    }
}

fn check(path: &Path, expected: &Digest, what: &str) -> Result<(), Error> {
    match digest_file(path) {
        Err(_) => Err(Error::Usage(format!(
            "{what} is missing from the offline store ({}); run `assemble vendor` again where the network is reachable",
            path.display()
        ))),
        Ok((found, _)) if &found != expected => Err(Error::Usage(format!("{what} in the offline store ({}) is damaged: its digest is {found}, the lock says {expected}", path.display()))),
        Ok(_) => Ok(()),
    }
}
