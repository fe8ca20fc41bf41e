#!/bin/bash
# Runs one crontab job for the entrypoint's `cron` command, with the
# application's environment, as the user the container runs as (blue).
# Output goes to syslog when /dev/log is a socket, else to stdout/stderr.
set -u
# shellcheck source=/dev/null
. /home/blue/run/cron.env
job="$*"
tag="${PROJECT_NAME}.cron"
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
