#!/usr/bin/env bash
# Runs a command the way a CI job runs in an unprivileged job container made by
# Docker or Kubernetes (GitLab's docker and Kubernetes executors, Tekton, ...):
#
#   - root of the host (no user namespace: the job container of a rootful
#     Docker is the initial user namespace too), in its own mount and pid
#     namespaces, on the host's network (the tests' servers on loopback stay
#     reachable);
#   - Docker's default capabilities (CapBnd 00000000a80425fb), so no
#     CAP_SYS_ADMIN: no mount, no bind mount; CAP_SYS_CHROOT and CAP_MKNOD kept;
#     inheritable and ambient sets empty, as Docker 20.10.14 and later leave them;
#   - a seccomp filter with the rules of Docker's default profile (and of the
#     Kubernetes RuntimeDefault one) that decide isolation: unshare, setns,
#     mount and the new mount API refused with EPERM, clone refused with EPERM
#     when it asks for any namespace (Docker's mask 0x7E020000), clone3 refused
#     with ENOSYS so that glibc falls back to clone. Docker's profile is an
#     allowlist; this filter allows everything else, ptrace included (Docker
#     allows it on kernels 4.8 and later).
#   - no_new_privs unset, as Docker leaves it unless run with
#     --security-opt=no-new-privileges (Kubernetes: allowPrivilegeEscalation:
#     false); --no-new-privs sets it.
#
# Unlike a real job container, the host's filesystem is visible; so that
# nothing run here can change the host, every mount is made read-only except
# the directories named with --rw, a private tmpfs on /tmp and /dev/shm, and
# /proc (the pid namespace's own; /proc/sys, /proc/sysrq-trigger, /proc/irq and
# /proc/bus read-only, as Docker makes them). Dropping CAP_SYS_ADMIN afterwards
# means nothing inside can remount them. Device nodes made with CAP_MKNOD in a
# --rw directory do work (Docker's device cgroup would refuse block devices):
# give --rw only to directories of the test.
#
# usage: tests/jobcontainer.sh [--user UID:GID] [--rw DIR]... [--no-new-privs] [--] COMMAND [ARG...]
#   --user UID:GID   run as this uid and gid, no supplementary groups (Docker's
#                    --user), after the filter is loaded; default root
#   --rw DIR         keep DIR (an existing directory) writable; repeatable;
#                    under /tmp it is bound into the private /tmp
#   --no-new-privs   set no_new_privs
# Exits with the command's status; 2 when this host cannot emulate a job
# container (not root, a tool missing).
set -euo pipefail

die() { echo "jobcontainer: $*" >&2; exit 2; }

# Debian's python3 with python3-seccomp: not a python3 earlier on PATH (pyenv).
python=/usr/bin/python3
docker_caps=chown,dac_override,fowner,fsetid,kill,setgid,setuid,setpcap,net_bind_service,net_raw,sys_chroot,mknod,audit_write,setfcap

if [ "${1:-}" != --inside ]; then
    [ "$(id -u)" -eq 0 ] || die "needs root on the host (it makes mount and pid namespaces, as dockerd does); run it as root"
    for tool in unshare setpriv mount; do
        command -v "$tool" >/dev/null || die "$tool is missing: install util-linux (.ci/setup)"
    done
    "$python" -c 'import seccomp' 2>/dev/null || die "python3-seccomp is missing: run .ci/setup (Debian: apt-get install python3-seccomp)"
    # --kill-child: when this process is killed, the namespace's pid 1 and with
    # it every process of the namespace die too.
    exec unshare --mount --pid --fork --kill-child --mount-proc --propagation private \
        -- bash "$0" --inside "$@"
fi
shift

user=""
nnp=()
rw=()
while [ $# -gt 0 ]; do
    case "$1" in
        --user) user=${2:?--user needs UID:GID}; shift 2 ;;
        --rw) [ -d "${2:?--rw needs a directory}" ] || die "--rw $2: not a directory"
              rw+=("$(realpath "$2")"); shift 2 ;;
        --no-new-privs) nnp=(--nnp); shift ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see the usage at the top of $0)" ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || die "no command given"

# The writable directories, held open: the tmpfs on /tmp hides those under it,
# and a bind from /proc/self/fd/N still reaches them.
fds=()
for d in "${rw[@]}"; do
    exec {fd}<"$d"
    fds+=("$fd")
done

# Read-only everywhere: per-mount flags, so the host's mounts are untouched.
while read -r mp; do
    mp=$(printf '%b' "$mp")
    [ "$mp" = /proc ] && continue
    mount -o remount,bind,ro "$mp" 2>/dev/null || true
done < <(awk '{print $5}' /proc/self/mountinfo)
for p in /proc/sys /proc/sysrq-trigger /proc/irq /proc/bus; do
    [ -e "$p" ] || continue
    mount --bind "$p" "$p"
    mount -o remount,bind,ro "$p"
done
mount -t tmpfs -o mode=1777,nosuid,nodev jobcontainer-tmp /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev jobcontainer-shm /dev/shm
for i in "${!rw[@]}"; do
    mkdir -p "${rw[$i]}"
    # --no-canonicalize: mount(8) would resolve the /proc/self/fd link to a
    # path name, the one the tmpfs now hides.
    mount --no-canonicalize --bind "/proc/self/fd/${fds[$i]}" "${rw[$i]}"
    mount -o remount,bind,rw "${rw[$i]}"
    [ "$(stat -L -c %d:%i "/proc/self/fd/${fds[$i]}")" = "$(stat -c %d:%i "${rw[$i]}")" ] \
        || die "--rw ${rw[$i]}: could not bind it into the container"
    fd=${fds[$i]}
    exec {fd}<&-
done

# The caller's directory where the container still has it; else /, a
# container's default working directory (the private /tmp hides a caller's
# directory under /tmp, and tools that ask for theirs would fail).
cd "$PWD" 2>/dev/null || cd /

# Every mount left writable is one of those named above, or the run stops.
allowed=$(printf '%s\n' /proc /tmp /dev/shm /dev/pts "${rw[@]}")
writable=$(awk '$6 ~ /(^|,)rw(,|$)/ {print $5}' /proc/self/mountinfo \
    | while read -r mp; do printf '%b\n' "$mp"; done | grep -vxF "$allowed" || true)
[ -z "$writable" ] || die "could not make these mounts read-only: $writable"

drop=(setpriv --bounding-set "-all,+${docker_caps//,/,+}" --inh-caps -all --ambient-caps -all "${nnp[@]}")
if [ -n "$user" ]; then
    drop+=(--reuid "${user%%:*}" --regid "${user#*:}" --clear-groups)
fi

# The filter is loaded while CAP_SYS_ADMIN is still held, which lets it load
# without no_new_privs (as runc does), then setpriv drops the capabilities.
filter=$(cat <<'EOF'
import errno
import os
import sys

import seccomp

f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
f.set_attr(seccomp.Attr.CTL_NNP, 0)
if seccomp.system_arch() == seccomp.Arch.X86_64 & 0xFFFFFFFF:
    # Docker's profile covers the 32-bit ABIs of an x86_64 host too.
    f.add_arch(seccomp.Arch.X86)
    f.add_arch(seccomp.Arch.X32)
eperm = seccomp.ERRNO(errno.EPERM)
for name in ["unshare", "setns", "mount", "umount2", "pivot_root", "fsopen", "fsconfig",
             "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr"]:
    f.add_rule(eperm, name)
# Docker's clone mask 0x7E020000: NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
# NEWPID, NEWNET. One rule per flag: any of them makes clone fail.
for flag in [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
             0x20000000, 0x40000000]:
    f.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
f.load()
args = sys.argv[1:]
os.execvp(args[0], args)
EOF
)
exec "$python" -c "$filter" "${drop[@]}" -- "$@"
