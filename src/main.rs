//! The `assemble` binary: parse the command line, validate it, call the
//! library, map errors to exit codes (0 ok, 1 failed, 2 bad usage or input).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::Arc;

use assemble::build::{self, BuildOptions, PushTarget};
use assemble::cache::Cache;
use assemble::cli::{BuildArgs, Cli, Command, RegistryArgs};
use assemble::image::archive::{self, ArchiveSpec};
use assemble::image::layout::Layout;
use assemble::image::remote::{self, PushOptions};
use assemble::output::{Mode, Printer};
use assemble::registry::{Client, ClientOptions, Reference, RegistryError, Repository};
use assemble::rootfs::BaseSource;
use assemble::sandbox::{Bubblewrap, HostOnly};
use assemble::spec::{self, PipSettings, ProjectConfig, Requirement};
use assemble::vendor::Store;
use assemble::{env, housekeeping, run, Error};

fn main() -> ExitCode {
    let cli = match Cli::parse_with_default(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env(env::ASSEMBLE_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let mode = if cli.global.json {
        Mode::Json
    } else if cli.global.quiet {
        Mode::Quiet
    } else {
        Mode::Human
    };
    let printer = Printer::new(mode, cli.global.verbose);
    match dispatch(cli, &printer) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let mut causes = Vec::new();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                causes.push(s.to_string());
                source = s.source();
            }
            printer.error(&e.to_string(), &causes, e.exit_code());
            ExitCode::from(e.exit_code() as u8)
        }
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

fn load_config(path: Option<&Path>) -> Result<ProjectConfig, Error> {
    match path {
        Some(p) => Ok(ProjectConfig::load(p)?),
        None if Path::new("assemble.toml").is_file() => {
            Ok(ProjectConfig::load(Path::new("assemble.toml"))?)
        }
        None => Ok(ProjectConfig::default()),
    }
}

fn dispatch(cli: Cli, printer: &Printer) -> Result<i32, Error> {
    let cache_dir = cli.global.cache_dir.clone();
    match cli.command {
        Command::Build(args) => build_command(*args, cache_dir.as_deref(), printer),
        Command::Push {
            source,
            reference,
            registry,
        } => {
            let target = Reference::parse(&reference).map_err(RegistryError::from)?;
            let cache = open_cache(cache_dir.as_deref())?;
            let unpacked;
            let (layout, tag) = if let Some(file) = source.strip_prefix("oci-archive:") {
                unpacked = cache.work_dir("archive")?;
                let layout = archive::open_oci_archive(Path::new(file), unpacked.path())?;
                (layout, None)
            } else {
                let spec = source.strip_prefix("oci:").ok_or_else(|| {
                    Error::Usage(format!(
                        "push source {source:?} is not oci:DIR[:TAG] or oci-archive:FILE"
                    ))
                })?;
                let (dir, tag) = assemble::rootfs::split_layout_ref(spec);
                (Layout::open(&dir)?, tag)
            };
            let image = layout.image(tag.as_deref())?;
            let report = build::push_image(
                &cache,
                &image,
                &target,
                &client_options(&registry),
                &push_options(&registry),
                printer,
            )?;
            printer.result(&report.pushed.to_string());
            Ok(0)
        }
        Command::Pull {
            reference,
            dir,
            registry,
        } => {
            let source = Reference::parse(&reference).map_err(RegistryError::from)?;
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
            let client = Arc::new(Client::new(client_options(&registry))?);
            let digest = remote::pull(client, &source, &dir, &tag, printer)?;
            printer.result(&format!("oci:{}:{tag} {digest}", dir.display()));
            Ok(0)
        }
        Command::Tags {
            repository,
            registry,
        } => {
            let repo = Reference::parse(&repository).map_err(RegistryError::from)?;
            let client = Arc::new(Client::new(client_options(&registry))?);
            for t in Repository::for_pull(client, &repo)
                .tags()
                .map_err(Error::from)?
            {
                printer.result(&t);
            }
            Ok(0)
        }
        Command::Login {
            registry,
            username,
            password_stdin: _,
            registry_args,
        } => {
            let mut password = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut password).map_err(
                |source| Error::Io {
                    path: "<stdin>".into(),
                    source,
                },
            )?;
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            if password.is_empty() {
                return Err(Error::Usage("no password on standard input".into()));
            }
            let client = Client::new(client_options(&registry_args))?;
            client.check_login(&registry, &username, &password)?;
            let path = assemble::registry::auth::store(&registry, &username, &password)
                .map_err(RegistryError::from)?;
            printer.step(&format!(
                "login to {registry} succeeded; credentials stored in {}",
                path.display()
            ));
            Ok(0)
        }
        Command::Vendor { build, bundle } => {
            vendor_command(*build, bundle, cache_dir.as_deref(), printer)
        }
        Command::Base { config } => {
            let config = load_config(config.as_deref())?;
            let cache = open_cache(cache_dir.as_deref())?;
            let base = build::base_rootfs(
                &cache,
                &BaseSource::Built,
                &config,
                &Default::default(),
                &HostOnly,
                printer,
            )?;
            let compiler = build::compiler_rootfs(&cache, &config, &HostOnly, printer)?;
            printer.result(&format!(
                "base {}\ncompiler {}",
                base.tree.display(),
                compiler.tree.display()
            ));
            Ok(0)
        }
        Command::Run(args) => {
            let cache = open_cache(cache_dir.as_deref())?;
            run::run(
                &run::RunOptions {
                    image: args.image.clone(),
                    args: args.args.clone(),
                    volumes: args.volumes.clone(),
                    env: args.env.clone(),
                    stop_timeout: std::time::Duration::from_secs(args.stop_timeout),
                },
                &cache,
                printer,
            )
        }
        Command::Clean { output, dry_run } => {
            // Without any home there is no default cache to look in.
            let cache = match cache_path(cache_dir.as_deref()) {
                Ok(c) => Some(c),
                Err(Error::Cache(assemble::cache::CacheError::NoHome)) => None,
                Err(e) => return Err(e),
            };
            let plan = housekeeping::plan_clean(&output, cache.as_deref())?;
            housekeeping::execute(plan, dry_run, printer)?;
            Ok(0)
        }
        Command::Purge { output, dry_run } => {
            let cache = cache_path(cache_dir.as_deref())?;
            let plan = housekeeping::plan_purge(&output, &cache)?;
            housekeeping::execute(plan, dry_run, printer)?;
            Ok(0)
        }
    }
}

/// Parse, then validate, then build: nothing heavy starts before every
/// option is known to be usable.
fn build_options(args: &BuildArgs, cache: &Cache) -> Result<BuildOptions, Error> {
    let requirement = Requirement::parse(&args.requirement)?;
    if let spec::Source::Wheel(path) = &requirement.source {
        assemble::python::check_wheel(path)?;
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
    let base = match &args.base {
        Some(b) => BaseSource::parse(b).map_err(Error::Usage)?,
        None => BaseSource::Built,
    };
    if let BaseSource::Tarball(p) | BaseSource::Layout(p, _) = &base {
        if !p.exists() {
            return Err(Error::Usage(format!(
                "--base {}: no such file or directory",
                p.display()
            )));
        }
    }
    let epoch =
        assemble::epoch::source_date_epoch(std::env::var(env::SOURCE_DATE_EPOCH).ok().as_deref())?;
    let push = if !args.push {
        if args.tag.is_some() || args.registry.is_some() {
            return Err(Error::Usage(
                "--tag and --registry name the pushed image: add --push".into(),
            ));
        }
        None
    } else if let Some(t) = &args.tag {
        Some(PushTarget::Reference(
            Reference::parse(t).map_err(RegistryError::from)?,
        ))
    } else {
        let registry = args
            .registry
            .clone()
            .or_else(|| std::env::var(env::ASSEMBLE_REGISTRY).ok().filter(|r| !r.is_empty()))
            .or_else(|| config.registry.clone())
            .ok_or_else(|| Error::Usage(format!("--push needs a registry: --registry HOST[/PREFIX], {} or registry in assemble.toml, or a full --tag REF", env::ASSEMBLE_REGISTRY)))?;
        // Checked now, with a stand-in name, so a bad registry fails before the build.
        Reference::for_build(&registry, "x", &[], "0").map_err(RegistryError::from)?;
        Some(PushTarget::Registry(registry))
    };
    let offline = if args.offline || args.from_bundle.is_some() {
        if args.base.is_some() || args.index_url.is_some() || !args.extra_index_url.is_empty() {
            return Err(Error::Usage("--offline builds from the store alone: --base and index options belong to `assemble vendor`".into()));
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
        if lock.requirement != args.requirement {
            return Err(Error::Usage(format!(
                "the offline store at {} was made for {:?}, not {:?}; run `assemble vendor {}` where the network is reachable",
                store.dir().display(),
                lock.requirement,
                args.requirement,
                args.requirement
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
        Some(build::Offline { store, lock })
    } else {
        None
    };
    Ok(BuildOptions {
        requirement,
        python: args.python.clone(),
        pip,
        base,
        output: args.output.clone(),
        config,
        epoch,
        rebuild: args.rebuild,
        compression: args.compression,
        offline,
        registry: client_options(&args.registry_args),
        push_options: push_options(&args.registry_args),
        push,
    })
}

fn sandbox_for(opts: &BuildOptions) -> Result<Bubblewrap, Error> {
    let mut runner = Bubblewrap::probe()?;
    runner.secrets = opts.pip.secrets();
    Ok(runner)
}

fn vendor_command(
    args: BuildArgs,
    bundle: Option<PathBuf>,
    cache_dir: Option<&Path>,
    printer: &Printer,
) -> Result<i32, Error> {
    let cache = open_cache(cache_dir)?;
    let opts = build_options(&args, &cache)?;
    if opts.offline.is_some() || opts.push.is_some() {
        return Err(Error::Usage("`assemble vendor` fills the store from the network: --offline, --from-bundle and --push do not apply".into()));
    }
    let runner = sandbox_for(&opts)?;
    let store = Store::at(&args.vendor);
    let lock = build::vendor(&opts, &args.requirement, &store, &cache, &runner, printer)?;
    printer.step(&format!(
        "vendor: {} wheels and {} rootfs layers in {}",
        lock.wheels.len(),
        lock.base.layers.len() + lock.compiler.layers.len(),
        store.dir().display()
    ));
    if let Some(file) = &bundle {
        store.write_bundle(&lock, file, opts.epoch)?;
        printer.step(&format!("vendor: bundle written to {}", file.display()));
    }
    printer.result(
        &store
            .dir()
            .join(assemble::vendor::LOCK)
            .display()
            .to_string(),
    );
    Ok(0)
}

fn build_command(
    args: BuildArgs,
    cache_dir: Option<&Path>,
    printer: &Printer,
) -> Result<i32, Error> {
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
    let opts = build_options(&args, &cache)?;
    let runner = sandbox_for(&opts)?;
    let result = build::build(&opts, &cache, &runner, printer);
    if let (Some(off), Some(_)) = (&opts.offline, &args.from_bundle) {
        // The bundle was unpacked for this build only.
        housekeeping::remove_tree(off.store.dir())?;
    }
    let result = result?;
    printer.step(&format!(
        "built {} {} into {}",
        result.name,
        result.version,
        opts.output.display()
    ));
    if !archives.is_empty() {
        let image = Layout::open(&opts.output)?.image_by_digest(&result.digest)?;
        let repo_tag = match &result.pushed {
            Some(p) => {
                let mut r = p.pushed.clone();
                r.digest = None;
                r.tag = Some(result.version.clone());
                r.to_string()
            }
            None => format!("{}:{}", spec::normalise_name(&result.name), result.version),
        };
        for a in &archives {
            archive::write(a, &image, &result.version, &repo_tag, opts.epoch)?;
            printer.step(&format!("wrote {}", a.path.display()));
        }
    }
    if let Some(path) = &args.result_file {
        let doc =
            serde_json::to_vec_pretty(&build::result_document(&result)).expect("result serialises");
        assemble::fsutil::write_atomic(path, &doc)?;
    }
    match &result.pushed {
        Some(report) => printer.result(&report.pushed.to_string()),
        None => printer.result(&format!("{} {}", result.reference, result.digest)),
    }
    Ok(0)
}

fn client_options(args: &RegistryArgs) -> ClientOptions {
    ClientOptions {
        insecure: args.insecure_registry.clone(),
        ca_file: args.ca_file.clone(),
        attempts: args.attempts,
        timeout: std::time::Duration::from_secs(args.timeout),
        certs_d: assemble::registry::tls::certs_d_roots(),
        runner: Arc::new(HostOnly),
    }
}

fn push_options(args: &RegistryArgs) -> PushOptions {
    PushOptions {
        chunk_size: args.chunk_size.max(1),
        parallel: args.parallel.max(1),
        mount_from: Vec::new(),
        format: args.format,
    }
}
