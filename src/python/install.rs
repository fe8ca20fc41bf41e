//! The venv install: creates the venv inside the base rootfs from the
//! wheelhouse alone (no network), compiles its byte-code deterministically,
//! and packs it into the dependency and application layers that the RECORD
//! split ([`super::split`]) decides. Wheels are refused here, before uv
//! sees them, when a member would land outside the venv.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::split::{split_venv, Installed, Split};
use super::{base_env, io_err, wheel, PythonContext, PythonError, Wheelhouse};
use crate::cache::{KeyBuilder, Origin};
use crate::contract::{self, OWNER as BLUE, VENV};
use crate::image::layer::{self, Layer, LayerBlob};
use crate::rootfs::Rootfs;
use crate::sandbox::{Mount, Output, Plan};
use crate::spec::Requirement;

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
    /// True when the dependencies layer came from the cache and only the
    /// application was installed (not part of the record).
    #[serde(skip)]
    pub dependencies_cached: bool,
    /// Where the dependencies layer came from, when it was not built here
    /// (not part of the record).
    #[serde(skip)]
    pub dependencies_origin: Origin,
}

/// The dependencies layer of a venv, recorded under its own key (the base,
/// the interpreter and the dependencies' wheels) so that a new release of
/// the application alone installs and packs only the application.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct DependenciesLayer {
    blob: LayerBlob,
    /// The distributions in it, with their versions.
    distributions: std::collections::BTreeMap<String, String>,
}

/// Creates the venv inside the base rootfs from the wheelhouse alone (no
/// network, `--no-index`), compiles deterministic byte-code, and packs it
/// into two layers: dependencies, then the application.
pub fn install(
    ctx: &PythonContext,
    req: &Requirement,
    wheelhouse: &Wheelhouse,
    base: &Rootfs,
    uv_from: super::uv::Source,
) -> Result<VenvLayers, PythonError> {
    let mut key = KeyBuilder::new("venv-layers-v2");
    key.part("base", base.key.as_bytes())
        .part("wheelhouse", wheelhouse.key.as_bytes())
        .part("python", ctx.python.as_bytes());
    if let Some(i) = ctx.interpreter_key() {
        key.part("interpreter", i.as_bytes());
    }
    if let Some(h) = &ctx.unconfined {
        key.part("unconfined", h.as_bytes());
    }
    let key = key
        .part("extras", req.extras.join(",").as_bytes())
        .part("epoch", ctx.epoch.to_string().as_bytes())
        .part("compression", ctx.compression.name().as_bytes())
        .finish();
    let deps_key = dependencies_key(ctx, base, wheelhouse)?;
    if !ctx.rebuild {
        if let Some(cached) = cached_layers(ctx, &key) {
            // Layers cached before the dependencies layer had a key of its
            // own: record it now, for the next release of the application.
            match ctx.cache.get_json::<DependenciesLayer>("layers", &deps_key) {
                None => record_dependencies(ctx, &deps_key, &cached, &wheelhouse.project.name)?,
                Some(d) => ctx.cache.offer("layer", &deps_key, &d, vec![d.blob.blob()]),
            }
            return Ok(cached);
        }
    }
    check_wheelhouse(&wheelhouse.dir)?;
    let uv = super::uv::ensure(ctx, uv_from)?;
    let local: Option<DependenciesLayer> = (!ctx.rebuild)
        .then(|| ctx.cache.get_json::<DependenciesLayer>("layers", &deps_key))
        .flatten()
        .filter(|d| ctx.cache.blobs().has(&d.blob.digest));
    let (deps, deps_origin) = match local {
        Some(d) => {
            ctx.cache.offer("layer", &deps_key, &d, vec![d.blob.blob()]);
            (Some(d), Origin::Cached)
        }
        None if !ctx.rebuild => {
            match ctx
                .cache
                .remote_json::<DependenciesLayer>("layer", &deps_key, |_| Ok(()), ctx.printer)
                .filter(|d| ctx.cache.remote_layer_ok(&d.blob, ctx.printer))
            {
                Some(d) => {
                    ctx.cache.put_json("layers", &deps_key, &d)?;
                    (Some(d), Origin::Remote)
                }
                None => (None, Origin::Built),
            }
        }
        None => (None, Origin::Built),
    };
    let work = ctx.cache.work_dir("venv")?;
    // Without isolation the venv is made where it is staged, at a path as
    // long as its own, and moved to its own afterwards.
    let staged = if ctx.runner.runs_on_host() {
        Some(staging_dir()?)
    } else {
        None
    };
    let venv = match &staged {
        Some((_, venv)) => venv.clone(),
        None => {
            let venv = work.path().join("app");
            fs_err::create_dir(&venv).map_err(io_err(&venv))?;
            venv
        }
    };
    let only_app = deps.is_some();
    uv_install(ctx, req, wheelhouse, base, &uv, &venv, only_app)?;
    if staged.is_some() {
        relocate(&venv, VENV)?;
    }
    let below = deps
        .as_ref()
        .map(|d| d.distributions.clone())
        .unwrap_or_default();
    let split = split_venv(&venv, &ctx.python, &wheelhouse.project.name, &below)?;
    let layers = match deps {
        Some(d) => {
            ctx.printer.step(&format!(
                "layers: {} dependencies layer; packing {} application files",
                match deps_origin {
                    Origin::Remote => "the build cache's",
                    _ => "cached",
                },
                split.application.len()
            ));
            let application = pack(ctx, &venv, split.application)?;
            VenvLayers {
                dependencies: d.blob,
                application,
                installed: split.installed,
                cached: false,
                dependencies_cached: true,
                dependencies_origin: deps_origin,
            }
        }
        None => {
            let layers = pack_layers(ctx, &venv, split)?;
            record_dependencies(ctx, &deps_key, &layers, &wheelhouse.project.name)?;
            layers
        }
    };
    ctx.cache.put_json("layers", &key, &layers)?;
    Ok(layers)
}

/// Records the dependencies layer of `layers` under its own key.
fn record_dependencies(
    ctx: &PythonContext,
    deps_key: &str,
    layers: &VenvLayers,
    project: &str,
) -> Result<(), PythonError> {
    let mut distributions = layers.installed.distributions.clone();
    distributions.remove(&crate::spec::normalise_name(project));
    let deps = DependenciesLayer {
        blob: layers.dependencies.clone(),
        distributions,
    };
    ctx.cache.put_json("layers", deps_key, &deps)?;
    ctx.cache
        .offer("layer", deps_key, &deps, vec![deps.blob.blob()]);
    Ok(())
}

/// The key of the dependencies layer alone: the base, the interpreter,
/// the layers' epoch and compression, and every wheel but the project's.
fn dependencies_key(
    ctx: &PythonContext,
    base: &Rootfs,
    wheelhouse: &Wheelhouse,
) -> Result<String, PythonError> {
    let mut key = KeyBuilder::new("venv-dependencies-v2");
    key.part("base", base.key.as_bytes())
        .part("python", ctx.python.as_bytes());
    if let Some(i) = ctx.interpreter_key() {
        key.part("interpreter", i.as_bytes());
    }
    if let Some(h) = &ctx.unconfined {
        key.part("unconfined", h.as_bytes());
    }
    key.part("epoch", ctx.epoch.to_string().as_bytes())
        .part("compression", ctx.compression.name().as_bytes());
    for file in super::compile::wheels_in(&wheelhouse.dir)? {
        if file == wheelhouse.project.file {
            continue;
        }
        let path = wheelhouse.dir.join(&file);
        let (d, _) = crate::digest::digest_file(&path).map_err(io_err(&path))?;
        key.part("wheel", file.as_bytes())
            .part("sha256", d.hex().as_bytes());
    }
    Ok(key.finish())
}

/// The layers cached under `key`, if both blobs are still in the store,
/// with a progress line.
fn cached_layers(ctx: &PythonContext, key: &str) -> Option<VenvLayers> {
    let cached = ctx.cache.get_json::<VenvLayers>("layers", key)?;
    if ctx.cache.blobs().has(&cached.dependencies.digest)
        && ctx.cache.blobs().has(&cached.application.digest)
    {
        ctx.printer.step("install: cached venv layers");
        return Some(VenvLayers {
            cached: true,
            ..cached
        });
    }
    None
}

/// In the base rootfs, without network: the venv (no pip of its own), the
/// project from the wheelhouse with uv (less the `uv_cache.json` it leaves
/// in each dist-info, and its RECORD line: it holds the wheel file's
/// modification time; and its `.lock` file, mode 0666), then the byte-code, checked by
/// hash rather than by timestamp.
fn uv_install(
    ctx: &PythonContext,
    req: &Requirement,
    wheelhouse: &Wheelhouse,
    base: &Rootfs,
    uv: &super::uv::Uv,
    venv: &Path,
    only_app: bool,
) -> Result<(), PythonError> {
    let project = &wheelhouse.project;
    let target = format!(
        "{}{}=={}",
        project.name,
        req.extras_suffix(),
        project.version
    );
    let script = format!(
        "set -eu\numask 022\n\
         {py} -m venv --without-pip {VENV}\n\
         {uv} pip install --quiet --python {VENV}/bin/python --no-index --find-links /assemble/wheelhouse \
           --no-cache --link-mode copy {no_deps}\"$@\"\n\
         for f in {VENV}/lib/python*/site-packages/*.dist-info/uv_cache.json; do\n\
           [ -e \"$f\" ] || continue; rm \"$f\"; sed -i '/\\.dist-info\\/uv_cache\\.json,/d' \"${{f%/uv_cache.json}}/RECORD\"\n\
         done\n\
         rm -f {VENV}/.lock\n\
         {VENV}/bin/python -m compileall -q -j 1 --invalidation-mode unchecked-hash {VENV}/lib\n",
        py = super::shell_word(&ctx.interpreter),
        uv = super::uv::BIN,
        no_deps = if only_app { "--no-deps " } else { "" },
    );
    ctx.printer.step(&format!(
        "install: venv at {VENV} with {target} (no network)"
    ));
    let mut env = base_env(ctx);
    env.extend(super::uv::env(None));
    // The project, and what the image's runtime needs beside it (in the
    // dependencies layer, which the application-only install leaves be).
    let mut argv: Vec<String> = vec!["/bin/sh".into(), "-c".into(), script, "sh".into(), target];
    if !only_app {
        argv.extend(ctx.runtime_requirements.iter().cloned());
    }
    let plan = Plan {
        what: "venv install".into(),
        root: base.tree.clone(),
        writable_root: false,
        mounts: vec![
            Mount::Bind(venv.to_path_buf(), VENV.into()),
            Mount::ReadOnly(wheelhouse.dir.clone(), "/assemble/wheelhouse".into()),
            uv.mount(),
        ],
        env,
        uid: BLUE.uid as u32,
        gid: BLUE.gid as u32,
        cwd: "/tmp".into(),
        share_net: false,
        argv,
    };
    ctx.runner.run(
        &plan,
        Output::Capture {
            echo: ctx.printer.verbose().then_some(ctx.printer),
        },
    )?;
    Ok(())
}

/// A fresh directory of this user's whose path is exactly as long as the
/// venv's and ends with the same name (the activation scripts' prompt):
/// `/tmp/` and random letters (mode 0700), holding `app`, mode 0755 as the
/// venv's is.
fn staging_dir() -> Result<(tempfile::TempDir, PathBuf), PythonError> {
    let name = VENV.rsplit('/').next().expect("a path");
    let random = VENV.len() - "/tmp/".len() - 1 - name.len();
    use std::os::unix::fs::PermissionsExt as _;
    // Private: the venv holds the application's code.
    let dir = tempfile::Builder::new()
        .prefix("")
        .rand_bytes(random)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in("/tmp")
        .map_err(io_err(Path::new("/tmp")))?;
    let venv = dir.path().join(name);
    if venv.as_os_str().len() != VENV.len() {
        return Err(PythonError::Tool(format!(
            "cannot stage the venv at a path as long as {VENV} ({} was made)",
            venv.display()
        )));
    }
    fs_err::create_dir(&venv).map_err(io_err(&venv))?;
    fs_err::set_permissions(&venv, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(&venv))?;
    Ok((dir, venv))
}

/// Moves the venv made at `venv` to `to`, a path as long: that path
/// replaces `venv`'s in every file and link target (scripts' first lines,
/// `pyvenv.cfg`, the activation scripts, the byte-code's file names, whose
/// lengths do not change), and the RECORD lines of the files that changed
/// get their new hash and size.
fn relocate(venv: &Path, to: &str) -> Result<(), PythonError> {
    let from = venv
        .to_str()
        .filter(|f| f.len() == to.len())
        .ok_or_else(|| PythonError::Tool(format!("{} is not as long as {to}", venv.display())))?;
    let mut changed = BTreeSet::new();
    for entry in walkdir::WalkDir::new(venv) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(venv).to_path_buf();
            io_err(&path)(e.into())
        })?;
        let path = entry.path();
        if entry.path_is_symlink() {
            let target = fs_err::read_link(path).map_err(io_err(path))?;
            let text = target.to_string_lossy();
            if text.contains(from) {
                fs_err::remove_file(path).map_err(io_err(path))?;
                std::os::unix::fs::symlink(text.replace(from, to), path).map_err(io_err(path))?;
            }
        } else if entry.file_type().is_file() {
            let bytes = fs_err::read(path).map_err(io_err(path))?;
            let moved = replace_bytes(&bytes, from.as_bytes(), to.as_bytes());
            if moved != bytes {
                // Written in place, the mode kept (a read-only file made
                // writable for the while).
                use std::os::unix::fs::PermissionsExt as _;
                let mode = entry.metadata().map_err(|e| io_err(path)(e.into()))?;
                let mode = mode.permissions().mode();
                let writable = |m| std::fs::Permissions::from_mode(m);
                if mode & 0o200 == 0 {
                    fs_err::set_permissions(path, writable(mode | 0o200)).map_err(io_err(path))?;
                }
                fs_err::write(path, &moved).map_err(io_err(path))?;
                fs_err::set_permissions(path, writable(mode)).map_err(io_err(path))?;
                changed.insert(path.to_path_buf());
            }
        }
    }
    if let Some(record) = changed
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "RECORD"))
    {
        return Err(PythonError::Tool(format!(
            "{} names the staging directory: a venv whose RECORD holds its own path cannot be \
             moved",
            record.display()
        )));
    }
    let records: Vec<PathBuf> = walkdir::WalkDir::new(venv)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type().is_file()
                && e.file_name() == "RECORD"
                && e.path()
                    .parent()
                    .and_then(Path::file_name)
                    .is_some_and(|d| d.to_string_lossy().ends_with(".dist-info"))
        })
        .map(|e| e.into_path())
        .collect();
    for record in records {
        refresh_record(&record, &changed)?;
    }
    Ok(())
}

/// `bytes` with every `from` replaced by `to`.
fn replace_bytes(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The lines of a RECORD (paths relative to the site-packages holding its
/// dist-info) naming one of `changed`, with the hash and size of the file
/// as it is now.
fn refresh_record(record: &Path, changed: &BTreeSet<PathBuf>) -> Result<(), PythonError> {
    use base64::Engine as _;
    let site = record
        .parent()
        .and_then(Path::parent)
        .expect("a RECORD in a dist-info");
    let text = fs_err::read_to_string(record).map_err(io_err(record))?;
    let mut out = String::with_capacity(text.len());
    let mut any = false;
    for line in text.lines() {
        let file = wheel::record_path(line).map(|rel| normalize(&site.join(rel)));
        match file.filter(|f| changed.contains(f)) {
            Some(file) => {
                let bytes = fs_err::read(&file).map_err(io_err(&file))?;
                let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
                // The path field as it was: what precedes the last two.
                let mut fields = line.rsplitn(3, ',');
                let (_, _, path) = (fields.next(), fields.next(), fields.next().unwrap_or(line));
                out.push_str(&format!("{path},sha256={hash},{}\n", bytes.len()));
                any = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if any {
        fs_err::write(record, out).map_err(io_err(record))?;
    }
    Ok(())
}

/// `path` with its `..` and `.` resolved as text.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Packs the split venv into its two layers, each under the home skeleton,
/// the dependencies on a second thread.
fn pack_layers(ctx: &PythonContext, venv: &Path, split: Split) -> Result<VenvLayers, PythonError> {
    ctx.printer.step(&format!(
        "layers: packing {} dependency files and {} application files",
        split.dependencies.len(),
        split.application.len()
    ));
    let pack = |files| pack(ctx, venv, files);
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
    Ok(VenvLayers {
        dependencies: dependencies?,
        application: application?,
        installed,
        cached: false,
        dependencies_cached: false,
        dependencies_origin: Origin::Built,
    })
}

/// One venv layer: these files of the venv under the home skeleton.
fn pack(
    ctx: &PythonContext,
    venv: &Path,
    files: BTreeSet<PathBuf>,
) -> Result<LayerBlob, PythonError> {
    let mut l = Layer::new();
    contract::home_skeleton(&mut l);
    l.add_tree(venv, VENV, BLUE, layer::Select::Only(files));
    Ok(l.write_blob(ctx.cache.blobs().dir(), ctx.compression, ctx.epoch)?)
}

/// Refuses wheels whose member names are absolute or climb with `..`:
/// whatever pip would do with them, they have no business in an image.
fn check_wheelhouse(dir: &Path) -> Result<(), PythonError> {
    for e in fs_err::read_dir(dir).map_err(io_err(dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".whl") {
            continue;
        }
        let data = fs_err::read(e.path()).map_err(io_err(&e.path()))?;
        check_wheel(&name, &data)?;
    }
    Ok(())
}

/// Refuses a wheel that does not read as a zip, or with a member that
/// would land outside the venv.
pub(super) fn check_wheel(name: &str, data: &[u8]) -> Result<(), PythonError> {
    let members = wheel::member_names(data).map_err(|source| PythonError::UnreadableWheel {
        wheel: name.to_string(),
        source,
    })?;
    for m in members {
        let bad = m.starts_with('/') || m.contains('\\') || m.split('/').any(|c| c == "..");
        if bad {
            return Err(PythonError::HostileWheel {
                wheel: name.to_string(),
                entry: m,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::wheel::tests::zip_with;

    #[test]
    fn a_staged_venv_is_moved_with_its_records_refreshed() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("app");
        let from = venv.to_str().unwrap().to_string();
        let to = format!("/{}", "v".repeat(from.len() - 1));
        let site = venv.join("lib/python3.11/site-packages");
        let info = site.join("tool-1.dist-info");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        let script = format!("#!{from}/bin/python\nimport tool\n");
        std::fs::write(venv.join("bin/tool"), &script).unwrap();
        std::fs::write(site.join("tool.py"), "x = 1\n").unwrap();
        std::fs::write(
            info.join("RECORD"),
            format!(
                "../../../bin/tool,sha256=old,{}\ntool.py,sha256=keep,6\n\"odd,name\",,\n",
                script.len()
            ),
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3.11", venv.join("bin/python")).unwrap();
        std::os::unix::fs::symlink(format!("{from}/lib"), venv.join("lib64")).unwrap();
        relocate(&venv, &to).unwrap();
        let moved = std::fs::read_to_string(venv.join("bin/tool")).unwrap();
        assert_eq!(moved, format!("#!{to}/bin/python\nimport tool\n"));
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(<sha2::Sha256 as sha2::Digest>::digest(moved.as_bytes()));
        assert_eq!(
            std::fs::read_to_string(info.join("RECORD")).unwrap(),
            format!(
                "../../../bin/tool,sha256={hash},{}\ntool.py,sha256=keep,6\n\"odd,name\",,\n",
                moved.len()
            )
        );
        let link = |n: &str| std::fs::read_link(venv.join(n)).unwrap();
        assert_eq!(link("bin/python"), Path::new("/usr/bin/python3.11"));
        assert_eq!(link("lib64"), Path::new(&format!("{to}/lib")));
        // Only to a path as long.
        assert!(relocate(&venv, "/home/blue/app/longer-than-that-surely-is").is_err());
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
}
