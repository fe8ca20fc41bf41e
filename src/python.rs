//! Python stages: compile the wheelhouse in the compiler rootfs, install it
//! into a venv at `/home/blue/app` inside the base rootfs, and split the venv
//! into layers by the distribution that owns each file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::cache::{Cache, CacheError, KeyBuilder};
use crate::contract::{self, OWNER as BLUE, VENV};
use crate::image::layer::{self, Layer, LayerBlob, LayerError};
use crate::output::Printer;
use crate::rootfs::Rootfs;
use crate::sandbox::{Mount, Output, Plan, Runner, SandboxError};
use crate::spec::{normalise_name, wheel_name_version, PipSettings, Requirement, Source};

/// Failure of a Python stage.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    /// pip or venv failed in the sandbox.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The wheelhouse does not hold what was asked for.
    #[error("{0}")]
    Wheelhouse(String),
    /// A wheel would write outside the venv.
    #[error("refusing wheel {wheel}: its entry {entry:?} points outside the virtualenv")]
    HostileWheel {
        /// The wheel file.
        wheel: String,
        /// The member or RECORD entry.
        entry: String,
    },
    /// A wheel given as the requirement is not a readable wheel.
    #[error(
        "{path} is not a usable wheel: {why}; build it again (or download it again) and retry"
    )]
    BadWheel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The compiler rootfs lacks pip's wheel.
    #[error("the compiler rootfs has no pip wheel in /usr/share/python-wheels; it needs python3-venv (python3-pip-whl)")]
    NoPipWheel,
    /// Files could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Cache failure.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Layer writing failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PythonError + '_ {
    move |source| PythonError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The project's own wheel in a wheelhouse.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProjectWheel {
    /// Name as in the wheel's file name.
    pub name: String,
    /// Version.
    pub version: String,
    /// File name in the wheelhouse.
    pub file: String,
}

/// A compiled wheelhouse.
#[derive(Clone, Debug)]
pub struct Wheelhouse {
    /// Cache key.
    pub key: String,
    /// Directory of wheels.
    pub dir: PathBuf,
    /// The project's wheel.
    pub project: ProjectWheel,
}

/// Settings shared by the sandboxed pip runs.
pub struct PythonContext<'a> {
    /// The cache.
    pub cache: &'a Cache,
    /// Sandbox runner.
    pub runner: &'a dyn Runner,
    /// Progress output.
    pub printer: &'a Printer,
    /// `X.Y`.
    pub python: String,
    /// SOURCE_DATE_EPOCH.
    pub epoch: u64,
    /// Ignore cached wheelhouses and layers.
    pub rebuild: bool,
    /// Compression of the layers built.
    pub compression: layer::Compression,
}

fn base_env(ctx: &PythonContext) -> Vec<(String, String)> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", "/tmp"),
        ("LANG", "C.UTF-8"),
        ("PYTHONHASHSEED", "0"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PIP_CONFIG_FILE", "/dev/null"),
        ("PIP_NO_INPUT", "1"),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ("PIP_PROGRESS_BAR", "off"),
        ("PIP_ROOT_USER_ACTION", "ignore"),
        // No debug information: it embeds pip's random build directory and
        // would make compiled extensions differ from one build to the next.
        ("CFLAGS", "-g0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("SOURCE_DATE_EPOCH".to_string(), ctx.epoch.to_string())])
    .collect()
}

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
    let key = key.finish();
    if !ctx.rebuild {
        if let Some(w) = cached_wheelhouse(ctx, &key, "") {
            return Ok(w);
        }
    }
    let work = ctx.cache.work_dir("wheelhouse")?;
    let wheels = work.path().join("wheels");
    let project_dir = work.path().join("project");
    for d in [&wheels, &project_dir] {
        fs_err::create_dir(d).map_err(io_err(d))?;
    }
    let py = format!("python{}", ctx.python);
    let mut env = base_env(ctx);
    env.extend(pip.pip_env());
    // Directories are bound, never single files: the read-only root has no
    // file to mount a file onto.
    let tools = work.path().join("tools");
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
    let plan = |what: &str, mut mounts: Vec<Mount>, argv: Vec<String>| {
        mounts.extend(tools_mount.clone());
        Plan {
            what: what.to_string(),
            root: compiler.tree.clone(),
            writable_root: false,
            mounts,
            env: env.clone(),
            uid: BLUE.uid as u32,
            gid: BLUE.gid as u32,
            cwd: "/tmp".into(),
            share_net: true,
            argv,
        }
    };
    let output = Output::Capture {
        echo: ctx.printer.verbose().then_some(ctx.printer),
    };
    let target = match &req.source {
        Source::Index { version, operator } => format!(
            "{}{}{operator}{version}",
            req.name.as_deref().unwrap_or_default(),
            req.extras_suffix()
        ),
        Source::Wheel(path) => {
            let file = path.file_name().expect("wheel path has a file name");
            fs_err::copy(path, project_dir.join(file)).map_err(io_err(path))?;
            format!(
                "/assemble/project/{}{}",
                file.to_string_lossy(),
                req.extras_suffix()
            )
        }
        Source::Directory(dir) => {
            let src = work.path().join("src");
            copy_project_dir(dir, &src)?;
            ctx.printer.step(&format!(
                "compile: building the project's wheel from {}",
                dir.display()
            ));
            ctx.runner.run(
                &plan(
                    "pip wheel of the project directory",
                    vec![
                        Mount::Bind(src.clone(), "/assemble/src".into()),
                        Mount::Bind(project_dir.clone(), "/assemble/project".into()),
                    ],
                    vec![
                        py.clone(),
                        "-m".into(),
                        "pip".into(),
                        "wheel".into(),
                        "--no-deps".into(),
                        "--wheel-dir".into(),
                        "/assemble/project".into(),
                        "/assemble/src".into(),
                    ],
                ),
                output,
            )?;
            let built = only_wheel(&project_dir)?;
            format!("/assemble/project/{built}{}", req.extras_suffix())
        }
    };
    let mounts = vec![
        Mount::Bind(wheels.clone(), "/assemble/wheelhouse".into()),
        Mount::ReadOnly(project_dir.clone(), "/assemble/project".into()),
    ];
    let mut argv = vec![
        py.clone(),
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
    argv.push(target.clone());
    ctx.printer.step(&format!(
        "compile: pip wheel {} (python{})",
        display_target(&target),
        ctx.python
    ));
    ctx.runner.run(&plan("pip wheel", mounts, argv), output)?;
    let project = find_project_wheel(&wheels, req)?;
    let record = work.path().join("project.json");
    fs_err::write(
        &record,
        serde_json::to_vec_pretty(&project).expect("serialises"),
    )
    .map_err(io_err(&record))?;
    let _ = std::fs::remove_dir_all(work.path().join("src"));
    let dir = ctx.cache.commit_dir(work, "wheelhouse", &key)?;
    Ok(Wheelhouse {
        key,
        dir: dir.join("wheels"),
        project,
    })
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
    let mut requirements = String::new();
    for (file, sha) in wheels {
        let (name, version) = wheel_name_version(Path::new(file)).ok_or_else(|| {
            PythonError::Wheelhouse(format!(
                "{file} in the offline store is not a wheel file name"
            ))
        })?;
        requirements.push_str(&format!("{name}=={version} --hash=sha256:{sha}\n"));
    }
    let req_path = tools.join("requirements.txt");
    fs_err::write(&req_path, requirements).map_err(io_err(&req_path))?;
    ctx.printer.step(&format!(
        "compile: {} wheels from the offline store, hashes checked (no network)",
        wheels.len()
    ));
    let plan = Plan {
        what: "pip wheel from the offline store".into(),
        root: compiler.tree.clone(),
        writable_root: false,
        mounts: vec![
            Mount::Bind(out.clone(), "/assemble/wheelhouse".into()),
            Mount::ReadOnly(store_wheels.to_path_buf(), "/assemble/project".into()),
            Mount::ReadOnly(tools.clone(), "/assemble/tools".into()),
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
    };
    ctx.runner.run(
        &plan,
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
    let record = work.path().join("project.json");
    fs_err::write(
        &record,
        serde_json::to_vec_pretty(project).expect("serialises"),
    )
    .map_err(io_err(&record))?;
    let dir = ctx.cache.commit_dir(work, "wheelhouse", &key)?;
    Ok(Wheelhouse {
        key,
        dir: dir.join("wheels"),
        project: project.clone(),
    })
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

/// What the install found out about the project.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    /// Normalised names of every installed distribution, with versions.
    pub distributions: BTreeMap<String, String>,
    /// The project's import package (`milborne`).
    pub module: String,
    /// Django is installed and the project has a `settings` module.
    pub django: bool,
    /// The project ships a `crontab` file in its package.
    pub crontab: bool,
}

/// The venv's layers and what they hold.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VenvLayers {
    /// Third-party distributions and the venv scaffolding.
    pub dependencies: LayerBlob,
    /// The project's own distribution.
    pub application: LayerBlob,
    /// Facts about the install.
    pub installed: Installed,
    /// True when the layers came from the cache (not part of the record).
    #[serde(skip)]
    pub cached: bool,
}

/// Creates the venv inside the base rootfs from the wheelhouse alone (no
/// network, `--no-index`), compiles deterministic byte-code, and packs it
/// into two layers: dependencies, then the application.
pub fn install(
    ctx: &PythonContext,
    req: &Requirement,
    wheelhouse: &Wheelhouse,
    base: &Rootfs,
    compiler: &Rootfs,
) -> Result<VenvLayers, PythonError> {
    let key = KeyBuilder::new("venv-layers-v1")
        .part("base", base.key.as_bytes())
        .part("wheelhouse", wheelhouse.key.as_bytes())
        .part("python", ctx.python.as_bytes())
        .part("extras", req.extras.join(",").as_bytes())
        .part("epoch", ctx.epoch.to_string().as_bytes())
        .part("compression", ctx.compression.name().as_bytes())
        .finish();
    if !ctx.rebuild {
        if let Some(cached) = ctx.cache.get_json::<VenvLayers>("layers", &key) {
            if ctx.cache.blobs().has(&cached.dependencies.digest)
                && ctx.cache.blobs().has(&cached.application.digest)
            {
                ctx.printer.step("install: cached venv layers");
                return Ok(VenvLayers {
                    cached: true,
                    ..cached
                });
            }
        }
    }
    check_wheelhouse(&wheelhouse.dir)?;
    let pip_whl = find_pip_wheel(&compiler.tree)?;
    let work = ctx.cache.work_dir("venv")?;
    let venv = work.path().join("app");
    fs_err::create_dir(&venv).map_err(io_err(&venv))?;
    let project = &wheelhouse.project;
    let target = format!(
        "{}{}=={}",
        project.name,
        req.extras_suffix(),
        project.version
    );
    let script = format!(
        "set -eu\numask 022\n\
         python{py} -m venv --without-pip {VENV}\n\
         {VENV}/bin/python /assemble/tools/{pip_whl}/pip install --no-index --find-links /assemble/wheelhouse \
           --no-compile --no-cache-dir --no-warn-script-location \"$1\"\n\
         {VENV}/bin/python -m compileall -q -j 1 --invalidation-mode unchecked-hash {VENV}/lib\n",
        py = ctx.python,
        pip_whl = pip_whl.file_name().expect("wheel has a name").to_string_lossy()
    );
    ctx.printer.step(&format!(
        "install: venv at {VENV} with {target} (no network)"
    ));
    let plan = Plan {
        what: "venv install".into(),
        root: base.tree.clone(),
        writable_root: false,
        mounts: vec![
            Mount::Bind(venv.clone(), VENV.into()),
            Mount::ReadOnly(wheelhouse.dir.clone(), "/assemble/wheelhouse".into()),
            Mount::ReadOnly(
                pip_whl
                    .parent()
                    .expect("wheel has a directory")
                    .to_path_buf(),
                "/assemble/tools".into(),
            ),
        ],
        env: base_env(ctx),
        uid: BLUE.uid as u32,
        gid: BLUE.gid as u32,
        cwd: "/tmp".into(),
        share_net: false,
        argv: vec!["/bin/sh".into(), "-c".into(), script, "sh".into(), target],
    };
    ctx.runner.run(
        &plan,
        Output::Capture {
            echo: ctx.printer.verbose().then_some(ctx.printer),
        },
    )?;
    let split = split_venv(&venv, &ctx.python, &project.name)?;
    ctx.printer.step(&format!(
        "layers: packing {} dependency files and {} application files",
        split.dependencies.len(),
        split.application.len()
    ));
    let pack = |files: BTreeSet<PathBuf>| -> Result<LayerBlob, PythonError> {
        let mut l = Layer::new();
        contract::home_skeleton(&mut l);
        l.add_tree(&venv, VENV, BLUE, layer::Select::Only(files));
        Ok(l.write_blob(ctx.cache.blobs().dir(), ctx.compression, ctx.epoch)?)
    };
    let Split {
        dependencies,
        application,
        installed,
    } = split;
    let (dependencies, application) = std::thread::scope(|s| {
        let deps = s.spawn(|| pack(dependencies));
        let app = pack(application);
        (deps.join().expect("layer thread"), app)
    });
    let layers = VenvLayers {
        dependencies: dependencies?,
        application: application?,
        installed,
        cached: false,
    };
    ctx.cache.put_json("layers", &key, &layers)?;
    Ok(layers)
}

fn find_pip_wheel(tree: &Path) -> Result<PathBuf, PythonError> {
    let dir = tree.join("usr/share/python-wheels");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|_| PythonError::NoPipWheel)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with("pip-") && n.to_string_lossy().ends_with(".whl")
            })
        })
        .collect();
    found.sort();
    found.pop().ok_or(PythonError::NoPipWheel)
}

/// The venv's files (relative paths) divided between the two layers.
#[derive(Debug, Default)]
pub struct Split {
    /// Files of third-party distributions and the scaffolding.
    pub dependencies: BTreeSet<PathBuf>,
    /// Files of the project's distribution.
    pub application: BTreeSet<PathBuf>,
    /// Facts found on the way.
    pub installed: Installed,
}

/// Assigns every file of a venv to the dependency or application layer by
/// reading each distribution's RECORD. Byte-code goes with its source;
/// files no RECORD names (pyvenv.cfg, bin/python) are scaffolding and go
/// with the dependencies, which change least.
pub fn split_venv(venv: &Path, python: &str, project: &str) -> Result<Split, PythonError> {
    let site_rel = PathBuf::from(format!("lib/python{python}/site-packages"));
    let site = venv.join(&site_rel);
    let project_norm = normalise_name(project);
    let mut owner: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut split = Split::default();
    let mut project_files: Vec<PathBuf> = Vec::new();
    for e in fs_err::read_dir(&site).map_err(io_err(&site))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".dist-info") else {
            continue;
        };
        let (dist, version) = stem.split_once('-').unwrap_or((stem, ""));
        let dist = normalise_name(dist);
        split
            .installed
            .distributions
            .insert(dist.clone(), version.to_string());
        let record_path = e.path().join("RECORD");
        let record = fs_err::read_to_string(&record_path).map_err(io_err(&record_path))?;
        for line in record.lines() {
            let Some(path) = first_csv_field(line) else {
                continue;
            };
            let Some(rel) = normalise_rel(&site_rel.join(&path)) else {
                return Err(PythonError::HostileWheel {
                    wheel: name.clone(),
                    entry: path,
                });
            };
            if dist == project_norm {
                project_files.push(rel.clone());
            }
            owner.insert(rel, dist.clone());
        }
    }
    if !split.installed.distributions.contains_key(&project_norm) {
        return Err(PythonError::Wheelhouse(format!(
            "{project} is not installed in the venv (found: {:?})",
            split.installed.distributions.keys()
        )));
    }
    split.installed.django = split.installed.distributions.contains_key("django");
    split.installed.module = project_module(&project_files, &site_rel, &project_norm);
    let module_dir = site_rel.join(&split.installed.module);
    split.installed.crontab = venv.join(module_dir.join("crontab")).is_file();
    split.installed.django &= venv.join(module_dir.join("settings.py")).is_file()
        || venv.join(module_dir.join("settings/__init__.py")).is_file();
    for e in walkdir::WalkDir::new(venv).follow_links(false) {
        let e = e.map_err(|e| PythonError::Io {
            path: venv.to_path_buf(),
            source: e.into(),
        })?;
        if e.file_type().is_dir() {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(venv)
            .expect("under venv")
            .to_path_buf();
        let source = pyc_source(&rel).unwrap_or_else(|| rel.clone());
        match owner.get(&source) {
            Some(d) if *d == project_norm => split.application.insert(rel),
            _ => split.dependencies.insert(rel),
        };
    }
    Ok(split)
}

/// Refuses wheels whose member names are absolute or climb with `..`:
/// whatever pip would do with them, they have no business in an image.
fn check_wheelhouse(dir: &Path) -> Result<(), PythonError> {
    for e in fs_err::read_dir(dir).map_err(io_err(dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".whl") {
            continue;
        }
        let members = zip_member_names(&e.path()).map_err(|err| {
            PythonError::Wheelhouse(format!("{name} is not a readable wheel (zip): {err}"))
        })?;
        for m in members {
            let bad = m.starts_with('/') || m.contains('\\') || m.split('/').any(|c| c == "..");
            if bad {
                return Err(PythonError::HostileWheel {
                    wheel: name,
                    entry: m,
                });
            }
        }
    }
    Ok(())
}

/// Member names of a zip file, from its central directory.
pub fn zip_member_names(path: &Path) -> std::io::Result<Vec<String>> {
    use std::io::{Error, ErrorKind};
    let data = std::fs::read(path)?;
    let bad = |what: &str| Error::new(ErrorKind::InvalidData, what.to_string());
    let u16_at = |i: usize| -> std::io::Result<usize> {
        data.get(i..i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| bad("truncated"))
    };
    let u32_at = |i: usize| -> std::io::Result<usize> {
        data.get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| bad("truncated"))
    };
    // The end-of-central-directory record sits in the last 64 KiB + 22 bytes.
    let floor = data.len().saturating_sub(65_535 + 22);
    let eocd = (floor..data.len().saturating_sub(21))
        .rev()
        .find(|&i| data[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(|| bad("no end of central directory"))?;
    let count = u16_at(eocd + 10)?;
    let mut at = u32_at(eocd + 16)?;
    if at == 0xffff_ffff {
        return Err(bad("zip64 archives are not supported"));
    }
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        if data.get(at..at + 4) != Some(&[0x50, 0x4b, 0x01, 0x02][..]) {
            return Err(bad("bad central directory entry"));
        }
        let (n, x, c) = (u16_at(at + 28)?, u16_at(at + 30)?, u16_at(at + 32)?);
        let name = data
            .get(at + 46..at + 46 + n)
            .ok_or_else(|| bad("truncated name"))?;
        names.push(String::from_utf8_lossy(name).into_owned());
        at += 46 + n + x + c;
    }
    Ok(names)
}

/// Reads a whole wheel before it is used: a zip whose every member
/// decompresses to its recorded size and CRC-32, with a `.dist-info/WHEEL`
/// and `.dist-info/RECORD`. A truncated or corrupt file is bad input, found
/// before any work starts rather than by pip halfway through a build.
pub fn check_wheel(path: &Path) -> Result<(), PythonError> {
    use std::io::Read as _;
    let bad = |why: String| PythonError::BadWheel {
        path: path.to_path_buf(),
        why,
    };
    let data = fs_err::read(path).map_err(io_err(path))?;
    let names = zip_member_names(path).map_err(|e| bad(format!("not a zip archive ({e})")))?;
    let u16_at = |i: usize| {
        data.get(i..i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |i: usize| {
        data.get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let floor = data.len().saturating_sub(65_535 + 22);
    let eocd = (floor..data.len().saturating_sub(21))
        .rev()
        .find(|&i| data[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(|| bad("no end of central directory".into()))?;
    let mut at = u32_at(eocd + 16).unwrap_or(0) as usize;
    for name in &names {
        let truncated = || bad(format!("the entry of {name} is truncated"));
        let method = u16_at(at + 10).ok_or_else(truncated)?;
        let crc = u32_at(at + 16).ok_or_else(truncated)?;
        let packed = u32_at(at + 20).ok_or_else(truncated)? as usize;
        let size = u32_at(at + 24).ok_or_else(truncated)? as u64;
        let (n, x, c) = (
            u16_at(at + 28).ok_or_else(truncated)?,
            u16_at(at + 30).ok_or_else(truncated)?,
            u16_at(at + 32).ok_or_else(truncated)?,
        );
        let local = u32_at(at + 42).ok_or_else(truncated)? as usize;
        at += 46 + n + x + c;
        if u32_at(local) != Some(0x0403_4b50) {
            return Err(bad(format!("the local header of {name} is missing")));
        }
        let start = local
            + 30
            + u16_at(local + 26).ok_or_else(truncated)?
            + u16_at(local + 28).ok_or_else(truncated)?;
        let bytes = data
            .get(start..start + packed)
            .ok_or_else(|| bad(format!("{name} is cut short: the file is truncated")))?;
        let mut reader: Box<dyn std::io::Read> = match method {
            0 => Box::new(bytes),
            8 => Box::new(flate2::read::DeflateDecoder::new(bytes)),
            m => {
                return Err(bad(format!(
                    "{name} uses zip method {m}, which pip cannot read"
                )))
            }
        };
        let mut crc32 = flate2::Crc::new();
        let mut buf = [0u8; 65536];
        loop {
            let k = reader
                .read(&mut buf)
                .map_err(|e| bad(format!("{name} does not decompress ({e})")))?;
            if k == 0 {
                break;
            }
            crc32.update(&buf[..k]);
        }
        if crc32.sum() != crc || u64::from(crc32.amount()) != size {
            return Err(bad(format!(
                "{name} is corrupt (its CRC-32 or size does not match)"
            )));
        }
    }
    for wanted in ["WHEEL", "RECORD"] {
        let found = names.iter().any(|n| {
            n.split_once('/')
                .is_some_and(|(d, f)| d.ends_with(".dist-info") && f == wanted)
        });
        if !found {
            return Err(bad(format!("it has no .dist-info/{wanted}")));
        }
    }
    Ok(())
}

fn first_csv_field(line: &str) -> Option<String> {
    let line = line.trim_end_matches('\r');
    if line.is_empty() {
        return None;
    }
    if let Some(rest) = line.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    out.push('"');
                    chars.next();
                } else {
                    return Some(out);
                }
            } else {
                out.push(c);
            }
        }
        None
    } else {
        Some(line.split(',').next().unwrap_or("").to_string())
    }
}

/// Lexically normalises a venv-relative path (RECORD paths may climb with `..`
/// from site-packages to bin/); None if it leaves the venv.
fn normalise_rel(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// `a/__pycache__/b.cpython-311.pyc` → `a/b.py`.
fn pyc_source(rel: &Path) -> Option<PathBuf> {
    let name = rel.file_name()?.to_str()?;
    let stem = name.strip_suffix(".pyc")?;
    let parent = rel.parent()?;
    if parent.file_name()? != "__pycache__" {
        return None;
    }
    let module = stem.split('.').next()?;
    Some(parent.parent()?.join(format!("{module}.py")))
}

fn project_module(files: &[PathBuf], site_rel: &Path, project_norm: &str) -> String {
    let mut packages: BTreeSet<String> = BTreeSet::new();
    for f in files {
        if let Ok(inner) = f.strip_prefix(site_rel) {
            let mut comps = inner.components();
            if let (Some(Component::Normal(first)), Some(_)) = (comps.next(), comps.next()) {
                let first = first.to_string_lossy();
                if !first.ends_with(".dist-info") && !first.ends_with(".data") {
                    packages.insert(first.into_owned());
                }
            }
        }
    }
    let wanted = project_norm.replace('-', "_");
    if packages.contains(&wanted) {
        return wanted;
    }
    packages.into_iter().next().unwrap_or(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn venv_is_split_by_record_owner() {
        let v = tempfile::tempdir().unwrap();
        let v = v.path();
        let sp = "lib/python3.11/site-packages";
        write(&v.join("pyvenv.cfg"), "home = /usr/bin\n");
        write(&v.join(format!("{sp}/milborne/__init__.py")), "");
        write(&v.join(format!("{sp}/milborne/settings.py")), "");
        write(
            &v.join(format!("{sp}/milborne/crontab")),
            "* * * * * true\n",
        );
        write(
            &v.join(format!(
                "{sp}/milborne/__pycache__/settings.cpython-311.pyc"
            )),
            "",
        );
        write(&v.join(format!("{sp}/milborne-0.4.0.dist-info/RECORD")), "milborne/__init__.py,,\nmilborne/settings.py,,\nmilborne/crontab,,\n\"milborne-0.4.0.dist-info/RECORD\",,\n../../../bin/milborne-manage,,\n");
        write(&v.join("bin/milborne-manage"), "#!");
        write(&v.join(format!("{sp}/django/__init__.py")), "");
        write(
            &v.join(format!("{sp}/Django-4.2.dist-info/RECORD")),
            "django/__init__.py,sha256=x,0\nDjango-4.2.dist-info/RECORD,,\n",
        );
        let s = split_venv(v, "3.11", "Milborne").unwrap();
        let app: Vec<_> = s
            .application
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert!(
            app.contains(&format!(
                "{sp}/milborne/__pycache__/settings.cpython-311.pyc"
            )),
            "{app:?}"
        );
        assert!(app.contains(&"bin/milborne-manage".to_string()));
        assert!(s.dependencies.contains(Path::new("pyvenv.cfg")));
        assert!(s
            .dependencies
            .contains(&PathBuf::from(format!("{sp}/django/__init__.py"))));
        assert_eq!(s.installed.module, "milborne");
        assert!(s.installed.django && s.installed.crontab);
    }

    #[test]
    fn record_paths_leaving_the_venv_are_refused() {
        let v = tempfile::tempdir().unwrap();
        let sp = "lib/python3.11/site-packages";
        write(
            &v.path().join(format!("{sp}/evil-1.0.dist-info/RECORD")),
            "../../../../../etc/passwd,,\n",
        );
        let e = split_venv(v.path(), "3.11", "evil").unwrap_err();
        assert!(matches!(e, PythonError::HostileWheel { .. }), "{e}");
    }

    #[test]
    fn record_paths_leaving_the_venv_normalise_to_none() {
        assert_eq!(
            normalise_rel(Path::new(
                "lib/python3.11/site-packages/../../../../etc/passwd"
            )),
            None
        );
        assert_eq!(
            normalise_rel(Path::new("lib/x/../../bin/a")),
            Some(PathBuf::from("bin/a"))
        );
    }

    fn zip_with(names: &[&str]) -> tempfile::NamedTempFile {
        // Built by Python's zipfile, which writes any member name it is given.
        let f = tempfile::Builder::new().suffix(".whl").tempfile().unwrap();
        let script = format!(
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w')\nfor n in {names:?}:\n    z.writestr(n, 'x')\nz.close()"
        );
        let ok = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(f.path())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        f
    }

    #[test]
    fn zip_member_names_are_read_from_the_central_directory() {
        let f = zip_with(&["a/b.py", "a-1.0.dist-info/RECORD"]);
        assert_eq!(
            zip_member_names(f.path()).unwrap(),
            ["a/b.py", "a-1.0.dist-info/RECORD"]
        );
    }

    #[test]
    fn a_complete_wheel_passes_and_a_damaged_one_is_refused() {
        let f = zip_with(&[
            "a/__init__.py",
            "a-1.0.dist-info/WHEEL",
            "a-1.0.dist-info/RECORD",
        ]);
        check_wheel(f.path()).unwrap();
        let good = std::fs::read(f.path()).unwrap();
        let cut = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(cut.path(), &good[..good.len() - 30]).unwrap();
        assert!(matches!(
            check_wheel(cut.path()),
            Err(PythonError::BadWheel { .. })
        ));
        // The first member's one stored byte ('x'), flipped.
        let mut bad = good.clone();
        let at = 30 + "a/__init__.py".len();
        assert_eq!(bad[at], b'x');
        bad[at] = b'y';
        std::fs::write(cut.path(), &bad).unwrap();
        let e = check_wheel(cut.path()).unwrap_err();
        assert!(e.to_string().contains("a/__init__.py is corrupt"), "{e}");
        let f = zip_with(&["a/__init__.py"]);
        let e = check_wheel(f.path()).unwrap_err();
        assert!(e.to_string().contains("no .dist-info/WHEEL"), "{e}");
    }

    #[test]
    fn wheels_with_members_outside_the_venv_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = zip_with(&["ok.py", "../../etc/cron.d/evil"]);
        std::fs::copy(f.path(), dir.path().join("evil-1.0-py3-none-any.whl")).unwrap();
        let e = check_wheelhouse(dir.path()).unwrap_err();
        assert!(
            matches!(e, PythonError::HostileWheel { ref entry, .. } if entry == "../../etc/cron.d/evil"),
            "{e}"
        );
    }

    #[test]
    fn quoted_record_fields_are_read() {
        assert_eq!(
            first_csv_field("\"a,b.py\",sha256=x,1").as_deref(),
            Some("a,b.py")
        );
    }

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
