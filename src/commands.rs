//! Owns the commands: one function per `assemble` subcommand, each taking
//! its validated [`crate::settings`] and calling the stages. A command
//! decides what runs and what is printed as the result (stdout carries
//! only results); it does not check options (that is
//! [`crate::settings`]'s job) and holds no stage logic of its own.

use std::sync::Arc;

use crate::build;
use crate::image::archive;
use crate::image::layout::Layout;
use crate::image::remote;
use crate::output::Printer;
use crate::registry::{Client, RegistryError, Repository};
use crate::rootfs::BaseSource;
use crate::sandbox::{HostOnly, Isolation, Runner, Sandbox};
use crate::settings::{
    BaseSettings, BuildSettings, CachePruneSettings, CleanSettings, LoginSettings, PullSettings,
    PurgeSettings, PushSettings, PushSource, RunSettings, TagsSettings, VendorSettings,
};
use crate::{housekeeping, spec, Error};

/// The sandbox of a build (the isolation asked for, or the first that
/// works here, said), masking the index credentials in what it captures.
fn sandbox_for(opts: &build::BuildOptions, printer: &Printer) -> Result<Sandbox, Error> {
    let mut runner = Sandbox::choose(opts.isolation)?;
    if runner.runs_on_host() && opts.compiler != BaseSource::Built {
        return Err(Error::Usage(format!(
            "--compiler {} cannot run without isolation: with --isolation none this machine is \
             the compiler (run the job in that image instead, or leave --isolation unset)",
            opts.compiler
        )));
    }
    runner.mask(opts.pip.secrets());
    if runner.isolation() != Isolation::Userns {
        printer.step(&format!(
            "sandbox: {} ({}: {})",
            runner.isolation().as_str(),
            if opts.isolation.is_some() {
                "asked"
            } else {
                "no user namespaces here"
            },
            if runner.runs_on_host() {
                "the build's commands run in this machine's own filesystem, as this user, \
                 this machine standing for the compiler"
            } else {
                "the build's commands share the network and the host's processes"
            }
        ));
        let unconfined = matches!(runner.isolation(), Isolation::Proot | Isolation::None);
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if unconfined && unsafe { libc::geteuid() } == 0 {
            printer.warn(&format!(
                "{} runs the build's commands as root{}: an sdist's \
                 build code can read what root can here (this job's files and its processes' \
                 environment, secrets included); run the job as a plain user where that matters",
                runner.isolation().as_str(),
                if runner.runs_on_host() {
                    ""
                } else {
                    ", only showing them uid 1000"
                }
            ));
        }
    }
    Ok(runner)
}

/// `assemble build`: builds the image into the layout, then writes the
/// archives, the result file and the result line.
pub fn build(s: BuildSettings, printer: &Printer) -> Result<i32, Error> {
    let opts = &s.options;
    let runner = sandbox_for(opts, printer)?;
    let result = build::build(opts, &s.cache, &runner, printer);
    if let (Some(off), true) = (&opts.offline, s.bundle_unpacked) {
        // The bundle was unpacked for this build only.
        housekeeping::remove_tree(off.store.dir())?;
    }
    let result = result?;
    if result.reference.starts_with("oci:") {
        printer.step(&format!(
            "built {} {} into {}",
            result.name,
            result.version,
            opts.output.display()
        ));
    } else {
        printer.step(&format!(
            "{} {} is {} (from the build cache; no layout written)",
            result.name, result.version, result.reference
        ));
    }
    if !s.archives.is_empty() {
        write_archives(&s, &result, printer)?;
    }
    if let Some(path) = &s.result_file {
        let doc = build::result_document(&result, runner.isolation());
        let doc = serde_json::to_vec_pretty(&doc).expect("result serialises");
        crate::fsutil::write_atomic(path, &doc)?;
    }
    if let (Some(path), Some(set)) = (&s.lock, &result.resolved) {
        let debian = crate::python::lock::LockedDebian {
            base: result.debian.base.clone(),
            compiler: result.debian.compiler.clone(),
        };
        let text = crate::python::lock::render(&s.requirement, &result.python, set, Some(&debian));
        crate::fsutil::write_atomic(path, text.as_bytes())?;
        printer.step(&format!(
            "lock: {} distributions written to {}",
            set.wheels.len(),
            path.display()
        ));
    }
    match &result.pushed {
        Some(report) => printer.result(&report.pushed.to_string()),
        None => printer.result(&format!("{} {}", result.reference, result.digest)),
    }
    Ok(0)
}

/// `--archive`: the built image written to each archive, named as pushed
/// (or as `<project>:<version>`).
fn write_archives(
    s: &BuildSettings,
    result: &build::BuildResult,
    printer: &Printer,
) -> Result<(), Error> {
    let opts = &s.options;
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
    for a in &s.archives {
        archive::write(a, &image, &result.version, &repo_tag, opts.epoch)?;
        printer.step(&format!("wrote {}", a.path.display()));
    }
    Ok(())
}

/// `assemble vendor`: fills the store (and writes the bundle), then prints
/// the lock's path.
pub fn vendor(s: VendorSettings, printer: &Printer) -> Result<i32, Error> {
    let runner = sandbox_for(&s.options, printer)?;
    let lock = build::vendor(
        &s.options,
        &s.requirement,
        &s.store,
        &s.cache,
        &runner,
        printer,
    )?;
    printer.step(&format!(
        "vendor: {} wheels and {} rootfs layers in {}",
        lock.wheels.len(),
        lock.base.layers.len() + lock.compiler.layers.len(),
        s.store.dir().display()
    ));
    if let Some(file) = &s.bundle {
        s.store.write_bundle(&lock, file, s.options.epoch)?;
        printer.step(&format!("vendor: bundle written to {}", file.display()));
    }
    printer.result(
        &s.store
            .dir()
            .join(crate::vendor::LOCK)
            .display()
            .to_string(),
    );
    Ok(0)
}

/// `assemble push`: an image from a layout or an oci-archive to a registry.
pub fn push(s: PushSettings, printer: &Printer) -> Result<i32, Error> {
    let unpacked;
    let (layout, tag) = match &s.source {
        PushSource::OciArchive(file) => {
            unpacked = s.cache.work_dir("archive")?;
            (archive::open_oci_archive(file, unpacked.path())?, None)
        }
        PushSource::Layout(dir, tag) => (Layout::open(dir)?, tag.clone()),
    };
    let image = layout.image(tag.as_deref())?;
    let report = build::push_image(&s.cache, &image, &s.target, &s.client, &s.push, printer)?;
    printer.result(&report.pushed.to_string());
    Ok(0)
}

/// `assemble pull`: an image from a registry into a layout.
pub fn pull(s: PullSettings, printer: &Printer) -> Result<i32, Error> {
    let client = Arc::new(Client::new(s.client)?);
    let (digest, _) = remote::pull(client, &s.source, &s.dir, &s.tag, printer)?;
    printer.result(&format!("oci:{}:{} {digest}", s.dir.display(), s.tag));
    Ok(0)
}

/// `assemble tags`: a repository's tags, one a line.
pub fn tags(s: TagsSettings, printer: &Printer) -> Result<i32, Error> {
    let client = Arc::new(Client::new(s.client)?);
    for t in Repository::for_pull(client, &s.repository)
        .tags()
        .map_err(Error::from)?
    {
        printer.result(&t);
    }
    Ok(0)
}

/// `assemble login`: checks the credentials with the registry, then stores
/// them.
pub fn login(s: LoginSettings, printer: &Printer) -> Result<i32, Error> {
    let client = Client::new(s.client)?;
    client.check_login(&s.registry, &s.username, &s.password)?;
    let path = crate::registry::auth::store(&s.registry, &s.username, &s.password)
        .map_err(RegistryError::from)?;
    printer.step(&format!(
        "login to {} succeeded; credentials stored in {}",
        s.registry,
        path.display()
    ));
    Ok(0)
}

/// `assemble base`: the base and compiler rootfs, built or cached.
pub fn base(s: BaseSettings, printer: &Printer) -> Result<i32, Error> {
    let (base, _) = build::base_rootfs(
        &s.cache,
        &BaseSource::Built,
        &s.config,
        &Default::default(),
        &HostOnly,
        printer,
    )?;
    let compiler = build::compiler_rootfs(&s.cache, &s.config, &HostOnly, printer)?;
    printer.result(&format!(
        "base {}\ncompiler {}",
        base.tree.display(),
        compiler.tree.display()
    ));
    Ok(0)
}

/// `assemble run`: the entrypoint's exit code.
pub fn run(s: RunSettings, printer: &Printer) -> Result<i32, Error> {
    crate::run::run(&s.options, &s.cache, printer)
}

/// `assemble clean`.
pub fn clean(s: CleanSettings, printer: &Printer) -> Result<i32, Error> {
    let plan = housekeeping::plan_clean(&s.output, s.cache.as_deref())?;
    housekeeping::execute(plan, s.dry_run, printer)?;
    Ok(0)
}

/// `assemble purge`.
pub fn purge(s: PurgeSettings, printer: &Printer) -> Result<i32, Error> {
    let plan = housekeeping::plan_purge(&s.output, &s.cache)?;
    housekeeping::execute(plan, s.dry_run, printer)?;
    Ok(0)
}

/// `assemble cache prune`: the old entries of a build cache repository
/// deleted (or listed, with `--dry-run`); the result line says how many.
pub fn cache_prune(s: CachePruneSettings, printer: &Printer) -> Result<i32, Error> {
    let client = Arc::new(Client::new(s.client)?);
    let now = crate::epoch::now();
    let summary =
        housekeeping::prune::prune(client, &s.repository, s.keep_days, s.dry_run, now, printer)?;
    printer.result(&summary.line(s.dry_run));
    Ok(0)
}
