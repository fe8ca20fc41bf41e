#!/bin/sh
# mmdebstrap customize hook for the base and compiler rootfs; $1 is the new root.
# The image contract: user blue, uid 1000, group www-data (gid 33), home /home/blue.
set -eu
root="$1"
chroot "$root" useradd --uid 1000 --gid 33 --create-home --home-dir /home/blue --shell /bin/bash blue
chmod 0755 "$root/home/blue"
# Nothing of the build host or of apt's state belongs in an image.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
       "$root"/var/log/apt "$root"/var/log/dpkg.log "$root"/var/log/alternatives.log \
       "$root"/var/log/bootstrap.log "$root"/etc/machine-id
: > "$root/etc/resolv.conf"
# mmdebstrap copies the host's /etc/hostname (content and mode) and writes the
# mirror it used into sources.list: one archive state must give the same bytes
# on every machine. The base has no apt, so an empty sources.list loses
# nothing (the rootfs record names the suites).
echo localhost > "$root/etc/hostname"
: > "$root/etc/apt/sources.list"
rm -rf "$root"/etc/apt/sources.list.d/*
chmod 0644 "$root/etc/hostname" "$root/etc/resolv.conf" "$root/etc/apt/sources.list"
