//! Owns the step from the parsed command line to validated settings: every
//! option of every command is checked here, before any work starts
//! (ripgrep's low-level/high-level arguments). What comes out is ready to
//! run: the cache is open, the requirement and configuration are read, the
//! push target and the offline store are checked. It starts no sandbox,
//! makes no network call and writes nothing but the cache's own
//! directories (and an unpacked `--from-bundle`, which lives in the cache).
//!
//! The command line itself is defined in [`crate::cli`]; the commands that
//! run these settings are in [`crate::commands`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::build::{BuildOptions, Offline, PushTarget};
use crate::cache::{Cache, CacheError};
use crate::cli::{BuildArgs, CacheCommand, Cli, Command, RegistryArgs, RunArgs};
use crate::image::archive::ArchiveSpec;
use crate::image::layout::Layout;
use crate::image::remote::PushOptions;
use crate::registry::{ClientOptions, Reference, RegistryError};
use crate::rootfs::BaseSource;
use crate::sandbox::HostOnly;
use crate::spec::{self, PipSettings, ProjectConfig, Requirement};
use crate::vendor::Store;
use crate::{env, Error};

/// A command with its validated settings.
#[derive(Debug)]
pub enum Settings {
    /// `assemble build`.
    Build(Box<BuildSettings>),
    /// `assemble vendor`.
    Vendor(Box<VendorSettings>),
    /// `assemble push`.
    Push(PushSettings),
    /// `assemble pull`.
    Pull(PullSettings),
    /// `assemble tags`.
    Tags(TagsSettings),
    /// `assemble login`.
    Login(LoginSettings),
    /// `assemble base`.
    Base(BaseSettings),
    /// `assemble run`.
    Run(RunSettings),
    /// `assemble clean`.
    Clean(CleanSettings),
    /// `assemble purge`.
    Purge(PurgeSettings),
    /// `assemble cache prune`.
    CachePrune(CachePruneSettings),
}

/// `assemble build`: the build's options and what to do with the result.
#[derive(Debug)]
pub struct BuildSettings {
    /// The cache, open.
    pub cache: Cache,
    /// The build's options.
    pub options: BuildOptions,
    /// `--archive`: archive files written from the image.
    pub archives: Vec<ArchiveSpec>,
    /// `--result-file`.
    pub result_file: Option<PathBuf>,
    /// `--lock`: where the build's lock is written.
    pub lock: Option<PathBuf>,
    /// The requirement as written (recorded in the lock).
    pub requirement: String,
    /// The store was unpacked from `--from-bundle` for this build only.
    pub bundle_unpacked: bool,
}

/// `assemble vendor`: a build's options, the store and the bundle.
#[derive(Debug)]
pub struct VendorSettings {
    /// The cache, open.
    pub cache: Cache,
    /// The options of the build the store is filled for.
    pub options: BuildOptions,
    /// The requirement as written (recorded in the lock).
    pub requirement: String,
    /// `--vendor`: the store filled.
    pub store: Store,
    /// `--bundle`: the one-file bundle written from the store.
    pub bundle: Option<PathBuf>,
}

/// Where `assemble push` reads the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushSource {
    /// `oci:DIR[:TAG]`.
    Layout(PathBuf, Option<String>),
    /// `oci-archive:FILE`.
    OciArchive(PathBuf),
}

/// `assemble push`.
#[derive(Debug)]
pub struct PushSettings {
    /// The cache, open.
    pub cache: Cache,
    /// The image pushed.
    pub source: PushSource,
    /// Where it goes.
    pub target: Reference,
    /// How registries are reached.
    pub client: ClientOptions,
    /// How blobs are pushed.
    pub push: PushOptions,
}

/// `assemble pull`.
#[derive(Debug)]
pub struct PullSettings {
    /// The image pulled.
    pub source: Reference,
    /// The layout written.
    pub dir: PathBuf,
    /// Its tag in the layout.
    pub tag: String,
    /// How registries are reached.
    pub client: ClientOptions,
}

/// `assemble tags`.
#[derive(Debug)]
pub struct TagsSettings {
    /// The repository listed.
    pub repository: Reference,
    /// How registries are reached.
    pub client: ClientOptions,
}

/// `assemble login`. Its `Debug` never shows the password.
pub struct LoginSettings {
    /// The registry host.
    pub registry: String,
    /// The user name.
    pub username: String,
    /// The password, read from standard input.
    pub password: String,
    /// How registries are reached.
    pub client: ClientOptions,
}

impl std::fmt::Debug for LoginSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSettings")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"***")
            .finish_non_exhaustive()
    }
}

/// `assemble base`.
#[derive(Debug)]
pub struct BaseSettings {
    /// The cache, open.
    pub cache: Cache,
    /// The configuration naming the packages.
    pub config: ProjectConfig,
}

/// `assemble run`.
#[derive(Debug)]
pub struct RunSettings {
    /// The cache, open.
    pub cache: Cache,
    /// What to run (checked by [`crate::run`] before any work).
    pub options: crate::run::RunOptions,
}

/// `assemble clean`.
#[derive(Debug)]
pub struct CleanSettings {
    /// The output directory to clean.
    pub output: PathBuf,
    /// The cache, when there is one to look in.
    pub cache: Option<PathBuf>,
    /// Only say what would be removed.
    pub dry_run: bool,
}

/// `assemble purge`.
#[derive(Debug)]
pub struct PurgeSettings {
    /// The output directory to purge.
    pub output: PathBuf,
    /// The cache.
    pub cache: PathBuf,
    /// Only say what would be removed.
    pub dry_run: bool,
}

/// `assemble cache prune`.
#[derive(Debug)]
pub struct CachePruneSettings {
    /// The cache repository (no tag, no digest).
    pub repository: Reference,
    /// Entries written in the last this many days stay.
    pub keep_days: u64,
    /// Only say what would be deleted.
    pub dry_run: bool,
    /// How registries are reached.
    pub client: ClientOptions,
}

impl Settings {
    /// Validates the command line of one command.
    pub fn from_cli(cli: Cli) -> Result<Self, Error> {
        let cache_dir = cli.global.cache_dir;
        let cache_dir = cache_dir.as_deref();
        Ok(match cli.command {
            Command::Build(args) => Settings::Build(Box::new(build(*args, cache_dir)?)),
            Command::Vendor { build, bundle } => {
                Settings::Vendor(Box::new(vendor(*build, bundle, cache_dir)?))
            }
            Command::Push {
                source,
                reference,
                registry,
            } => Settings::Push(push(&source, &reference, &registry, cache_dir)?),
            Command::Pull {
                reference,
                dir,
                registry,
            } => Settings::Pull(pull(&reference, dir, &registry)?),
            Command::Tags {
                repository,
                registry,
            } => Settings::Tags(TagsSettings {
                repository: Reference::parse(&repository).map_err(RegistryError::from)?,
                client: client_options(&registry),
            }),
            Command::Login {
                registry,
                username,
                password_stdin: _,
                registry_args,
            } => Settings::Login(LoginSettings {
                registry,
                username,
                password: password_from_stdin()?,
                client: client_options(&registry_args),
            }),
            Command::Base { config } => {
                let mut config = load_config(config.as_deref())?;
                config.debian = Some(
                    crate::rootfs::choose_release(
                        config.debian.as_deref(),
                        config.python.as_deref(),
                    )?
                    .name,
                );
                Settings::Base(BaseSettings {
                    cache: open_cache(cache_dir)?,
                    config,
                })
            }
            Command::Run(args) => Settings::Run(RunSettings {
                cache: open_cache(cache_dir)?,
                options: run_options(&args),
            }),
            Command::Clean { output, dry_run } => Settings::Clean(CleanSettings {
                output,
                // Without any home there is no default cache to look in.
                cache: match cache_path(cache_dir) {
                    Ok(c) => Some(c),
                    Err(Error::Cache(CacheError::NoHome)) => None,
                    Err(e) => return Err(e),
                },
                dry_run,
            }),
            Command::Purge { output, dry_run } => Settings::Purge(PurgeSettings {
                output,
                cache: cache_path(cache_dir)?,
                dry_run,
            }),
            Command::Cache(CacheCommand::Prune {
                repository,
                keep_days,
                dry_run,
                registry,
            }) => Settings::CachePrune(cache_prune(&repository, &keep_days, dry_run, &registry)?),
        })
    }
}

/// The cache directory: `--cache-dir`, else the default (an empty
/// `ASSEMBLE_CACHE_DIR` is an error, never the default).
fn cache_path(dir: Option<&Path>) -> Result<PathBuf, Error> {
    match dir {
        Some(d) if d.as_os_str().is_empty() => Err(Error::Usage(
            "--cache-dir is empty: name a directory".into(),
        )),
        Some(d) => Ok(d.to_path_buf()),
        None => Ok(Cache::default_dir()?),
    }
}

fn open_cache(dir: Option<&Path>) -> Result<Cache, Error> {
    Ok(Cache::open(&cache_path(dir)?)?)
}

/// `--config`, else `assemble.toml` in the working directory, else none.
fn load_config(path: Option<&Path>) -> Result<ProjectConfig, Error> {
    match path {
        Some(p) => Ok(ProjectConfig::load(p)?),
        None if Path::new("assemble.toml").is_file() => {
            Ok(ProjectConfig::load(Path::new("assemble.toml"))?)
        }
        None => Ok(ProjectConfig::default()),
    }
}

fn build(args: BuildArgs, cache_dir: Option<&Path>) -> Result<BuildSettings, Error> {
    let archives = args
        .archive
        .iter()
        .map(|a| ArchiveSpec::parse(a).map_err(|e| Error::Usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(a) = archives.iter().find(|a| a.path.is_dir()) {
        return Err(Error::Usage(format!(
            "--archive {}: that is a directory; name the archive file",
            a.path.display()
        )));
    }
    let cache = open_cache(cache_dir)?;
    let options = build_options(&args, &cache)?;
    let requirement = requirement_text(&args);
    Ok(BuildSettings {
        cache,
        options,
        archives,
        result_file: args.result_file,
        requirement,
        lock: args.lock,
        bundle_unpacked: args.from_bundle.is_some(),
    })
}

fn vendor(
    args: BuildArgs,
    bundle: Option<PathBuf>,
    cache_dir: Option<&Path>,
) -> Result<VendorSettings, Error> {
    let cache = open_cache(cache_dir)?;
    let options = build_options(&args, &cache)?;
    if options.offline.is_some() || options.push.is_some() {
        return Err(Error::Usage("`assemble vendor` fills the store from the network: --offline, --from-bundle and --push do not apply".into()));
    }
    Ok(VendorSettings {
        cache,
        options,
        store: Store::at(&args.vendor),
        requirement: requirement_text(&args),
        bundle,
    })
}

/// The requirement as the user wrote it (`-r FILE` for a requirements file).
fn requirement_text(args: &BuildArgs) -> String {
    match (&args.requirement, &args.requirements) {
        (_, Some(f)) => format!("-r {}", f.display()),
        (Some(r), None) => r.clone(),
        (None, None) => String::new(),
    }
}

/// What to build, and the lock it implies: a `pylock.toml` given as the
/// requirement, or one in the project directory given.
fn requirement(args: &BuildArgs) -> Result<(Requirement, Option<PathBuf>), Error> {
    if let Some(file) = &args.requirements {
        return Ok((
            Requirement::from_requirements_file(file, args.name.as_deref())?,
            None,
        ));
    }
    let text = args.requirement.as_deref().unwrap_or_default();
    let mut r = Requirement::parse(text)?;
    let implied = match r.source.clone() {
        spec::Source::Lock(path) => {
            let lock = crate::python::lock::read(&path, args.name.as_deref(), None)
                .map_err(crate::python::PythonError::from)?;
            let project = lock.resolution.project().ok_or_else(|| {
                Error::Usage(format!(
                    "{} locks {} as a directory: build that directory instead",
                    path.display(),
                    lock.project
                ))
            })?;
            r.name = Some(project.name.clone());
            r.source = spec::Source::Index {
                version: project.version.clone(),
                operator: "==".into(),
            };
            Some(path)
        }
        // Offline, the store's lock is the lock: the directory's is not read.
        spec::Source::Directory(dir)
            if dir.join("pylock.toml").is_file() && !args.offline && args.from_bundle.is_none() =>
        {
            if let Some(n) = &args.name {
                r.name = Some(n.clone());
            }
            Some(dir.join("pylock.toml"))
        }
        _ => None,
    };
    if args.name.is_some() && implied.is_none() {
        return Err(Error::Usage(
            "--name names the project of a requirements file (-r) or a lock; this requirement names its own".into(),
        ));
    }
    Ok((r, implied))
}

/// Parse, then validate, then build: nothing heavy starts before every
/// option is known to be usable.
fn build_options(args: &BuildArgs, cache: &Cache) -> Result<BuildOptions, Error> {
    let (requirement, implied_lock) = requirement(args)?;
    if let spec::Source::Wheel(path) = &requirement.source {
        crate::python::check_wheel(path)?;
    }
    // The output is checked now: a bad one must fail before the build, not
    // after its blobs are written.
    Layout::check_target(&args.output)?;
    if let Some(p) = &args.python {
        spec::check_python(p)?;
    }
    let config = load_config(args.config.as_deref())?;
    let pip = PipSettings::resolve(
        args.index_url.as_deref(),
        &args.extra_index_url,
        args.pip_conf.as_deref(),
        args.constraint.as_deref(),
    )?;
    let base = base_source("--base", args.base.as_deref())?;
    let compiler = base_source("--compiler", args.compiler.as_deref())?;
    let epoch =
        crate::epoch::source_date_epoch(std::env::var(env::SOURCE_DATE_EPOCH).ok().as_deref())?;
    let mut config = config;
    let push = push_target(args, &config)?;
    let offline = offline(args, cache)?;
    let mut lock_python = None;
    let locked =
        match args.locked.as_ref().or(implied_lock.as_ref()) {
            None => None,
            Some(_) if offline.is_some() => return Err(Error::Usage(
                "--locked and --offline: an offline build already builds exactly the store's lock"
                    .into(),
            )),
            Some(path) => {
                // Read now so that a bad lock fails before any work; read again
                // once the build knows its interpreter, which picks the files.
                let python = args.python.as_deref().or(config.python.as_deref());
                lock_python = crate::python::lock::read(path, requirement.name.as_deref(), python)
                    .map_err(crate::python::PythonError::from)?
                    .python;
                Some(path.clone())
            }
        };
    // The Debian release of the built rootfs: named, else the one shipping
    // the Python asked for (or the lock's), else the default. With a given
    // base it is the compiler's, when named (else the build takes the one
    // shipping the base's Python). An offline build takes the store's.
    let python = args
        .python
        .as_deref()
        .or(config.python.as_deref())
        .or(lock_python.as_deref());
    match (&offline, &base) {
        (Some(_), _) => {}
        (None, BaseSource::Built) => {
            config.debian =
                Some(crate::rootfs::choose_release(config.debian.as_deref(), python)?.name);
        }
        (None, _) => {
            if let Some(name) = config.debian.as_deref() {
                crate::rootfs::choose_release(Some(name), None)?;
            }
        }
    }
    if args.lock.is_some() && offline.is_some() {
        return Err(Error::Usage(
            "--lock and --offline: an offline build resolves nothing; its lock is the store's"
                .into(),
        ));
    }
    let remote_cache = remote_cache_repos(args, &config, push.as_ref(), &requirement)?;
    // Without isolation, what is made is this machine's: no record of it
    // under the keys a sandboxed build reads.
    let recordable = offline.is_none()
        && args.isolation != Some(crate::sandbox::Isolation::None)
        && locked.is_none()
        && args.lock.is_none()
        && args.archive.is_empty()
        && matches!(base, BaseSource::Built)
        && matches!(compiler, BaseSource::Built)
        && matches!(requirement.source, spec::Source::Index { .. })
        && requirement.name.is_some();
    Ok(BuildOptions {
        remote_cache,
        recordable,
        isolation: args.isolation,
        requirement,
        python: args.python.clone(),
        pip,
        base,
        compiler,
        output: args.output.clone(),
        config,
        epoch,
        rebuild: args.rebuild,
        compression: args.compression,
        offline,
        locked,
        registry: client_options(&args.registry_args),
        push_options: push_options(&args.registry_args),
        push,
    })
}

/// The build cache repositories: `--cache-repo` (else `ASSEMBLE_CACHE_REPO`,
/// else assemble.toml's `cache-repo`) read and written, each `--cache-from`
/// read, `--cache-to` written; with none of them and `--push`, the image
/// repository's `/cache` on the same registry (so that blobs mount instead
/// of uploading); nothing with `--no-remote-cache`.
fn remote_cache_repos(
    args: &BuildArgs,
    config: &ProjectConfig,
    push: Option<&PushTarget>,
    requirement: &Requirement,
) -> Result<crate::remote_cache::Repos, Error> {
    let parse = |option: &str, s: &str| -> Result<Reference, Error> {
        let r = Reference::parse(s).map_err(RegistryError::from)?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(Error::Usage(format!(
                "{option} {s}: name a repository (HOST/REPO), without a tag or digest"
            )));
        }
        Ok(r)
    };
    let given = args.cache_repo.is_some() || !args.cache_from.is_empty() || args.cache_to.is_some();
    if args.no_remote_cache {
        if given {
            return Err(Error::Usage(
                "--no-remote-cache with --cache-repo, --cache-from or --cache-to: choose one"
                    .into(),
            ));
        }
        return Ok(Default::default());
    }
    let repo = match args.cache_repo.clone() {
        Some(r) => Some(("--cache-repo", r)),
        None => std::env::var(env::ASSEMBLE_CACHE_REPO)
            .ok()
            .filter(|r| !r.is_empty())
            .map(|r| (env::ASSEMBLE_CACHE_REPO, r))
            .or_else(|| config.cache_repo.clone().map(|r| ("cache-repo", r))),
    };
    let mut repos = crate::remote_cache::Repos::default();
    if let Some((option, r)) = &repo {
        let r = parse(option, r)?;
        repos.from.push(r.clone());
        repos.to = Some(r);
    }
    for r in &args.cache_from {
        repos.from.push(parse("--cache-from", r)?);
    }
    if let Some(r) = &args.cache_to {
        repos.to = Some(parse("--cache-to", r)?);
    }
    if repos.is_empty() {
        let image = match push {
            Some(PushTarget::Reference(r)) => Some(r.clone()),
            Some(PushTarget::Registry(prefix)) => requirement.name.as_deref().and_then(|n| {
                Reference::for_build(
                    prefix,
                    &crate::build::image_name(n, &requirement.extras),
                    "x",
                )
                .ok()
            }),
            None => None,
        };
        if let Some(image) = image {
            let r = Reference {
                repository: format!("{}/cache", image.repository),
                tag: None,
                digest: None,
                ..image
            };
            repos.from.push(r.clone());
            repos.to = Some(r);
        }
    }
    Ok(repos)
}

/// `--base` or `--compiler` (`option`), whose file or directory must exist.
fn base_source(option: &str, base: Option<&str>) -> Result<BaseSource, Error> {
    let base = match base {
        Some(b) => BaseSource::parse(option, b).map_err(Error::Usage)?,
        None => BaseSource::Built,
    };
    if let BaseSource::Tarball(p) | BaseSource::Layout(p, _) = &base {
        if !p.exists() {
            return Err(Error::Usage(format!(
                "{option} {}: no such file or directory",
                p.display()
            )));
        }
    }
    Ok(base)
}

/// `--push` with `--tag`, `--registry`, `ASSEMBLE_REGISTRY` or the
/// configuration's registry.
fn push_target(args: &BuildArgs, config: &ProjectConfig) -> Result<Option<PushTarget>, Error> {
    if !args.push {
        if args.tag.is_some() || args.registry.is_some() {
            return Err(Error::Usage(
                "--tag and --registry name the pushed image: add --push".into(),
            ));
        }
        return Ok(None);
    }
    if let Some(t) = &args.tag {
        return Ok(Some(PushTarget::Reference(
            Reference::parse(t).map_err(RegistryError::from)?,
        )));
    }
    let registry = args
        .registry
        .clone()
        .or_else(|| std::env::var(env::ASSEMBLE_REGISTRY).ok().filter(|r| !r.is_empty()))
        .or_else(|| config.registry.clone())
        .ok_or_else(|| Error::Usage(format!("--push needs a registry: --registry HOST[/PREFIX], {} or registry in assemble.toml, or a full --tag REF", env::ASSEMBLE_REGISTRY)))?;
    // Checked now, with a stand-in name, so a bad registry fails before the build.
    Reference::for_build(&registry, "x", "0").map_err(RegistryError::from)?;
    Ok(Some(PushTarget::Registry(registry)))
}

/// `--offline` or `--from-bundle`: the store, verified, made for this
/// requirement and this Python.
fn offline(args: &BuildArgs, cache: &Cache) -> Result<Option<Offline>, Error> {
    if !args.offline && args.from_bundle.is_none() {
        return Ok(None);
    }
    if args.base.is_some()
        || args.compiler.is_some()
        || args.index_url.is_some()
        || !args.extra_index_url.is_empty()
    {
        return Err(Error::Usage("--offline builds from the store alone: --base, --compiler and index options belong to `assemble vendor`".into()));
    }
    let (store, lock) = match &args.from_bundle {
        Some(bundle) => {
            // Unpacked into the cache and kept for the build's duration.
            let dir = cache.work_dir("bundle")?.keep();
            Store::from_bundle(bundle, &dir)?
        }
        None => {
            let store = Store::at(&args.vendor);
            let lock = store.verify()?;
            (store, lock)
        }
    };
    let given = requirement_text(args);
    if lock.requirement != given {
        return Err(Error::Usage(format!(
            "the offline store at {} was made for {:?}, not {:?}; run `assemble vendor {}` where the network is reachable",
            store.dir().display(),
            lock.requirement,
            given,
            given
        )));
    }
    if let Some(p) = &args.python {
        if *p != lock.python {
            return Err(Error::Usage(format!(
                "the offline store holds python{} wheels, not python{p}",
                lock.python
            )));
        }
    }
    Ok(Some(Offline { store, lock }))
}

fn push(
    source: &str,
    reference: &str,
    registry: &RegistryArgs,
    cache_dir: Option<&Path>,
) -> Result<PushSettings, Error> {
    let target = Reference::parse(reference).map_err(RegistryError::from)?;
    let cache = open_cache(cache_dir)?;
    let source = if let Some(file) = source.strip_prefix("oci-archive:") {
        PushSource::OciArchive(PathBuf::from(file))
    } else {
        let spec = source.strip_prefix("oci:").ok_or_else(|| {
            Error::Usage(format!(
                "push source {source:?} is not oci:DIR[:TAG] or oci-archive:FILE"
            ))
        })?;
        let (dir, tag) = crate::rootfs::split_layout_ref(spec);
        PushSource::Layout(dir, tag)
    };
    Ok(PushSettings {
        cache,
        source,
        target,
        client: client_options(registry),
        push: push_options(registry),
    })
}

fn pull(reference: &str, dir: PathBuf, registry: &RegistryArgs) -> Result<PullSettings, Error> {
    let source = Reference::parse(reference).map_err(RegistryError::from)?;
    let tag = match (&source.tag, &source.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => {
            return Err(Error::Usage(format!(
                "{reference} names an image by digest only, and the layout needs a tag \
                 for it: write {}:TAG@{d} (the digest is still checked)",
                reference.split('@').next().unwrap_or_default()
            )))
        }
        (None, None) => "latest".into(),
    };
    Layout::check_target(&dir)?;
    Ok(PullSettings {
        source,
        dir,
        tag,
        client: client_options(registry),
    })
}

fn cache_prune(
    repository: &str,
    keep_days: &str,
    dry_run: bool,
    registry: &RegistryArgs,
) -> Result<CachePruneSettings, Error> {
    let reference = Reference::parse(repository).map_err(RegistryError::from)?;
    if reference.tag.is_some() || reference.digest.is_some() {
        return Err(Error::Usage(format!(
            "cache prune {repository}: name the cache repository (HOST/REPO), without a tag or \
             digest; prune looks at every tag in it"
        )));
    }
    let keep_days = match keep_days.trim() {
        d if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) => d.parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        Error::Usage(format!(
            "--keep-days {keep_days:?}: give a whole number of days, 0 or more (entries written \
             in the last N days stay)"
        ))
    })?;
    Ok(CachePruneSettings {
        repository: reference,
        keep_days,
        dry_run,
        client: client_options(registry),
    })
}

/// The password `assemble login` reads from standard input, without its
/// line end.
fn password_from_stdin() -> Result<String, Error> {
    let mut password = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut password).map_err(|source| {
        Error::Io {
            path: "<stdin>".into(),
            source,
        }
    })?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(Error::Usage("no password on standard input".into()));
    }
    Ok(password)
}

fn run_options(args: &RunArgs) -> crate::run::RunOptions {
    crate::run::RunOptions {
        image: args.image.clone(),
        args: args.args.clone(),
        volumes: args.volumes.clone(),
        env: args.env.clone(),
        stop_timeout: Duration::from_secs(args.stop_timeout),
        isolation: args.isolation,
    }
}

/// How registries are reached; credential helpers run on the host.
fn client_options(args: &RegistryArgs) -> ClientOptions {
    ClientOptions {
        insecure: args.insecure_registry.clone(),
        ca_file: args.ca_file.clone(),
        attempts: args.attempts,
        timeout: Duration::from_secs(args.timeout),
        certs_d: crate::registry::tls::certs_d_roots(),
        runner: Arc::new(HostOnly),
    }
}

/// How blobs are pushed (at least one chunk byte and one blob at a time).
fn push_options(args: &RegistryArgs) -> PushOptions {
    PushOptions {
        chunk_size: args.chunk_size.max(1),
        parallel: args.parallel.max(1),
        mount_from: Vec::new(),
        format: args.format,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_with_default(
            std::iter::once("assemble")
                .chain(args.iter().copied())
                .map(Into::into),
        )
        .unwrap()
    }

    fn build_args(args: &[&str]) -> BuildArgs {
        match cli(args).command {
            Command::Build(b) => *b,
            c => panic!("not a build: {c:?}"),
        }
    }

    fn registry_args() -> RegistryArgs {
        match cli(&["tags", "h/a"]).command {
            Command::Tags { registry, .. } => registry,
            c => panic!("not tags: {c:?}"),
        }
    }

    fn usage(r: Result<impl std::fmt::Debug, Error>) -> String {
        match r {
            Err(Error::Usage(m)) => m,
            other => panic!("not a usage error: {other:?}"),
        }
    }

    #[test]
    fn a_compiler_is_a_source_like_the_base_and_not_offline() {
        let m = usage(base_source("--compiler", Some("c.zip")));
        assert!(
            m.starts_with("--compiler \"c.zip\" is not docker://REF"),
            "{m}"
        );
        let m = usage(base_source("--compiler", Some("/nowhere/c.tar")));
        assert_eq!(m, "--compiler /nowhere/c.tar: no such file or directory");
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let m = usage(offline(
            &build_args(&["a==1", "--offline", "--compiler", "docker://h/c:1"]),
            &cache,
        ));
        assert!(m.contains("--compiler"), "{m}");
    }

    #[test]
    fn tag_or_registry_without_push_is_refused() {
        let config = ProjectConfig::default();
        let m = usage(push_target(
            &build_args(&["a==1", "--tag", "h/a:1"]),
            &config,
        ));
        assert!(m.contains("add --push"), "{m}");
        let m = usage(push_target(
            &build_args(&["a==1", "--registry", "h"]),
            &config,
        ));
        assert!(m.contains("add --push"), "{m}");
        assert!(push_target(&build_args(&["a==1"]), &config)
            .unwrap()
            .is_none());
    }

    #[test]
    fn push_with_a_tag_or_the_configured_registry() {
        let mut config = ProjectConfig::default();
        let t = push_target(
            &build_args(&["a==1", "--push", "--tag", "h:5000/a:1"]),
            &config,
        );
        assert!(matches!(t, Ok(Some(PushTarget::Reference(r))) if r.tag.as_deref() == Some("1")));
        config.registry = Some("127.0.0.1:5000/team".into());
        let t = push_target(
            &build_args(&["a==1", "--push", "--registry", "h:5000"]),
            &config,
        );
        assert!(
            matches!(t, Ok(Some(PushTarget::Registry(r))) if r == "h:5000"),
            "the option wins"
        );
    }

    #[test]
    fn pulling_by_digest_alone_asks_for_a_tag() {
        let d = format!("sha256:{}", "a".repeat(64));
        let dir = tempfile::tempdir().unwrap();
        let m = usage(pull(
            &format!("127.0.0.1:5000/a@{d}"),
            dir.path().join("oci"),
            &registry_args(),
        ));
        assert!(m.contains("write 127.0.0.1:5000/a:TAG@"), "{m}");
        let s = pull("127.0.0.1:5000/a", dir.path().join("oci"), &registry_args()).unwrap();
        assert_eq!(s.tag, "latest");
    }

    #[test]
    fn a_push_source_is_a_layout_or_an_oci_archive() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let args = registry_args();
        let s = push("oci:/x/oci:1.0", "h/a:1", &args, Some(&cache)).unwrap();
        assert_eq!(
            s.source,
            PushSource::Layout("/x/oci".into(), Some("1.0".into()))
        );
        let s = push("oci-archive:/x/a.tar", "h/a:1", &args, Some(&cache)).unwrap();
        assert_eq!(s.source, PushSource::OciArchive("/x/a.tar".into()));
        let m = usage(push("/x/oci", "h/a:1", &args, Some(&cache)));
        assert!(
            m.contains("is not oci:DIR[:TAG] or oci-archive:FILE"),
            "{m}"
        );
    }

    fn prune_settings(args: &[&str]) -> Result<CachePruneSettings, Error> {
        match cli(args).command {
            Command::Cache(CacheCommand::Prune {
                repository,
                keep_days,
                dry_run,
                registry,
            }) => cache_prune(&repository, &keep_days, dry_run, &registry),
            c => panic!("not cache prune: {c:?}"),
        }
    }

    #[test]
    fn cache_prune_takes_a_repository_and_whole_days() {
        let s = prune_settings(&[
            "cache",
            "prune",
            "127.0.0.1:5000/team/milborne/cache",
            "--keep-days",
            "30",
            "--dry-run",
            "--insecure-registry",
            "127.0.0.1:5000",
        ])
        .unwrap();
        assert_eq!(s.repository.repository, "team/milborne/cache");
        assert_eq!((s.keep_days, s.dry_run), (30, true));
        assert_eq!(s.client.insecure, ["127.0.0.1:5000"]);
        let s = prune_settings(&["cache", "prune", "h:5000/c", "--keep-days", "0"]).unwrap();
        assert_eq!((s.keep_days, s.dry_run), (0, false));
        for bad in ["-1", "1.5", "", "ten", "+3", "99999999999999999999999"] {
            let m = usage(prune_settings(&[
                "cache",
                "prune",
                "h:5000/c",
                &format!("--keep-days={bad}"),
            ]));
            assert!(m.contains("give a whole number of days"), "{bad}: {m}");
        }
        for tagged in [
            "h:5000/c:latest",
            &format!("h:5000/c@sha256:{}", "a".repeat(64)),
        ] {
            let m = usage(prune_settings(&[
                "cache",
                "prune",
                tagged,
                "--keep-days",
                "1",
            ]));
            assert!(m.contains("without a tag or digest"), "{m}");
        }
    }

    #[test]
    fn an_empty_cache_dir_is_refused() {
        let m = usage(cache_path(Some(Path::new(""))));
        assert!(m.contains("--cache-dir is empty"), "{m}");
    }
}
