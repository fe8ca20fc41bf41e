//! The resolve stage: the requirement (extras, constraints, indexes) turned
//! into an exact set of distributions, each with its version, the file
//! chosen and that file's sha256. pip resolves (`install --dry-run
//! --report`) in the compiler sandbox with network, as `pip wheel` would;
//! everything after this stage is keyed on the set, not on the
//! requirement's text.
//!
//! A resolution is recorded with the index pages pip read. The next build
//! of the same requirement asks the index for those pages from assemble
//! itself ([`super::index`]): when none moved, the recorded set stands and
//! no resolver runs; when one did, pip resolves again and the progress says
//! what changed. A lock file (`--locked`) gives the set directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::index::{pages_in_pip_log, IndexClient, IndexPage};
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
    /// The index pages pip read, as they were.
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
    /// pip resolved it now.
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

/// What pip is asked to resolve.
pub struct Target {
    /// pip's arguments: `name[extras]==version`, `/assemble/project/FILE[extras]`,
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
}

/// The resolution's cache key: the target, the interpreter and platform,
/// and every pip setting that can change what pip picks.
fn key(ctx: &PythonContext, target: &Target, pip: &PipSettings) -> String {
    KeyBuilder::new("resolution-v1")
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
/// reached), else pip's new resolution, recorded. Returns how it was
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
            // The index answered, but not with the page: pip asks it again.
            Err(e) => ctx.printer.step(&format!("resolve: {e}; resolving again")),
        }
    }
    let resolution = pip_resolve(ctx, target, pip, compiler, &client)?;
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

/// pip's resolution in the compiler sandbox: `install --dry-run
/// --ignore-installed --report`, its log read for the pages it fetched,
/// which assemble then reads itself to record their state.
fn pip_resolve(
    ctx: &PythonContext,
    target: &Target,
    pip: &PipSettings,
    compiler: &Rootfs,
    client: &IndexClient,
) -> Result<Resolution, PythonError> {
    let work = ctx.cache.work_dir("resolve")?;
    let out = work.path().join("out");
    let tools = work.path().join("tools");
    let project = work.path().join("project");
    for d in [&out, &tools, &project] {
        fs_err::create_dir(d).map_err(io_err(d))?;
    }
    let mut env = base_env(ctx);
    env.extend(pip.pip_env());
    let mut argv: Vec<String> = [
        &format!("python{}", ctx.python)[..],
        "-m",
        "pip",
        "install",
        "--quiet",
        "--dry-run",
        "--ignore-installed",
        "--report",
        "/assemble/out/report.json",
        "--log",
        "/assemble/out/pip.log",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(c) = &pip.constraints {
        let path = tools.join("constraints.txt");
        fs_err::write(&path, c).map_err(io_err(&path))?;
        argv.extend([
            "--constraint".into(),
            "/assemble/tools/constraints.txt".into(),
        ]);
    }
    if let Some(cert) = &pip.cert {
        let path = tools.join("cert.pem");
        fs_err::write(&path, cert).map_err(io_err(&path))?;
        env.push(("PIP_CERT".into(), "/assemble/tools/cert.pem".into()));
    }
    if let Some(w) = &target.local_wheel {
        let file = w.file_name().expect("a wheel has a file name");
        let dest = project.join(file);
        fs_err::copy(w, &dest).map_err(io_err(w))?;
    }
    argv.extend(target.pip_args.iter().cloned());
    ctx.printer.step(&format!(
        "resolve: pip resolves {} (python{})",
        target.label, ctx.python
    ));
    let mut mounts = vec![
        Mount::Bind(out.clone(), "/assemble/out".into()),
        Mount::ReadOnly(tools, "/assemble/tools".into()),
        Mount::ReadOnly(project, "/assemble/project".into()),
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
    let indexes: Vec<String> = pip
        .index_url
        .iter()
        .chain(&pip.extra_index_urls)
        .map(|u| crate::output::redact_url(u))
        .collect();
    let plan = Plan {
        what: if indexes.is_empty() {
            "pip resolve (pip's default index)".into()
        } else {
            format!("pip resolve (index {})", indexes.join(", "))
        },
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
            Some(from) => super::hashes_refused(e, from),
            None => PythonError::Sandbox(e),
        })?;
    let report_path = out.join("report.json");
    let report = fs_err::read(&report_path).map_err(io_err(&report_path))?;
    let mut packages = parse_report(&report)?;
    if let Some(w) = &target.local_wheel {
        let (d, _) = crate::digest::digest_file(w).map_err(io_err(w))?;
        for p in packages.iter_mut().filter(|p| p.url.starts_with("file:")) {
            p.sha256 = d.hex().to_string();
        }
    }
    let log_path = out.join("pip.log");
    let log = fs_err::read_to_string(&log_path).map_err(io_err(&log_path))?;
    let pages = client.record(&pages_in_pip_log(&log))?;
    Ok(Resolution { packages, pages })
}

/// The distributions of pip's installation report (format version 1).
fn parse_report(bytes: &[u8]) -> Result<Vec<Resolved>, PythonError> {
    #[derive(serde::Deserialize)]
    struct Report {
        version: String,
        install: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        metadata: Metadata,
        download_info: DownloadInfo,
        #[serde(default)]
        requested: bool,
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        name: String,
        version: String,
    }
    #[derive(serde::Deserialize)]
    struct DownloadInfo {
        url: String,
        #[serde(default)]
        archive_info: Option<ArchiveInfo>,
    }
    #[derive(serde::Deserialize)]
    struct ArchiveInfo {
        #[serde(default)]
        hashes: BTreeMap<String, String>,
        #[serde(default)]
        hash: Option<String>,
    }
    let bad = |why: String| PythonError::Resolve(format!("pip's report cannot be used: {why}"));
    let report: Report = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if report.version != "1" {
        return Err(bad(format!("report version {}, not 1", report.version)));
    }
    let mut out = Vec::new();
    for item in report.install {
        let url = strip_credentials(&item.download_info.url);
        let file = url
            .split(['#', '?'])
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        if file.is_empty() || !(file.ends_with(".whl") || is_sdist(&file)) {
            return Err(bad(format!(
                "{} {} comes from {url}, which is not a wheel or sdist file",
                item.metadata.name, item.metadata.version
            )));
        }
        let sha256 = item
            .download_info
            .archive_info
            .as_ref()
            .and_then(|a| {
                a.hashes.get("sha256").cloned().or_else(|| {
                    a.hash
                        .as_deref()
                        .and_then(|h| h.strip_prefix("sha256="))
                        .map(str::to_string)
                })
            })
            .unwrap_or_default();
        if sha256.is_empty() && !url.starts_with("file:") {
            return Err(bad(format!(
                "the index gave no sha256 for {file}; assemble needs an index that publishes hashes (PEP 503 #sha256=)"
            )));
        }
        out.push(Resolved {
            name: normalise_name(&item.metadata.name),
            version: item.metadata.version,
            file,
            url,
            sha256,
            requested: item.requested,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
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

    const REPORT: &str = r#"{"version": "1", "pip_version": "23.0.1", "install": [
      {"metadata": {"name": "milborne", "version": "0.4.0"}, "requested": true,
       "download_info": {"url": "http://127.0.0.1:1/packages/milborne-0.4.0.tar.gz",
         "archive_info": {"hash": "sha256=9b7d", "hashes": {"sha256": "9b7d"}}}},
      {"metadata": {"name": "Django", "version": "4.2.30"}, "requested": false,
       "download_info": {"url": "http://ci:s3cret@127.0.0.1:1/packages/django-4.2.30-py3-none-any.whl",
         "archive_info": {"hash": "sha256=4d07"}}}
    ], "environment": {}}"#;

    #[test]
    fn the_report_gives_names_versions_files_and_hashes_without_credentials() {
        let set = parse_report(REPORT.as_bytes()).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set[0].name, "django");
        assert_eq!(set[0].file, "django-4.2.30-py3-none-any.whl");
        assert_eq!(set[0].sha256, "4d07");
        assert!(!set[0].url.contains("s3cret"), "{}", set[0].url);
        assert!(set[0].is_wheel() && !set[0].requested);
        assert_eq!(set[1].name, "milborne");
        assert!(set[1].requested && !set[1].is_wheel());
    }

    #[test]
    fn a_file_without_a_hash_from_an_index_is_refused() {
        let r = REPORT.replace(
            r#""archive_info": {"hash": "sha256=4d07"}"#,
            r#""archive_info": {}"#,
        );
        let err = parse_report(r.as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("no sha256 for django-4.2.30"),
            "{err}"
        );
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
