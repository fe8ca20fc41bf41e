//! The compile stage: `pip wheel` for the requirement and its dependencies
//! inside the compiler rootfs, bound to nothing but the project, the
//! wheelhouse and the constraints, or from an offline store's wheels with
//! their hashes required. It owns the wheelhouse's cache key and finding the
//! project's wheel in what pip wrote.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::{base_env, io_err, ProjectWheel, PythonContext, PythonError, Wheelhouse};
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

/// Runs `pip wheel` for the requirement and its dependencies inside the
/// compiler rootfs. Only the project, the wheelhouse and the constraints are
/// bound in; pip's index settings arrive as environment variables.
pub fn compile(
    ctx: &PythonContext,
    req: &Requirement,
    pip: &PipSettings,
    compiler: &Rootfs,
) -> Result<Wheelhouse, PythonError> {
    let key = wheelhouse_key(ctx, req, pip, compiler)?;
    if !ctx.rebuild {
        if let Some(w) = cached_wheelhouse(ctx, &key, "") {
            return Ok(w);
        }
    }
    let work = ctx.cache.work_dir("wheelhouse")?;
    let run = PipRun::prepare(ctx, pip, compiler, work.path())?;
    let target = stage_target(ctx, &run, req, work.path())?;
    pip_wheel(ctx, &run, pip, &target)?;
    let project = find_project_wheel(&run.wheels, req)?;
    write_project_record(work.path(), &project)?;
    let _ = std::fs::remove_dir_all(work.path().join("src"));
    let dir = ctx.cache.commit_dir(work, "wheelhouse", &key)?;
    Ok(Wheelhouse {
        key,
        dir: dir.join("wheels"),
        project,
    })
}

/// The wheelhouse's cache key: the compiler, the interpreter, the
/// requirement (a wheel or a project directory by its content) and every
/// pip setting that can change what pip picks.
fn wheelhouse_key(
    ctx: &PythonContext,
    req: &Requirement,
    pip: &PipSettings,
    compiler: &Rootfs,
) -> Result<String, PythonError> {
    let mut key = KeyBuilder::new("wheelhouse-v1");
    key.part("compiler", compiler.key.as_bytes())
        .part("python", ctx.python.as_bytes())
        .part("extras", req.extras.join(",").as_bytes())
        .part("index", pip.index_url.as_deref().unwrap_or("").as_bytes())
        .part("extra-index", pip.extra_index_urls.join(" ").as_bytes())
        .part("trusted", pip.trusted_hosts.join(" ").as_bytes())
        .part("constraints", pip.constraints.as_deref().unwrap_or(b""))
        .part("epoch", ctx.epoch.to_string().as_bytes());
    match &req.source {
        Source::Index { version, operator } => {
            key.part(
                "index-req",
                format!(
                    "{}{operator}{version}",
                    normalise_name(req.name.as_deref().unwrap_or(""))
                )
                .as_bytes(),
            );
        }
        Source::Wheel(path) => {
            let (d, _) = crate::digest::digest_file(path).map_err(io_err(path))?;
            key.part("wheel", d.hex().as_bytes());
        }
        Source::Directory(dir) => hash_project_dir(dir, &mut key)?,
    }
    Ok(key.finish())
}

/// The sandboxed pip runs of one compile: the compiler's tree, the
/// directories bound in and the environment they share.
struct PipRun<'a> {
    /// The compiler rootfs.
    compiler: &'a Rootfs,
    /// Where pip writes the wheelhouse (`/assemble/wheelhouse`).
    wheels: PathBuf,
    /// The requirement's own wheel (`/assemble/project`).
    project_dir: PathBuf,
    /// The constraints and the index's CA certificate, when given.
    tools_mount: Option<Mount>,
    /// The whole environment of pip.
    env: Vec<(String, String)>,
    /// `pythonX.Y`.
    py: String,
    /// pip's output: captured, echoed under `--verbose`.
    output: Output<'a>,
}

impl<'a> PipRun<'a> {
    /// Makes the work directories and writes the constraints and the CA
    /// certificate where the sandbox will see them.
    fn prepare(
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
        let tools_mount = (pip.constraints.is_some() || pip.cert.is_some())
            .then(|| Mount::ReadOnly(tools.clone(), "/assemble/tools".into()));
        Ok(PipRun {
            compiler,
            wheels,
            project_dir,
            tools_mount,
            env,
            py: format!("python{}", ctx.python),
            output: Output::Capture {
                echo: ctx.printer.verbose().then_some(ctx.printer),
            },
        })
    }

    /// The plan of one pip run: `mounts`, then the tools when there are any.
    fn plan(&self, what: &str, mut mounts: Vec<Mount>, argv: Vec<String>) -> Plan {
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

/// What pip is asked for: the pinned name, or the requirement's wheel
/// copied into the project directory, or the wheel built from the project
/// directory (a first pip run, with no dependencies).
fn stage_target(
    ctx: &PythonContext,
    run: &PipRun,
    req: &Requirement,
    work: &Path,
) -> Result<String, PythonError> {
    Ok(match &req.source {
        Source::Index { version, operator } => format!(
            "{}{}{operator}{version}",
            req.name.as_deref().unwrap_or_default(),
            req.extras_suffix()
        ),
        Source::Wheel(path) => {
            let file = path.file_name().expect("wheel path has a file name");
            fs_err::copy(path, run.project_dir.join(file)).map_err(io_err(path))?;
            format!(
                "/assemble/project/{}{}",
                file.to_string_lossy(),
                req.extras_suffix()
            )
        }
        Source::Directory(dir) => {
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
            let built = only_wheel(&run.project_dir)?;
            format!("/assemble/project/{built}{}", req.extras_suffix())
        }
    })
}

/// `pip wheel` of the target and its dependencies into the wheelhouse,
/// under the constraints when there are some.
fn pip_wheel(
    ctx: &PythonContext,
    run: &PipRun,
    pip: &PipSettings,
    target: &str,
) -> Result<(), PythonError> {
    let mounts = vec![
        Mount::Bind(run.wheels.clone(), "/assemble/wheelhouse".into()),
        Mount::ReadOnly(run.project_dir.clone(), "/assemble/project".into()),
    ];
    let mut argv = vec![
        run.py.clone(),
        "-m".into(),
        "pip".into(),
        "wheel".into(),
        "--wheel-dir".into(),
        "/assemble/wheelhouse".into(),
    ];
    if pip.constraints.is_some() {
        argv.extend([
            "--constraint".into(),
            "/assemble/tools/constraints.txt".into(),
        ]);
    }
    argv.push(target.to_string());
    ctx.printer.step(&format!(
        "compile: pip wheel {} (python{})",
        display_target(target),
        ctx.python
    ));
    ctx.runner
        .run(&run.plan("pip wheel", mounts, argv), run.output)?;
    Ok(())
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
            &format!("python{}", ctx.python)[..],
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

fn display_target(t: &str) -> &str {
    t.strip_prefix("/assemble/project/").unwrap_or(t)
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
    })
}

fn read_project(entry: &Path) -> Option<ProjectWheel> {
    let p: ProjectWheel =
        serde_json::from_slice(&std::fs::read(entry.join("project.json")).ok()?).ok()?;
    entry.join("wheels").join(&p.file).is_file().then_some(p)
}

fn wheels_in(dir: &Path) -> Result<Vec<String>, PythonError> {
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

fn find_project_wheel(wheels: &Path, req: &Requirement) -> Result<ProjectWheel, PythonError> {
    let all = wheels_in(wheels)?;
    let wanted = req.name.as_deref().map(normalise_name);
    let candidates: Vec<ProjectWheel> = all
        .iter()
        .filter_map(|f| {
            let (name, version) = wheel_name_version(Path::new(f))?;
            Some(ProjectWheel {
                name,
                version,
                file: f.clone(),
            })
        })
        .collect();
    let found = match (&wanted, &req.source) {
        (Some(w), _) => candidates.iter().find(|c| &normalise_name(&c.name) == w),
        (None, Source::Directory(_)) => None,
        _ => None,
    };
    let found = match found {
        Some(f) => f.clone(),
        None if wanted.is_some() && !matches!(req.source, Source::Directory(_)) => {
            return Err(PythonError::Wheelhouse(format!(
                "pip wheel did not put {} into the wheelhouse",
                req.name.as_deref().unwrap_or_default()
            )))
        }
        None => {
            // A directory build: its wheel was the one built first, in project/.
            let project_dir = wheels
                .parent()
                .expect("wheels has a parent")
                .join("project");
            let built = only_wheel(&project_dir)?;
            let (name, version) = wheel_name_version(Path::new(&built)).ok_or_else(|| {
                PythonError::Wheelhouse(format!("{built} is not a wheel file name"))
            })?;
            candidates
                .iter()
                .find(|c| normalise_name(&c.name) == normalise_name(&name) && c.version == version)
                .cloned()
                .ok_or_else(|| {
                    PythonError::Wheelhouse(format!(
                        "pip wheel did not put {name} {version} into the wheelhouse"
                    ))
                })?
        }
    };
    if let Source::Index { version, .. } = &req.source {
        if &found.version != version && found.version.trim_start_matches('v') != version.as_str() {
            return Err(PythonError::Wheelhouse(format!(
                "asked for {} {version} but the index gave {}",
                found.name, found.version
            )));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::image::layer;
    use crate::output::Printer;

    #[test]
    fn compile_mounts_only_the_wheelhouse_project_and_constraints() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let recorder = crate::sandbox::Recorder::default();
        let printer = Printer::new(crate::output::Mode::Quiet, false);
        let ctx = PythonContext {
            cache: &cache,
            runner: &recorder,
            printer: &printer,
            python: "3.11".into(),
            epoch: 0,
            rebuild: false,
            compression: layer::Compression::Gzip,
        };
        let compiler = Rootfs {
            key: "k".into(),
            tree: dir.path().join("tree"),
            layers: vec![],
            created_by: vec![],
            cached: true,
            debian: None,
        };
        let req = Requirement::parse("milborne==0.4.0").unwrap();
        let pip = PipSettings {
            index_url: Some("http://u:secret@127.0.0.1:1/simple/".into()),
            constraints: Some(b"django<5\n".to_vec()),
            ..Default::default()
        };
        // The recorder builds nothing, so finding the project's wheel fails,
        // and only then: after the one plan, pip wheel's, was recorded.
        let err = compile(&ctx, &req, &pip, &compiler).unwrap_err();
        assert!(
            matches!(&err, PythonError::Wheelhouse(m) if m == "pip wheel did not put milborne into the wheelhouse"),
            "{err}"
        );
        let plans = recorder.plans.lock().unwrap();
        assert_eq!(plans.len(), 1, "one sandbox run");
        let plan = &plans[0];
        assert_eq!(plan.what, "pip wheel");
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
                "/assemble/wheelhouse",
                "/assemble/project",
                "/assemble/tools"
            ]
        );
        assert!(plan
            .env
            .iter()
            .any(|(k, v)| k == "PIP_INDEX_URL" && v.contains("127.0.0.1")));
        assert!(!plan
            .env
            .iter()
            .any(|(k, _)| k == "DOCKER_CONFIG" || k == "SSH_AUTH_SOCK"));
        assert!(
            plan.env.iter().any(|(k, v)| k == "HOME" && v == "/tmp"),
            "the host's HOME is not visible"
        );
        assert_eq!(plan.argv.last().unwrap(), "milborne==0.4.0");
    }
}
