//! `assemble run IMAGE [ARGS]`: runs the entrypoint of an image from an OCI
//! layout rootless with bubblewrap (chrooted, as root in a CI job container
//! that refuses user namespaces: see `src/sandbox/chroot.rs`), as the
//! image's user, on the host's network, so an image can be smoke-tested
//! without a container engine.
//!
//! The image is unpacked once per manifest digest into the cache
//! (`run/<hex>/`, see [`crate::cache`]) and bound read-only; later runs reuse
//! it. What the image writes goes to tmpfs: `/tmp`, `/run`, its declared
//! volumes (unless a `--volume` binds them) and the scratch directories of
//! assemble's images ([`crate::contract::SCRATCH`]), each holding a copy of what the
//! image ships there. A run therefore leaves nothing on disk, even when
//! killed: an unpack cut short is a `tmp/run-*` work directory, which the
//! next run removes.
//!
//! This module makes the plan (the tree is `tree`'s, the refusals
//! `error`'s); the sandbox runs it and stops it as an
//! engine does (SIGTERM forwarded, everything killed after
//! `--stop-timeout`: see `src/sandbox/supervise.rs`).

mod error;
mod tree;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::Cache;
use crate::contract;
use crate::image::layout::Layout;
use crate::image::Image;
use crate::output::Printer;
use crate::sandbox::{Isolation, Mount, Output, Plan, Runner, Sandbox, SandboxError};
use crate::Error;

pub use error::RunError;
pub use tree::unpack_image;
use tree::{cached_tree, writable_copy};

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `oci:DIR[:TAG]` or `DIR[:TAG]`.
    pub image: String,
    /// Arguments replacing the image's Cmd.
    pub args: Vec<String>,
    /// `HOST:CONTAINER[:ro]`.
    pub volumes: Vec<String>,
    /// `KEY=VALUE` added to the image's environment.
    pub env: Vec<String>,
    /// How long a stop waits for the entrypoint before killing everything.
    pub stop_timeout: Duration,
    /// The isolation asked for (`--isolation`), else the first that works.
    pub isolation: Option<Isolation>,
}

/// Parses `HOST:CONTAINER[:ro]`.
pub fn parse_volume(v: &str) -> Result<Mount, RunError> {
    let bad = || RunError::VolumeForm {
        spec: v.to_string(),
    };
    let parts: Vec<&str> = v.split(':').collect();
    let (host, dest, ro) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        _ => return Err(bad()),
    };
    if host.is_empty() || !dest.starts_with('/') || dest.split('/').any(|c| c == "..") {
        return Err(bad());
    }
    let host = std::fs::canonicalize(host).map_err(|source| RunError::VolumeHost {
        spec: v.to_string(),
        host: host.to_string(),
        source,
    })?;
    Ok(if ro {
        Mount::ReadOnly(host, dest.into())
    } else {
        Mount::Bind(host, dest.into())
    })
}

/// Parses `KEY=VALUE`: the key must be a name bwrap can set (not empty).
pub fn parse_env(e: &str) -> Result<(String, String), RunError> {
    match e.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(RunError::Env {
            spec: e.to_string(),
        }),
    }
}

/// Resolves a user name or `uid[:gid]` against the image's /etc/passwd and /etc/group.
pub fn resolve_user(tree: &Path, user: &str) -> Result<(u32, u32), RunError> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = user
        .split_once(':')
        .map(|(u, g)| (u, Some(g)))
        .unwrap_or((user, None));
    let passwd = std::fs::read_to_string(tree.join("etc/passwd")).unwrap_or_default();
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        file.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[0] == name)
                .then(|| (f[2].parse().ok(), f[3].parse().ok()))
                .and_then(|(a, b)| Some((a?, b?)))
        })
    };
    let (uid, mut gid) = match u.parse::<u32>() {
        Ok(n) => (n, lookup(&passwd, u).map(|p| p.1).unwrap_or(n)),
        Err(_) => lookup(&passwd, u).ok_or_else(|| RunError::NoUser(u.to_string()))?,
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = std::fs::read_to_string(tree.join("etc/group")).unwrap_or_default();
                group
                    .lines()
                    .find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() >= 3 && f[0] == g)
                            .then(|| f[2].parse().ok())
                            .flatten()
                    })
                    .ok_or_else(|| RunError::NoGroup(g.to_string()))?
            }
        };
    }
    Ok((uid, gid))
}

/// True when `dest` is `path` or below it.
fn covers(path: &str, dest: &str) -> bool {
    dest == path || dest.strip_prefix(path).is_some_and(|r| r.starts_with('/'))
}

/// Runs the image with bubblewrap, or chrooted where user namespaces are
/// refused (said); returns the entrypoint's exit code.
pub fn run(opts: &RunOptions, cache: &Cache, printer: &Printer) -> Result<i32, Error> {
    let sandbox = || {
        let sandbox = Sandbox::choose_for_run(opts.isolation)?;
        if sandbox.isolation() != Isolation::Userns {
            printer.step(&format!(
                "sandbox: {} ({}: the container shares the network and the host's processes; \
                 its volumes are copied in, and back when it ends)",
                sandbox.isolation().as_str(),
                if opts.isolation.is_some() {
                    "asked"
                } else {
                    "no user namespaces here"
                }
            ));
        }
        Ok(sandbox)
    };
    run_with(opts, cache, sandbox, printer)
}

/// Runs the image with the runner `sandbox` gives, asked for once the
/// image is known to be usable and before it is unpacked.
pub fn run_with<R: Runner>(
    opts: &RunOptions,
    cache: &Cache,
    sandbox: impl FnOnce() -> Result<R, SandboxError>,
    printer: &Printer,
) -> Result<i32, Error> {
    // Everything the user gave is checked before any work.
    let user_env = opts
        .env
        .iter()
        .map(|e| parse_env(e))
        .collect::<Result<Vec<_>, _>>()?;
    let volumes = opts
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>, _>>()?;
    let image = open_image(&opts.image)?;
    let digest = image.digest();
    let config = image.config()?;
    let runner = sandbox()?;
    let c = config.config().clone().unwrap_or_default();
    let bound: Vec<(String, bool)> = volumes
        .iter()
        .filter_map(|m| match m {
            Mount::Bind(src, dest) | Mount::ReadOnly(src, dest) => {
                Some((dest.clone(), src.is_dir()))
            }
            _ => None,
        })
        .collect();
    let image_volumes: Vec<String> = c.volumes().clone().unwrap_or_default();
    let dests = mount_points(&image_volumes, &bound);
    let (tree, _tree_lock) = cached_tree(cache, &image, &dests, printer)?;
    let (uid, gid) = resolve_user(&tree, c.user().as_deref().unwrap_or(""))?;
    let env = environment(&c, user_env);
    let argv = command(&c, &opts.args)?;
    // Writable places first, then the user's binds over them.
    let mut mounts = vec![Mount::Tmpfs("/run".into())];
    let mut files = Vec::new();
    let scratch = contract::SCRATCH.iter().map(|s| s.to_string());
    for place in scratch.chain(image_volumes) {
        if !bound.iter().any(|(d, _)| covers(d, &place)) {
            writable_copy(&tree, &place, &mut mounts, &mut files)?;
        }
    }
    mounts.extend(volumes);
    let plan = Plan {
        what: format!("image {digest}"),
        root: tree.clone(),
        writable_root: false,
        mounts,
        env,
        uid,
        gid,
        cwd: c
            .working_dir()
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        share_net: true,
        argv,
    };
    // The runner prints the "run: …" line once its signal handlers are in
    // place: a stop signal sent as soon as that line shows is never lost.
    let code = runner.run(
        &plan,
        Output::Interactive {
            stop_timeout: opts.stop_timeout,
            printer,
        },
    )?;
    // The descriptors bwrap copied the scratch files from.
    drop(files);
    Ok(code)
}

/// The image named `oci:DIR[:TAG]` (or a layout directory alone).
fn open_image(name: &str) -> Result<Image, Error> {
    let spec = name.strip_prefix("oci:").unwrap_or(name);
    let (dir, tag) = if Path::new(spec).join("oci-layout").is_file() {
        (PathBuf::from(spec), None)
    } else {
        crate::rootfs::split_layout_ref(spec)
    };
    Ok(Layout::open(&dir)?.image(tag.as_deref())?)
}

/// Mount points the read-only tree must have (path, is a directory): the
/// image's volumes, and the user's binds (`bound`) that do not land in a
/// place bwrap makes itself (a tmpfs, /dev, another bind).
fn mount_points(image_volumes: &[String], bound: &[(String, bool)]) -> Vec<(String, bool)> {
    let made_by_bwrap: Vec<String> = ["/dev", "/tmp", "/run"]
        .iter()
        .map(|s| s.to_string())
        .chain(contract::SCRATCH.iter().map(|s| s.to_string()))
        .chain(image_volumes.iter().cloned())
        .chain(bound.iter().map(|(d, _)| d.clone()))
        .collect();
    let mut dests: Vec<(String, bool)> = image_volumes.iter().map(|v| (v.clone(), true)).collect();
    dests.extend(
        bound
            .iter()
            .filter(|(d, _)| !made_by_bwrap.iter().any(|w| w != d && covers(w, d)))
            .cloned(),
    );
    dests
}

/// The image's environment with the user's `--env` values over it.
fn environment(
    c: &oci_spec::image::Config,
    user_env: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = c
        .env()
        .clone()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for (k, v) in user_env {
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    }
    env
}

/// The entrypoint followed by the arguments given, else by the image's
/// command.
fn command(c: &oci_spec::image::Config, args: &[String]) -> Result<Vec<String>, Error> {
    let mut argv: Vec<String> = c.entrypoint().clone().unwrap_or_default();
    if args.is_empty() {
        argv.extend(c.cmd().clone().unwrap_or_default());
    } else {
        argv.extend(args.iter().cloned());
    }
    if argv.is_empty() {
        return Err(RunError::NoCommand.into());
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OCI layout at `dir` with one image (tag 1.0): a passwd naming
    /// blue, a settings file in a scratch directory, a volume.
    fn small_image(dir: &Path) {
        use crate::contract::OWNER;
        use crate::image::documents::{image_documents, ImageLayer, ImageSettings};
        use crate::image::layer::{Compression, Entry, Layer, Owner};
        let layout = Layout::create(dir).unwrap();
        let mut l = Layer::new();
        l.add(
            Entry::bytes(
                "etc/passwd",
                "blue:x:1000:33::/home/blue:/bin/sh\n",
                0o644,
                Owner::ROOT,
            ),
            Owner::ROOT,
        );
        l.add(
            Entry::bytes("home/blue/config/app/50_default.ini", "[a]\n", 0o644, OWNER),
            OWNER,
        );
        let blob = l
            .write_blob(layout.blobs().dir(), Compression::Gzip, 0)
            .unwrap();
        let settings = ImageSettings {
            user: "blue".into(),
            env: vec!["A=1".into(), "B=image".into()],
            entrypoint: vec!["/bin/echo".into()],
            cmd: vec!["hello".into()],
            working_dir: "/home/blue".into(),
            volumes: vec!["/media".into()],
            created: crate::epoch::rfc3339(0),
            architecture: "amd64".into(),
            ..Default::default()
        };
        let layers = [ImageLayer {
            blob,
            created_by: "test".into(),
        }];
        let docs = image_documents(&settings, &layers).unwrap();
        layout.blobs().put_bytes(&docs.config).unwrap();
        let digest = layout.blobs().put_bytes(&docs.manifest).unwrap();
        layout
            .tag(&digest, docs.manifest.len() as u64, "1.0")
            .unwrap();
    }

    #[test]
    fn a_run_is_planned_read_only_with_scratch_copies_volumes_and_binds() {
        let dir = tempfile::tempdir().unwrap();
        small_image(&dir.path().join("oci"));
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let host = dir.path().join("data");
        std::fs::create_dir(&host).unwrap();
        let opts = RunOptions {
            image: format!("oci:{}:1.0", dir.path().join("oci").display()),
            args: vec![],
            volumes: vec![format!("{}:/data:ro", host.display())],
            env: vec!["B=mine".into()],
            stop_timeout: Duration::from_secs(10),
            isolation: None,
        };
        let recorder = crate::sandbox::Recorder::default();
        let printer = Printer::new(crate::output::Mode::Quiet, false);
        let code = run_with(&opts, &cache, || Ok(&recorder), &printer).unwrap();
        assert_eq!(code, 0);
        let plans = recorder.plans.lock().unwrap();
        assert_eq!(plans.len(), 1, "one sandbox run");
        let p = &plans[0];
        assert!(p.root.starts_with(cache.run_dir()), "{:?}", p.root);
        assert!(!p.writable_root && p.share_net);
        assert_eq!((p.uid, p.gid, p.cwd.as_str()), (1000, 33, "/home/blue"));
        assert_eq!(p.argv, ["/bin/echo", "hello"]);
        assert_eq!(
            p.env,
            [
                ("A".to_string(), "1".to_string()),
                ("B".into(), "mine".into())
            ]
        );
        assert_eq!(p.mounts[0], Mount::Tmpfs("/run".into()));
        assert!(p.mounts.iter().any(
            |m| matches!(m, Mount::File { dest, .. } if dest == "/home/blue/config/app/50_default.ini")
        ));
        assert!(p
            .mounts
            .iter()
            .any(|m| matches!(m, Mount::TmpfsMode(d, _) if d == "/media")));
        assert_eq!(
            p.mounts.last(),
            Some(&Mount::ReadOnly(
                host.canonicalize().unwrap(),
                "/data".into()
            )),
            "the user's binds come last, over the writable places"
        );
        assert!(
            p.root.join("media").is_dir(),
            "the volume's mount point was made"
        );
    }

    #[test]
    fn user_names_resolve_through_passwd_and_group() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nblue:x:1000:33::/home/blue:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(t.path().join("etc/group"), "root:x:0:\nwww-data:x:33:\n").unwrap();
        assert_eq!(resolve_user(t.path(), "blue").unwrap(), (1000, 33));
        assert_eq!(resolve_user(t.path(), "blue:root").unwrap(), (1000, 0));
        assert_eq!(resolve_user(t.path(), "1234").unwrap(), (1234, 1234));
        assert!(resolve_user(t.path(), "nobody").is_err());
    }

    #[test]
    fn volumes_need_an_absolute_container_path() {
        assert!(parse_volume("/tmp:relative").is_err());
        assert!(
            matches!(parse_volume("/tmp:/data:ro").unwrap(), Mount::ReadOnly(_, d) if d == "/data")
        );
    }

    #[test]
    fn env_needs_a_key() {
        // Regression: `-e =x` failed inside bwrap after unpacking.
        assert!(parse_env("=x").is_err());
        assert!(parse_env("NOEQUALS").is_err());
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
    }
}
