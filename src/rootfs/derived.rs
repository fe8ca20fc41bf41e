//! A compiler made from a given base: the base's own tree plus the build
//! packages, installed by the base's own apt from the base's own sources,
//! so that the wheels are compiled against exactly the base's C library and
//! Python (any Debian or Ubuntu release, whatever Python it ships).
//!
//! apt runs as root of a user namespace mapped over the user's subordinate
//! ids (`unshare --map-auto`: root's own too, so the base's programs never
//! run as the host's root), in a private mount and pid namespace, in a new
//! session (no terminal to push input into), with an environment of
//! nothing but `PATH` and the proxy variables, under bubblewrap with a
//! copy of the base's tree as its root (`pivot_root`, not a chroot, which
//! does not hold a namespace's root), its own `/dev`, pid namespace and
//! `/proc`. The same namespace completes a given base that lacks what the
//! image runs ([`completed`]): the change is one layer over the base's. The tree goes
//! in and the result comes out as tar streams (owners numeric), so the
//! namespace never reads or writes the user's files; the copy lives in
//! `/var/tmp` (world-writable, on disk) and is removed there. Only where
//! user namespaces work: the caller falls back otherwise. The result is
//! the rootfs's one layer, unpacked rootless like any other. Cached by the
//! base's key and the packages.

use std::io;
use std::path::Path;

use crate::cache::{Cache, KeyBuilder};
use crate::image::layer;
use crate::image::unpack;
use crate::output::Printer;
use crate::rootfs::error::{io_err, RootfsError};
use crate::rootfs::{commit, interpreter, load_cached, Rootfs};
use crate::sandbox::{HostCommand, Runner};

/// Run as the user: $1 the base's tree, $2 the tar to write, $3 the script
/// run inside ([`INSIDE`]), then its arguments. The tree is streamed in with
/// every owner root (the user's own files), without the mount points
/// assemble made in it (`prepare_tree`); a failure of that side is noted
/// beside the output (sh has no pipefail).
const OUTSIDE: &str = r#"set -eu
tree=$1 out=$2 inside=$3
shift 3
rm -f "$out.failed"
{ tar -C "$tree" --numeric-owner --owner=0 --group=0 --anchored --exclude=./assemble \
    --exclude=./home/blue/app -cf - . || : > "$out.failed"; } |
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        ${http_proxy:+http_proxy="$http_proxy"} ${https_proxy:+https_proxy="$https_proxy"} \
        ${no_proxy:+no_proxy="$no_proxy"} \
        setsid -w unshare --map-auto --setuid 0 --setgid 0 --mount --pid --fork --kill-child \
        --propagation private /bin/sh -c "$inside" inside "$@" > "$out"
if [ -e "$out.failed" ]; then
    rm -f "$out.failed"
    echo "cannot read the base's tree" >&2
    exit 1
fi
"#;

/// Run as root of the namespace (its own private mount namespace): $1
/// what to write (`tree`: the whole result, a compiler; `diff`: what apt
/// and useradd changed, as an image layer with whiteouts, a completed
/// base), $2 `user` to make the image's user, $3 SOURCE_DATE_EPOCH, then
/// the packages. The base's tree on standard input, the result on standard
/// output; everything else goes to standard error.
///
/// The base's programs run only under bubblewrap (`inbase`): the copy as
/// its root by `pivot_root` (a chroot does not hold a namespace's root:
/// `/proc/1/root`, or a second chroot, leads out), its own pid namespace
/// and `/proc` (whatever a maintainer script starts dies with each step),
/// no descriptor but the standard ones. Everything this script does on the
/// copy itself is done when none of them runs, on paths `find` listed
/// (symlinks never followed), names taken verbatim.
const INSIDE: &str = r##"set -eu
mode=$1 user=$2 epoch=$3
shift 3
exec 3>&1 1>&2
# This pid namespace's own /proc (bubblewrap reads its child's there).
mount -t proc proc /proc
work=$(mktemp -d /var/tmp/assemble-rootfs.XXXXXX)
farm=$work/root
mkdir "$farm"
cleanup() {
    set +e
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
tar -x -C "$farm" --numeric-owner -f -
# The empty home assemble made for the venv's mount point is not the base's.
[ -L "$farm/home" ] || rmdir "$farm/home/blue" 2>/dev/null || :
newline='
'
# Every path of the copy but /dev and /proc, sorted; none may hold a
# newline (the lists are one path a line).
paths() {
    if (cd "$farm" && find . -name "*$newline*" | grep -q .); then
        echo "a path of the base has a newline in its name" >&2
        exit 1
    fi
    (cd "$farm" && find . \( -path ./dev -o -path ./proc \) -prune -o ! -path . "$@" -print) \
        | LC_ALL=C sort
}
paths > "$work/before"
paths -type d > "$work/before-dirs"
: > "$work/stamp"
# /dev and /proc are made anew (mount points); /etc must be a directory.
for d in dev proc; do
    rm -rf "$farm/$d"
    mkdir -m 755 "$farm/$d"
done
if [ -L "$farm/etc" ] || [ ! -d "$farm/etc" ]; then
    echo "the base's /etc is not a directory" >&2
    exit 1
fi
rm -f "$farm/etc/resolv.conf"
cat /etc/resolv.conf > "$farm/etc/resolv.conf" 2>/dev/null || : > "$farm/etc/resolv.conf"
proxy_http=${http_proxy:-${HTTP_PROXY:-}}
proxy_https=${https_proxy:-${HTTPS_PROXY:-}}
inbase() {
    status=
    bwrap --bind "$farm" / --dev /dev --proc /proc --unshare-pid --as-pid-1 --unshare-ipc \
        --unshare-uts --die-with-parent --cap-add ALL --clearenv \
        --setenv PATH /usr/sbin:/usr/bin:/sbin:/bin --setenv DEBIAN_FRONTEND noninteractive \
        --setenv LC_ALL C.UTF-8 \
        ${proxy_http:+--setenv http_proxy "$proxy_http"} \
        ${proxy_https:+--setenv https_proxy "$proxy_https"} \
        ${no_proxy:+--setenv no_proxy "$no_proxy"} \
        "$@" 3>&- </dev/null || status=$?
    # The command was its pid namespace's init: when it ended, the kernel
    # ended the rest. Whatever else of ours is left ends now too.
    kill -KILL -1 2>/dev/null || :
    return "${status:-0}"
}
apt() {
    inbase apt-get -q -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0 "$@"
}
if [ $# -gt 0 ]; then
    # No service is started by a maintainer script (the base's own policy
    # stays when it has one).
    inbase /bin/sh -c '[ -e /usr/sbin/policy-rc.d ] && exit 0
        printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d.assemble
        chmod 755 /usr/sbin/policy-rc.d.assemble
        mv /usr/sbin/policy-rc.d.assemble /usr/sbin/policy-rc.d
        : > /usr/sbin/.policy-rc.d.assemble'
    apt update
    apt install -y --no-install-recommends "$@"
    apt clean
    inbase /bin/sh -c '[ -e /usr/sbin/.policy-rc.d.assemble ] || exit 0
        rm -f /usr/sbin/policy-rc.d /usr/sbin/.policy-rc.d.assemble'
fi
if [ "$user" = user ]; then
    # The image's user, as layers/base/setup.sh makes it; its home made by
    # useradd (the empty one assemble made for the venv's mount point
    # goes first).
    inbase /bin/sh -c 'rmdir /home/blue 2>/dev/null || :'
    inbase useradd --uid 1000 --gid 33 --create-home --home-dir /home/blue --shell /bin/bash blue
    inbase chmod 0755 /home/blue
fi
# apt's lists and logs are not part of a rootfs.
inbase /bin/sh -c 'rm -rf /var/lib/apt/lists/* /etc/resolv.conf /var/log/apt/* /var/log/dpkg.log \
    /var/log/alternatives.log && : > /etc/resolv.conf'
rm -rf "$farm/dev" "$farm/proc"
mkdir -m 755 "$farm/dev" "$farm/proc"
if [ "$mode" = tree ]; then
    tar --numeric-owner -C "$farm" -cf - . >&3
    exit 0
fi
# The layer: what apt and useradd made or rewrote (a status change newer
# than the stamp) but the directories the base had and still has (their owners and modes
# are not the base's in the copy: /tmp's sticky bit, a group), and a
# whiteout for each path gone (the topmost one only, not under what is no
# longer a directory). resolv.conf is the runtime's.
paths > "$work/after"
(cd "$farm" && find . \( -path ./dev -o -path ./proc -o -path ./etc/resolv.conf \) -prune \
    -o ! -path . -cnewer "$work/stamp" -print) | LC_ALL=C sort > "$work/newer"
LC_ALL=C comm -12 "$work/newer" "$work/before-dirs" | while IFS= read -r p; do
    if [ -L "$farm/$p" ] || [ ! -d "$farm/$p" ]; then printf '%s\n' "$p"; fi
done > "$work/changed"
LC_ALL=C comm -23 "$work/newer" "$work/before-dirs" >> "$work/changed"
LC_ALL=C sort -o "$work/changed" "$work/changed"
LC_ALL=C comm -23 "$work/before" "$work/after" | grep -vxF ./etc/resolv.conf | awk '
    { p = $0; top = 1
      while ((i = match(p, /\/[^\/]*$/)) > 1) { p = substr(p, 1, i - 1); if (p in gone) { top = 0; break } }
      gone[$0] = 1
      if (top) print }' > "$work/gone" || :
mkdir "$work/wh"
: > "$work/whiteouts"
while IFS= read -r p; do
    d=$(dirname "$p") b=$(basename "$p")
    if [ -L "$farm/$d" ] || [ ! -d "$farm/$d" ]; then continue; fi
    mkdir -p "$work/wh/$d"
    : > "$work/wh/$d/.wh.$b"
    printf '%s\n' "$d/.wh.$b" >> "$work/whiteouts"
done < "$work/gone"
tar --numeric-owner --no-recursion --mtime="@$epoch" --clamp-mtime -cf - \
    --verbatim-files-from --no-unquote \
    -C "$farm" -T "$work/changed" -C "$work/wh" -T "$work/whiteouts" >&3
"##;

/// Whether a compiler can be made from the base: it has apt and sources
/// of binary packages for it (a `deb` line in a `.list` file, or a
/// deb822 stanza of `Types: deb` not disabled in a `.sources` file).
pub fn derivable(tree: &Path) -> bool {
    let list = |text: &str| text.lines().any(|l| l.trim_start().starts_with("deb "));
    let deb822 = |text: &str| {
        text.split("\n\n").any(|stanza| {
            let field = |name: &str| {
                stanza.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
            };
            field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
                && field("Enabled").is_none_or(|e| !e.eq_ignore_ascii_case("no"))
        })
    };
    let read = |rel: &str| interpreter::read_inside(tree, rel).unwrap_or_default();
    let sources = list(&read("etc/apt/sources.list"))
        || interpreter::names_in(tree, "etc/apt/sources.list.d", "")
            .iter()
            .any(|n| {
                let text = read(&format!("etc/apt/sources.list.d/{n}"));
                (n.ends_with(".list") && list(&text)) || (n.ends_with(".sources") && deb822(&text))
            });
    interpreter::exists_inside(tree, "usr/bin/apt-get") && sources
}

/// What the namespace writes.
enum Mode {
    /// The whole tree (a compiler).
    Tree,
    /// What changed, as a layer over the base: the image's user made when
    /// `user`, mtimes clamped to `epoch`.
    Diff { user: bool, epoch: u64 },
}

/// Runs the base's apt (and useradd) in a copy of its tree in the user
/// namespace, writing the result as a tar to `tar_path`.
fn run_apt(
    base: &Rootfs,
    tar_path: &Path,
    mode: Mode,
    packages: &[String],
    runner: &dyn Runner,
    doing: &'static str,
    instead: String,
) -> Result<(), RootfsError> {
    let mut args: Vec<String> = vec!["-c".into(), OUTSIDE.into(), "derive".into()];
    args.push(base.tree.display().to_string());
    args.push(tar_path.display().to_string());
    args.push(INSIDE.into());
    let (what, mode, user, epoch) = match mode {
        Mode::Tree => ("apt-get in the base, for the compiler", "tree", false, 0),
        Mode::Diff { user, epoch } => ("apt-get in the base, for the image", "diff", user, epoch),
    };
    args.push(mode.into());
    args.push(if user { "user" } else { "no-user" }.into());
    args.push(epoch.to_string());
    args.extend(packages.iter().cloned());
    let out = runner.run_host(&HostCommand {
        what: what.into(),
        program: "/bin/sh".into(),
        args,
        env: Vec::new(),
        stdin: None,
    })?;
    if !out.success {
        return Err(RootfsError::Derive {
            what: doing,
            instead,
            status: out.status,
            tail: super::archive::failure_tail(&out.stderr),
        });
    }
    Ok(())
}

/// The base completed with what the image runs: `packages` installed by
/// its own apt from its own sources, and the image's user made when
/// `user`, in the same namespace as [`derived`]; the change is one layer
/// over the base's (whiteouts for what apt removed), its mtimes clamped to
/// `epoch`. Cached by the base's key, the packages and the user.
pub fn completed(
    cache: &Cache,
    base: &Rootfs,
    packages: &[String],
    user: bool,
    epoch: u64,
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<Rootfs, RootfsError> {
    let key = KeyBuilder::new("rootfs-completed-v1")
        .part("base", base.key.as_bytes())
        .part("packages", packages.join(" ").as_bytes())
        .part("user", &[user as u8])
        .part("epoch", epoch.to_string().as_bytes())
        .finish();
    let what = match (packages.is_empty(), user) {
        (false, true) => format!("{} and user blue", packages.join(" ")),
        (false, false) => packages.join(" "),
        (true, _) => "user blue".into(),
    };
    if let Some(r) = load_cached(cache, &key) {
        printer.step(&format!(
            "base rootfs: cached ({}, completed with {what})",
            &key[..12]
        ));
        return Ok(r);
    }
    printer.step(&format!(
        "base rootfs: completing it with its apt: {what} (what the image runs)"
    ));
    let work = cache.work_dir("rootfs-completed")?;
    let tar_path = work.path().join("layer.tar");
    run_apt(
        base,
        &tar_path,
        Mode::Diff { user, epoch },
        packages,
        runner,
        "add what the image runs to the base",
        format!("or make a base that has it ({what})"),
    )?;
    let blob = layer::compress_tar_blob(
        fs_err::File::open(&tar_path).map_err(io_err(&tar_path))?,
        cache.blobs().dir(),
    )?;
    drop(work);
    let mut layers = base.layers.clone();
    layers.push(blob);
    let mut created_by = base.created_by.clone();
    created_by.push(format!("apt-get install in the base ({what})"));
    super::given::unpack_known(
        cache,
        &key,
        &layers,
        &created_by,
        None,
        cache.blobs(),
        "the base completed with its apt",
    )
}

/// The cache key of the compiler made from `base` with `packages`.
fn key(base: &Rootfs, packages: &[String]) -> String {
    KeyBuilder::new("rootfs-derived-v1")
        .part("base", base.key.as_bytes())
        .part("packages", packages.join(" ").as_bytes())
        .finish()
}

/// The compiler made from `base` with `packages` (sorted, deduplicated),
/// cached by the base's key and the packages.
pub fn derived(
    cache: &Cache,
    base: &Rootfs,
    packages: &[String],
    runner: &dyn Runner,
    printer: &Printer,
) -> Result<Rootfs, RootfsError> {
    let key = key(base, packages);
    if let Some(r) = load_cached(cache, &key) {
        printer.step(&format!(
            "compiler rootfs: cached ({}, made from the base)",
            &key[..12]
        ));
        return Ok(r);
    }
    printer.step(&format!(
        "compiler rootfs: made from the base with its apt ({} packages: {})",
        packages.len(),
        packages.join(" "),
    ));
    let work = cache.work_dir("rootfs-derived")?;
    let tar_path = work.path().join("rootfs.tar");
    run_apt(
        base,
        &tar_path,
        Mode::Tree,
        packages,
        runner,
        "make the compiler from the base",
        "or give a compiler with --compiler".into(),
    )?;
    let blob = layer::compress_tar_blob(
        fs_err::File::open(&tar_path).map_err(io_err(&tar_path))?,
        cache.blobs().dir(),
    )?;
    let tree = work.path().join("tree");
    fs_err::create_dir(&tree).map_err(io_err(&tree))?;
    let file = fs_err::File::open(&tar_path).map_err(io_err(&tar_path))?;
    unpack::unpack(io::BufReader::new(file), &tree).map_err(|source| RootfsError::Unpack {
        source_name: "the compiler made from the base".into(),
        source,
    })?;
    fs_err::remove_file(&tar_path).map_err(io_err(&tar_path))?;
    commit(
        cache,
        work,
        &key,
        vec![blob],
        vec![format!(
            "apt-get install in the base ({})",
            packages.join(" ")
        )],
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs(key: &str) -> Rootfs {
        Rootfs {
            key: key.into(),
            tree: "/nowhere".into(),
            layers: Vec::new(),
            created_by: Vec::new(),
            origin: crate::cache::Origin::Built,
            debian: None,
        }
    }

    #[test]
    fn the_key_changes_with_the_base_and_the_packages() {
        let p = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let k = key(&rootfs("a"), &p(&["gcc"]));
        assert_eq!(k, key(&rootfs("a"), &p(&["gcc"])));
        assert_ne!(k, key(&rootfs("b"), &p(&["gcc"])));
        assert_ne!(k, key(&rootfs("a"), &p(&["gcc", "libpq-dev"])));
    }

    #[test]
    fn a_base_with_apt_and_sources_can_make_its_compiler() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("etc/apt/sources.list.d")).unwrap();
        std::fs::write(root.join("etc/apt/sources.list"), "").unwrap();
        assert!(!derivable(root), "no apt");
        std::fs::write(root.join("usr/bin/apt-get"), "").unwrap();
        assert!(!derivable(root), "no sources (our built base's empty list)");
        let sources = root.join("etc/apt/sources.list.d/debian.sources");
        std::fs::write(&sources, "Types: deb-src\nURIs: http://mirror/debian\n").unwrap();
        assert!(!derivable(root), "sources of sources only");
        std::fs::write(&sources, "Types: deb\nURIs: http://m/debian\nEnabled: no\n").unwrap();
        assert!(!derivable(root), "disabled");
        std::fs::write(
            &sources,
            "Types: deb-src\nURIs: http://m/debian\n\nTypes: deb deb-src\nURIs: http://m/debian\nSuites: noble\n",
        )
        .unwrap();
        assert!(derivable(root));
        std::fs::remove_file(root.join("etc/apt/sources.list.d/debian.sources")).unwrap();
        std::fs::write(
            root.join("etc/apt/sources.list"),
            "# comment\ndeb http://mirror/debian bookworm main\n",
        )
        .unwrap();
        assert!(derivable(root));
    }
}
