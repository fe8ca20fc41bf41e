//! The RECORD split: assigns every file of an installed venv to the
//! dependency layer or the application layer by the distribution whose
//! RECORD names it, and finds out what the install holds (the project's
//! import package, Django, a crontab). It reads the venv only; packing the
//! layers is the install's job.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use super::wheel;
use super::{io_err, PythonError};
use crate::spec::normalise_name;

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
///
/// `also_installed` are distributions installed in a layer below this venv
/// (an application-only install over cached dependencies): they count for
/// what the project needs (Django) though their files are not here.
pub fn split_venv(
    venv: &Path,
    python: &str,
    project: &str,
    also_installed: &BTreeMap<String, String>,
) -> Result<Split, PythonError> {
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
            let Some(path) = wheel::record_path(line) else {
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
    split
        .installed
        .distributions
        .extend(also_installed.iter().map(|(k, v)| (k.clone(), v.clone())));
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
        let s = split_venv(v, "3.11", "Milborne", &BTreeMap::new()).unwrap();
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
        let e = split_venv(v.path(), "3.11", "evil", &BTreeMap::new()).unwrap_err();
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
}
