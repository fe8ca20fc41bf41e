//! `assemble clean`, `assemble purge` and `assemble cache prune`: remove
//! what assemble wrote, and nothing else.
//!
//! `clean` looks in the output directory and in its direct subdirectories
//! for what assemble writes there: an OCI layout it recognises (`oci-layout`,
//! an `index.json` that is an OCI index, `blobs/`; only those entries and the
//! `blobs/sha256/<digest>` files go), the archives of `--archive` (a tar of
//! exactly assemble's structure) and its temporary files (`.tmp-XXXXXX` and
//! the like). Every other entry stays, and a directory goes only when that
//! leaves it empty. The images `assemble run` unpacked into the cache for
//! the layouts removed go too, unless a run is using them.
//!
//! `purge` also removes the cache, and only a directory carrying assemble's
//! marker ([`crate::cache::MARKER`]). Both refuse the root directory, the
//! home directory and any mount point outright, before removing anything.
//! With `--dry-run` they say what would go and remove nothing. That refusal
//! is `guard`'s; this module plans and removes.
//!
//! `cache prune` ([`prune`]) is the same idea in a registry: it deletes the
//! build cache entries assemble wrote there more than N days ago, and
//! nothing else.

mod guard;
pub mod prune;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::cache::{self, FileLock};
use crate::output::Printer;
pub use guard::{check_removable, is_mount_point};

/// Why clean or purge removed nothing.
#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    /// A directory that must never be cleaned or purged.
    #[error("refusing to {action} {path}: {why}")]
    Refused {
        /// `clean` or `purge`.
        action: &'static str,
        /// The directory as given.
        path: PathBuf,
        /// Root, home or mount point.
        why: String,
    },
    /// The cache directory does not carry assemble's marker.
    #[error(
        "refusing to purge {path}: it has no assemble cache marker ({marker} written by assemble), \
         so it may hold files assemble did not write; check what it holds and remove it yourself"
    )]
    NotACache {
        /// The directory.
        path: PathBuf,
        /// The marker's file name.
        marker: &'static str,
    },
    /// The output is not a directory.
    #[error("{path} is not a directory: --output names the directory holding the OCI layout")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A running `assemble run` uses the cache.
    #[error("{path} is in use by a running `assemble run`; stop it, then purge again")]
    InUse {
        /// The unpacked image in use.
        path: PathBuf,
    },
    /// A file could not be read or removed.
    #[error("cannot remove {path}")]
    Io {
        /// The path.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The cache's locks failed.
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
}

impl CleanError {
    /// True for refusals that are the user's input (exit 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            CleanError::Refused { .. }
                | CleanError::NotACache { .. }
                | CleanError::NotADirectory { .. }
        )
    }
}

/// A file error naming its path.
fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CleanError + '_ {
    move |source| CleanError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One thing that goes, with everything it is made of.
#[derive(Debug, Default)]
struct Item {
    /// `OCI layout build/oci`.
    label: String,
    /// Files (and symlinks) unlinked one by one.
    files: Vec<PathBuf>,
    /// Whole trees assemble owns entirely (cache entries, work directories).
    trees: Vec<PathBuf>,
    /// Directories removed afterwards when empty, deepest first.
    dirs_if_empty: Vec<PathBuf>,
    /// Bytes freed: regular files only, never a symlink's target.
    bytes: u64,
    /// Held while a cached tree is removed, so no run starts on it.
    locks: Vec<FileLock>,
}

/// What clean or purge will do, worked out before anything is removed.
#[derive(Debug, Default)]
pub struct Plan {
    items: Vec<Item>,
    /// Lines saying what stays and why.
    notes: Vec<String>,
    /// Directories that go when empty once the items are gone (the output).
    dirs_if_empty: Vec<PathBuf>,
    /// Held while cached trees are removed.
    run_lock: Option<FileLock>,
}

impl Plan {
    /// Bytes the plan frees.
    pub fn bytes(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum()
    }
}

/// Plans `clean` of the output directory `dir`; `cache` is the cache
/// directory whose unpacked images of removed layouts go too.
pub fn plan_clean(dir: &Path, cache: Option<&Path>) -> Result<Plan, CleanError> {
    let mut plan = Plan::default();
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        plan.notes.push(format!(
            "nothing to clean: {} does not exist",
            dir.display()
        ));
        return Ok(plan);
    };
    let linked = meta.file_type().is_symlink();
    if linked && std::fs::metadata(dir).is_err() {
        plan.notes.push(format!(
            "nothing to clean: {} is a symlink to nothing (left as it is)",
            dir.display()
        ));
        return Ok(plan);
    }
    let real = check_removable(dir, "clean")?;
    if !real.is_dir() {
        return Err(CleanError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    if linked {
        plan.notes.push(format!(
            "{} is a symlink to {}: cleaning there, keeping the link and that directory",
            dir.display(),
            real.display()
        ));
    }
    let mut manifests = Vec::new();
    let foreign = if let Some(layout) = recognise_layout(&real)? {
        let (item, digests, left) = layout_item(&real, layout, !linked)?;
        manifests.extend(digests);
        plan.items.push(item);
        left
    } else {
        plan_output_dir(&mut plan, &real, &mut manifests)?
    };
    if !foreign.is_empty() {
        plan.notes.push(kept_note(&real, &foreign));
    }
    if !linked {
        plan.dirs_if_empty.push(real.clone());
    }
    if let Some(cache) = cache {
        plan_trees(&mut plan, cache, &manifests)?;
    }
    Ok(plan)
}

/// Plans the entries of an output directory that is not itself a layout:
/// the layouts in it (their manifests added to `manifests`), temporary
/// files and directories assemble left, and its archives. Returns the
/// names of the entries assemble did not write, which stay.
fn plan_output_dir(
    plan: &mut Plan,
    real: &Path,
    manifests: &mut Vec<String>,
) -> Result<Vec<String>, CleanError> {
    let mut foreign = Vec::new();
    for entry in read_dir_sorted(real)? {
        let path = real.join(&entry);
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if m.is_dir() {
            if let Some(layout) = recognise_layout(&path)? {
                let (item, digests, left) = layout_item(&path, layout, true)?;
                manifests.extend(digests);
                if !left.is_empty() {
                    plan.notes.push(kept_note(&path, &left));
                }
                plan.items.push(item);
            } else if is_temporary_dir(&entry) {
                plan.items.push(tree_item(
                    format!("temporary directory {}", path.display()),
                    &path,
                )?);
            } else {
                foreign.push(entry);
            }
        } else if m.is_file() && is_temporary_file(&entry) {
            plan.items.push(Item {
                label: format!("temporary file {}", path.display()),
                files: vec![path],
                bytes: m.len(),
                ..Item::default()
            });
        } else if m.is_file() && is_assemble_archive(&path) {
            plan.items.push(Item {
                label: format!("archive {}", path.display()),
                files: vec![path],
                bytes: m.len(),
                ..Item::default()
            });
        } else {
            foreign.push(entry);
        }
    }
    Ok(foreign)
}

/// Adds the cache's unpacked images of these manifests to the plan.
fn plan_trees(plan: &mut Plan, cache: &Path, manifests: &[String]) -> Result<(), CleanError> {
    let run = cache.join("run");
    if manifests.is_empty() || !run.is_dir() {
        return Ok(());
    }
    let run_lock = FileLock::acquire(&run.join(".lock"), true)?;
    for hex in manifests {
        let tree = run.join(hex);
        if !tree.is_dir() {
            continue;
        }
        let lock_path = run.join(format!("{hex}.lock"));
        match FileLock::try_acquire(&lock_path, true)? {
            Some(lock) => {
                let mut item =
                    tree_item(format!("unpacked image sha256:{hex} in the cache"), &tree)?;
                item.files.push(lock_path);
                item.locks.push(lock);
                plan.items.push(item);
            }
            None => plan.notes.push(format!(
                "kept {}: a running `assemble run` uses it",
                tree.display()
            )),
        }
    }
    plan.run_lock = Some(run_lock);
    Ok(())
}

/// Plans `purge`: the output as `clean` does, then the whole cache, which
/// must carry assemble's marker and be in use by no `assemble run`.
pub fn plan_purge(output: &Path, cache: &Path) -> Result<Plan, CleanError> {
    let mut plan = plan_clean(output, None)?;
    let Ok(meta) = std::fs::symlink_metadata(cache) else {
        plan.notes.push(format!("no cache at {}", cache.display()));
        return Ok(plan);
    };
    let linked = meta.file_type().is_symlink();
    let real = check_removable(cache, "purge")?;
    if !cache::is_marked(&real) {
        return Err(CleanError::NotACache {
            path: cache.to_path_buf(),
            marker: cache::MARKER,
        });
    }
    let run = real.join("run");
    let mut locks = Vec::new();
    if run.is_dir() {
        let run_lock = FileLock::acquire(&run.join(".lock"), true)?;
        for name in read_dir_sorted(&run)? {
            if name.len() == 69 && name.ends_with(".lock") {
                let p = run.join(&name);
                match FileLock::try_acquire(&p, true)? {
                    Some(l) => locks.push(l),
                    None => {
                        return Err(CleanError::InUse {
                            path: run.join(name.trim_end_matches(".lock")),
                        })
                    }
                }
            }
        }
        plan.run_lock = Some(run_lock);
    }
    let mut item = if linked {
        // The link is the user's: empty the directory it names, keep both.
        let mut item = Item::default();
        for name in read_dir_sorted(&real)? {
            let p = real.join(&name);
            let sub = tree_item(String::new(), &p)?;
            item.bytes += sub.bytes;
            item.trees.push(p);
        }
        item
    } else {
        tree_item(String::new(), &real)?
    };
    item.label = format!("cache {}", cache.display());
    item.locks = locks;
    plan.items.push(item);
    Ok(plan)
}

/// Carries out a plan (or only says what it would do), then says what was
/// freed. Returns the bytes freed.
pub fn execute(plan: Plan, dry_run: bool, printer: &Printer) -> Result<u64, CleanError> {
    let verb = if dry_run { "would remove" } else { "removed" };
    for note in &plan.notes {
        printer.step(note);
    }
    let mut freed = 0;
    for item in &plan.items {
        if !dry_run {
            for f in &item.files {
                match std::fs::remove_file(f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(f)(e)),
                    _ => {}
                }
            }
            for t in &item.trees {
                remove_tree_at(t)?;
            }
            for d in &item.dirs_if_empty {
                let _ = std::fs::remove_dir(d);
            }
        }
        freed += item.bytes;
        printer.step(&format!("{verb} {} ({})", item.label, human(item.bytes)));
    }
    if !dry_run {
        for d in &plan.dirs_if_empty {
            if std::fs::remove_dir(d).is_ok() {
                printer.step(&format!("removed {} (now empty)", d.display()));
            }
        }
    }
    let total = if dry_run { "would free" } else { "freed" };
    printer.step(&format!("{total} {}", human(freed)));
    Ok(freed)
}

/// The parts of an OCI layout that assemble wrote.
struct LayoutParts {
    /// Manifest digests (hex) listed in index.json.
    manifests: Vec<String>,
}

/// Recognises an OCI layout: an `oci-layout` file naming a layout version,
/// an `index.json` that is an OCI index, and a `blobs` directory.
fn recognise_layout(dir: &Path) -> Result<Option<LayoutParts>, CleanError> {
    let small_file = |name: &str, max: u64| -> Option<serde_json::Value> {
        let p = dir.join(name);
        let m = std::fs::symlink_metadata(&p).ok()?;
        if !m.is_file() || m.len() > max {
            return None;
        }
        serde_json::from_slice(&std::fs::read(&p).ok()?).ok()
    };
    let Some(marker) = small_file("oci-layout", 4096) else {
        return Ok(None);
    };
    if !marker["imageLayoutVersion"].is_string() {
        return Ok(None);
    }
    let Some(index) = small_file("index.json", 4 << 20) else {
        return Ok(None);
    };
    let Some(list) = index["manifests"].as_array() else {
        return Ok(None);
    };
    if index["schemaVersion"] != 2 {
        return Ok(None);
    }
    let blobs = std::fs::symlink_metadata(dir.join("blobs"));
    if !blobs.is_ok_and(|m| m.is_dir()) {
        return Ok(None);
    }
    let manifests = list
        .iter()
        .filter_map(|d| d["digest"].as_str())
        .filter_map(|d| d.strip_prefix("sha256:"))
        .filter(|h| is_hex_digest(h))
        .map(str::to_string)
        .collect();
    Ok(Some(LayoutParts { manifests }))
}

/// The item removing a recognised layout's own entries; also returns its
/// manifests and the entries it leaves.
fn layout_item(
    dir: &Path,
    parts: LayoutParts,
    remove_dir: bool,
) -> Result<(Item, Vec<String>, Vec<String>), CleanError> {
    let mut item = Item {
        label: format!("OCI layout {}", dir.display()),
        ..Item::default()
    };
    let mut left = Vec::new();
    let add_file = |item: &mut Item, p: PathBuf| {
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            if m.is_file() {
                item.bytes += m.len();
            }
        }
        item.files.push(p);
    };
    for name in read_dir_sorted(dir)? {
        let p = dir.join(&name);
        match name.as_str() {
            "oci-layout" | "index.json" => add_file(&mut item, p),
            "blobs" => {}
            n if is_temporary_file(n) && is_regular(&p) => add_file(&mut item, p),
            _ => left.push(name),
        }
    }
    let blobs = dir.join("blobs");
    let mut blob_count = 0;
    for algo in read_dir_sorted(&blobs)? {
        let adir = blobs.join(&algo);
        if algo != "sha256" || !std::fs::symlink_metadata(&adir).is_ok_and(|m| m.is_dir()) {
            left.push(format!("blobs/{algo}"));
            continue;
        }
        for name in read_dir_sorted(&adir)? {
            let p = adir.join(&name);
            if (is_hex_digest(&name) || is_temporary_file(&name)) && is_regular(&p) {
                blob_count += usize::from(is_hex_digest(&name));
                add_file(&mut item, p);
            } else {
                left.push(format!("blobs/sha256/{name}"));
            }
        }
        item.dirs_if_empty.push(adir);
    }
    item.dirs_if_empty.push(blobs);
    if remove_dir {
        item.dirs_if_empty.push(dir.to_path_buf());
    }
    item.label = format!(
        "OCI layout {} ({blob_count} blob{})",
        dir.display(),
        if blob_count == 1 { "" } else { "s" }
    );
    Ok((item, parts.manifests, left))
}

/// An item removing a whole tree that assemble owns.
fn tree_item(label: String, path: &Path) -> Result<Item, CleanError> {
    let bytes = walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    Ok(Item {
        label,
        trees: vec![path.to_path_buf()],
        bytes,
        ..Item::default()
    })
}

fn kept_note(dir: &Path, left: &[String]) -> String {
    let shown: Vec<&str> = left.iter().take(5).map(String::as_str).collect();
    format!(
        "kept {}: it holds {} entr{} assemble did not write ({}{})",
        dir.display(),
        left.len(),
        if left.len() == 1 { "y" } else { "ies" },
        shown.join(", "),
        if left.len() > shown.len() {
            ", …"
        } else {
            ""
        }
    )
}

fn is_regular(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The random part tempfile gives assemble's temporary names.
fn random_suffix(s: &str) -> bool {
    s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Temporary files assemble writes beside a final name (`.tmp-XXXXXX` and
/// the prefixes of blobs, layers, pulls, archives, bundles and wheels).
fn is_temporary_file(name: &str) -> bool {
    [
        ".tmp-",
        ".blob-",
        ".layer-",
        ".pull-",
        ".archive-",
        ".bundle-",
        ".wheel-",
    ]
    .iter()
    .any(|p| name.strip_prefix(p).is_some_and(random_suffix))
}

/// Temporary directories: a pull being staged (`.pull-XXXXXX`).
fn is_temporary_dir(name: &str) -> bool {
    name.strip_prefix(".pull-").is_some_and(random_suffix)
}

/// True for a tar of exactly the structure `--archive` writes: `blobs/`,
/// `blobs/sha256/`, blobs named by their digest, then `index.json` and
/// `oci-layout`, or `manifest.json`.
fn is_assemble_archive(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut archive = tar::Archive::new(file);
    let Ok(entries) = archive.entries_with_seek() else {
        return false;
    };
    let mut names = Vec::new();
    for e in entries {
        let Ok(e) = e else { return false };
        let Ok(p) = e.path() else { return false };
        names.push(p.to_string_lossy().into_owned());
        if names.len() > 100_000 {
            return false;
        }
    }
    let mut it = names.iter().map(|n| n.trim_end_matches('/'));
    if it.next() != Some("blobs") || it.next() != Some("blobs/sha256") {
        return false;
    }
    let rest: Vec<&str> = it.collect();
    let blobs = rest
        .iter()
        .take_while(|n| n.strip_prefix("blobs/sha256/").is_some_and(is_hex_digest))
        .count();
    // The tar writer sorts names, so index.json comes before oci-layout.
    blobs > 0
        && matches!(
            &rest[blobs..],
            ["index.json", "oci-layout"] | ["manifest.json"]
        )
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<String>, CleanError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .flatten()
        .map(|e| e.file_name())
        .map(|n: std::ffi::OsString| OsStr::to_string_lossy(&n).into_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn remove_tree_at(path: &Path) -> Result<(), CleanError> {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if m.is_dir() {
        crate::fsutil::make_writable(path);
        std::fs::remove_dir_all(path).map_err(io_err(path))
    } else {
        std::fs::remove_file(path).map_err(io_err(path))
    }
}

/// Removes a directory tree assemble owns (a bundle unpacked for one build),
/// returning the bytes it held (0 when absent).
pub fn remove_tree(path: &Path) -> Result<u64, CleanError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(0);
    }
    let item = tree_item(String::new(), path)?;
    remove_tree_at(path)?;
    Ok(item.bytes)
}

/// `12.3 MiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_counts_bytes_and_handles_read_only_dirs() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::create_dir_all(t.join("ro")).unwrap();
        std::fs::write(t.join("ro/f"), [0u8; 10]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(t.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
        assert_eq!(remove_tree(&t).unwrap(), 10);
        assert!(!t.exists());
        assert_eq!(human(1536), "1.5 KiB");
    }

    #[test]
    fn only_assembles_temporary_names_are_temporary() {
        assert!(is_temporary_file(".tmp-a1B2c3"));
        assert!(is_temporary_file(".blob-XyZ123"));
        assert!(!is_temporary_file(".tmp-notes"));
        assert!(!is_temporary_file("tmp-a1B2c3"));
        assert!(is_temporary_dir(".pull-Ab12Cd"));
        assert!(!is_temporary_dir(".pull-cache"));
    }
}
