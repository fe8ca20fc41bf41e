#!/usr/bin/env python3
"""Publishes releases into a test package index directory (served by pypiserver).

    index-tool.py bump-wheel INDEXDIR PROJECT
        Takes the newest wheel of PROJECT in INDEXDIR and adds the next patch
        release beside it (4.2.30 -> 4.2.31), rewritten the way a real release
        looks: file name, .dist-info (and .data) directory, METADATA Version,
        RECORD hashes and sizes. Prints "OLD NEW FILE".

    index-tool.py release-sdist SRCDIR INDEXDIR VERSION
        Builds the setuptools project SRCDIR (whose pyproject.toml declares
        its version in [project]) at VERSION, from a copy, as an sdist into
        INDEXDIR. Prints "FILE".

Files appear in INDEXDIR only once complete and checked (written under a
dot name, which pypiserver does not list, then renamed), and never replace
an existing file. Exit 2 on bad input, with what to do next.

Used by tests/support/private_index.rs; standard library only.
"""

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile


class Usage(Exception):
    """Bad input: exit 2 with the message."""


def normalize(name):
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


# A plain release version: what a patch bump can increment.
RELEASE = re.compile(r"^\d+(\.\d+)*$")


def release_key(version):
    return tuple(int(p) for p in version.split("."))


def next_patch(version):
    """4.2.30 -> 4.2.31, 0.5 -> 0.5.1, 1.16.0 -> 1.16.1."""
    parts = list(release_key(version))
    if len(parts) < 3:
        parts += [0] * (3 - len(parts))
    parts[-1] += 1
    return ".".join(str(p) for p in parts)


def record_hash(data):
    """RECORD's hash field: sha256, urlsafe base64 without padding (PEP 376/427)."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
    return "sha256=" + digest.rstrip(b"=").decode()


def wheels_of(index, project):
    """(version, file name) of PROJECT's wheels in INDEX."""
    found = []
    for name in sorted(os.listdir(index)):
        if not name.endswith(".whl") or name.startswith("."):
            continue
        parts = name[: -len(".whl")].split("-")
        if len(parts) not in (5, 6) or normalize(parts[0]) != normalize(project):
            continue
        version = parts[1]
        if not RELEASE.match(version):
            raise Usage(
                f"{name}: version {version} is not a plain release (N.N.N); "
                "bump-wheel only makes patch releases of plain versions"
            )
        found.append((version, name))
    return found


def bump_wheel(index, project):
    if not os.path.isdir(index):
        raise Usage(f"{index}: no such index directory")
    wheels = wheels_of(index, project)
    if not wheels:
        raise Usage(
            f"{index} has no wheel of {project}; bump-wheel needs one to "
            "copy (an sdist-only project is released with release-sdist)"
        )
    old, old_file = max(wheels, key=lambda w: release_key(w[0]))
    new = next_patch(old)
    parts = old_file[: -len(".whl")].split("-")
    dist = parts[0]
    parts[1] = new
    new_file = "-".join(parts) + ".whl"
    if os.path.exists(os.path.join(index, new_file)):
        raise Usage(f"{index}/{new_file} already exists")

    old_info, new_info = f"{dist}-{old}.dist-info/", f"{dist}-{new}.dist-info/"
    old_data, new_data = f"{dist}-{old}.data/", f"{dist}-{new}.data/"

    def rename(path):
        for a, b in ((old_info, new_info), (old_data, new_data)):
            if path.startswith(a):
                return b + path[len(a) :]
        return path

    with zipfile.ZipFile(os.path.join(index, old_file)) as src:
        infos = src.infolist()
        names = [i.filename for i in infos]
        if old_info + "METADATA" not in names or old_info + "RECORD" not in names:
            raise Usage(f"{old_file}: no {old_info}METADATA or RECORD: not a wheel")
        contents = {i.filename: src.read(i) for i in infos}

    # METADATA: the Version header (headers end at the first empty line).
    metadata = contents[old_info + "METADATA"].decode("utf-8")
    head, sep, body = metadata.partition("\n\n")
    head, count = re.subn(
        rf"^Version: {re.escape(old)}$", f"Version: {new}", head, flags=re.M
    )
    if count != 1:
        raise Usage(f"{old_file}: METADATA has no 'Version: {old}' header")
    contents[old_info + "METADATA"] = (head + sep + body).encode("utf-8")

    # RECORD: the same entries in the same order, renamed; hash and size
    # recomputed from the new contents. Signatures of the old RECORD would
    # no longer verify: they are dropped, as a re-signing release would.
    dropped = {old_info + "RECORD.jws", old_info + "RECORD.p7s"}
    rows = []
    for row in csv.reader(io.StringIO(contents[old_info + "RECORD"].decode("utf-8"))):
        if not row or row[0] in dropped:
            continue
        path = row[0]
        if path == old_info + "RECORD":
            rows.append([new_info + "RECORD", "", ""])
        elif path in contents:
            data = contents[path]
            rows.append([rename(path), record_hash(data), str(len(data))])
        else:
            raise Usage(f"{old_file}: RECORD lists {path}, which the wheel lacks")
    listed = {r[0] for r in rows}
    for name in names:
        if not name.endswith("/") and name not in dropped and rename(name) not in listed:
            raise Usage(f"{old_file}: {name} is not in its RECORD")
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    contents[old_info + "RECORD"] = out.getvalue().encode("utf-8")

    tmp = os.path.join(index, f".{new_file}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w") as dst:
            # RECORD last, as wheel builders write it.
            order = [i for i in infos if i.filename != old_info + "RECORD"]
            order += [i for i in infos if i.filename == old_info + "RECORD"]
            for info in order:
                if info.filename in dropped:
                    continue
                copy = zipfile.ZipInfo(rename(info.filename), info.date_time)
                copy.external_attr = info.external_attr
                copy.compress_type = zipfile.ZIP_DEFLATED
                dst.writestr(copy, contents[info.filename])
        check_wheel(tmp, new_info)
        os.link(tmp, os.path.join(index, new_file))  # fails if it appeared meanwhile
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(old, new, new_file)


def check_wheel(path, info):
    """Every file is in RECORD with its hash and size, and RECORD lists only
    files; reading each member back checks its CRC too."""
    with zipfile.ZipFile(path) as z:
        rows = list(csv.reader(io.StringIO(z.read(info + "RECORD").decode("utf-8"))))
        files = {i.filename for i in z.infolist() if not i.filename.endswith("/")}
        recorded = {r[0] for r in rows if r}
        if files != recorded:
            raise RuntimeError(f"{path}: RECORD and files differ: {files ^ recorded}")
        for row in rows:
            if row and row[0] != info + "RECORD":
                data = z.read(row[0])
                if row[1] != record_hash(data) or row[2] != str(len(data)):
                    raise RuntimeError(f"{path}: RECORD is wrong for {row[0]}")


def release_sdist(src, index, version):
    if not os.path.isfile(os.path.join(src, "pyproject.toml")):
        raise Usage(f"{src}: no pyproject.toml: not the project to release")
    if not os.path.isdir(index):
        raise Usage(f"{index}: no such index directory")
    if not re.match(r"^\d+(\.\d+)*([abc]|rc|\.post|\.dev)?\d*$", version):
        raise Usage(f"{version!r} is not a version to release (e.g. 0.4.1)")
    with tempfile.TemporaryDirectory(prefix="release-sdist-") as tmp:
        # Build from a copy: setuptools writes egg-info and build/ beside the sources.
        copy = os.path.join(tmp, "src")
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns("*.egg-info", "build", "dist"))
        pyproject = os.path.join(copy, "pyproject.toml")
        with open(pyproject, encoding="utf-8") as f:
            text = f.read()
        # The version is declared once, in [project] (setup.py has none).
        text, count = re.subn(
            r'^version = "[^"]*"$', f'version = "{version}"', text, flags=re.M
        )
        if count != 1:
            raise Usage(f"{src}/pyproject.toml: no single 'version = \"...\"' line")
        with open(pyproject, "w", encoding="utf-8") as f:
            f.write(text)
        out = os.path.join(tmp, "dist")
        build = subprocess.run(
            [sys.executable, "setup.py", "-q", "sdist", "-d", out],
            cwd=copy,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if build.returncode != 0:
            raise RuntimeError(f"setup.py sdist failed:\n{build.stdout}{build.stderr}")
        built = os.listdir(out)
        if len(built) != 1 or not built[0].endswith(f"-{version}.tar.gz"):
            raise RuntimeError(f"setup.py sdist made {built}, not one {version} sdist")
        target = os.path.join(index, built[0])
        if os.path.exists(target):
            raise Usage(f"{target} already exists")
        staged = os.path.join(index, f".{built[0]}.tmp")
        shutil.copyfile(os.path.join(out, built[0]), staged)
        try:
            os.link(staged, target)
        finally:
            os.unlink(staged)
        print(built[0])


def main(argv):
    try:
        if len(argv) == 3 and argv[0] == "bump-wheel":
            bump_wheel(argv[1], argv[2])
        elif len(argv) == 4 and argv[0] == "release-sdist":
            release_sdist(argv[1], argv[2], argv[3])
        else:
            raise Usage(__doc__.strip())
    except Usage as e:
        print(f"index-tool.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
