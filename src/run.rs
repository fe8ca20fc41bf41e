//! `assemble run IMAGE [ARGS]`: unpacks an image from an OCI layout into a
//! private directory and runs its entrypoint rootless with bubblewrap, as the
//! image's user, on the host's network, so an image can be smoke-tested
//! without a container engine.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::cache::Cache;
use crate::layer;
use crate::oci::{self, Layout};
use crate::output::Printer;
use crate::sandbox::{self, Bubblewrap, Mount, Plan};
use crate::Error;

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
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // kill(2) is async-signal-safe.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Parses `HOST:CONTAINER[:ro]`.
pub fn parse_volume(v: &str) -> Result<Mount, Error> {
    let bad = || {
        Error::Usage(format!(
            "--volume {v:?} is not HOST:CONTAINER or HOST:CONTAINER:ro"
        ))
    };
    let parts: Vec<&str> = v.split(':').collect();
    let (host, dest, ro) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        _ => return Err(bad()),
    };
    if host.is_empty() || !dest.starts_with('/') {
        return Err(bad());
    }
    let host = std::fs::canonicalize(host)
        .map_err(|e| Error::Usage(format!("--volume {v:?}: {host} cannot be used ({e})")))?;
    Ok(if ro {
        Mount::ReadOnly(host, dest.into())
    } else {
        Mount::Bind(host, dest.into())
    })
}

/// Resolves a user name or `uid[:gid]` against the image's /etc/passwd and /etc/group.
pub fn resolve_user(tree: &Path, user: &str) -> Result<(u32, u32), Error> {
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
        Err(_) => lookup(&passwd, u).ok_or_else(|| {
            Error::Usage(format!("the image's user {u:?} is not in its /etc/passwd"))
        })?,
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
                    .ok_or_else(|| {
                        Error::Usage(format!("the image's group {g:?} is not in its /etc/group"))
                    })?
            }
        };
    }
    Ok((uid, gid))
}

/// Unpacks the image's layers, in order, into `tree`.
pub fn unpack_image(
    layout: &Layout,
    manifest: &oci_spec::image::ImageManifest,
    tree: &Path,
) -> Result<(), Error> {
    for desc in manifest.layers() {
        let digest = oci::descriptor_digest(desc)?;
        let path = layout.blobs().path(&digest);
        let file = io::BufReader::new(fs_err::File::open(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?);
        let media = desc.media_type().to_string();
        let reader = layer::decoder(&media, file)
            .map_err(|e| Error::Usage(format!("layer {digest}: {e}")))?;
        crate::unpack::unpack(reader, tree)?;
    }
    Ok(())
}

/// Runs the image; returns the entrypoint's exit code.
pub fn run(opts: &RunOptions, cache: &Cache, printer: &Printer) -> Result<i32, Error> {
    let spec = opts.image.strip_prefix("oci:").unwrap_or(&opts.image);
    let (dir, tag) = if Path::new(spec).join("oci-layout").is_file() {
        (PathBuf::from(spec), None)
    } else {
        crate::rootfs::split_layout_ref(spec)
    };
    let layout = Layout::open(&dir)?;
    let (digest, manifest) = layout.resolve(tag.as_deref())?;
    let config = layout.config(&manifest)?;
    let volumes = opts
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>, _>>()?;
    let bwrap = Bubblewrap::probe()?;
    let work = cache.work_dir("run")?;
    let tree = work.path().join("rootfs");
    fs_err::create_dir(&tree).map_err(|source| Error::Io {
        path: tree.clone(),
        source,
    })?;
    printer.step(&format!(
        "run: unpacking {} ({} layers)",
        digest,
        manifest.layers().len()
    ));
    unpack_image(&layout, &manifest, &tree)?;
    let c = config.config().clone().unwrap_or_default();
    let (uid, gid) = resolve_user(&tree, c.user().as_deref().unwrap_or(""))?;
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
    for e in &opts.env {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--env {e:?} is not KEY=VALUE")))?;
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    let mut argv: Vec<String> = c.entrypoint().clone().unwrap_or_default();
    if opts.args.is_empty() {
        argv.extend(c.cmd().clone().unwrap_or_default());
    } else {
        argv.extend(opts.args.iter().cloned());
    }
    if argv.is_empty() {
        return Err(Error::Usage(
            "the image has no entrypoint or command and none was given".into(),
        ));
    }
    let plan = Plan {
        what: format!("image {digest}"),
        root: tree.clone(),
        writable_root: true,
        mounts: volumes,
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
    printer.step(&format!("run: {} as {uid}:{gid}", plan.argv.join(" ")));
    let mut cmd = Command::new(&bwrap.program);
    cmd.args(sandbox::bwrap_args(&plan));
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(sandbox::SandboxError::Spawn)?;
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    // Forward termination to the sandbox so that this process can clean up.
    unsafe {
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(s, forward as *const () as libc::sighandler_t);
        }
    }
    let status = child.wait().map_err(sandbox::SandboxError::Spawn)?;
    CHILD.store(0, Ordering::SeqCst);
    crate::unpack::make_writable(work.path());
    drop(work);
    Ok(sandbox::exit_code(&status))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
