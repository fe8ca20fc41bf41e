//! The resolve stage: the requirement (extras, constraints, indexes) turned
//! into an exact set of distributions, each with its version, the file
//! chosen and that file's sha256. uv resolves (`uv pip compile`, a PEP 751
//! lock out) in the compiler sandbox with network, for the compiler's
//! interpreter; everything after this stage is keyed on the set, not on the
//! requirement's text. Requirements files with `--hash` lines are checked
//! here as pip's hash-checking mode would: every distribution hashed, the
//! file chosen among its hashes.
//!
//! A resolution is recorded with the index pages uv read. The next build
//! of the same requirement asks the index for those pages from assemble
//! itself ([`super::index`]): when none moved, the recorded set stands and
//! no resolver runs; when one did, uv resolves again and the progress says
//! what changed. A lock file (`--locked`) gives the set directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::index::{IndexClient, IndexPage};
use super::{base_env, io_err, PythonContext, PythonError};
use crate::cache::KeyBuilder;
use crate::contract::OWNER as BLUE;
use crate::output::strip_credentials;
use crate::rootfs::Rootfs;
use crate::sandbox::{Mount, Output, Plan};
use crate::spec::{normalise_name, PipSettings};

/// One distribution of a resolved set.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resolved {
    /// Name, normalised (PEP 503).
    pub name: String,
    /// Version.
    pub version: String,
    /// The file chosen (a wheel or an sdist).
    pub file: String,
    /// Where it was found, without credentials; `file:` for the project's
    /// own wheel given on the command line.
    pub url: String,
    /// sha256 of the file.
    pub sha256: String,
    /// True for what was asked for (the project), false for dependencies.
    pub requested: bool,
}

impl Resolved {
    /// True when the file is a wheel (installed as it is), false for an
    /// sdist (compiled).
    pub fn is_wheel(&self) -> bool {
        self.file.ends_with(".whl")
    }
}

/// An exact set of distributions and the index pages it was read from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resolution {
    /// The distributions, sorted by name.
    pub packages: Vec<Resolved>,
    /// The index pages uv read, as they were.
    pub pages: Vec<IndexPage>,
}

impl Resolution {
    /// The requested distribution (the project).
    pub fn project(&self) -> Option<&Resolved> {
        self.packages.iter().find(|p| p.requested)
    }
}

/// How the set of a build was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decided {
    /// Recorded, and no index page moved since.
    Revalidated,
    /// Recorded; the index could not be reached, so it was kept as it was.
    KeptOffline,
    /// uv resolved it now.
    Resolved,
    /// Read from a lock file.
    Locked,
}

impl Decided {
    /// The word of the result file.
    pub fn word(self) -> &'static str {
        match self {
            Decided::Revalidated => "revalidated",
            Decided::KeptOffline => "kept-offline",
            Decided::Resolved => "resolved",
            Decided::Locked => "locked",
        }
    }
}

/// A difference between the recorded set and the new one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Distribution name.
    pub name: String,
    /// Its version before (None: new in the set).
    pub before: Option<String>,
    /// Its version now (None: gone from the set).
    pub after: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.before, &self.after) {
            (Some(b), Some(a)) => write!(f, "{} {b} → {a}", self.name),
            (None, Some(a)) => write!(f, "{} {a} (new)", self.name),
            (Some(b), None) => write!(f, "{} {b} (gone)", self.name),
            (None, None) => write!(f, "{}", self.name),
        }
    }
}

/// The differences from `before` to `after`, by name.
pub fn changes(before: &[Resolved], after: &[Resolved]) -> Vec<Change> {
    let b: BTreeMap<&str, &Resolved> = before.iter().map(|p| (p.name.as_str(), p)).collect();
    let a: BTreeMap<&str, &Resolved> = after.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut names: Vec<&str> = b.keys().chain(a.keys()).copied().collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| {
            let (x, y) = (b.get(n), a.get(n));
            let same = matches!((x, y), (Some(x), Some(y)) if x.version == y.version && x.sha256 == y.sha256);
            (!same).then(|| Change {
                name: n.to_string(),
                before: x.map(|p| p.version.clone()),
                after: y.map(|p| p.version.clone()),
            })
        })
        .collect()
}

/// What the resolver is asked to resolve.
pub struct Target {
    /// The requirements: `name[extras]==version`, `/assemble/project/FILE[extras]`,
    /// `-r /assemble/src/FILE`, or the project's wheel and its directory's
    /// requirements file.
    pub pip_args: Vec<String>,
    /// What the progress and errors call it.
    pub label: String,
    /// Requirements files copied into `/assemble/src` (path relative to
    /// it, file on the host): the one given and those it includes.
    pub src_files: Vec<(String, PathBuf)>,
    /// The file hashes come from, when the requirements carry `--hash`.
    pub hashes_from: Option<String>,
    /// The project's own wheel, when it is a local file (bound at
    /// `/assemble/project`).
    pub local_wheel: Option<PathBuf>,
    /// What identifies the target in the key (for a local wheel, its sha256).
    pub key_text: String,
    /// The project's name (normalised), when known before resolving.
    pub project: Option<String>,
}

/// The resolution's cache key: the target, the interpreter and platform,
/// and every index setting that can change what the resolver picks.
fn key(ctx: &PythonContext, target: &Target, pip: &PipSettings) -> String {
    KeyBuilder::new("resolution-v2")
        .part("target", target.key_text.as_bytes())
        .part("python", ctx.python.as_bytes())
        .part(
            "arch",
            crate::image::documents::host_architecture().as_bytes(),
        )
        .part("index", pip.index_url.as_deref().unwrap_or("").as_bytes())
        .part("extra-index", pip.extra_index_urls.join(" ").as_bytes())
        .part("trusted", pip.trusted_hosts.join(" ").as_bytes())
        .part("constraints", pip.constraints.as_deref().unwrap_or(b""))
        .finish()
}

/// The exact set for `target`: the recorded one when no index page it
/// was read from moved (or, with a warning, when the index cannot be
/// reached), else uv's new resolution, recorded. Returns how it was
/// decided and what changed from the recorded set.
pub fn resolve(
    ctx: &PythonContext,
    target: &Target,
    pip: &PipSettings,
    compiler: &Rootfs,
) -> Result<(Resolution, Decided, Vec<Change>), PythonError> {
    let key = key(ctx, target, pip);
    let recorded: Option<Resolution> = ctx.cache.get_json("resolutions", &key);
    let client = IndexClient::new(pip)?;
    // A set recorded without its pages cannot be revalidated: resolve again.
    if let (Some(rec), false) = (
        recorded.as_ref().filter(|r| !r.pages.is_empty()),
        ctx.rebuild,
    ) {
        ctx.printer.step(&format!(
            "resolve: checking {} index pages for new releases",
            rec.pages.len()
        ));
        match client.changed(&rec.pages) {
            Ok(moved) if moved.is_empty() => {
                ctx.printer.step(&format!(
                    "resolve: nothing new on the index ({} distributions as recorded)",
                    rec.packages.len()
                ));
                return Ok((rec.clone(), Decided::Revalidated, Vec::new()));
            }
            Ok(moved) => {
                let names: Vec<String> = moved.iter().map(|p| page_project(&p.url)).collect();
                ctx.printer.step(&format!(
                    "resolve: index pages changed: {}",
                    names.join(", ")
                ));
            }
            Err(e) if e.unreachable => {
                ctx.printer.warn(&format!(
                    "{e}; building the recorded set of {} distributions without checking for new releases",
                    rec.packages.len()
                ));
                return Ok((rec.clone(), Decided::KeptOffline, Vec::new()));
            }
            // The index answered, but not with the page: uv asks it again.
            Err(e) => ctx.printer.step(&format!("resolve: {e}; resolving again")),
        }
    }
    let resolution = uv_resolve(ctx, target, pip, compiler, &client)?;
    let changes = recorded
        .as_ref()
        .map(|r| changes(&r.packages, &resolution.packages))
        .unwrap_or_default();
    ctx.cache.put_json("resolutions", &key, &resolution)?;
    Ok((resolution, Decided::Resolved, changes))
}

/// The project name in a page URL (`…/simple/django/` → `django`).
fn page_project(url: &str) -> String {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(url)
        .to_string()
}

/// uv's resolution in the compiler sandbox (`uv pip compile`, for the
/// compiler's interpreter, a PEP 751 lock out), read back like any lock;
/// its log gives the index pages it fetched, which assemble then reads
/// itself to record their state.
fn uv_resolve(
    ctx: &PythonContext,
    target: &Target,
    pip: &PipSettings,
    compiler: &Rootfs,
    client: &IndexClient,
) -> Result<Resolution, PythonError> {
    let uv = super::uv::ensure(ctx, super::uv::Source::Index { pip, compiler })?;
    let work = ctx.cache.work_dir("resolve")?;
    let out = work.path().join("out");
    let tools = work.path().join("tools");
    let project = work.path().join("project");
    for d in [&out, &tools, &project] {
        fs_err::create_dir(d).map_err(io_err(d))?;
    }
    let mut env = base_env(ctx);
    env.extend(pip.pip_env());
    env.extend(super::uv::env(Some(pip)));
    // One requirement per line, `-r FILE` kept together.
    let mut lines = Vec::new();
    let mut args = target.pip_args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-r" => lines.push(format!("-r {}", args.next().map_or("", |s| s.as_str()))),
            _ => lines.push(a.clone()),
        }
    }
    let input = tools.join("requirements.in");
    let mut uv_args: Vec<String> = vec![
        "pip".into(),
        "compile".into(),
        "--verbose".into(),
        "--no-header".into(),
        "--format".into(),
        "pylock.toml".into(),
        "--output-file".into(),
        "/assemble/out/pylock.toml".into(),
        "--python".into(),
        ctx.interpreter.clone(),
    ];
    if let Some(c) = &pip.constraints {
        let path = tools.join("constraints.txt");
        fs_err::write(&path, c).map_err(io_err(&path))?;
        for o in ["--constraints", "--build-constraints"] {
            uv_args.extend([o.into(), "/assemble/tools/constraints.txt".into()]);
        }
    }
    if let Some(cert) = &pip.cert {
        let path = tools.join("cert.pem");
        fs_err::write(&path, cert).map_err(io_err(&path))?;
    }
    if let Some(w) = &target.local_wheel {
        let file = w.file_name().expect("a wheel has a file name");
        let dest = project.join(file);
        fs_err::copy(w, &dest).map_err(io_err(w))?;
    }
    uv_args.push("/assemble/tools/requirements.in".into());
    ctx.printer.step(&format!(
        "resolve: uv resolves {} (python{})",
        target.label, ctx.python
    ));
    let mut mounts = vec![
        Mount::Bind(out.clone(), "/assemble/out".into()),
        Mount::ReadOnly(tools, "/assemble/tools".into()),
        Mount::ReadOnly(project, "/assemble/project".into()),
        uv.mount(),
    ];
    if !target.src_files.is_empty() {
        let src = work.path().join("src");
        for (rel, path) in &target.src_files {
            let dest = src.join(rel);
            fs_err::create_dir_all(crate::fsutil::parent_dir(&dest)).map_err(io_err(&dest))?;
            fs_err::copy(path, &dest).map_err(io_err(path))?;
        }
        mounts.push(Mount::ReadOnly(src, "/assemble/src".into()));
    }
    // Its paths (`/assemble/project/...`, `-r /assemble/src/...`) as uv sees them.
    let text = ctx.runner.seen_as(&mounts, &(lines.join("\n") + "\n"));
    fs_err::write(&input, text).map_err(io_err(&input))?;
    // With hashes, pip's hash-checking mode first: every requirement hashed
    // and every file checked before any sdist's code runs (uv's resolution
    // would build an sdist's metadata whatever its hash).
    let hash_check = match (&target.hashes_from, target.src_files.first()) {
        (Some(_), Some((rel, _))) => format!(
            "{bin} pip install --dry-run --require-hashes --quiet --python {py} \
               --target /tmp/hash-check -r /assemble/src/{rel} || exit $?\n",
            bin = super::uv::BIN,
            py = super::shell_word(&ctx.interpreter),
            rel = super::shell_word(rel),
        ),
        _ => String::new(),
    };
    // uv's debug log goes to a file (for the pages); its other lines, on
    // failure, to stderr, where the error's tail takes them.
    let script = format!(
        "{hash_check}{bin} \"$@\" 2>/assemble/out/uv.log; rc=$?; \
         [ $rc -eq 0 ] || grep -v -e '^DEBUG' -e '^TRACE' -e '^ *[0-9.]*m* *DEBUG' -e '^Caused by' /assemble/out/uv.log >&2; exit $rc",
        bin = super::uv::BIN
    );
    let mut argv: Vec<String> = vec!["/bin/sh".into(), "-c".into(), script, "uv".into()];
    argv.extend(uv_args);
    let plan = Plan {
        what: format!("uv resolve{}", super::index_label(pip)),
        root: compiler.tree.clone(),
        writable_root: false,
        mounts,
        env,
        uid: BLUE.uid as u32,
        gid: BLUE.gid as u32,
        cwd: "/tmp".into(),
        share_net: true,
        argv,
    };
    ctx.runner
        .run(
            &plan,
            Output::Capture {
                echo: ctx.printer.verbose().then_some(ctx.printer),
            },
        )
        .map_err(|e| match &target.hashes_from {
            Some(from) => hashes_refused(e, from),
            None => PythonError::Sandbox(e),
        })?;
    let log_path = out.join("uv.log");
    let log = fs_err::read_to_string(&log_path).map_err(io_err(&log_path))?;
    // What uv ignored or doubted (an option of a requirements file it does
    // not apply, a yanked release) is said, never only in its log.
    for line in log.lines() {
        if let Some(w) = line.strip_prefix("warning: ") {
            ctx.printer.warn(&format!("uv: {}", strip_credentials(w)));
        }
    }
    let lock_path = out.join("pylock.toml");
    let locked = super::lock::read(&lock_path, target.project.as_deref(), Some(&ctx.python))
        .map_err(|e| {
            let why = match e {
                super::lock::LockError::Invalid { why, .. } => why,
                other => other.to_string(),
            };
            PythonError::Requirements(format!(
                "the resolution of {} cannot be built: {why}",
                target.label
            ))
        })?;
    let mut packages = locked.resolution.packages;
    if let Some(w) = &target.local_wheel {
        let (d, _) = crate::digest::digest_file(w).map_err(io_err(w))?;
        for p in packages.iter_mut().filter(|p| p.url.starts_with("file:")) {
            p.sha256 = d.hex().to_string();
        }
    }
    if let Some(from) = &target.hashes_from {
        check_required_hashes(&target.src_files, from, &packages)?;
    }
    let pages = client.record(&pages_in_uv_log(&log))?;
    Ok(Resolution { packages, pages })
}

/// The `--hash` options of requirements files, by normalised name.
fn required_hashes(
    files: &[(String, PathBuf)],
) -> Result<BTreeMap<String, Vec<String>>, PythonError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, path) in files {
        let text = fs_err::read_to_string(path).map_err(io_err(path))?;
        // Continuation lines joined, comments dropped, as pip reads them.
        let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
        for line in joined.lines() {
            let line = line.split(" #").next().unwrap_or("").trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('-') {
                continue;
            }
            // `--hash=ALG:HEX` or `--hash ALG:HEX`, as pip reads them.
            let words: Vec<&str> = line.split_whitespace().collect();
            let mut given: Vec<&str> = Vec::new();
            for (i, w) in words.iter().enumerate() {
                if let Some(h) = w.strip_prefix("--hash=") {
                    given.push(h);
                } else if *w == "--hash" {
                    given.extend(words.get(i + 1));
                }
            }
            if given.is_empty() {
                continue;
            }
            let hashes: Vec<String> = given
                .iter()
                .filter_map(|h| h.split_once(':'))
                .filter(|(alg, _)| alg.eq_ignore_ascii_case("sha256"))
                .map(|(_, hex)| hex.to_ascii_lowercase())
                .collect();
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            // A requirement hashed with other algorithms only has an empty
            // list here: refused below, sha256 being what indexes publish.
            out.entry(normalise_name(&name)).or_default().extend(hashes);
        }
    }
    Ok(out)
}

/// pip's hash-checking mode, for a requirements file with `--hash` lines:
/// every distribution of the set has hashes there, and the file chosen is
/// one of them; else exit 2 naming the file and each package.
fn check_required_hashes(
    files: &[(String, PathBuf)],
    from: &str,
    packages: &[Resolved],
) -> Result<(), PythonError> {
    let hashes = required_hashes(files)?;
    let mut refused = Vec::new();
    for p in packages.iter().filter(|p| !p.url.starts_with("file:")) {
        match hashes.get(&p.name) {
            Some(h) if h.is_empty() => refused.push(format!(
                "{} {}: no sha256 among its hashes (assemble checks sha256, which indexes publish)",
                p.name, p.version
            )),
            None => refused.push(format!(
                "{} {}: no --hash for it (with hashes, every requirement needs them, dependencies included)",
                p.name, p.version
            )),
            Some(h) if !h.contains(&p.sha256) => refused.push(format!(
                "{} {}: {} has sha256 {}, not {}",
                p.name,
                p.version,
                p.file,
                p.sha256,
                h.join(" or ")
            )),
            Some(_) => {}
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(PythonError::HashesRefused {
        source_name: from.to_string(),
        detail: refused.join("\n    "),
    })
}

/// uv's refusal of a file whose hash is not the one required, or of a
/// requirement without one (its hash-checking run), as bad input naming
/// each package; any other failure as it is. uv has no exit code of its own
/// for these, so its words are recognised.
fn hashes_refused(e: crate::sandbox::SandboxError, source_name: &str) -> PythonError {
    if let crate::sandbox::SandboxError::Failed { tail, .. } = &e {
        let refused = tail
            .iter()
            .any(|l| l.contains("Hash mismatch") || l.contains("--require-hashes"));
        if refused {
            return PythonError::HashesRefused {
                source_name: source_name.to_string(),
                detail: tail
                    .iter()
                    .map(|l| l.trim())
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n    "),
            };
        }
    }
    PythonError::Sandbox(e)
}

/// Whether requirements files carry `--hash` options (comments aside).
pub fn has_hashes(files: &[(String, PathBuf)]) -> Result<bool, PythonError> {
    Ok(required_hashes(files)?.values().next().is_some())
}

/// The index pages uv's `--verbose` log says it fetched (`… request for:
/// URL`), files left out, credentials stripped, in order, each once.
pub fn pages_in_uv_log(log: &str) -> Vec<String> {
    let mut pages: Vec<String> = Vec::new();
    for line in log.lines() {
        if !line.contains("GET request for: ") {
            continue;
        }
        let Some((_, rest)) = line.split_once(" request for: ") else {
            continue;
        };
        let Some(url) = rest.split_whitespace().next() else {
            continue;
        };
        let url = strip_credentials(url);
        let last = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let file = url.ends_with(".metadata") || last.ends_with(".whl") || is_sdist(last);
        if url.starts_with("http") && !file && !pages.contains(&url) {
            pages.push(url);
        }
    }
    pages
}

/// True for the file names of source distributions.
pub fn is_sdist(file: &str) -> bool {
    [".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar"]
        .iter()
        .any(|s| file.ends_with(s))
}

/// The project page URL pip would read for `name` under `index`.
pub fn page_url(index: &str, name: &str) -> String {
    format!("{}/{}/", index.trim_end_matches('/'), normalise_name(name))
}

/// The local file a `file:` URL names, when it is the project's wheel.
pub fn local_file(url: &str) -> Option<&Path> {
    url.strip_prefix("file://").map(Path::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_come_from_uvs_log_without_files_or_credentials_once_each() {
        let log = "\
DEBUG Sending fresh GET request for: http://127.0.0.1:5/simple/milborne/
DEBUG Sending fresh GET request for: http://127.0.0.1:5/packages/milborne-0.4.1.tar.gz
DEBUG Sending fresh HEAD request for: http://127.0.0.1:5/packages/django-4.2.30-py3-none-any.whl
DEBUG Sending fresh GET request for: https://ci:****@127.0.0.1:9/simple/django/
DEBUG Sending fresh GET request for: http://127.0.0.1:5/packages/a-1-py3-none-any.whl.metadata
DEBUG Sending fresh GET request for: http://127.0.0.1:5/simple/milborne/
";
        assert_eq!(
            pages_in_uv_log(log),
            [
                "http://127.0.0.1:5/simple/milborne/",
                "https://127.0.0.1:9/simple/django/"
            ]
        );
    }

    #[test]
    fn hashed_requirements_refuse_a_wrong_or_missing_hash_naming_each_package() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("requirements.txt");
        std::fs::write(
            &f,
            "# pinned\nDjango==4.2.30 \\\n    --hash=sha256:AAAA \\\n    --hash=sha256:bbbb\nsqlparse==0.5.3 --hash sha256:cccc  # comment\nsix==1 --hash=sha512:ffff\n",
        )
        .unwrap();
        let files = vec![("requirements.txt".to_string(), f)];
        let p = |name: &str, sha: &str| Resolved {
            name: name.into(),
            version: "1".into(),
            file: format!("{name}-1-py3-none-any.whl"),
            url: "http://127.0.0.1:1/packages/x".into(),
            sha256: sha.into(),
            requested: false,
        };
        check_required_hashes(
            &files,
            "r.txt",
            &[p("django", "aaaa"), p("sqlparse", "cccc")],
        )
        .unwrap();
        let e = check_required_hashes(
            &files,
            "r.txt",
            &[p("django", "bbbb"), p("sqlparse", "dddd"), p("six", "eeee")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("r.txt:"), "{e}");
        assert!(
            e.contains("sqlparse 1: sqlparse-1-py3-none-any.whl has sha256 dddd, not cccc"),
            "{e}"
        );
        assert!(e.contains("six 1: no sha256 among its hashes"), "{e}");
        assert!(!e.contains("django"), "{e}");
    }

    fn r(name: &str, version: &str) -> Resolved {
        Resolved {
            name: name.into(),
            version: version.into(),
            file: format!("{name}-{version}.whl"),
            url: String::new(),
            sha256: format!("{name}{version}"),
            requested: false,
        }
    }

    #[test]
    fn changes_name_each_bump_addition_and_removal() {
        let before = [
            r("django", "4.2.30"),
            r("six", "1.16"),
            r("sqlparse", "0.5.3"),
        ];
        let after = [
            r("asgiref", "3.8.1"),
            r("django", "4.2.31"),
            r("sqlparse", "0.5.3"),
        ];
        let c: Vec<String> = changes(&before, &after)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            c,
            [
                "asgiref 3.8.1 (new)",
                "django 4.2.30 → 4.2.31",
                "six 1.16 (gone)"
            ]
        );
        assert!(changes(&after, &after).is_empty());
    }
}
