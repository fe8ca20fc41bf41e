//! The build pipeline: base and compiler rootfs, wheelhouse, venv layers,
//! runtime layer, image documents, OCI layout. Each stage is its own module;
//! this one only passes data from one to the next.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::Cache;
use crate::contract;
use crate::digest::Digest;
use crate::image::documents::{self, ImageDocuments, ImageLayer, ImageSettings};
use crate::image::layer::{self, Compression, LayerBlob};
use crate::image::layout::Layout;
use crate::image::remote::{self, PushOptions, PushReport};
use crate::image::Image;
use crate::output::Printer;
use crate::python::{self, PythonContext};
use crate::registry::{Client, ClientOptions, Reference};
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

/// The `--result-file` document: what was built and, if asked, pushed. It
/// names no credential (references never carry one).
pub fn result_document(result: &BuildResult) -> serde_json::Value {
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

/// Gets the base rootfs from wherever the options say.
pub fn base_rootfs(
    cache: &Cache,
    base: &BaseSource,
    config: &ProjectConfig,
    registry: &ClientOptions,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<Rootfs, Error> {
    Ok(match base {
        BaseSource::Built => rootfs::built(
            cache,
            &Definition::base(&config.dependencies.run),
            runner,
            printer,
        )?,
        BaseSource::Tarball(p) => rootfs::from_tarball(cache, p, printer)?,
        BaseSource::Layout(dir, tag) => rootfs::from_layout(cache, dir, tag.as_deref(), printer)?,
        BaseSource::Registry(reference) => {
            let dir = cache
                .root()
                .join("pulled")
                .join(reference.to_string().replace(['/', ':', '@'], "_"));
            let client = Arc::new(Client::new(registry.clone())?);
            printer.step(&format!("base rootfs: pulling {reference}"));
            remote::pull(client, reference, &dir, "base", printer)?;
            let image = Layout::open(&dir)?.image(Some("base"))?;
            let blobs: Vec<Digest> = image.blobs().map(|b| b.digest.clone()).collect();
            cache.remember_blobs(reference.api_host(), &reference.repository, &blobs);
            rootfs::from_layout(cache, &dir, Some("base"), printer)?
        }
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
        &Definition::compiler(&config.dependencies.run, &config.dependencies.build),
        runner,
        printer,
    )?)
}

/// The root filesystems and the wheelhouse a build installs from.
struct Inputs {
    base: Rootfs,
    compiler: Rootfs,
    python: String,
    wheelhouse: python::Wheelhouse,
}

/// Runs the whole pipeline and writes the image into the OCI layout.
pub fn build(
    opts: &BuildOptions,
    cache: &Cache,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<BuildResult, Error> {
    let Inputs {
        base,
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
    let runtime = runtime_layer(cache, &project, opts.epoch, opts.compression)?;
    let (layers, result_layers) = image_layers(&base, &venv, runtime, &name, &version);
    let settings = image_settings(&project, &version, &opts.config, opts.epoch);
    let docs = documents::image_documents(&settings, &layers)?;
    let digest = write_layout(&opts.output, cache, docs, &version)?;
    let pushed = match &opts.push {
        None => None,
        Some(target) => Some(push_built(
            opts, target, cache, &digest, &name, &version, printer,
        )?),
    };
    Ok(BuildResult {
        reference: format!("oci:{}:{version}", opts.output.display()),
        digest,
        name,
        version,
        pushed,
        layers: result_layers,
        python,
        resolved: wheelhouse.resolved.clone(),
        debian: DebianRecords {
            base: base.debian.clone(),
            compiler: compiler.debian.clone(),
        },
    })
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
    let python = lock.python.clone();
    let ctx = python_context(cache, runner, printer, &python, opts);
    let wheelhouse = python::wheelhouse_from_store(
        &ctx,
        &off.store.wheels(),
        &lock.wheels,
        &lock.project,
        &compiler,
    )?;
    Ok(Inputs {
        base,
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
    let base = match (&opts.base, &debian.base) {
        (BaseSource::Built, Some(record)) => rootfs::built_locked(
            cache,
            &Definition::base(&opts.config.dependencies.run),
            record,
            runner,
            printer,
        )?,
        _ => base_rootfs(
            cache,
            &opts.base,
            &opts.config,
            &opts.registry,
            runner,
            printer,
        )?,
    };
    let python = rootfs::choose_python(
        &base.tree,
        opts.python.as_deref().or(opts.config.python.as_deref()),
    )?;
    let compiler = match &debian.compiler {
        Some(record) => rootfs::built_locked(
            cache,
            &Definition::compiler(
                &opts.config.dependencies.run,
                &opts.config.dependencies.build,
            ),
            record,
            runner,
            printer,
        )?,
        None => compiler_rootfs(cache, &opts.config, runner, printer)?,
    };
    rootfs::choose_python(&compiler.tree, Some(&python))
        .map_err(|e| RootfsError::CompilerMismatch(Box::new(e)))?;
    let ctx = python_context(cache, runner, printer, &python, opts);
    let locked = match &opts.locked {
        Some(path) => {
            let l = python::lock::read(path, opts.requirement.name.as_deref(), Some(&python))
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
        compiler,
        python,
        wheelhouse,
    })
}

/// The image's layers, bottom first (base, venv dependencies, runtime,
/// application), with their history lines, and the same layers as the
/// result file lists them (`built` or `cached`).
fn image_layers(
    base: &Rootfs,
    venv: &python::VenvLayers,
    (runtime_blob, runtime_cached): (LayerBlob, bool),
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
    let origin = |cached: bool| if cached { "cached" } else { "built" };
    let mut origins: Vec<&'static str> = vec![origin(base.cached); base.layers.len()];
    origins.extend([
        origin(venv.cached || venv.dependencies_cached),
        origin(runtime_cached),
        origin(venv.cached),
    ]);
    let result_layers: Vec<ResultLayer> = layers
        .iter()
        .zip(&origins)
        .map(|(l, o)| ResultLayer {
            digest: l.blob.digest.clone(),
            diff_id: l.blob.diff_id.clone(),
            size: l.blob.size,
            media_type: l.blob.media_type.clone(),
            created_by: l.created_by.clone(),
            build: o,
        })
        .collect();
    (layers, result_layers)
}

/// The repository name of a build under a registry: the project's name
/// normalised (PEP 503), then each extra: `<project>[-<extra>...]`.
fn image_name(project: &str, extras: &[String]) -> String {
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
    let reference = match target {
        PushTarget::Reference(r) => r.clone(),
        PushTarget::Registry(prefix) => {
            Reference::for_build(prefix, &image_name(name, &opts.requirement.extras), version)
                .map_err(crate::registry::RegistryError::from)?
        }
    };
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

fn python_context<'a>(
    cache: &'a Cache,
    runner: &'a dyn Runner,
    printer: &'a Printer,
    python: &str,
    opts: &BuildOptions,
) -> PythonContext<'a> {
    PythonContext {
        cache,
        runner,
        printer,
        python: python.to_string(),
        epoch: opts.epoch,
        rebuild: opts.rebuild,
        compression: opts.compression,
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
    let Inputs {
        base,
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
    Ok(store.fill(
        cache.blobs(),
        &crate::vendor::Contents {
            requirement: requirement_text,
            python: &python,
            base: &base,
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
) -> Result<(LayerBlob, bool), Error> {
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
            return Ok((blob, true));
        }
    }
    let blob = layer.write_blob(cache.blobs().dir(), compression, epoch)?;
    cache.put_json("layers", &key, &blob)?;
    Ok((blob, false))
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
) -> ImageSettings {
    let created = crate::epoch::rfc3339(epoch);
    ImageSettings {
        user: contract::USER.into(),
        env: contract::environment(&project.app(), version, &config.env),
        entrypoint: vec![contract::ENTRYPOINT_PATH.into()],
        cmd: vec![],
        working_dir: contract::HOME.into(),
        exposed_ports: contract::exposed_ports(&config.ports),
        volumes: contract::volumes(&config.volumes),
        labels: contract::labels(project.name, version, &created),
        created,
        architecture: documents::host_architecture().into(),
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
            python: "3.11",
            installed: &installed,
            services: &services,
        };
        let settings = image_settings(&project, "0.4.0", &ProjectConfig::default(), 1_700_000_000);
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
        insta::assert_json_snapshot!("result_file", result_document(&result));
    }
}
