//! The compile stage: the resolved set's wheels, each from the cache, or
//! downloaded by assemble (sha256 checked) and, for an sdist, built by `uv
//! build` inside the compiler rootfs, bound to nothing but the sdists, the
//! wheelhouse and the constraints; or from an offline store's wheels with
//! their hashes required. A project directory's own wheel is `pip wheel`'s.
//! It owns the wheelhouse's cache key and finding the project's wheel.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::index::IndexClient;
use super::resolve::{resolve, Decided, Resolution, Resolved, Target};
use super::{base_env, io_err, BuiltWheel, ProjectWheel, PythonContext, PythonError, Wheelhouse};
use crate::cache::KeyBuilder;
use crate::contract::OWNER as BLUE;
use crate::rootfs::Rootfs;
use crate::sandbox::{Mount, Output, Plan};
use crate::spec::{normalise_name, wheel_name_version, PipSettings, Requirement, Source};

/// Paths skipped when copying or hashing a project directory.
fn skip_in_project(rel: &Path) -> bool {
    rel.components().any(|c| match c {
        Component::Normal(n) => {
            let n = n.to_string_lossy();
            matches!(
                n.as_ref(),
                ".git" | ".hg" | "__pycache__" | ".tox" | ".venv" | "build" | "dist" | ".eggs"
            ) || n.ends_with(".egg-info")
        }
        _ => false,
    })
}

fn hash_project_dir(dir: &Path, key: &mut KeyBuilder) -> Result<(), PythonError> {
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.map_err(|e| PythonError::Io {
            path: dir.to_path_buf(),
            source: e.into(),
        })?;
        let rel = e.path().strip_prefix(dir).expect("under dir").to_path_buf();
        if skip_in_project(&rel) || !e.file_type().is_file() {
            continue;
        }
        files.push((rel, e.into_path()));
    }
    for (rel, path) in files {
        let (digest, _) = crate::digest::digest_file(&path).map_err(io_err(&path))?;
        key.part("file", rel.to_string_lossy().as_bytes())
            .part("digest", digest.hex().as_bytes());
    }
    Ok(())
}

fn copy_project_dir(src: &Path, dest: &Path) -> Result<(), PythonError> {
    fs_err::create_dir_all(dest).map_err(io_err(dest))?;
    for e in walkdir::WalkDir::new(src).sort_by_file_name() {
        let e = e.map_err(|e| PythonError::Io {
            path: src.to_path_buf(),
            source: e.into(),
        })?;
        let rel = e.path().strip_prefix(src).expect("under src");
        if rel.as_os_str().is_empty() || skip_in_project(rel) {
            continue;
        }
        let to = dest.join(rel);
        if e.file_type().is_dir() {
            fs_err::create_dir_all(&to).map_err(io_err(&to))?;
        } else if e.file_type().is_symlink() {
            let t = fs_err::read_link(e.path()).map_err(io_err(e.path()))?;
            std::os::unix::fs::symlink(t, &to).map_err(io_err(&to))?;
        } else if e.file_type().is_file() {
            fs_err::copy(e.path(), &to).map_err(io_err(&to))?;
        }
    }
    Ok(())
}

/// The wheels of a build: the requirement resolved into an exact set (or
/// the set a lock gives), each distribution's wheel taken from the cache
/// or, for those missing, downloaded and checked against the set's sha256
/// (sdists then built by `uv build` in the compiler rootfs), then gathered
/// into a wheelhouse keyed on the wheels it holds.
pub fn compile(
    ctx: &PythonContext,
    req: &Requirement,
    pip: &PipSettings,
    compiler: &Rootfs,
    locked: Option<&super::lock::Locked>,
) -> Result<Wheelhouse, PythonError> {
    let local = project_wheel(ctx, req, pip, compiler)?;
    let mut target = resolve_target(req, local.as_deref())?;
    // What the image's runtime needs from the index (uWSGI, for a Python
    // that is not Debian's) is resolved with the project. A hashed
    // requirements file lists it itself: every line there is hashed.
    if target.hashes_from.is_none() {
        for r in &ctx.runtime_requirements {
            target.pip_args.push(r.clone());
            target.key_text.push_str(&format!(" runtime {r}"));
        }
    }
    // The project: named, or the local wheel's.
    target.project = req
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(normalise_name)
        .or_else(|| {
            local
                .as_deref()
                .and_then(wheel_name_version)
                .map(|(n, _)| normalise_name(&n))
        });
    let (resolution, decided, changes) = match locked {
        Some(l) => (
            with_local_project(&l.resolution, local.as_deref(), req)?,
            Decided::Locked,
            Vec::new(),
        ),
        None => resolve(ctx, &target, pip, compiler)?,
    };
    if !changes.is_empty() {
        ctx.printer.changes(&changes);
    }
    // A requirements file asks for every line: the project is the one named,
    // or the local wheel pip was given beside the directory's requirements.
    let mut resolution = resolution;
    match (&req.name, &req.source, &local) {
        (_, Source::Wheel(_) | Source::Directory(_), Some(_)) if locked.is_none() => {
            for p in &mut resolution.packages {
                p.requested = p.url.starts_with("file:");
            }
        }
        (Some(name), Source::Requirements(_), _) => {
            let name = normalise_name(name);
            for p in &mut resolution.packages {
                p.requested = p.name == name;
            }
        }
        _ => {}
    }
    let project = resolution.project().cloned().ok_or_else(|| {
        PythonError::Requirements(format!(
            "the resolution of {} names no requested distribution",
            target.label
        ))
    })?;
    if let Some(name) = &req.name {
        if normalise_name(name) != project.name {
            return Err(PythonError::Requirements(format!(
                "asked for {name} but the resolution's project is {}",
                project.name
            )));
        }
    }
    if let Source::Index { version, .. } = &req.source {
        if &project.version != version && project.version.trim_start_matches('v') != version {
            return Err(PythonError::Requirements(format!(
                "asked for {} {version} but the set (resolved or locked) has {}",
                project.name, project.version
            )));
        }
    }
    let hashes_from = match (locked, &target.hashes_from) {
        (Some(l), _) => l.path.display().to_string(),
        (None, Some(f)) => f.clone(),
        (None, None) => "the resolved set".to_string(),
    };
    for r in &ctx.runtime_requirements {
        if !resolution
            .packages
            .iter()
            .any(|p| p.name == normalise_name(r))
        {
            return Err(PythonError::Requirements(format!(
                "the base's interpreter {} is not Debian's, so the image serves with uWSGI from \
                 the venv, and {hashes_from} has no {r}: add it there (a lock: lock again for \
                 this base)",
                ctx.interpreter
            )));
        }
    }
    let wheels = wheels_of(
        ctx,
        &resolution,
        local.as_deref(),
        pip,
        compiler,
        &hashes_from,
    )?;
    let house = gather(ctx, &wheels, &project)?;
    Ok(Wheelhouse {
        resolved: Some(super::ResolvedBuild {
            resolution,
            decided,
            changes,
            wheels,
        }),
        ..house
    })
}

/// A lock's set for a project built from its directory: the project's
/// wheel just built stands for the lock's entry of it (a `directory`
/// package, which the lock reader leaves out).
fn with_local_project(
    set: &Resolution,
    local: Option<&Path>,
    req: &Requirement,
) -> Result<Resolution, PythonError> {
    let Some(wheel) = local else {
        return Ok(set.clone());
    };
    let file = wheel
        .file_name()
        .expect("a wheel has a file name")
        .to_string_lossy()
        .into_owned();
    let (name, version) = wheel_name_version(wheel)
        .ok_or_else(|| PythonError::Wheelhouse(format!("{file} is not a wheel file name")))?;
    let name = normalise_name(&name);
    if let Some(n) = &req.name {
        if normalise_name(n) != name {
            return Err(PythonError::Wheelhouse(format!(
                "the lock is for {n}, the directory's project is {name}"
            )));
        }
    }
    let (d, _) = crate::digest::digest_file(wheel).map_err(io_err(wheel))?;
    let mut packages: Vec<Resolved> = set
        .packages
        .iter()
        .filter(|p| p.name != name)
        .map(|p| Resolved {
            requested: false,
            ..p.clone()
        })
        .collect();
    packages.push(Resolved {
        name,
        version,
        file,
        url: format!("file://{}", wheel.display()),
        sha256: d.hex().to_string(),
        requested: true,
    });
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Resolution {
        packages,
        pages: Vec::new(),
    })
}

/// The project's own wheel when it is local: the wheel given, or the one
/// built from the project directory (cached by the directory's content).
fn project_wheel(
    ctx: &PythonContext,
    req: &Requirement,
    pip: &PipSettings,
    compiler: &Rootfs,
) -> Result<Option<PathBuf>, PythonError> {
    match &req.source {
        Source::Index { .. } | Source::Requirements(_) | Source::Lock(_) => Ok(None),
        Source::Wheel(path) => Ok(Some(path.clone())),
        Source::Directory(dir) => {
            let mut key = KeyBuilder::new("project-wheel-v1");
            key.part("compiler", compiler.key.as_bytes())
                .part("python", ctx.python.as_bytes())
                .part("epoch", ctx.epoch.to_string().as_bytes());
            if let Some(i) = ctx.interpreter_key() {
                key.part("interpreter", i.as_bytes());
            }
            hash_project_dir(dir, &mut key)?;
            let key = key.finish();
            let entry = ctx.cache.entry("wheels", &key);
            if !ctx.rebuild {
                if let Ok(one) = only_wheel(&entry) {
                    ctx.printer
                        .step(&format!("compile: cached project wheel {one}"));
                    return Ok(Some(entry.join(one)));
                }
            }
            let work = ctx.cache.work_dir("project-wheel")?;
            let run = PipRun::prepare(ctx, pip, compiler, work.path())?;
            let built = build_directory(ctx, &run, dir, work.path())?;
            // Only the wheel stays in the entry.
            let keep = work.path().join("keep");
            fs_err::create_dir(&keep).map_err(io_err(&keep))?;
            fs_err::rename(run.project_dir.join(&built), keep.join(&built))
                .map_err(io_err(&keep))?;
            let work_keep = ctx.cache.work_dir("project-wheel")?;
            let dest = work_keep.path().join(&built);
            fs_err::rename(keep.join(&built), &dest).map_err(io_err(&dest))?;
            let dir = ctx.cache.commit_dir(work_keep, "wheels", &key)?;
            Ok(Some(dir.join(built)))
        }
    }
}

/// A requirements file for pip: its arguments, its part of the key, the
/// files to copy into the sandbox, and the file hashes come from (when it
/// has `--hash` lines).
type Listed = (Vec<String>, String, Vec<(String, PathBuf)>, Option<String>);

/// What uv resolves: the pinned name, the project's local wheel (with its
/// directory's requirements.txt when it has one), or a requirements file.
fn resolve_target(req: &Requirement, local: Option<&Path>) -> Result<Target, PythonError> {
    let name = req.name.as_deref().unwrap_or_default();
    let file_hash = |f: &Path| -> Result<String, PythonError> {
        Ok(crate::digest::digest_file(f)
            .map_err(io_err(f))?
            .0
            .hex()
            .to_string())
    };
    let requirements_of = |f: &Path| -> Result<Listed, PythonError> {
        let files = requirement_files(f)?;
        let mut key = String::from("requirements");
        for (rel, path) in &files {
            key.push_str(&format!(" {rel} {}", file_hash(path)?));
        }
        let hashes = super::resolve::has_hashes(&files)?;
        Ok((
            vec!["-r".into(), format!("/assemble/src/{}", files[0].0)],
            key,
            files,
            hashes.then(|| f.display().to_string()),
        ))
    };
    Ok(match (&req.source, local) {
        (Source::Index { .. } | Source::Lock(_), None) => {
            let (operator, version) = match &req.source {
                Source::Index { version, operator } => (operator.as_str(), version.as_str()),
                _ => ("", ""),
            };
            let arg = format!("{name}{}{operator}{version}", req.extras_suffix());
            Target {
                key_text: format!(
                    "{}{operator}{version}{}",
                    normalise_name(name),
                    req.extras_suffix()
                ),
                label: arg.clone(),
                pip_args: vec![arg],
                local_wheel: None,
                src_files: Vec::new(),
                hashes_from: None,
                project: None,
            }
        }
        (Source::Requirements(f), _) => {
            let (pip_args, key_text, src_files, hashes_from) = requirements_of(f)?;
            Target {
                pip_args,
                key_text: format!("{key_text} project {}", normalise_name(name)),
                label: format!("-r {}", f.display()),
                local_wheel: None,
                src_files,
                hashes_from,
                project: None,
            }
        }
        (_, Some(wheel)) => {
            let file = wheel
                .file_name()
                .expect("a wheel has a file name")
                .to_string_lossy()
                .into_owned();
            let mut target = Target {
                pip_args: vec![format!("/assemble/project/{file}{}", req.extras_suffix())],
                key_text: format!("wheel {file} {}{}", file_hash(wheel)?, req.extras_suffix()),
                label: format!("{file}{}", req.extras_suffix()),
                local_wheel: Some(wheel.to_path_buf()),
                src_files: Vec::new(),
                hashes_from: None,
                project: None,
            };
            if let Source::Directory(dir) = &req.source {
                let listed = dir.join("requirements.txt");
                if listed.is_file() {
                    let (args, key, files, hashes) = requirements_of(&listed)?;
                    target.pip_args.extend(args);
                    target.key_text.push_str(&format!(" {key}"));
                    target.label.push_str(" with requirements.txt");
                    target.src_files = files;
                    target.hashes_from = hashes;
                }
            }
            target
        }
        (_, None) => unreachable!("a local requirement has its wheel"),
    })
}

/// A requirements file and every file it includes (`-r`, `-c`,
/// `--requirement`, `--constraint`, recursively), each with its path
/// relative to the first file's directory: what is hashed into the key and
/// copied into the sandbox (never the directory around them). An include
/// outside that directory is bad input.
fn requirement_files(top: &Path) -> Result<Vec<(String, PathBuf)>, PythonError> {
    let base = crate::fsutil::parent_dir(top).to_path_buf();
    let name = top
        .file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned();
    let mut files: Vec<(String, PathBuf)> = vec![(name, top.to_path_buf())];
    let mut i = 0;
    while i < files.len() {
        let (rel, path) = files[i].clone();
        let text = fs_err::read_to_string(&path).map_err(io_err(&path))?;
        let dir = Path::new(&rel)
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        for line in text.lines() {
            let line = line.split(" #").next().unwrap_or("").trim();
            let words: Vec<&str> = line.split_whitespace().collect();
            let included = match words.as_slice() {
                ["-r" | "-c" | "--requirement" | "--constraint", f, ..] => Some(f.to_string()),
                [w, ..] => ["--requirement=", "--constraint=", "-r", "-c"]
                    .iter()
                    .find_map(|p| {
                        w.strip_prefix(p)
                            .filter(|f| !f.is_empty() && !f.starts_with('-'))
                    })
                    .map(|f| f.trim_start_matches('=').to_string()),
                [] => None,
            };
            let Some(included) = included else { continue };
            let joined = dir.join(&included);
            let clean: Option<PathBuf> =
                joined.components().try_fold(PathBuf::new(), |mut acc, c| {
                    match c {
                        std::path::Component::Normal(n) => acc.push(n),
                        std::path::Component::CurDir => {}
                        std::path::Component::ParentDir if acc.pop() => {}
                        _ => return None,
                    }
                    Some(acc)
                });
            let Some(clean) = clean else {
                return Err(PythonError::Requirements(format!(
                    "{} includes {included}, outside the directory of {}: assemble copies only that directory's files into the sandbox",
                    path.display(),
                    top.display()
                )));
            };
            let rel_inc = clean.to_string_lossy().into_owned();
            if !files.iter().any(|(r, _)| *r == rel_inc) {
                files.push((rel_inc, base.join(&clean)));
            }
        }
        i += 1;
    }
    Ok(files)
}

/// The cache key of one distribution's wheel: a wheel from an index is
/// itself (its sha256); an sdist's wheel is what this compiler and
/// interpreter made of those bytes, with the build requirements from these
/// indexes under these constraints.
fn wheel_key(ctx: &PythonContext, p: &Resolved, pip: &PipSettings, compiler: &Rootfs) -> String {
    if p.is_wheel() {
        KeyBuilder::new("wheel-v1")
            .part("sha256", p.sha256.as_bytes())
            .finish()
    } else {
        let mut key = KeyBuilder::new("wheel-built-v2");
        key.part("name", p.name.as_bytes())
            .part("version", p.version.as_bytes())
            .part("sha256", p.sha256.as_bytes())
            .part("compiler", compiler.key.as_bytes())
            .part("python", ctx.python.as_bytes());
        if let Some(i) = ctx.interpreter_key() {
            key.part("interpreter", i.as_bytes());
        }
        key.part("builder", super::uv::VERSION.as_bytes())
            .part("epoch", ctx.epoch.to_string().as_bytes())
            // What the build requirements (setuptools...) are taken from.
            .part("index", pip.index_url.as_deref().unwrap_or("").as_bytes())
            .part("extra-index", pip.extra_index_urls.join(" ").as_bytes())
            .part("constraints", pip.constraints.as_deref().unwrap_or(b""))
            .finish()
    }
}

/// Each distribution's wheel: from the cache, the local project wheel, or
/// downloaded and built now (those missing: sdists in one `uv build` run).
fn wheels_of(
    ctx: &PythonContext,
    resolution: &Resolution,
    local: Option<&Path>,
    pip: &PipSettings,
    compiler: &Rootfs,
    hashes_from: &str,
) -> Result<Vec<BuiltWheel>, PythonError> {
    let mut found: Vec<Option<BuiltWheel>> = Vec::new();
    let mut missing: Vec<(usize, &Resolved, String)> = Vec::new();
    for (i, p) in resolution.packages.iter().enumerate() {
        if let Some(file) = p.url.strip_prefix("file://") {
            // The project's wheel given here, or a wheel a lock names by path
            // (an offline store's lock): used as it is, its hash checked.
            let path = match local {
                Some(l) if p.requested => l.to_path_buf(),
                _ if p.is_wheel() => PathBuf::from(file),
                _ => {
                    return Err(PythonError::Wheelhouse(format!(
                        "{} is a local sdist; assemble builds local files only as wheels",
                        p.file
                    )))
                }
            };
            found.push(Some(BuiltWheel::at(p, &path, None)?));
            continue;
        }
        let key = wheel_key(ctx, p, pip, compiler);
        match (ctx.rebuild, only_wheel(&ctx.cache.entry("wheels", &key))) {
            (false, Ok(file)) => {
                let path = ctx.cache.entry("wheels", &key).join(file);
                if !p.is_wheel() {
                    offer_wheel(ctx, &key, &path)?;
                }
                found.push(Some(BuiltWheel::at(p, &path, Some(key))?));
            }
            (false, Err(_)) if !p.is_wheel() && remote_wheel(ctx, p, &key)? => {
                let path = ctx.cache.entry("wheels", &key);
                let path = path.join(only_wheel(&path)?);
                found.push(Some(BuiltWheel::at(p, &path, Some(key))?));
            }
            _ => {
                found.push(None);
                missing.push((i, p, key));
            }
        }
    }
    let cached = found.iter().filter(|f| f.is_some()).count();
    if missing.is_empty() {
        ctx.printer
            .step(&format!("compile: all {cached} wheels cached"));
    } else {
        let (sdists, wheels): (Vec<_>, Vec<_>) =
            missing.iter().partition(|(_, p, _)| !p.is_wheel());
        let names = |v: &[&(usize, &Resolved, String)]| {
            v.iter()
                .map(|(_, p, _)| format!("{} {}", p.name, p.version))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut what = Vec::new();
        if !sdists.is_empty() {
            what.push(format!("compiling {} ({})", sdists.len(), names(&sdists)));
        }
        if !wheels.is_empty() {
            what.push(format!("fetching {} ({})", wheels.len(), names(&wheels)));
        }
        ctx.printer.step(&format!(
            "compile: {cached} wheels cached, {} (python{})",
            what.join(", "),
            ctx.python
        ));
        for (i, w) in fetch_and_compile(ctx, &missing, pip, compiler, hashes_from)? {
            found[i] = Some(w);
        }
    }
    Ok(found
        .into_iter()
        .map(|w| w.expect("every wheel found or made"))
        .collect())
}

/// The missing distributions: each file downloaded by assemble from the
/// index and checked against the set's sha256; a wheel is committed to the
/// cache as it is, an sdist built into one by `uv build` in the compiler
/// sandbox (all of them in one run). Each wheel is committed under its own
/// key.
fn fetch_and_compile(
    ctx: &PythonContext,
    missing: &[(usize, &Resolved, String)],
    pip: &PipSettings,
    compiler: &Rootfs,
    hashes_from: &str,
) -> Result<Vec<(usize, BuiltWheel)>, PythonError> {
    let client = IndexClient::new(pip)?;
    let work = ctx.cache.work_dir("wheels")?;
    let sdists = work.path().join("sdists");
    fs_err::create_dir(&sdists).map_err(io_err(&sdists))?;
    let mut out = Vec::new();
    let mut to_build = Vec::new();
    for (i, p, key) in missing {
        let file = super::index::percent_decode(&p.file);
        if file.contains('/') || file.starts_with('.') {
            return Err(PythonError::Resolve(format!(
                "{} {} comes as {file:?}, not a file name",
                p.name, p.version
            )));
        }
        let one = ctx.cache.work_dir("wheel")?;
        let dest = if p.is_wheel() {
            one.path().join(&file)
        } else {
            sdists.join(&file)
        };
        let url = file_source(&client, pip, p, &file)?;
        let got = client.download(&url, &dest)?;
        if got.hex() != p.sha256 {
            return Err(PythonError::HashesRefused {
                source_name: hashes_from.to_string(),
                detail: format!(
                    "{} {}: {} from {} has sha256 {}, not {}",
                    p.name,
                    p.version,
                    file,
                    p.url,
                    got.hex(),
                    p.sha256
                ),
            });
        }
        if p.is_wheel() {
            let entry = ctx.cache.commit_dir(one, "wheels", key)?;
            out.push((
                *i,
                BuiltWheel::at(p, &entry.join(&file), Some(key.clone()))?,
            ));
        } else {
            to_build.push((*i, *p, key, file));
        }
    }
    if to_build.is_empty() {
        return Ok(out);
    }
    let uv = super::uv::ensure(ctx, super::uv::Source::Index { pip, compiler })?;
    let run = PipRun::prepare(ctx, pip, compiler, work.path())?;
    let mut run = run;
    run.env.extend(super::uv::env(Some(pip)));
    let mut script = String::from("set -e\n");
    let py = super::shell_word(&ctx.interpreter);
    let constraints = if pip.constraints.is_some() {
        " --build-constraints /assemble/tools/constraints.txt"
    } else {
        ""
    };
    // Each sdist with a uv cache of its own: one package's build code cannot
    // change the build environment of the next.
    for (n, (_, _, _, file)) in to_build.iter().enumerate() {
        script.push_str(&format!(
            "UV_CACHE_DIR=/tmp/uv-cache-{n} {bin} build --wheel --no-create-gitignore --python {py}{constraints} --out-dir /assemble/wheelhouse {}\n",
            super::shell_word(&format!("/assemble/sdists/{file}")),
            bin = super::uv::BIN,
        ));
    }
    let mounts = vec![
        Mount::Bind(run.wheels.clone(), "/assemble/wheelhouse".into()),
        Mount::ReadOnly(sdists.clone(), "/assemble/sdists".into()),
        uv.mount(),
    ];
    let argv = vec!["/bin/sh".into(), "-c".into(), script];
    ctx.runner.run(
        &run.plan(
            &format!("uv build{}", super::index_label(pip)),
            mounts,
            argv,
        ),
        run.output,
    )?;
    let made = wheels_in(&run.wheels)?;
    for (i, p, key, _) in to_build {
        let file = made
            .iter()
            .find(|f| {
                wheel_name_version(Path::new(f))
                    .is_some_and(|(n, v)| normalise_name(&n) == p.name && v == p.version)
            })
            .ok_or_else(|| {
                PythonError::Wheelhouse(format!(
                    "uv build did not make a wheel of {} {}",
                    p.name, p.version
                ))
            })?;
        let one = ctx.cache.work_dir("wheel")?;
        let dest = one.path().join(file);
        fs_err::rename(run.wheels.join(file), &dest).map_err(io_err(&dest))?;
        let entry = ctx.cache.commit_dir(one, "wheels", key)?;
        offer_wheel(ctx, key, &entry.join(file))?;
        out.push((i, BuiltWheel::at(p, &entry.join(file), Some(key.clone()))?));
    }
    Ok(out)
}

/// The media type of a wheel in the build cache.
const WHEEL_TYPE: &str = "application/vnd.assemble.wheel.v1+zip";

/// A wheel entry of the build cache: the file name and its blob.
#[derive(serde::Serialize, serde::Deserialize)]
struct RemoteWheel {
    file: String,
    digest: crate::digest::Digest,
}

/// Whether the build cache had the wheel built from `p`'s sdist under
/// `key`, now committed to the local cache. An entry that is not a wheel of
/// `p` (its file name, its zip, its members) is refused with a warning, and
/// nothing of it is kept.
fn remote_wheel(ctx: &PythonContext, p: &Resolved, key: &str) -> Result<bool, PythonError> {
    let Some(entry) =
        ctx.cache
            .remote_json::<RemoteWheel>("wheel", key, |e| named_as(p, &e.file), ctx.printer)
    else {
        return Ok(false);
    };
    match keep_remote_wheel(ctx, p, key, &entry) {
        Ok(()) => Ok(true),
        Err(why) => {
            ctx.printer.warn(&format!(
                "ignoring the build cache's wheel of {} {}: {why}; building here",
                p.name, p.version
            ));
            Ok(false)
        }
    }
}

/// Whether a wheel entry's file name is a plain one of `p`'s distribution
/// and version (judged before its blob is fetched); why not, otherwise.
fn named_as(p: &Resolved, file: &str) -> Result<(), String> {
    let plain = file
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._+!-".contains(c));
    let named = plain
        && !file.starts_with('.')
        && wheel_name_version(Path::new(file))
            .is_some_and(|(n, v)| normalise_name(&n) == p.name && v == p.version);
    if !named {
        return Err(format!(
            "it is named {:?}",
            file.chars().take(80).collect::<String>()
        ));
    }
    Ok(())
}

/// Checks a wheel entry of the build cache and commits its wheel under
/// `key`; why not, otherwise.
fn keep_remote_wheel(
    ctx: &PythonContext,
    p: &Resolved,
    key: &str,
    entry: &RemoteWheel,
) -> Result<(), String> {
    let file = &entry.file;
    named_as(p, file)?;
    // The blob came with the entry, its digest checked as it came.
    if !ctx.cache.blobs().has(&entry.digest) {
        return Err("its entry does not hold it".into());
    }
    let data = std::fs::read(ctx.cache.blobs().path(&entry.digest)).map_err(|e| e.to_string())?;
    super::install::check_wheel(file, &data).map_err(|e| e.to_string())?;
    let one = ctx.cache.work_dir("wheel").map_err(|e| e.to_string())?;
    let dest = one.path().join(file);
    std::fs::write(&dest, &data).map_err(|e| e.to_string())?;
    ctx.cache
        .commit_dir(one, "wheels", key)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Offers a wheel built here to the build cache: its bytes go into the
/// blob store, the entry names it.
fn offer_wheel(ctx: &PythonContext, key: &str, path: &Path) -> Result<(), PythonError> {
    if !ctx.cache.offers() {
        return Ok(());
    }
    let (digest, size) = crate::digest::digest_file(path).map_err(io_err(path))?;
    ctx.cache
        .blobs()
        .import_path(path, &digest)
        .map_err(|e| PythonError::Wheelhouse(format!("cannot keep {}: {e}", path.display())))?;
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    ctx.cache.offer(
        "wheel",
        key,
        &RemoteWheel {
            file,
            digest: digest.clone(),
        },
        vec![crate::image::Blob {
            digest,
            size,
            media_type: WHEEL_TYPE.into(),
        }],
    );
    Ok(())
}

/// Where the file of `p` is downloaded from: its URL when it is on a
/// configured index (or none is configured), else the same file on the
/// configured indexes (a lock written against another index, built behind
/// a mirror, as pip would have fetched it), else its URL. The sha256 is
/// checked whatever the source.
fn file_source(
    client: &IndexClient,
    pip: &PipSettings,
    p: &Resolved,
    file: &str,
) -> Result<String, PythonError> {
    let indexes: Vec<String> = pip
        .indexes()
        .map(|u| crate::output::strip_credentials(u))
        .collect();
    let origin = |u: &str| reqwest::Url::parse(u).ok().map(|u| u.origin());
    let on_an_index = indexes.iter().any(|i| origin(i) == origin(&p.url));
    if indexes.is_empty() || on_an_index {
        return Ok(p.url.clone());
    }
    for index in &indexes {
        if let Some(url) = client.file_url(index, &p.name, file)? {
            return Ok(url);
        }
    }
    Ok(p.url.clone())
}

/// The wheelhouse of these wheels, keyed on them: made once, by links to
/// the cached wheels.
fn gather(
    ctx: &PythonContext,
    wheels: &[BuiltWheel],
    project: &Resolved,
) -> Result<Wheelhouse, PythonError> {
    let mut key = KeyBuilder::new("wheelhouse-v2");
    key.part("project", project.name.as_bytes());
    for w in wheels {
        key.part("wheel", w.wheel.as_bytes())
            .part("sha256", w.wheel_sha256.as_bytes());
    }
    let key = key.finish();
    let project_wheel = wheels
        .iter()
        .find(|w| w.resolved.requested)
        .expect("the project is in the set");
    let (name, version) = wheel_name_version(Path::new(&project_wheel.wheel)).ok_or_else(|| {
        PythonError::Wheelhouse(format!("{} is not a wheel file name", project_wheel.wheel))
    })?;
    let record = ProjectWheel {
        name,
        version,
        file: project_wheel.wheel.clone(),
    };
    let entry = ctx.cache.entry("wheelhouse", &key);
    if read_project(&entry).as_ref() == Some(&record) {
        return Ok(Wheelhouse {
            key,
            dir: entry.join("wheels"),
            project: record,
            resolved: None,
        });
    }
    let work = ctx.cache.work_dir("wheelhouse")?;
    let dir = work.path().join("wheels");
    fs_err::create_dir(&dir).map_err(io_err(&dir))?;
    for w in wheels {
        let dest = dir.join(&w.wheel);
        if std::fs::hard_link(&w.path, &dest).is_err() {
            fs_err::copy(&w.path, &dest).map_err(io_err(&w.path))?;
        }
    }
    write_project_record(work.path(), &record)?;
    let entry = ctx.cache.commit_dir(work, "wheelhouse", &key)?;
    Ok(Wheelhouse {
        key,
        dir: entry.join("wheels"),
        project: record,
        resolved: None,
    })
}

/// The sandboxed runs of one compile (pip's or uv's): the compiler's tree, the
/// directories bound in and the environment they share.
pub(super) struct PipRun<'a> {
    /// The compiler rootfs.
    compiler: &'a Rootfs,
    /// Where the wheels are written (`/assemble/wheelhouse`).
    pub(super) wheels: PathBuf,
    /// The requirement's own wheel (`/assemble/project`).
    project_dir: PathBuf,
    /// The constraints and the index's CA certificate, when given.
    tools_mount: Option<Mount>,
    /// The whole environment of pip.
    env: Vec<(String, String)>,
    /// `pythonX.Y`.
    pub(super) py: String,
    /// The output: captured, echoed under `--verbose`.
    pub(super) output: Output<'a>,
}

impl<'a> PipRun<'a> {
    /// Makes the work directories and writes the constraints and the CA
    /// certificate where the sandbox will see them.
    pub(super) fn prepare(
        ctx: &'a PythonContext,
        pip: &PipSettings,
        compiler: &'a Rootfs,
        work: &Path,
    ) -> Result<Self, PythonError> {
        let wheels = work.join("wheels");
        let project_dir = work.join("project");
        for d in [&wheels, &project_dir] {
            fs_err::create_dir(d).map_err(io_err(d))?;
        }
        let mut env = base_env(ctx);
        env.extend(pip.pip_env());
        // Directories are bound, never single files: the read-only root has no
        // file to mount a file onto.
        let tools = work.join("tools");
        fs_err::create_dir(&tools).map_err(io_err(&tools))?;
        if let Some(c) = &pip.constraints {
            let path = tools.join("constraints.txt");
            fs_err::write(&path, c).map_err(io_err(&path))?;
        }
        if let Some(cert) = &pip.cert {
            let path = tools.join("cert.pem");
            fs_err::write(&path, cert).map_err(io_err(&path))?;
            env.push(("PIP_CERT".into(), "/assemble/tools/cert.pem".into()));
        }
        let tools_mount = Some(Mount::ReadOnly(tools.clone(), "/assemble/tools".into()));
        Ok(PipRun {
            compiler,
            wheels,
            project_dir,
            tools_mount,
            env,
            py: ctx.interpreter.clone(),
            output: Output::Capture {
                echo: ctx.printer.verbose().then_some(ctx.printer),
            },
        })
    }

    /// The plan of one run: `mounts`, then the tools when there are any.
    pub(super) fn plan(&self, what: &str, mut mounts: Vec<Mount>, argv: Vec<String>) -> Plan {
        mounts.extend(self.tools_mount.clone());
        Plan {
            what: what.to_string(),
            root: self.compiler.tree.clone(),
            writable_root: false,
            mounts,
            env: self.env.clone(),
            uid: BLUE.uid as u32,
            gid: BLUE.gid as u32,
            cwd: "/tmp".into(),
            share_net: true,
            argv,
        }
    }
}

/// Builds the project directory's own wheel (`pip wheel --no-deps`, from a
/// copy) into the run's project directory; returns its file name.
fn build_directory(
    ctx: &PythonContext,
    run: &PipRun,
    dir: &Path,
    work: &Path,
) -> Result<String, PythonError> {
    let src = work.join("src");
    copy_project_dir(dir, &src)?;
    ctx.printer.step(&format!(
        "compile: building the project's wheel from {}",
        dir.display()
    ));
    ctx.runner.run(
        &run.plan(
            "pip wheel of the project directory",
            vec![
                Mount::Bind(src.clone(), "/assemble/src".into()),
                Mount::Bind(run.project_dir.clone(), "/assemble/project".into()),
            ],
            vec![
                run.py.clone(),
                "-m".into(),
                "pip".into(),
                "wheel".into(),
                "--no-deps".into(),
                "--wheel-dir".into(),
                "/assemble/project".into(),
                "/assemble/src".into(),
            ],
        ),
        run.output,
    )?;
    only_wheel(&run.project_dir)
}

/// Records which wheel is the project's, beside the wheels, so a cached
/// wheelhouse knows it without asking pip again.
fn write_project_record(work: &Path, project: &ProjectWheel) -> Result<(), PythonError> {
    let record = work.join("project.json");
    fs_err::write(
        &record,
        serde_json::to_vec_pretty(project).expect("serialises"),
    )
    .map_err(io_err(&record))
}

/// Makes the wheelhouse from an offline store's wheels: `pip wheel` with
/// `--no-index`, `--no-deps` and every file's sha256 required, in the
/// compiler rootfs, without network. The wheels were compiled when the store
/// was filled, so no build dependency is needed here.
pub fn wheelhouse_from_store(
    ctx: &PythonContext,
    store_wheels: &Path,
    wheels: &BTreeMap<String, String>,
    project: &ProjectWheel,
    compiler: &Rootfs,
) -> Result<Wheelhouse, PythonError> {
    let mut key = KeyBuilder::new("wheelhouse-store-v1");
    key.part("compiler", compiler.key.as_bytes())
        .part("python", ctx.python.as_bytes());
    for (file, sha) in wheels {
        key.part("wheel", file.as_bytes())
            .part("sha256", sha.as_bytes());
    }
    let key = key.finish();
    if let Some(w) = cached_wheelhouse(ctx, &key, " (offline)") {
        return Ok(w);
    }
    let work = ctx.cache.work_dir("wheelhouse")?;
    let out = work.path().join("wheels");
    let tools = work.path().join("tools");
    for d in [&out, &tools] {
        fs_err::create_dir(d).map_err(io_err(d))?;
    }
    let req_path = tools.join("requirements.txt");
    fs_err::write(&req_path, store_requirements(wheels)?).map_err(io_err(&req_path))?;
    ctx.printer.step(&format!(
        "compile: {} wheels from the offline store, hashes checked (no network)",
        wheels.len()
    ));
    ctx.runner.run(
        &store_plan(ctx, compiler, store_wheels, &out, &tools),
        Output::Capture {
            echo: ctx.printer.verbose().then_some(ctx.printer),
        },
    )?;
    if !out.join(&project.file).is_file() {
        return Err(PythonError::Wheelhouse(format!(
            "the offline store gave no {} wheel",
            project.file
        )));
    }
    write_project_record(work.path(), project)?;
    let dir = ctx.cache.commit_dir(work, "wheelhouse", &key)?;
    Ok(Wheelhouse {
        key,
        dir: dir.join("wheels"),
        project: project.clone(),
        resolved: None,
    })
}

/// A requirements file pinning every wheel of the store by name, version
/// and sha256.
fn store_requirements(wheels: &BTreeMap<String, String>) -> Result<String, PythonError> {
    let mut requirements = String::new();
    for (file, sha) in wheels {
        let (name, version) = wheel_name_version(Path::new(file)).ok_or_else(|| {
            PythonError::Wheelhouse(format!(
                "{file} in the offline store is not a wheel file name"
            ))
        })?;
        requirements.push_str(&format!("{name}=={version} --hash=sha256:{sha}\n"));
    }
    Ok(requirements)
}

/// The plan of `pip wheel` from the store: no index, no network, every
/// hash required.
fn store_plan(
    ctx: &PythonContext,
    compiler: &Rootfs,
    store_wheels: &Path,
    out: &Path,
    tools: &Path,
) -> Plan {
    Plan {
        what: "pip wheel from the offline store".into(),
        root: compiler.tree.clone(),
        writable_root: false,
        mounts: vec![
            Mount::Bind(out.to_path_buf(), "/assemble/wheelhouse".into()),
            Mount::ReadOnly(store_wheels.to_path_buf(), "/assemble/project".into()),
            Mount::ReadOnly(tools.to_path_buf(), "/assemble/tools".into()),
        ],
        env: base_env(ctx),
        uid: BLUE.uid as u32,
        gid: BLUE.gid as u32,
        cwd: "/tmp".into(),
        share_net: false,
        argv: [
            &ctx.interpreter[..],
            "-m",
            "pip",
            "wheel",
            "--no-index",
            "--find-links",
            "/assemble/project",
            "--no-deps",
            "--require-hashes",
            "-r",
            "/assemble/tools/requirements.txt",
            "--wheel-dir",
            "/assemble/wheelhouse",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }
}

/// The wheelhouse cached under `key`, if complete, with a progress line.
fn cached_wheelhouse(ctx: &PythonContext, key: &str, note: &str) -> Option<Wheelhouse> {
    let entry = ctx.cache.entry("wheelhouse", key);
    let project = read_project(&entry)?;
    ctx.printer.step(&format!(
        "compile: cached wheelhouse for {} {}{note}",
        project.name, project.version
    ));
    Some(Wheelhouse {
        key: key.to_string(),
        dir: entry.join("wheels"),
        project,
        resolved: None,
    })
}

fn read_project(entry: &Path) -> Option<ProjectWheel> {
    let p: ProjectWheel =
        serde_json::from_slice(&std::fs::read(entry.join("project.json")).ok()?).ok()?;
    entry.join("wheels").join(&p.file).is_file().then_some(p)
}

/// The wheel files in `dir`, sorted.
pub(super) fn wheels_in(dir: &Path) -> Result<Vec<String>, PythonError> {
    let mut v: Vec<String> = fs_err::read_dir(dir)
        .map_err(io_err(dir))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".whl"))
        .collect();
    v.sort();
    Ok(v)
}

fn only_wheel(dir: &Path) -> Result<String, PythonError> {
    match wheels_in(dir)?.as_slice() {
        [one] => Ok(one.clone()),
        other => Err(PythonError::Wheelhouse(format!(
            "building the project directory gave {} wheels instead of one: {other:?}",
            other.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::image::layer;
    use crate::output::Printer;

    #[test]
    fn resolution_mounts_only_its_output_the_tools_and_the_project() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let recorder = crate::sandbox::Recorder::default();
        let printer = Printer::new(crate::output::Mode::Quiet, false);
        let ctx = PythonContext {
            cache: &cache,
            runner: &recorder,
            printer: &printer,
            python: "3.11".into(),
            interpreter: "/usr/bin/python3.11".into(),
            runtime_requirements: Vec::new(),
            epoch: 0,
            rebuild: false,
            compression: layer::Compression::Gzip,
            unconfined: None,
        };
        let compiler = Rootfs {
            key: "k".into(),
            tree: dir.path().join("tree"),
            layers: vec![],
            created_by: vec![],
            origin: crate::cache::Origin::Cached,
            debian: None,
        };
        let req = Requirement::parse("milborne==0.4.0").unwrap();
        let pip = PipSettings {
            index_url: Some("http://u:secret@127.0.0.1:1/simple/".into()),
            constraints: Some(b"django<5\n".to_vec()),
            ..Default::default()
        };
        // uv as if fetched before.
        let pin = crate::python::uv::pinned().unwrap();
        let uv_dir = cache.entry("tools", &crate::python::uv::cache_key(pin));
        std::fs::create_dir_all(&uv_dir).unwrap();
        std::fs::write(uv_dir.join("uv"), "").unwrap();
        std::fs::write(uv_dir.join(pin.wheel), "").unwrap();
        // The recorder runs nothing, so uv's log is missing, and only
        // then: after the one plan, uv's resolution, was recorded.
        let err = compile(&ctx, &req, &pip, &compiler, None).unwrap_err();
        assert!(
            matches!(&err, PythonError::Io { path, .. } if path.ends_with("out/uv.log")),
            "{err}"
        );
        let plans = recorder.plans.lock().unwrap();
        assert_eq!(plans.len(), 1, "one sandbox run");
        let plan = &plans[0];
        assert_eq!(
            plan.what,
            "uv resolve (index http://***@127.0.0.1:1/simple/)"
        );
        assert!(plan.share_net, "uv resolves against the index");
        let targets: Vec<_> = plan
            .mounts
            .iter()
            .map(|m| match m {
                Mount::Bind(_, d) | Mount::ReadOnly(_, d) => d.clone(),
                other => other.dest().to_string(),
            })
            .collect();
        assert_eq!(
            targets,
            [
                "/assemble/out",
                "/assemble/tools",
                "/assemble/project",
                "/assemble/uv"
            ]
        );
        // The index in the environment, never on the command line.
        assert!(plan
            .env
            .iter()
            .any(|(k, v)| k == "UV_INDEX_URL" && v.contains("127.0.0.1")));
        assert!(!plan.argv.iter().any(|a| a.contains("secret")));
        assert!(!plan
            .env
            .iter()
            .any(|(k, _)| k == "DOCKER_CONFIG" || k == "SSH_AUTH_SOCK"));
        assert!(
            plan.env.iter().any(|(k, v)| k == "HOME" && v == "/tmp"),
            "the host's HOME is not visible"
        );
        for option in ["--constraints", "--build-constraints"] {
            assert!(plan
                .argv
                .windows(2)
                .any(|w| w == [option, "/assemble/tools/constraints.txt"]));
        }
        assert_eq!(plan.argv.last().unwrap(), "/assemble/tools/requirements.in");
    }
}
