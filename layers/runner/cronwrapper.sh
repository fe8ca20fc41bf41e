#!/bin/bash
# Runs one crontab job with the application's environment, as the user the
# container runs as (blue). Two interfaces:
#
#   cronwrapper.sh 'SHELL COMMAND'
#       what `entrypoint cron` runs for each job: the command line, through
#       bash; output tagged <project>.cron.
#
#   cronwrapper.sh --all|--master [--environment ENV] [--fleet FLEET]
#                  [--kill-previous] COMMAND [ARGS...]
#       the old chain's wrapper (its crontabs call it like that): COMMAND is
#       a Django management command, run with django-admin and the
#       application's settings; with --environment or --fleet, only when the
#       settings' ENVIRONMENT or FLEET_ID is ENV or FLEET (else it says so
#       and exits 0); one instance per COMMAND (a pid file in
#       ~/run/cronwrapper): a second start aborts with status 1, or with
#       --kill-previous stops the first (SIGTERM to its process group, then
#       SIGKILL after 10 s) and runs; output tagged <project>.cron.COMMAND,
#       and a last line saying how it ended. The first argument being one of
#       these options selects this interface.
#
# Output goes to syslog (facility cron: stdout at info, stderr at err) when
# /dev/log is a socket, else to stdout and stderr, each line prefixed with
# [TAG].
set -u
if [ -r "${HOME:-/home/blue}/run/cron.env" ]; then
    # Rendered by `entrypoint cron`; run otherwise (`entrypoint cronwrapper.sh
    # ...`), the image's environment is already the application's.
    # shellcheck source=/dev/null
    . "${HOME:-/home/blue}/run/cron.env"
fi
project=${PROJECT_NAME:-app}

# One line of the wrapper's own: say LEVEL MESSAGE.
say() {
    if [ -S /dev/log ]; then
        logger -t "$tag" -p "cron.$1" -- "$2"
    elif [ "$1" = err ]; then
        echo "[$tag] $2" >&2
    else
        echo "[$tag] $2"
    fi
}

case "${1:-}" in
--all | --master | --environment | --fleet | --kill-previous | --help | -h) ;;
*)
    # A shell command, as `entrypoint cron` gives it.
    job="$*"
    tag="${project}.cron"
    if [ -S /dev/log ]; then
        /bin/bash -c "$job" > >(logger -t "$tag" -p cron.info) 2> >(logger -t "$tag" -p cron.err)
        status=$?
        logger -t "$tag" -p cron.info "job exited with status $status: $job"
    else
        /bin/bash -c "$job" 2>&1 | sed -u "s|^|[$tag] |"
        status=${PIPESTATUS[0]}
        echo "[$tag] job exited with status $status: $job"
    fi
    exit "$status"
    ;;
esac

usage() {
    echo "usage: cronwrapper.sh --all|--master [--environment ENV] [--fleet FLEET] [--kill-previous] COMMAND [ARGS...]"
    echo "       cronwrapper.sh 'SHELL COMMAND'"
    echo "COMMAND is a Django management command, run with django-admin and the application's settings."
}

usage_error() {
    echo "cronwrapper.sh: $1" >&2
    usage >&2
    exit 2
}

full="$*"
environment=""
fleet=""
kill_previous=false
while [ $# -gt 0 ]; do
    case "$1" in
    --all | --master) shift ;;
    --environment | --fleet)
        [ $# -ge 2 ] || usage_error "$1 needs a value"
        if [ "$1" = --environment ]; then environment=$2; else fleet=$2; fi
        shift 2
        ;;
    --kill-previous)
        kill_previous=true
        shift
        ;;
    --help | -h)
        usage
        exit 0
        ;;
    --)
        shift
        break
        ;;
    -*) usage_error "unknown option $1" ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || usage_error "no management command given"
command=$1
shift
case "$command" in
*/* | .*) usage_error "$command is not a management command name" ;;
esac
tag="${project}.cron.${command}"

if [ -z "${DJANGO_SETTINGS_MODULE:-}" ]; then
    say err "this interface runs Django management commands, and the image has no Django settings (DJANGO_SETTINGS_MODULE is not set): call the wrapper with a shell command instead"
    exit 2
fi

# A setting of the application, empty when it has none.
setting() {
    python -c 'import sys
from django.conf import settings
print(getattr(settings, sys.argv[1], ""))' "$1"
}

for check in "ENVIRONMENT:--environment:$environment" "FLEET_ID:--fleet:$fleet"; do
    name=${check%%:*}
    rest=${check#*:}
    option=${rest%%:*}
    wanted=${rest#*:}
    [ -n "$wanted" ] || continue
    if ! current=$(setting "$name"); then
        say err "cannot read the setting $name of $DJANGO_SETTINGS_MODULE for $option"
        exit 1
    fi
    if [ "$current" != "$wanted" ]; then
        say info "Cron $full disabled: $name is '$current', not '$wanted'"
        exit 0
    fi
done

# One instance per command: the pid file holds the process group of the
# running one, and a lock makes check-and-write one step.
piddir="${HOME:-/home/blue}/run/cronwrapper"
mkdir -p "$piddir"
pidfile="$piddir/$command.pid"
exec 9>"$pidfile.lock"
flock 9
if [ -s "$pidfile" ]; then
    previous=$(cat "$pidfile")
    if kill -0 -- "-$previous" 2>/dev/null; then
        if ! $kill_previous; then
            say err "Previous instance still running as $previous, aborting."
            exit 1
        fi
        say info "Previous instance still running as $previous, killing it."
        kill -TERM -- "-$previous" 2>/dev/null
        for _ in $(seq 100); do
            kill -0 -- "-$previous" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$previous" 2>/dev/null
    fi
fi
# setsid: the job leads a process group of its own (its pid, which $!
# names: bash forks once and setsid execs the command), so --kill-previous
# and a stopping container end it whole. Started with the lock's descriptor
# closed, or the job would hold the lock, and a second start would wait for
# the first to end instead of finding it running.
{
    if [ -S /dev/log ]; then
        setsid django-admin "$command" "$@" > >(logger -t "$tag" -p cron.info) 2> >(logger -t "$tag" -p cron.err) &
    else
        setsid django-admin "$command" "$@" > >(sed -u "s|^|[$tag] |") 2> >(sed -u "s|^|[$tag] |" >&2) &
    fi
} 9>&-
job=$!
echo "$job" >"$pidfile"
exec 9>&-
trap 'kill -TERM -- "-$job" 2>/dev/null' TERM INT
wait "$job"
status=$?
# A trapped signal ends the first wait early: wait for the job itself.
while kill -0 "$job" 2>/dev/null; do
    wait "$job"
    status=$?
done
[ "$(cat "$pidfile" 2>/dev/null)" = "$job" ] && rm -f "$pidfile"
if [ "$status" -eq 0 ]; then
    say info "Cron $full: OK"
else
    say err "Cron $full: NOK (code $status)"
fi
exit "$status"
