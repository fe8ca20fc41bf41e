//! The build pipeline: base and compiler rootfs, wheelhouse, venv layers,
//! runtime layer, image documents, OCI layout. Each stage is its own module;
//! this one only passes data from one to the next.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::{Cache, Origin};
use crate::contract;
use crate::digest::Digest;
use crate::image::documents::{self, ImageDocuments, ImageLayer, ImageSettings};
use crate::image::layer::{self, Compression, LayerBlob};
use crate::image::layout::Layout;
use crate::image::remote::{self, PushOptions, PushReport};
use crate::image::{BaseImage, Image};
use crate::output::Printer;
use crate::python::{self, PythonContext};
use crate::registry::{Client, ClientOptions, Reference};
use crate::remote_cache::{self, Record, RecordedRootfs};
use crate::rootfs::{self, BaseSource, Definition, Rootfs, RootfsError};
use crate::runtime::{self, Project};
use crate::sandbox::Runner;
use crate::spec::{PipSettings, ProjectConfig, Requirement};
use crate::Error;

/// Everything a build needs, validated.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// What to build.
    pub requirement: Requirement,
    /// `--python`, else assemble.toml's.
    pub python: Option<String>,
    /// pip's index settings.
    pub pip: PipSettings,
    /// `--base`.
    pub base: BaseSource,
    /// `--compiler` (`Built`: from `layers/compiler`).
    pub compiler: BaseSource,
    /// OCI layout directory.
    pub output: PathBuf,
    /// assemble.toml.
    pub config: ProjectConfig,
    /// SOURCE_DATE_EPOCH.
    pub epoch: u64,
    /// Ignore cached wheelhouses and layers (rootfs stay cached).
    pub rebuild: bool,
    /// Compression of the layers built (a given base keeps its own).
    pub compression: Compression,
    /// Build from an offline store only.
    pub offline: Option<Offline>,
    /// `--locked`: the lock file whose set is built (no resolution).
    pub locked: Option<PathBuf>,
    /// How registries are reached (base pulls, push).
    pub registry: ClientOptions,
    /// How blobs are pushed.
    pub push_options: PushOptions,
    /// Where to push the image, if anywhere: a full reference, or a registry
    /// (`HOST[/PREFIX]`) under which the image is named.
    pub push: Option<PushTarget>,
    /// The registry repositories used as the build cache.
    pub remote_cache: remote_cache::Repos,
    /// Whether this build may be served by a build record (local or
    /// remote): a requirement from the index, the built base, no lock in or
    /// out, no offline store, no archive (which needs every blob here).
    pub recordable: bool,
    /// The isolation asked for (`--isolation`), if any.
    pub isolation: Option<crate::sandbox::Isolation>,
}

/// Where a build pushes its image.
#[derive(Clone, Debug)]
pub enum PushTarget {
    /// `--tag REF`.
    Reference(Reference),
    /// `--registry HOST[/PREFIX]`: the name is `<project>[-<extras>]:<version>` under it.
    Registry(String),
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct BuildResult {
    /// `oci:DIR:VERSION`.
    pub reference: String,
    /// Manifest digest.
    pub digest: Digest,
    /// Project name and version.
    pub name: String,
    /// The version, also the layout's tag.
    pub version: String,
    /// What the push did, when asked to push.
    pub pushed: Option<PushReport>,
    /// The image's layers, bottom first, and whether each was built or cached.
    pub layers: Vec<ResultLayer>,
    /// The interpreter (`X.Y`).
    pub python: String,
    /// The resolved Python set and the wheel of each (None from the offline store).
    pub resolved: Option<python::ResolvedBuild>,
    /// The Debian record of the base and of the compiler (None: not built
    /// with mmdebstrap).
    pub debian: DebianRecords,
}

/// The Debian records of a build's two root filesystems.
#[derive(Clone, Debug, Default)]
pub struct DebianRecords {
    /// The base's.
    pub base: Option<rootfs::DebianRecord>,
    /// The compiler's.
    pub compiler: Option<rootfs::DebianRecord>,
}

/// One layer in the result file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ResultLayer {
    /// Blob digest.
    pub digest: Digest,
    /// Uncompressed digest.
    pub diff_id: Digest,
    /// Blob size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
    /// The history line.
    pub created_by: String,
    /// `built` by this run or `cached`.
    pub build: &'static str,
}

/// The `--result-file` document: what was built and, if asked, pushed, and
/// the isolation its commands ran under. It names no credential
/// (references never carry one).
pub fn result_document(
    result: &BuildResult,
    isolation: crate::sandbox::Isolation,
) -> serde_json::Value {
    let push = result.pushed.as_ref().map(|p| {
        serde_json::json!({
            "reference": p.pushed.to_string(),
            "digest": p.digest,
            "blobs": p.blobs,
        })
    });
    let python = result.resolved.as_ref().map(|r| {
        let packages: Vec<serde_json::Value> = r
            .wheels
            .iter()
            .map(|w| {
                serde_json::json!({
                    "name": w.resolved.name,
                    "version": w.resolved.version,
                    "file": w.resolved.file,
                    "sha256": w.resolved.sha256,
                    "wheel": w.wheel,
                    "wheel_sha256": w.wheel_sha256,
                })
            })
            .collect();
        serde_json::json!({
            "resolution": r.decided.word(),
            "changes": r.changes,
            "packages": packages,
        })
    });
    serde_json::json!({
        "reference": result.reference,
        "digest": result.digest,
        "name": result.name,
        "version": result.version,
        "platform": {"os": "linux", "architecture": documents::host_architecture()},
        "python": {"version": result.python, "set": python},
        "layers": result.layers,
        "push": push,
        "isolation": isolation.as_str(),
        "debian": {
            "base": archive_state(result.debian.base.as_ref()),
            "compiler": archive_state(result.debian.compiler.as_ref()),
        },
    })
}

/// The archive state of a Debian record for the result file: the epoch
/// and the suites (the packages go to the lock file).
fn archive_state(record: Option<&rootfs::DebianRecord>) -> serde_json::Value {
    match record {
        Some(r) => serde_json::json!({"epoch": r.epoch, "suites": r.suites}),
        None => serde_json::Value::Null,
    }
}

/// Gets the base rootfs from wherever the options say, and the image it
/// is when it is a given image (not a tarball, not built).
pub fn base_rootfs(
    cache: &Cache,
    base: &BaseSource,
    config: &ProjectConfig,
    registry: &ClientOptions,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<(Rootfs, Option<BaseImage>), Error> {
    match given_rootfs(cache, base, "base", registry, printer)? {
        Some(given) => Ok(given),
        None => Ok((
            rootfs::built(
                cache,
                &Definition::base(config.debian.as_deref(), &config.dependencies.run),
                runner,
                printer,
            )?,
            None,
        )),
    }
}

/// The rootfs `source` gives (`role`, base or compiler, names it in the
/// progress), with the image it is when it is one; None when it is to be
/// built.
fn given_rootfs(
    cache: &Cache,
    source: &BaseSource,
    role: &str,
    registry: &ClientOptions,
    printer: &Printer,
) -> Result<Option<(Rootfs, Option<BaseImage>)>, Error> {
    Ok(Some(match source {
        BaseSource::Built => return Ok(None),
        BaseSource::Tarball(p) => (rootfs::from_tarball(cache, p, role, printer)?, None),
        BaseSource::Layout(dir, tag) => {
            let rootfs = rootfs::from_layout(cache, dir, tag.as_deref(), role, printer)?;
            let image = Layout::open(dir)?.image(tag.as_deref())?;
            let digest = image.digest().clone();
            (rootfs, Some(base_image(&image, None, digest)?))
        }
        BaseSource::Registry(reference) => {
            // The base's directory is named by its reference alone (as it
            // always was); a compiler's is apart from it.
            let name = reference.to_string().replace(['/', ':', '@'], "_");
            let dir = cache.root().join("pulled").join(match role {
                "base" => name,
                _ => format!("{role}-{name}"),
            });
            let client = Arc::new(Client::new(registry.clone())?);
            printer.step(&format!("{role} rootfs: pulling {reference}"));
            let (_, named) = remote::pull(client, reference, &dir, role, printer)?;
            let image = Layout::open(&dir)?.image(Some(role))?;
            let blobs: Vec<Digest> = image.blobs().map(|b| b.digest.clone()).collect();
            cache.remember_blobs(reference.api_host(), &reference.repository, &blobs);
            let rootfs = rootfs::from_layout(cache, &dir, Some(role), role, printer)?;
            // As given, fully qualified; a bare name is its `latest` tag.
            let name = match (&reference.tag, &reference.digest) {
                (None, None) => reference.with_tag(Some("latest".into())),
                _ => reference.clone(),
            }
            .to_string();
            (rootfs, Some(base_image(&image, Some(name), named)?))
        }
    }))
}

/// The [`BaseImage`] of a given base `image`, named `name` and `digest`:
/// with its configuration's environment and labels.
fn base_image(image: &Image, name: Option<String>, digest: Digest) -> Result<BaseImage, Error> {
    let config = image.config()?;
    let c = config.config().clone().unwrap_or_default();
    Ok(BaseImage {
        name,
        digest,
        env: c.env().clone().unwrap_or_default(),
        labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
    })
}

/// Gets the compiler rootfs.
pub fn compiler_rootfs(
    cache: &Cache,
    config: &ProjectConfig,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<Rootfs, Error> {
    Ok(rootfs::built(
        cache,
        &Definition::compiler(
            config.debian.as_deref(),
            &config.dependencies.run,
            &config.dependencies.build,
        ),
        runner,
        printer,
    )?)
}

/// The root filesystems and the wheelhouse a build installs from.
struct Inputs {
    base: Rootfs,
    /// The image a given base is.
    base_image: Option<BaseImage>,
    compiler: Rootfs,
    /// The interpreter the venv is made with.
    python: rootfs::Interpreter,
    wheelhouse: python::Wheelhouse,
}

/// Runs the whole pipeline and writes the image into the OCI layout.
pub fn build(
    opts: &BuildOptions,
    cache: &Cache,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<BuildResult, Error> {
    let key = opts.recordable.then(|| record_key(opts));
    let (tier, cache) = with_build_cache(opts, cache)?;
    let cache = &cache;
    if let (Some(key), Some(tier), false) = (&key, &tier, opts.rebuild) {
        if let Some(result) = from_remote_cache(opts, key, cache, runner, tier, printer)? {
            return Ok(result);
        }
    }
    let key = key.as_deref();
    let Some(tier) = tier.as_deref().filter(|tier| tier.repos().to.is_some()) else {
        return build_here(opts, key, cache, runner, tier.as_deref(), printer);
    };
    // The entries of the inputs (root filesystems, wheels) are written
    // while the build goes on; the image's own after its push.
    std::thread::scope(|s| {
        // Whatever happens, the writer stops waiting (else the scope would
        // wait for it forever).
        let _closing = CloseInputs(tier);
        let early = s.spawn(|| write_inputs(opts, cache, tier, printer));
        let built = build_here(opts, key, cache, runner, Some(tier), printer);
        // A failed build still writes what it had made: the next runner
        // needs it as much.
        tier.close_inputs(false);
        let written = early
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let built = built?;
        write_offered(opts, cache, tier, written, printer)?;
        Ok(built)
    })
}

/// Ends the writing of the inputs' entries when dropped.
struct CloseInputs<'a>(&'a remote_cache::Tier);

impl Drop for CloseInputs<'_> {
    fn drop(&mut self) {
        self.0.close_inputs(true);
    }
}

/// [`build`] from the inputs: rootfs, wheels, venv and runtime layers made
/// here or taken from the caches; the build recorded.
fn build_here(
    opts: &BuildOptions,
    key: Option<&str>,
    cache: &Cache,
    runner: &dyn Runner,
    tier: Option<&remote_cache::Tier>,
    printer: &Printer,
) -> Result<BuildResult, Error> {
    let Inputs {
        base,
        base_image,
        compiler,
        python,
        wheelhouse,
    } = match &opts.offline {
        Some(off) => offline_inputs(off, opts, cache, runner, printer)?,
        None => online_inputs(opts, cache, runner, printer)?,
    };
    let ctx = python_context(cache, runner, printer, &python, opts);
    let store_tools = opts.offline.as_ref().map(|off| off.store.tools());
    let uv_from = match &store_tools {
        Some(dir) => python::uv::Source::Store(dir),
        None => python::uv::Source::Index {
            pip: &opts.pip,
            compiler: &compiler,
        },
    };
    let venv = python::install(&ctx, &opts.requirement, &wheelhouse, &base, uv_from)?;
    let name = wheelhouse.project.name.clone();
    let version = wheelhouse.project.version.clone();
    let project = Project {
        name: &name,
        python: &python,
        installed: &venv.installed,
        services: &opts.config.services,
    };
    let runtime = runtime_layer(cache, &project, opts.epoch, opts.compression, printer)?;
    let runtime_blob = runtime.0.clone();
    let (layers, result_layers) = image_layers(&base, &venv, runtime, &name, &version);
    let settings = image_settings(
        &project,
        &version,
        &opts.config,
        opts.epoch,
        base_image.as_ref(),
    );
    let docs = documents::image_documents(&settings, &layers)?;
    let digest = write_layout(&opts.output, cache, docs, &version)?;
    let pushed = match &opts.push {
        None => None,
        Some(target) => Some(push_built(
            opts, target, cache, &digest, &name, &version, printer,
        )?),
    };
    if let (Some(key), Some(resolved)) = (key, &wheelhouse.resolved) {
        let record = Record {
            format: remote_cache::FORMAT,
            key: key.into(),
            assemble: env!("CARGO_PKG_VERSION").into(),
            name: name.clone(),
            version: version.clone(),
            python: python.version.clone(),
            base: RecordedRootfs {
                key: base.key.clone(),
                layers: base.layers.clone(),
                created_by: base.created_by.clone(),
                debian: base.debian.clone(),
            },
            compiler_debian: compiler.debian.clone(),
            resolution: resolved.resolution.clone(),
            dependencies: venv.dependencies.clone(),
            application: venv.application.clone(),
            installed: venv.installed.clone(),
            runtime: runtime_blob,
        };
        record_build(opts, cache, &record, tier, printer)?;
    }
    Ok(BuildResult {
        reference: format!("oci:{}:{version}", opts.output.display()),
        digest,
        name,
        version,
        pushed,
        layers: result_layers,
        python: python.version,
        resolved: wheelhouse.resolved.clone(),
        debian: DebianRecords {
            base: base.debian.clone(),
            compiler: compiler.debian.clone(),
        },
    })
}

/// The build cache in a registry, when one is read or written and the
/// build is not offline: the tier behind the local cache (stage entries;
/// it also reads and writes the records), and the cache with it.
fn with_build_cache(
    opts: &BuildOptions,
    cache: &Cache,
) -> Result<(Option<Arc<remote_cache::Tier>>, Cache), Error> {
    if opts.offline.is_some() || opts.remote_cache.is_empty() {
        return Ok((None, cache.clone()));
    }
    let tier = Arc::new(remote_cache::Tier::new(
        Arc::new(Client::new(opts.registry.clone())?),
        opts.remote_cache.clone(),
    ));
    Ok((Some(tier.clone()), cache.clone().with_remote(tier)))
}

/// The inputs from the offline store: its rootfs layers and its wheels.
fn offline_inputs(
    off: &Offline,
    opts: &BuildOptions,
    cache: &Cache,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<Inputs, Error> {
    let blobs = off.store.blobs()?;
    let lock = &off.lock;
    let base = rootfs::from_blobs(
        cache,
        &lock.base.key,
        &lock.base.layers,
        &lock.base.created_by,
        &blobs,
        "base rootfs",
        printer,
    )?;
    let compiler = rootfs::from_blobs(
        cache,
        &lock.compiler.key,
        &lock.compiler.layers,
        &lock.compiler.created_by,
        &blobs,
        "compiler rootfs",
        printer,
    )?;
    let python = rootfs::choose_python(
        &base.tree,
        Some(&lock.python),
        &base_path(lock.base_image.as_ref()),
    )?;
    if runner.runs_on_host() {
        // The venv is made by this machine's interpreter.
        rootfs::check_compiler(&base.tree, Path::new("/"), HOST_COMPILER, &python)?;
    }
    let ctx = python_context(cache, runner, printer, &python, opts);
    // The venv's uWSGI, for an interpreter that is not Debian's, comes
    // from the store like every wheel.
    for r in &ctx.runtime_requirements {
        let prefix = format!("{r}-");
        if !lock
            .wheels
            .keys()
            .any(|w| w.to_ascii_lowercase().starts_with(&prefix))
        {
            return Err(python::PythonError::Requirements(format!(
                "the base's interpreter {} is not Debian's, so the image serves with uWSGI from \
                 the venv, and the offline store has no {r} wheel: fill it again with `assemble \
                 vendor` from a connected machine",
                python.path
            ))
            .into());
        }
    }
    let wheelhouse = python::wheelhouse_from_store(
        &ctx,
        &off.store.wheels(),
        &lock.wheels,
        &lock.project,
        &compiler,
    )?;
    Ok(Inputs {
        base,
        base_image: lock.base_image.clone(),
        compiler,
        python,
        wheelhouse,
    })
}

/// The inputs made here: the base and compiler rootfs, and the wheelhouse
/// `pip wheel` builds in the compiler.
fn online_inputs(
    opts: &BuildOptions,
    cache: &Cache,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<Inputs, Error> {
    // A lock of ours also says what the rootfs were built from: with the
    // built base, they are rebuilt at exactly those Debian versions.
    let debian = match &opts.locked {
        Some(path) => python::lock::read(path, opts.requirement.name.as_deref(), None)
            .map_err(python::PythonError::from)?
            .debian
            .unwrap_or_default(),
        None => python::lock::LockedDebian::default(),
    };
    // The compiler given, else the one built from `config`'s release;
    // without isolation, this machine.
    let get_compiler = |config: &ProjectConfig| -> Result<Rootfs, Error> {
        if runner.runs_on_host() {
            return Ok(host_compiler(runner, printer));
        }
        if let Some((rootfs, _)) =
            given_rootfs(cache, &opts.compiler, "compiler", &opts.registry, printer)?
        {
            return Ok(rootfs);
        }
        match &debian.compiler {
            Some(record) => rootfs::built_locked(
                cache,
                &Definition::compiler(
                    config.debian.as_deref(),
                    &config.dependencies.run,
                    &config.dependencies.build,
                ),
                record,
                runner,
                printer,
            )
            .map_err(Error::from),
            None => compiler_rootfs(cache, config, runner, printer),
        }
    };
    let ((base, base_image), compiler) = if matches!(opts.base, BaseSource::Built) {
        // The two root filesystems at once: each is a download and an
        // unpack (from the build cache) or an mmdebstrap run, mostly on
        // one core.
        std::thread::scope(|s| {
            let compiler = s.spawn(|| get_compiler(&opts.config));
            let base = match &debian.base {
                Some(record) => rootfs::built_locked(
                    cache,
                    &Definition::base(opts.config.debian.as_deref(), &opts.config.dependencies.run),
                    record,
                    runner,
                    printer,
                )
                .map(|rootfs| (rootfs, None))
                .map_err(Error::from),
                None => base_rootfs(
                    cache,
                    &opts.base,
                    &opts.config,
                    &opts.registry,
                    runner,
                    printer,
                ),
            };
            let compiler = compiler
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            Ok::<_, Error>((base?, compiler?))
        })?
    } else {
        // A given base first, checked before the compiler is fetched or
        // built: one that cannot carry the image exits 2 at once.
        let base = base_rootfs(
            cache,
            &opts.base,
            &opts.config,
            &opts.registry,
            runner,
            printer,
        )?;
        let wanted = opts.python.as_deref().or(opts.config.python.as_deref());
        let path = base_path(base.1.as_ref());
        // A musl base is refused as such, whatever Python it has.
        rootfs::check_libc(&base.0.tree)?;
        let python = rootfs::choose_python(&base.0.tree, wanted, &path)?;
        // The base's own apt may run here: rootless, over subordinate ids,
        // only where user namespaces work (else it would run as the host's
        // root), and not with a mirror set (its sources may be out of reach).
        let no_apt =
            if std::env::var(crate::env::ASSEMBLE_DEBIAN_MIRROR).is_ok_and(|m| !m.is_empty()) {
                Some("ASSEMBLE_DEBIAN_MIRROR is set")
            } else if !runner.user_namespaces() {
                Some("user namespaces are refused here")
            } else if !rootfs::derivable(&base.0.tree) {
                Some("the base has no apt-get or no apt sources")
            } else {
                None
            };
        let apt_here = no_apt.is_none();
        let base = match rootfs::check_base(&base.0.tree, &python, &path) {
            // A base that lacks what the image runs gets it from its own
            // apt, as one layer over its own.
            Err(RootfsError::BaseLacks {
                mut packages, user, ..
            }) if apt_here => {
                if user && !rootfs::exists_inside(&base.0.tree, "usr/sbin/useradd") {
                    packages.push("passwd".into());
                }
                let completed = rootfs::completed(
                    cache, &base.0, &packages, user, opts.epoch, runner, printer,
                )?;
                rootfs::check_base(&completed.tree, &python, &path)?;
                (completed, base.1)
            }
            other => {
                other?;
                base
            }
        };
        // A base with apt and its sources makes its own compiler (its C
        // library and Python exactly), unless a compiler is given, a lock
        // records the built one, assemble.toml names a release, a mirror
        // is set (the base's own sources may be out of reach), or user
        // namespaces are refused (its apt would run as the host's root).
        let release = rootfs::choose_release(opts.config.debian.as_deref(), Some(&python.version));
        let no_derive = if opts.compiler != BaseSource::Built || runner.runs_on_host() {
            None
        } else if debian.compiler.is_some() {
            Some("the lock records the compiler built from layers/")
        } else if opts.config.debian.is_some() {
            Some("assemble.toml names a debian release")
        } else {
            no_apt
        };
        let derive =
            opts.compiler == BaseSource::Built && !runner.runs_on_host() && no_derive.is_none();
        // No compiler built from layers/ has an interpreter that is not
        // Debian's: refused now, before any compiler is fetched or built.
        if let (false, Some(why)) = (python.debian(), no_derive) {
            return Err(RootfsError::NoCompilerFor {
                python: python.path.clone(),
                why: why.to_string(),
            }
            .into());
        }
        let derived = if derive {
            let deps = &opts.config.dependencies;
            let mut packages = Definition::compiler_additions(&deps.run, &deps.build);
            if python.debian() {
                // python3-dev is the default Python's; the headers of this one.
                packages.push(format!("python{}-dev", python.version));
            } else {
                // Debian's Python is not the one compiled for: its headers
                // and pip would only add an interpreter of Debian's (unless
                // the project's own build dependencies name them).
                packages.retain(|p| {
                    !["python3-dev", "python3-pip"].contains(&p.as_str()) || deps.build.contains(p)
                });
            }
            packages.sort();
            packages.dedup();
            match rootfs::derived(cache, &base.0, &packages, runner, printer) {
                Ok(compiler) => Some(compiler),
                // Where it cannot be made here, the compiler of the
                // release that ships the base's Python, as before; not for
                // a locked build (its wheels would change silently), nor
                // when what apt made cannot be unpacked safely.
                Err(e)
                    if release.is_ok()
                        && python.debian()
                        && opts.locked.is_none()
                        && !matches!(e, RootfsError::Unpack { .. }) =>
                {
                    printer.warn(&format!(
                        "{e}\nusing the compiler built from layers/ for Python {} instead",
                        python.version
                    ));
                    None
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let compiler = match derived {
            Some(compiler) => compiler,
            None => {
                // The compiler from the release that ships the base's
                // Python (the one named must ship it): refused now, before
                // the compiler is fetched or built, when none does. A given
                // compiler is checked once it is there.
                let mut config = opts.config.clone();
                if opts.compiler == BaseSource::Built && !runner.runs_on_host() {
                    let release =
                        release.map_err(|e| RootfsError::CompilerMismatch(Box::new(e)))?;
                    config.debian = Some(release.name);
                }
                get_compiler(&config)?
            }
        };
        (base, compiler)
    };
    let python = rootfs::choose_python(
        &base.tree,
        opts.python.as_deref().or(opts.config.python.as_deref()),
        &base_path(base_image.as_ref()),
    )?;
    // Before anything is compiled: the compiler has the base's Python and
    // a C library the base can load what it links against.
    rootfs::check_compiler(
        &base.tree,
        &compiler.tree,
        &match &opts.compiler {
            BaseSource::Built if runner.runs_on_host() => HOST_COMPILER.to_string(),
            BaseSource::Built if compiler.debian.is_none() => "made from the base".to_string(),
            BaseSource::Built => "built from layers/compiler".to_string(),
            given => format!("{given} (or leave --compiler unset)"),
        },
        &python,
    )?;
    let ctx = python_context(cache, runner, printer, &python, opts);
    let locked = match &opts.locked {
        Some(path) => {
            let l = python::lock::read(
                path,
                opts.requirement.name.as_deref(),
                Some(&python.version),
            )
            .map_err(python::PythonError::from)?;
            printer.step(&format!(
                "resolve: {} distributions from {} (no resolution)",
                l.resolution.packages.len(),
                path.display()
            ));
            Some(l)
        }
        None => None,
    };
    let wheelhouse = python::compile(
        &ctx,
        &opts.requirement,
        &opts.pip,
        &compiler,
        locked.as_ref(),
    )?;
    Ok(Inputs {
        base,
        base_image,
        compiler,
        python,
        wheelhouse,
    })
}

/// This machine, as messages about the compiler name it.
const HOST_COMPILER: &str = "this machine (--isolation none: the job's image is the compiler)";

/// This machine as the compiler (`--isolation none`): its root, no layer,
/// and a key of what its compiled wheels depend on ([`host_key`]), so that
/// they are not mistaken for a compiler rootfs's.
fn host_compiler(runner: &dyn Runner, printer: &Printer) -> Rootfs {
    printer.step("compiler: this machine's own filesystem (--isolation none)");
    Rootfs {
        key: host_key(runner),
        tree: PathBuf::from("/"),
        layers: Vec::new(),
        created_by: Vec::new(),
        origin: Origin::Built,
        debian: None,
    }
}

/// The key of this machine as a compiler: its release and packages (the
/// dpkg or apk database: the headers, libraries and toolchain installed),
/// its C library, its interpreters' and `cc`'s bytes.
fn host_key(runner: &dyn Runner) -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| host_key_now(runner)).clone()
}

fn host_key_now(runner: &dyn Runner) -> String {
    let root = Path::new("/");
    let mut key = crate::cache::KeyBuilder::new("host-compiler-v1");
    key.part(
        "os-release",
        &std::fs::read("/etc/os-release").unwrap_or_default(),
    )
    .part("libc", rootfs::libc_of(root).to_string().as_bytes());
    for db in ["/var/lib/dpkg/status", "/lib/apk/db/installed"] {
        if let Ok(bytes) = std::fs::read(db) {
            key.part(db, crate::digest::Digest::of(&bytes).hex().as_bytes());
        }
    }
    let interpreters: Vec<String> = rootfs::interpreters(root, rootfs::DEFAULT_PATH)
        .into_iter()
        .map(|i| i.path)
        .collect();
    // Each interpreter's own version, to the patch: python.org's program
    // is a small stub over its libpython, and no package database has it.
    for python in &interpreters {
        let out = runner.run_host(&crate::sandbox::HostCommand {
            what: format!("{python} --version"),
            program: python.into(),
            args: vec!["-c".into(), "import sys; print(sys.version)".into()],
            env: Vec::new(),
            stdin: None,
        });
        if let Some(out) = out.ok().filter(|o| o.success) {
            key.part(&format!("{python} version"), &out.stdout);
        }
    }
    let programs = interpreters
        .into_iter()
        .chain(["/usr/bin/cc".to_string(), "/usr/bin/gcc".to_string()]);
    for program in programs {
        // By content: a job image's pull sets no stable times.
        if let Ok(bytes) = std::fs::read(&program) {
            key.part(&program, crate::digest::Digest::of(&bytes).hex().as_bytes());
        }
    }
    key.finish()
}

/// The image's layers, bottom first (base, venv dependencies, runtime,
/// application), with their history lines, and the same layers as the
/// result file lists them (`built` or `cached`).
fn image_layers(
    base: &Rootfs,
    venv: &python::VenvLayers,
    (runtime_blob, runtime_origin): (LayerBlob, Origin),
    name: &str,
    version: &str,
) -> (Vec<ImageLayer>, Vec<ResultLayer>) {
    let mut layers: Vec<ImageLayer> = base
        .layers
        .iter()
        .zip(&base.created_by)
        .map(|(blob, by)| ImageLayer {
            blob: blob.clone(),
            created_by: by.clone(),
        })
        .collect();
    let deps: Vec<String> = venv
        .installed
        .distributions
        .iter()
        .filter(|(d, _)| **d != crate::spec::normalise_name(name))
        .map(|(d, v)| format!("{d}=={v}"))
        .collect();
    layers.push(ImageLayer {
        blob: venv.dependencies.clone(),
        created_by: format!("assemble: venv dependencies ({})", deps.join(" ")),
    });
    layers.push(ImageLayer {
        blob: runtime_blob,
        created_by: "assemble: entrypoint, templates, default settings, volumes".into(),
    });
    layers.push(ImageLayer {
        blob: venv.application.clone(),
        created_by: format!("assemble: {name}=={version}"),
    });
    let cached = |yes: bool| if yes { Origin::Cached } else { Origin::Built };
    let dependencies = match venv.dependencies_origin {
        Origin::Remote => Origin::Remote,
        _ => cached(venv.cached || venv.dependencies_cached),
    };
    let mut origins: Vec<Origin> = vec![base.origin; base.layers.len()];
    origins.extend([dependencies, runtime_origin, cached(venv.cached)]);
    let result_layers: Vec<ResultLayer> = layers
        .iter()
        .zip(&origins)
        .map(|(l, o)| ResultLayer {
            digest: l.blob.digest.clone(),
            diff_id: l.blob.diff_id.clone(),
            size: l.blob.size,
            media_type: l.blob.media_type.clone(),
            created_by: l.created_by.clone(),
            build: o.as_str(),
        })
        .collect();
    (layers, result_layers)
}

/// The repository name of a build under a registry: the project's name
/// normalised (PEP 503), then each extra: `<project>[-<extra>...]`.
pub(crate) fn image_name(project: &str, extras: &[String]) -> String {
    let mut name = crate::spec::normalise_name(project);
    for e in extras {
        name.push('-');
        name.push_str(e);
    }
    name
}

/// Pushes the image just written to the layout, named by `--tag` or under
/// the registry as `<project>[-<extras>]:<version>`.
fn push_built(
    opts: &BuildOptions,
    target: &PushTarget,
    cache: &Cache,
    digest: &Digest,
    name: &str,
    version: &str,
    printer: &Printer,
) -> Result<PushReport, Error> {
    let reference = push_reference(opts, target, name, version)?;
    let image = Layout::open(&opts.output)?.image_by_digest(digest)?;
    push_image(
        cache,
        &image,
        &reference,
        &opts.registry,
        &opts.push_options,
        printer,
    )
}

/// The key of a build's inputs in the build cache: the assemble version,
/// the requirement, the interpreter asked for, the index settings, the
/// base and compiler definitions (packages, hook, mirror; not the archive
/// state, which a record carries and a reader checks), the image
/// configuration, the epoch and the compression.
fn record_key(opts: &BuildOptions) -> String {
    let c = &opts.config;
    let mut k = crate::cache::KeyBuilder::new("build-record-v1");
    k.part("assemble", env!("CARGO_PKG_VERSION").as_bytes())
        .part("requirement", format!("{:?}", opts.requirement).as_bytes())
        .part(
            "python",
            opts.python
                .as_deref()
                .or(c.python.as_deref())
                .unwrap_or("")
                .as_bytes(),
        )
        // Without credentials: a per-job token must not change the key.
        .part(
            "index",
            strip(opts.pip.index_url.as_deref().unwrap_or("")).as_bytes(),
        )
        .part(
            "extra-index",
            opts.pip
                .extra_index_urls
                .iter()
                .map(|u| strip(u))
                .collect::<Vec<_>>()
                .join(" ")
                .as_bytes(),
        )
        .part("trusted", opts.pip.trusted_hosts.join(" ").as_bytes())
        .part(
            "constraints",
            opts.pip.constraints.as_deref().unwrap_or(b""),
        )
        .part(
            "base",
            record_definition(base_definition(opts)).key().as_bytes(),
        )
        .part(
            "compiler",
            record_definition(compiler_definition(opts))
                .key()
                .as_bytes(),
        )
        .part(
            "image",
            format!("{:?} {:?} {:?} {:?}", c.env, c.ports, c.volumes, c.services).as_bytes(),
        )
        .part("epoch", opts.epoch.to_string().as_bytes())
        .part("compression", opts.compression.name().as_bytes());
    k.finish()
}

fn strip(url: &str) -> String {
    crate::output::strip_credentials(url)
}

fn base_definition(opts: &BuildOptions) -> Definition {
    Definition::base(opts.config.debian.as_deref(), &opts.config.dependencies.run)
}

fn compiler_definition(opts: &BuildOptions) -> Definition {
    let deps = &opts.config.dependencies;
    Definition::compiler(opts.config.debian.as_deref(), &deps.run, &deps.build)
}

/// A definition as the key of a record sees it: the mirror without
/// credentials (the archive it names is checked against the record's).
fn record_definition(mut def: Definition) -> Definition {
    def.mirror = def.mirror.lines().map(strip).collect::<Vec<_>>().join("\n");
    def
}

/// Keeps the record of a build in the cache and, when a build cache
/// repository is written, there too (a failure there is a warning: the
/// build itself succeeded).
fn record_build(
    opts: &BuildOptions,
    cache: &Cache,
    record: &Record,
    tier: Option<&remote_cache::Tier>,
    printer: &Printer,
) -> Result<(), Error> {
    cache.put_json("records", &record.key, record)?;
    match tier {
        Some(tier) => write_record(opts, cache, record, tier, "recording this build", printer),
        None => Ok(()),
    }
}

/// Writes a record to the build cache repository written, if any and it
/// could be read (a failure is a warning).
fn write_record(
    opts: &BuildOptions,
    cache: &Cache,
    record: &Record,
    tier: &remote_cache::Tier,
    what: &str,
    printer: &Printer,
) -> Result<(), Error> {
    let Some(to) = &opts.remote_cache.to else {
        return Ok(());
    };
    if !tier.may_write(printer) {
        return Ok(());
    }
    printer.step(&format!("remote cache: {what} in {to}"));
    let image = remote_cache::entry_image(record, cache.blobs())?;
    let reference = remote_cache::entry_reference(to, &record.key);
    let mut options = opts.push_options.clone();
    options.format = crate::image::mutate::ManifestFormat::Oci;
    if let Err(e) = push_image(cache, &image, &reference, &opts.registry, &options, printer) {
        printer.warn(&format!(
            "cannot record this build in the build cache {to}: {}",
            crate::registry::error_chain(&e)
        ));
    }
    Ok(())
}

/// Writes the stage entries this build made (a rootfs, a wheel built from
/// an sdist, the dependencies and runtime layers) to the build cache
/// repository, after the image: blobs the image holds are mounted from it.
/// A failure is a warning, and the rest are not tried.
fn write_offered(
    opts: &BuildOptions,
    cache: &Cache,
    tier: &remote_cache::Tier,
    written: usize,
    printer: &Printer,
) -> Result<(), Error> {
    let written = written
        + write_entries(
            opts,
            cache,
            tier,
            tier.take_offered(cache.blobs())?,
            printer,
        );
    if written > 0 {
        printer.step(&format!("remote cache: {written} stage entries written"));
    }
    Ok(())
}

/// Writes the entries of the build's inputs as they are offered, until
/// [`remote_cache::Tier::close_inputs`]; how many were written.
fn write_inputs(
    opts: &BuildOptions,
    cache: &Cache,
    tier: &remote_cache::Tier,
    printer: &Printer,
) -> usize {
    let mut written = 0;
    loop {
        match tier.next_inputs(cache.blobs()) {
            Ok(Some(entries)) => written += write_entries(opts, cache, tier, entries, printer),
            Ok(None) => return written,
            Err(e) => {
                printer.warn(&format!(
                    "cannot write to the build cache: {}",
                    crate::registry::error_chain(&e)
                ));
                tier.stop_writing();
            }
        }
    }
}

/// Writes `entries` to the build cache repository (one that is there
/// already is only dated again, when it is old); how many were written. The
/// first refusal is a warning and ends the writing of this build.
fn write_entries(
    opts: &BuildOptions,
    cache: &Cache,
    tier: &remote_cache::Tier,
    entries: Vec<(crate::image::Image, Reference)>,
    printer: &Printer,
) -> usize {
    if entries.is_empty() || !tier.may_write(printer) {
        return 0;
    }
    let mut options = opts.push_options.clone();
    options.format = crate::image::mutate::ManifestFormat::Oci;
    let mut written = 0;
    for (image, reference) in entries {
        if !tier.may_write(printer) {
            break;
        }
        let repo = reference.with_tag(None);
        let pushed = match tier.entry_age(&reference) {
            Ok(Some(age)) if age < remote_cache::REFRESH_AFTER => continue,
            Ok(found) => {
                printer.step(&format!(
                    "remote cache: {} {} in {repo}",
                    if found.is_some() {
                        "dating again (in use)"
                    } else {
                        "writing"
                    },
                    reference.tag.as_deref().unwrap_or_default()
                ));
                push_image(cache, &image, &reference, &opts.registry, &options, printer).map(|_| ())
            }
            Err(e) => Err(e.into()),
        };
        match pushed {
            Ok(()) => written += 1,
            Err(e) => {
                printer.warn(&format!(
                    "cannot write to the build cache {repo}: {}",
                    crate::registry::error_chain(&e)
                ));
                tier.stop_writing();
            }
        }
    }
    written
}

/// The build served by a record of the same inputs, when the local cache
/// has none and a build cache repository has one that is still current:
/// no rootfs, no resolver, no compile, no install, no packing. None: build
/// here (the reason was said).
fn from_remote_cache(
    opts: &BuildOptions,
    key: &str,
    cache: &Cache,
    runner: &dyn Runner,
    tier: &remote_cache::Tier,
    printer: &Printer,
) -> Result<Option<BuildResult>, Error> {
    // The local cache first: a build recorded here is rebuilt from its
    // cached stages, which checks the same things.
    if opts.remote_cache.from.is_empty() || cache.get_json::<Record>("records", key).is_some() {
        return Ok(None);
    }
    for repo in &opts.remote_cache.from {
        printer.step(&format!("remote cache: looking in {repo}"));
        match remote_cache::fetch(tier.client(), repo, key, cache.blobs()) {
            Ok((record, entry)) => {
                if !matches_request(opts, &record, repo, printer) {
                    continue;
                }
                if !still_current(opts, &record, cache, runner, printer)? {
                    return Ok(None);
                }
                // Anything that fails from here on (a mount declined, a blob
                // gone) is a warning: the build goes on here.
                match finish_from_record(opts, &record, repo, &entry, cache, printer) {
                    Ok(result) => {
                        if opts.remote_cache.to.as_ref() == Some(repo)
                            && remote_cache::age(entry.manifest_bytes())
                                .is_none_or(|a| a >= remote_cache::REFRESH_AFTER)
                        {
                            write_record(
                                opts,
                                cache,
                                &record,
                                tier,
                                "dating the record again (in use)",
                                printer,
                            )?;
                        }
                        return Ok(Some(result));
                    }
                    Err(e) => {
                        printer.warn(&format!(
                            "cannot write the image from the build cache {repo} ({}); building here",
                            crate::registry::error_chain(&e)
                        ));
                        return Ok(None);
                    }
                }
            }
            Err(miss) => {
                if matches!(miss, remote_cache::Miss::Unreachable(_)) {
                    tier.mark_unreachable(repo);
                }
                miss.say(printer, repo, "record")
            }
        }
    }
    Ok(None)
}

/// Whether a record is of what was asked: its project is the requirement's
/// (a record naming another project would name another push target), at
/// the version pinned when one is; else it is ignored with a warning.
fn matches_request(
    opts: &BuildOptions,
    record: &Record,
    repo: &Reference,
    printer: &Printer,
) -> bool {
    let asked = opts
        .requirement
        .name
        .as_deref()
        .map(crate::spec::normalise_name)
        .unwrap_or_default();
    let pinned = match &opts.requirement.source {
        crate::spec::Source::Index { version, operator } if operator == "==" => Some(version),
        _ => None,
    };
    let name_ok = crate::spec::normalise_name(&record.name) == asked
        && record
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let version_ok = pinned.is_none_or(|v| *v == record.version)
        && record
            .version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-_.!".contains(c));
    if !(name_ok && version_ok) {
        printer.warn(&format!(
            "ignoring the build cache's record entry in {repo}: it records {:?} {:?}, not what was asked; building here",
            record.name, record.version
        ));
    }
    name_ok && version_ok
}

/// Whether the Debian archive and the index still are as the record saw
/// them; either one unreachable keeps the recorded state, with a warning,
/// as a local build does. A record without the archive states or the index
/// pages cannot be checked: it is not used.
fn still_current(
    opts: &BuildOptions,
    record: &Record,
    cache: &Cache,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<bool, Error> {
    let (Some(base), Some(compiler)) = (&record.base.debian, &record.compiler_debian) else {
        printer
            .step("remote cache: the record has no Debian archive state to check; building here");
        return Ok(false);
    };
    if record.resolution.pages.is_empty() {
        printer.step("remote cache: the record has no index pages to check; building here");
        return Ok(false);
    }
    let debian = [
        (base_definition(opts), &base.suites),
        (compiler_definition(opts), &compiler.suites),
    ];
    for (def, suites) in debian {
        match rootfs::archive_moved(&def, suites, cache, runner) {
            Ok(false) => {}
            Ok(true) => {
                printer.step("remote cache: the Debian archive moved since the recorded build; building here");
                return Ok(false);
            }
            Err(why) => {
                printer.warn(&format!(
                    "cannot check the Debian archive for updates ({why}); using the recorded build's state"
                ));
                break;
            }
        }
    }
    let client = python::index::IndexClient::new(&opts.pip).map_err(python::PythonError::from)?;
    match client.changed(&record.resolution.pages) {
        Ok(moved) if moved.is_empty() => {
            printer.step(&format!(
                "remote cache: nothing new on the index ({} distributions as recorded)",
                record.resolution.packages.len()
            ));
            Ok(true)
        }
        Ok(moved) => {
            printer.step(&format!(
                "remote cache: {} index pages changed since the recorded build; building here",
                moved.len()
            ));
            Ok(false)
        }
        Err(e) if e.unreachable => {
            printer.warn(&format!(
                "{e}; using the recorded build without checking for new releases"
            ));
            Ok(true)
        }
        Err(e) => {
            printer.step(&format!("remote cache: {e}; building here"));
            Ok(false)
        }
    }
}

/// The image written from a record: its layers as recorded, the
/// configuration and manifest made here. Pushed to the registry that holds
/// the cache, its blobs are mounted from there and nothing comes down (no
/// layout is written); otherwise the blobs missing here are downloaded
/// (digests checked) and the layout is written as usual.
fn finish_from_record(
    opts: &BuildOptions,
    record: &Record,
    repo: &Reference,
    entry: &Image,
    cache: &Cache,
    printer: &Printer,
) -> Result<BuildResult, Error> {
    let base = Rootfs {
        key: record.base.key.clone(),
        tree: PathBuf::new(),
        layers: record.base.layers.clone(),
        created_by: record.base.created_by.clone(),
        origin: Origin::Remote,
        debian: record.base.debian.clone(),
    };
    let venv = python::VenvLayers {
        dependencies: record.dependencies.clone(),
        application: record.application.clone(),
        installed: record.installed.clone(),
        cached: true,
        dependencies_cached: true,
        dependencies_origin: Origin::Remote,
    };
    let (name, version) = (&record.name, &record.version);
    // Only built bases are recorded: Debian's interpreter in /usr/bin.
    let python = rootfs::Interpreter::in_usr_bin(&record.python);
    let project = Project {
        name,
        python: &python,
        installed: &venv.installed,
        services: &opts.config.services,
    };
    let (layers, mut result_layers) = image_layers(
        &base,
        &venv,
        (record.runtime.clone(), Origin::Remote),
        name,
        version,
    );
    for l in &mut result_layers {
        l.build = Origin::Remote.as_str();
    }
    // Only built bases are served from records: no base image to name.
    let settings = image_settings(&project, version, &opts.config, opts.epoch, None);
    let docs = documents::image_documents(&settings, &layers)?;
    let target = opts
        .push
        .as_ref()
        .map(|t| push_reference(opts, t, name, version))
        .transpose()?;
    let debian = DebianRecords {
        base: record.base.debian.clone(),
        compiler: record.compiler_debian.clone(),
    };
    if let Some(target) = target.filter(|t| t.registry == repo.registry) {
        printer.step(&format!(
            "remote cache: the image of {name} {version} from the recorded build; its {} layers stay in the registry (no layout written)",
            layers.len()
        ));
        // The configuration is the one blob made here: the push reads it
        // from the cache.
        cache.blobs().put_bytes(&docs.config)?;
        let image = Image::built(docs.manifest, docs.config, Arc::new(cache.blobs().clone()))?;
        let mut options = opts.push_options.clone();
        options.mount_from.push(repo.repository.clone());
        let report = push_image(cache, &image, &target, &opts.registry, &options, printer)?;
        return Ok(BuildResult {
            reference: target.to_string(),
            digest: image.digest().clone(),
            name: name.clone(),
            version: version.clone(),
            pushed: Some(report),
            layers: result_layers,
            python: python.version.clone(),
            resolved: None,
            debian,
        });
    }
    for blob in entry.layers() {
        if !cache.blobs().has(&blob.digest) {
            printer.step(&format!("remote cache: fetching layer {}", blob.digest));
            entry.source().copy_into(blob, cache.blobs())?;
        }
    }
    printer.step(&format!(
        "remote cache: the image of {name} {version} from the recorded build"
    ));
    let digest = write_layout(&opts.output, cache, docs, version)?;
    let pushed = match &opts.push {
        None => None,
        Some(t) => Some(push_built(opts, t, cache, &digest, name, version, printer)?),
    };
    Ok(BuildResult {
        reference: format!("oci:{}:{version}", opts.output.display()),
        digest,
        name: name.clone(),
        version: version.clone(),
        pushed,
        layers: result_layers,
        python: python.version.clone(),
        resolved: None,
        debian,
    })
}

/// Where the image of `name` `version` is pushed.
fn push_reference(
    opts: &BuildOptions,
    target: &PushTarget,
    name: &str,
    version: &str,
) -> Result<Reference, Error> {
    Ok(match target {
        PushTarget::Reference(r) => r.clone(),
        PushTarget::Registry(prefix) => {
            Reference::for_build(prefix, &image_name(name, &opts.requirement.extras), version)
                .map_err(crate::registry::RegistryError::from)?
        }
    })
}

/// The `PATH` a given base's programs are found on: its configuration's,
/// else the default one.
fn base_path(image: Option<&BaseImage>) -> String {
    image
        .and_then(|i| i.env.iter().find_map(|e| e.strip_prefix("PATH=")))
        .unwrap_or(rootfs::DEFAULT_PATH)
        .to_string()
}

fn python_context<'a>(
    cache: &'a Cache,
    runner: &'a dyn Runner,
    printer: &'a Printer,
    python: &rootfs::Interpreter,
    opts: &BuildOptions,
) -> PythonContext<'a> {
    PythonContext {
        cache,
        runner,
        printer,
        python: python.version.clone(),
        interpreter: python.path.clone(),
        runtime_requirements: if python.debian() {
            Vec::new()
        } else {
            vec![crate::contract::UWSGI_DISTRIBUTION.to_string()]
        },
        epoch: opts.epoch,
        rebuild: opts.rebuild,
        compression: opts.compression,
        unconfined: runner.runs_on_host().then(|| host_key(runner)),
    }
}

/// The offline store a build uses instead of the network.
#[derive(Clone, Debug)]
pub struct Offline {
    /// The store.
    pub store: crate::vendor::Store,
    /// Its verified lock.
    pub lock: crate::vendor::Lock,
}

/// What `assemble vendor` put in the store.
pub fn vendor(
    opts: &BuildOptions,
    requirement_text: &str,
    store: &crate::vendor::Store,
    cache: &Cache,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<crate::vendor::Lock, Error> {
    if runner.runs_on_host() {
        return Err(Error::Usage(
            "assemble vendor cannot run without isolation (--isolation none): the offline store \
             holds the compiler's root filesystem, and this machine's own is none to store; run \
             it where user namespaces, chroot or proot work"
                .into(),
        ));
    }
    // The build cache serves what it has (root filesystems, wheels built
    // from sdists) and takes what was made here.
    let (tier, cache) = with_build_cache(opts, cache)?;
    let cache = &cache;
    let Inputs {
        base,
        base_image,
        compiler,
        python,
        wheelhouse,
    } = online_inputs(opts, cache, runner, printer)?;
    let ctx = python_context(cache, runner, printer, &python, opts);
    let uv = python::uv::ensure(
        &ctx,
        python::uv::Source::Index {
            pip: &opts.pip,
            compiler: &compiler,
        },
    )?;
    printer.step(&format!("vendor: filling {}", store.dir().display()));
    if let Some(tier) = &tier {
        write_offered(opts, cache, tier, 0, printer)?;
    }
    Ok(store.fill(
        cache.blobs(),
        &crate::vendor::Contents {
            requirement: requirement_text,
            python: &python.version,
            base: &base,
            base_image: base_image.as_ref(),
            compiler: &compiler,
            wheelhouse: &wheelhouse,
            constraints: opts.pip.constraints.as_deref(),
            uv_wheel: &uv.wheel,
        },
    )?)
}

/// The runtime layer, cached under the hash of what it is made of.
fn runtime_layer(
    cache: &Cache,
    project: &Project,
    epoch: u64,
    compression: Compression,
    printer: &Printer,
) -> Result<(LayerBlob, Origin), Error> {
    let layer = runtime::layer(project);
    let mut key = crate::cache::KeyBuilder::new("runtime-layer-v1");
    key.part("epoch", epoch.to_string().as_bytes())
        .part("compression", compression.name().as_bytes());
    for e in layer.entries() {
        key.part("path", e.path.as_bytes())
            .part("mode", &e.mode.to_le_bytes())
            .part(
                "owner",
                format!("{}:{}", e.owner.uid, e.owner.gid).as_bytes(),
            );
        if let layer::Kind::File(layer::Content::Bytes(b)) = &e.kind {
            key.part("bytes", b);
        }
    }
    let key = key.finish();
    if let Some(blob) = cache.get_json::<LayerBlob>("layers", &key) {
        if cache.blobs().has(&blob.digest) {
            cache.offer("layer", &key, &blob, vec![blob.blob()]);
            return Ok((blob, Origin::Cached));
        }
    }
    if let Some(blob) = cache
        .remote_json::<LayerBlob>("layer", &key, |_| Ok(()), printer)
        .filter(|b| cache.remote_layer_ok(b, printer))
    {
        cache.put_json("layers", &key, &blob)?;
        return Ok((blob, Origin::Remote));
    }
    let blob = layer.write_blob(cache.blobs().dir(), compression, epoch)?;
    cache.put_json("layers", &key, &blob)?;
    cache.offer("layer", &key, &blob, vec![blob.blob()]);
    Ok((blob, Origin::Built))
}

/// Pushes an image, mounting blobs that other repositories of the same
/// registry are known to hold, and remembers where they now are.
pub fn push_image(
    cache: &Cache,
    image: &Image,
    target: &Reference,
    registry: &ClientOptions,
    options: &PushOptions,
    printer: &Printer,
) -> Result<PushReport, Error> {
    let blobs: Vec<Digest> = image.blobs().map(|b| b.digest.clone()).collect();
    let host = target.api_host().to_string();
    let mut options = options.clone();
    options.mount_from.extend(
        cache
            .known_sources(&host, &blobs)
            .into_iter()
            .filter(|r| *r != target.repository),
    );
    let client = Arc::new(Client::new(registry.clone())?);
    printer.step(&format!("push: {} blobs to {target}", blobs.len()));
    let report = remote::push(client, image, target, &options, printer)?;
    cache.remember_blobs(&host, &target.repository, &blobs);
    Ok(report)
}

/// The image configuration: the contract's user, entrypoint, ports,
/// volumes, labels and environment, with assemble.toml's additions.
pub fn image_settings(
    project: &Project,
    version: &str,
    config: &ProjectConfig,
    epoch: u64,
    base: Option<&BaseImage>,
) -> ImageSettings {
    let created = crate::epoch::rfc3339(epoch);
    let env = contract::environment(&project.app(), version, &config.env);
    let labels = contract::labels(project.name, version, &created);
    let (env, labels) = match base {
        Some(base) => (base.environment_under(env), base.labels_under(labels)),
        None => (env, labels),
    };
    ImageSettings {
        user: contract::USER.into(),
        env,
        entrypoint: vec![contract::ENTRYPOINT_PATH.into()],
        cmd: vec![],
        working_dir: contract::HOME.into(),
        exposed_ports: contract::exposed_ports(&config.ports),
        volumes: contract::volumes(&config.volumes),
        labels,
        created,
        architecture: documents::host_architecture().into(),
        annotations: base.map(BaseImage::annotations).unwrap_or_default(),
    }
}

/// Writes the built image into the layout at `dir`: blobs first, then
/// `index.json`, so an interrupted build never leaves an index naming
/// missing blobs.
fn write_layout(
    dir: &Path,
    cache: &Cache,
    docs: ImageDocuments,
    tag: &str,
) -> Result<Digest, Error> {
    let image = Image::built(docs.manifest, docs.config, Arc::new(cache.blobs().clone()))?;
    // Checked again here, right before the first write: a layout that
    // appeared since the options were checked is not overwritten blindly.
    Layout::check_target(dir)?;
    Layout::create(dir)?.write_image(&image, tag)?;
    Ok(image.digest().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::Installed;
    use std::collections::BTreeMap;

    #[test]
    fn build_names_follow_project_and_extras() {
        assert_eq!(image_name("Milborne", &["extra".into()]), "milborne-extra");
        assert_eq!(image_name("Foo.Bar", &[]), "foo-bar");
        let r = Reference::for_build(
            "127.0.0.1:5000/team",
            &image_name("Milborne", &["extra".into()]),
            "0.4.0+local",
        )
        .unwrap();
        assert_eq!(
            r.to_string(),
            "127.0.0.1:5000/team/milborne-extra:0.4.0_local"
        );
    }

    #[test]
    fn image_documents_of_a_fixed_input() {
        let installed = Installed {
            distributions: BTreeMap::from([
                ("django".into(), "4.2.16".into()),
                ("milborne".into(), "0.4.0".into()),
            ]),
            module: "milborne".into(),
            django: true,
            crontab: true,
        };
        let services = BTreeMap::new();
        let project = Project {
            name: "milborne",
            python: &crate::rootfs::Interpreter::in_usr_bin("3.11"),
            installed: &installed,
            services: &services,
        };
        let settings = image_settings(
            &project,
            "0.4.0",
            &ProjectConfig::default(),
            1_700_000_000,
            None,
        );
        let blob = |n: &[u8]| LayerBlob {
            digest: Digest::of(n),
            diff_id: Digest::of(&[n, b"-tar"].concat()),
            size: 100,
            media_type: crate::image::media::LAYER_TAR_GZIP.into(),
        };
        let layers: Vec<ImageLayer> = ["base", "deps", "runtime", "app"]
            .iter()
            .map(|n| ImageLayer {
                blob: blob(n.as_bytes()),
                created_by: format!("layer {n}"),
            })
            .collect();
        let docs = documents::image_documents(&settings, &layers).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&docs.config).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&docs.manifest).unwrap();
        insta::assert_json_snapshot!("image_config", config);
        insta::assert_json_snapshot!("image_manifest", manifest);
        insta::assert_snapshot!("manifest_digest", docs.manifest_digest().to_string());
    }

    #[test]
    fn result_file_schema() {
        let blob = |n: &[u8]| LayerBlob {
            digest: Digest::of(n),
            diff_id: Digest::of(&[n, b"-tar"].concat()),
            size: 100,
            media_type: crate::image::media::LAYER_TAR_GZIP.into(),
        };
        let layers = ["base", "app"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let b = blob(n.as_bytes());
                ResultLayer {
                    digest: b.digest,
                    diff_id: b.diff_id,
                    size: b.size,
                    media_type: b.media_type,
                    created_by: format!("layer {n}"),
                    build: if i == 0 { "cached" } else { "built" },
                }
            })
            .collect();
        let pushed_ref = Reference::parse("127.0.0.1:5000/team/milborne:0.4.0").unwrap();
        let digest = Digest::of(b"manifest");
        let result = BuildResult {
            reference: "oci:build/oci:0.4.0".into(),
            digest: digest.clone(),
            name: "milborne".into(),
            version: "0.4.0".into(),
            pushed: Some(PushReport {
                pushed: pushed_ref.with_digest(&digest),
                digest: digest.clone(),
                blobs: vec![
                    remote::BlobReport {
                        digest: Digest::of(b"base"),
                        size: 100,
                        outcome: remote::Outcome::Mounted,
                    },
                    remote::BlobReport {
                        digest: Digest::of(b"app"),
                        size: 100,
                        outcome: remote::Outcome::Uploaded,
                    },
                ],
            }),
            layers,
            python: "3.11".into(),
            resolved: Some(python::ResolvedBuild {
                resolution: python::resolve::Resolution {
                    packages: Vec::new(),
                    pages: Vec::new(),
                },
                decided: python::resolve::Decided::Resolved,
                changes: vec![python::resolve::Change {
                    name: "django".into(),
                    before: Some("4.2.30".into()),
                    after: Some("4.2.31".into()),
                }],
                wheels: vec![python::BuiltWheel {
                    resolved: python::resolve::Resolved {
                        name: "django".into(),
                        version: "4.2.31".into(),
                        file: "django-4.2.31-py3-none-any.whl".into(),
                        url: "http://127.0.0.1:1/packages/django-4.2.31-py3-none-any.whl".into(),
                        sha256: "ab".repeat(32),
                        requested: false,
                    },
                    wheel: "django-4.2.31-py3-none-any.whl".into(),
                    wheel_sha256: "ab".repeat(32),
                    path: "/nowhere".into(),
                    key: None,
                }],
            }),
            debian: DebianRecords {
                base: Some(rootfs::DebianRecord {
                    epoch: 1_700_000_000,
                    suites: vec![rootfs::SuiteState {
                        url: "http://127.0.0.1:8080/debian/dists/bookworm/InRelease".into(),
                        sha256: "ab".repeat(32),
                        date: "Tue, 14 Nov 2023 22:13:20 UTC".into(),
                        etag: None,
                        last_modified: Some("Tue, 14 Nov 2023 22:13:21 GMT".into()),
                    }],
                    // The result file names the archive state, not the packages.
                    packages: vec![rootfs::DebPackage {
                        name: "dash".into(),
                        version: "0.5.12-2".into(),
                        architecture: "amd64".into(),
                        sha256: "cd".repeat(32),
                    }],
                }),
                compiler: None,
            },
        };
        insta::assert_json_snapshot!(
            "result_file",
            result_document(&result, crate::sandbox::Isolation::Userns)
        );
    }
}
