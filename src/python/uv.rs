//! uv, the resolver, sdist builder and installer of the Python stages: one
//! static binary (its musllinux wheel), pinned here by version and by the
//! sha256 of both the wheel and the binary, fetched once per cache from the
//! configured index by the compiler's pip (`pip download --require-hashes`,
//! so that pip's index settings, default index included, apply unchanged)
//! or taken from an offline store, and bound read-only at [`MOUNT`] in the
//! sandboxes that run it. Chosen over pip for speed: a resolution in
//! 0.1-0.4 s where pip takes 2.5-3 s, a build environment from the index in
//! a fraction of pip's (benches/resolve.sh).

use std::path::{Path, PathBuf};

use super::compile::PipRun;
use super::{io_err, wheel, PythonContext, PythonError};
use crate::cache::KeyBuilder;
use crate::digest::Digest;
use crate::rootfs::Rootfs;
use crate::sandbox::Mount;
use crate::spec::PipSettings;

/// The uv release used.
pub const VERSION: &str = "0.13.9";
/// Where the sandboxes see uv's directory.
pub const MOUNT: &str = "/assemble/uv";
/// The binary, as the sandboxes see it.
pub const BIN: &str = "/assemble/uv/uv";

/// The pinned wheel of one architecture.
#[derive(Debug)]
pub struct Pinned {
    /// Rust's name of the architecture.
    arch: &'static str,
    /// The wheel's platform tag, as `pip download --platform` takes it.
    platform: &'static str,
    /// The wheel's file name.
    pub wheel: &'static str,
    /// sha256 of the wheel.
    pub wheel_sha256: &'static str,
    /// sha256 of the binary in it.
    binary_sha256: &'static str,
}

const PINNED: [Pinned; 2] = [
    Pinned {
        arch: "x86_64",
        platform: "musllinux_1_1_x86_64",
        wheel: "uv-0.13.9-py3-none-musllinux_1_1_x86_64.whl",
        wheel_sha256: "2c45530751517d6c3bbc69a19473f6effe47cce047bede01ffd8af7ea7b36b25",
        binary_sha256: "edbfb9a3d00dc84148e6691cd8740781fdc32db6505d7ef88ba6c3e569d5bec9",
    },
    Pinned {
        arch: "aarch64",
        platform: "musllinux_1_1_aarch64",
        wheel: "uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl",
        wheel_sha256: "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
        binary_sha256: "bbecb5ac518030bb5e84f1999c577228460192832ac24a92bd772735682979f4",
    },
];

/// The pinned wheel for this machine.
pub fn pinned() -> Result<&'static Pinned, PythonError> {
    let arch = std::env::consts::ARCH;
    PINNED.iter().find(|p| p.arch == arch).ok_or_else(|| {
        PythonError::Tool(format!(
            "assemble pins uv {VERSION} for x86_64 and aarch64 only, not {arch}"
        ))
    })
}

/// uv in the cache: the binary and the wheel it came from.
#[derive(Clone, Debug)]
pub struct Uv {
    /// The directory holding `uv` (bound at [`MOUNT`]).
    pub dir: PathBuf,
    /// The wheel, for `assemble vendor` to store.
    pub wheel: PathBuf,
}

impl Uv {
    /// uv's directory, read-only at [`MOUNT`].
    pub fn mount(&self) -> Mount {
        Mount::ReadOnly(self.dir.clone(), MOUNT.into())
    }
}

/// Where uv's wheel comes from when the cache lacks it.
pub enum Source<'a> {
    /// The configured index, through the compiler's pip.
    Index {
        /// pip's settings (indexes, CA, proxies).
        pip: &'a PipSettings,
        /// The compiler rootfs pip runs in.
        compiler: &'a Rootfs,
    },
    /// An offline store's directory of tools.
    Store(&'a Path),
}

/// The cache key of uv's entry (`tools/KEY/{uv,WHEEL}`).
pub(crate) fn cache_key(pin: &Pinned) -> String {
    KeyBuilder::new("uv-v1")
        .part("binary", pin.binary_sha256.as_bytes())
        .finish()
}

/// uv from the cache, or its pinned wheel from `source`, checked (the
/// wheel's and the binary's sha256) and committed to the cache.
pub fn ensure(ctx: &PythonContext, source: Source) -> Result<Uv, PythonError> {
    let pin = pinned()?;
    let key = cache_key(pin);
    let entry = ctx.cache.entry("tools", &key);
    if entry.join("uv").is_file() && entry.join(pin.wheel).is_file() {
        return Ok(Uv {
            wheel: entry.join(pin.wheel),
            dir: entry,
        });
    }
    let work = ctx.cache.work_dir("uv")?;
    let wheel_path = work.path().join(pin.wheel);
    match source {
        Source::Store(dir) => {
            let from = dir.join(pin.wheel);
            if !from.is_file() {
                return Err(PythonError::Tool(format!(
                    "the offline store has no {} (its installer): fill it again with `assemble vendor` from a connected machine",
                    from.display()
                )));
            }
            ctx.printer.step(&format!(
                "tools: uv {VERSION} from the offline store (once per cache)"
            ));
            fs_err::copy(&from, &wheel_path).map_err(io_err(&from))?;
        }
        Source::Index { pip, compiler } => {
            download(ctx, pip, compiler, pin, &wheel_path)?;
        }
    }
    let data = fs_err::read(&wheel_path).map_err(io_err(&wheel_path))?;
    let got = Digest::of(&data);
    if got.hex() != pin.wheel_sha256 {
        return Err(PythonError::HashMismatch {
            what: pin.wheel.to_string(),
            expected: pin.wheel_sha256.into(),
            got: got.hex().to_string(),
        });
    }
    let member = format!("uv-{VERSION}.data/scripts/uv");
    let binary = wheel::member(&data, &member)
        .map_err(|source| PythonError::UnreadableWheel {
            wheel: pin.wheel.to_string(),
            source,
        })?
        .ok_or_else(|| PythonError::Tool(format!("{} has no {member}", pin.wheel)))?;
    let got = Digest::of(&binary);
    if got.hex() != pin.binary_sha256 {
        return Err(PythonError::HashMismatch {
            what: format!("{member} in {}", pin.wheel),
            expected: pin.binary_sha256.into(),
            got: got.hex().to_string(),
        });
    }
    let bin = work.path().join("uv");
    fs_err::write(&bin, &binary).map_err(io_err(&bin))?;
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).map_err(io_err(&bin))?;
    let entry = ctx.cache.commit_dir(work, "tools", &key)?;
    Ok(Uv {
        wheel: entry.join(pin.wheel),
        dir: entry,
    })
}

/// The pinned wheel from the configured index: `pip download` in the
/// compiler, hashes required.
fn download(
    ctx: &PythonContext,
    pip: &PipSettings,
    compiler: &Rootfs,
    pin: &Pinned,
    dest: &Path,
) -> Result<(), PythonError> {
    let work = ctx.cache.work_dir("uv-download")?;
    let run = PipRun::prepare(ctx, pip, compiler, work.path())?;
    let req = work.path().join("tools").join("uv.txt");
    fs_err::write(
        &req,
        format!("uv=={VERSION} --hash=sha256:{}\n", pin.wheel_sha256),
    )
    .map_err(io_err(&req))?;
    ctx.printer.step(&format!(
        "tools: fetching uv {VERSION} from the index (once per cache)"
    ));
    let argv: Vec<String> = [
        run.py.as_str(),
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--platform",
        pin.platform,
        "--require-hashes",
        "--dest",
        "/assemble/wheelhouse",
        "-r",
        "/assemble/tools/uv.txt",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mounts = vec![Mount::Bind(
        run.wheels.clone(),
        "/assemble/wheelhouse".into(),
    )];
    ctx.runner
        .run(
            &run.plan(
                &format!("fetch uv {VERSION}{}", super::index_label(pip)),
                mounts,
                argv,
            ),
            run.output,
        )
        .map_err(|e| {
            PythonError::Tool(format!(
                "cannot fetch uv {VERSION} ({}) from the index: assemble resolves, builds and installs with it; put that file on the index (a mirror of PyPI has it), or build with --offline from a store `assemble vendor` filled\n  {e}",
                pin.wheel
            ))
        })?;
    let got = run.wheels.join(pin.wheel);
    fs_err::rename(&got, dest).map_err(io_err(&got))?;
    Ok(())
}

/// uv's environment in a sandbox, from `pip`'s settings: the indexes
/// (in the environment, never on a command line a process list shows),
/// merged as pip merges them (`unsafe-best-match`), hosts whose
/// certificates are not checked, pip's CA when one is set (bound with the
/// tools at `/assemble/tools`); no keyring, no config file, no Python
/// download; its cache on the sandbox's /tmp, a new one each run (and one
/// per sdist built: nothing a package's build code wrote is reused), build
/// environments copied out of it, never linked.
pub fn env(pip: Option<&PipSettings>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("UV_CACHE_DIR", "/tmp/uv-cache"),
        ("UV_NO_PROGRESS", "1"),
        // Build environments are copies, never links into a cache.
        ("UV_LINK_MODE", "copy"),
        ("UV_NO_CONFIG", "1"),
        ("UV_PYTHON_DOWNLOADS", "never"),
        ("UV_KEYRING_PROVIDER", "disabled"),
        ("UV_INDEX_STRATEGY", "unsafe-best-match"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let Some(pip) = pip else {
        return v;
    };
    if let Some(i) = &pip.index_url {
        v.push(("UV_INDEX_URL".into(), i.clone()));
    }
    if !pip.extra_index_urls.is_empty() {
        v.push(("UV_EXTRA_INDEX_URL".into(), pip.extra_index_urls.join(" ")));
    }
    if !pip.trusted_hosts.is_empty() {
        v.push(("UV_INSECURE_HOST".into(), pip.trusted_hosts.join(" ")));
    }
    if pip.cert.is_some() {
        v.push(("SSL_CERT_FILE".into(), "/assemble/tools/cert.pem".into()));
    }
    v
}
