//! The `assemble` binary: parse the command line, validate it, call the
//! library, map errors to exit codes (0 ok, 1 failed, 2 bad usage or input).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use assemble::build::{self, BuildOptions};
use assemble::cache::Cache;
use assemble::cli::{BuildArgs, Cli, Command};
use assemble::output::Printer;
use assemble::rootfs::BaseSource;
use assemble::sandbox::Bubblewrap;
use assemble::spec::{self, PipSettings, ProjectConfig, Requirement};
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
    let printer = Printer::new(cli.global.quiet, cli.global.verbose);
    match dispatch(cli, &printer) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn open_cache(dir: Option<&Path>) -> Result<Cache, Error> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => Cache::default_dir()?,
    };
    Ok(Cache::open(&dir)?)
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
        Command::Push { .. } => Err(Error::NotImplemented("`assemble push`".into())),
        Command::Pull { .. } => Err(Error::NotImplemented("`assemble pull`".into())),
        Command::Tags { .. } => Err(Error::NotImplemented("`assemble tags`".into())),
        Command::Login { .. } => Err(Error::NotImplemented("`assemble login`".into())),
        Command::Vendor { .. } => Err(Error::NotImplemented("`assemble vendor`".into())),
        Command::Base { config } => {
            let config = load_config(config.as_deref())?;
            let cache = open_cache(cache_dir.as_deref())?;
            let base = build::base_rootfs(&cache, &BaseSource::Built, &config, printer)?;
            let compiler = build::compiler_rootfs(&cache, &config, printer)?;
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
                },
                &cache,
                printer,
            )
        }
        Command::Clean { output } => {
            housekeeping::clean(&[&output], printer)?;
            Ok(0)
        }
        Command::Purge { output } => {
            let cache: PathBuf = match cache_dir {
                Some(d) => d,
                None => Cache::default_dir()?,
            };
            housekeeping::clean(&[&output, &cache], printer)?;
            Ok(0)
        }
    }
}

/// Parse, then validate, then build: nothing heavy starts before every
/// option is known to be usable.
fn build_command(
    args: BuildArgs,
    cache_dir: Option<&Path>,
    printer: &Printer,
) -> Result<i32, Error> {
    let not_yet = [
        (args.push, "--push"),
        (args.registry.is_some(), "--registry"),
        (args.tag.is_some(), "--tag"),
        (args.archive.is_some(), "--archive"),
        (args.offline, "--offline"),
        (args.result_file.is_some(), "--result-file"),
        (!args.insecure_registry.is_empty(), "--insecure-registry"),
    ];
    if let Some((_, flag)) = not_yet.iter().find(|(set, _)| *set) {
        return Err(Error::NotImplemented(format!(
            "{flag} (it comes with registry and CI work)"
        )));
    }
    let requirement = Requirement::parse(&args.requirement)?;
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
    let epoch = match std::env::var(env::SOURCE_DATE_EPOCH) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse::<u64>().map_err(|_| {
            Error::Usage(format!(
                "{}={v:?} is not a number of seconds",
                env::SOURCE_DATE_EPOCH
            ))
        })?,
        _ => 0,
    };
    let opts = BuildOptions {
        requirement,
        python: args.python,
        pip: pip.clone(),
        base,
        output: args.output,
        config,
        epoch,
        rebuild: args.rebuild,
    };
    let cache = open_cache(cache_dir)?;
    let mut runner = Bubblewrap::probe()?;
    runner.secrets = pip
        .index_url
        .iter()
        .chain(&pip.extra_index_urls)
        .cloned()
        .collect();
    let result = build::build(&opts, &cache, &runner, printer)?;
    printer.step(&format!(
        "built {} {} into {}",
        result.name,
        result.version,
        opts.output.display()
    ));
    printer.result(&format!("{} {}", result.reference, result.digest));
    Ok(0)
}
