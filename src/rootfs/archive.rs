//! The state of the Debian archive a built rootfs comes from, and the
//! record of what it installed.
//!
//! Before a built rootfs is looked up, assemble itself (no sandbox, no
//! mmdebstrap) asks the mirror for the `InRelease` of each suite the rootfs
//! is built from, with `If-None-Match` / `If-Modified-Since` when the last
//! answer had validators (`304`: unchanged; otherwise the body's sha256 is
//! compared). The suites are those of `ASSEMBLE_DEBIAN_MIRROR` (the forms
//! mmdebstrap takes as its MIRROR argument: a URL, one-line sources.list
//! entries, a sources.list file), or, when it is unset, the ones
//! mmdebstrap itself would use, learnt once per mmdebstrap binary from a
//! probe run that stops in its setup hook (no public host name is written
//! here). The cache key of a built rootfs is its definition plus each
//! suite's `InRelease` sha256; the newest `Date:` of them is the
//! `SOURCE_DATE_EPOCH` mmdebstrap runs with, so one archive state gives the
//! same bytes on every machine.
//!
//! After mmdebstrap, apt's lists (copied out by a customize hook before
//! `layers/base/setup.sh` empties them) give the `InRelease` apt really used
//! (a change of the archive during the build is an error, never a mis-keyed
//! rootfs) and, with the rootfs's dpkg status, the [`DebianRecord`]: every
//! installed package with the sha256 the archive's `Packages` index names.
//!
//! Mirror URLs may carry credentials (`http://user:pass@host/`): they are
//! sent, never recorded or printed ([`SuiteState::url`] has them stripped).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::cache::{Cache, KeyBuilder};
use crate::output::strip_credentials;
use crate::output::{redact_text, redact_url};
use crate::registry::error_chain;
use crate::rootfs::error::{io_err, RootfsError};
use crate::sandbox::{HostCommand, Runner};

/// What a built rootfs was made from: the archive state (each suite's
/// `InRelease`), the `SOURCE_DATE_EPOCH` mmdebstrap ran with, and every
/// package installed. The lock file and the result file carry it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DebianRecord {
    /// `SOURCE_DATE_EPOCH` given to mmdebstrap: the newest `Date:` of the suites.
    pub epoch: u64,
    /// Each suite's `InRelease`, in the order of the sources.
    pub suites: Vec<SuiteState>,
    /// Every installed package (dpkg status), sorted by name.
    pub packages: Vec<DebPackage>,
}

/// One suite's `InRelease` as last seen.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SuiteState {
    /// The `InRelease` URL, credentials stripped.
    pub url: String,
    /// sha256 of its bytes.
    pub sha256: String,
    /// Its `Date:` field, as written.
    pub date: String,
    /// The server's `ETag`, if it sent one.
    pub etag: Option<String>,
    /// The server's `Last-Modified`, if it sent one.
    pub last_modified: Option<String>,
}

/// One installed Debian package.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DebPackage {
    /// Package name.
    pub name: String,
    /// Version, as dpkg writes it.
    pub version: String,
    /// Architecture (`amd64`, `all`).
    pub architecture: String,
    /// sha256 of the .deb, as the archive's `Packages` index names it.
    pub sha256: String,
}

/// The archive state a rootfs is keyed on: one [`SuiteState`] per suite.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchiveState {
    /// Each suite's `InRelease`, in the order of the sources.
    pub suites: Vec<SuiteState>,
}

impl ArchiveState {
    /// The `SOURCE_DATE_EPOCH` of this state: the newest `Date:`.
    pub fn epoch(&self) -> Result<u64, RootfsError> {
        self.suites
            .iter()
            .map(|s| {
                crate::epoch::from_rfc2822(&s.date).ok_or_else(|| RootfsError::BadRelease {
                    url: s.url.clone(),
                    reason: format!("its Date: {:?} is not an RFC 2822 date in UTC", s.date),
                })
            })
            .try_fold(0, |newest, d| d.map(|d| newest.max(d)))
    }

    /// Adds the state to a cache key.
    pub fn key_part(&self, k: &mut KeyBuilder) {
        for s in &self.suites {
            k.part("inrelease", format!("{} {}", s.url, s.sha256).as_bytes());
        }
    }

    /// What changed from `old` to `self`, for the progress line.
    pub fn changes_since(&self, old: &ArchiveState) -> String {
        let changed: Vec<String> = self
            .suites
            .iter()
            .filter(|s| {
                !old.suites
                    .iter()
                    .any(|o| o.url == s.url && o.sha256 == s.sha256)
            })
            .map(|s| {
                let before = old
                    .suites
                    .iter()
                    .find(|o| o.url == s.url)
                    .map(|o| o.date.as_str())
                    .unwrap_or("not used before");
                format!("{} ({before} → {})", suite_name(&s.url), s.date)
            })
            .collect();
        if changed.is_empty() {
            "the archive state differs from the last build".into()
        } else {
            format!("Debian updated {}", changed.join(", "))
        }
    }
}

/// `bookworm-security` of `http://HOST/debian-security/dists/bookworm-security/InRelease`.
fn suite_name(url: &str) -> &str {
    url.trim_end_matches("/InRelease")
        .rsplit_once("/dists/")
        .map(|(_, s)| s)
        .unwrap_or(url)
}

/// The `InRelease` URLs (credentials kept: they are sent) of the suites a
/// rootfs built with `mirror` comes from.
pub fn suites(
    mirror: &str,
    suite: &str,
    cache: &Cache,
    runner: &dyn Runner,
) -> Result<Vec<String>, RootfsError> {
    let mirror = mirror.trim();
    let entries = if mirror.is_empty() {
        default_sources(suite, cache, runner)?
    } else if mirror.starts_with("deb ") || mirror.starts_with("deb-src ") {
        one_line_entries(mirror)
    } else if mirror.contains("://") && !mirror.contains(char::is_whitespace) {
        vec![(mirror.to_string(), suite.to_string())]
    } else if Path::new(mirror).is_file() {
        let path = Path::new(mirror);
        let text = fs_err::read_to_string(path).map_err(io_err(path))?;
        if mirror.ends_with(".sources") || (!mirror.ends_with(".list") && is_deb822(&text)) {
            deb822_entries(&text)
        } else {
            one_line_entries(&text)
        }
    } else {
        return Err(RootfsError::BadMirror {
            mirror: redact_url(mirror),
            reason: "it is not a URL, a one-line sources.list entry (deb [OPTIONS] URI SUITE \
                     COMPONENTS) or an existing sources.list file"
                .into(),
        });
    };
    if entries.is_empty() {
        return Err(RootfsError::BadMirror {
            mirror: redact_url(mirror),
            reason: "it names no `deb` source".into(),
        });
    }
    let mut urls: Vec<String> = entries
        .iter()
        .map(|(uri, suite)| in_release_url(uri, suite))
        .collect();
    urls.dedup();
    Ok(urls)
}

/// The `InRelease` URL of a suite (`SUITE/` with a trailing slash: a flat repository).
fn in_release_url(uri: &str, suite: &str) -> String {
    let uri = uri.trim_end_matches('/');
    match suite.strip_suffix('/') {
        Some(flat) if flat.is_empty() || flat == "." => format!("{uri}/InRelease"),
        Some(flat) => format!("{uri}/{flat}/InRelease"),
        None => format!("{uri}/dists/{suite}/InRelease"),
    }
}

/// (URI, suite) of each `deb` line of one-line sources.list text.
fn one_line_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            if words.next()? != "deb" {
                return None;
            }
            let mut word = words.next()?;
            if word.starts_with('[') {
                while !word.ends_with(']') {
                    word = words.next()?;
                }
                word = words.next()?;
            }
            Some((word.to_string(), words.next()?.to_string()))
        })
        .collect()
}

fn is_deb822(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("Types:") || l.starts_with("URIs:"))
}

/// (URI, suite) of each enabled `deb` stanza of deb822 sources text.
fn deb822_entries(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| -> Vec<String> {
            stanza
                .lines()
                .filter(|l| !l.starts_with('#'))
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case(name).then(|| v.to_string())
                })
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        if !field("Types").iter().any(|t| t == "deb") || field("Enabled").iter().any(|e| e == "no")
        {
            continue;
        }
        for uri in field("URIs") {
            for suite in field("Suites") {
                out.push((uri.clone(), suite));
            }
        }
    }
    out
}

/// The sources mmdebstrap uses when given no mirror, learnt from a probe
/// run (its setup hook copies `/etc/apt` out and stops it) once per
/// mmdebstrap binary and suite, then kept in the cache.
fn default_sources(
    suite: &str,
    cache: &Cache,
    runner: &dyn Runner,
) -> Result<Vec<(String, String)>, RootfsError> {
    let program = runner
        .find_program("mmdebstrap")
        .ok_or_else(|| RootfsError::NoMmdebstrap {
            role: "base".into(),
        })?;
    let meta = std::fs::metadata(&program).ok();
    let mut k = KeyBuilder::new("debian-default-sources-v1");
    k.part("program", program.as_os_str().as_encoded_bytes())
        .part(
            "identity",
            format!(
                "{:?} {:?}",
                meta.as_ref().map(|m| m.len()),
                meta.as_ref().and_then(|m| m.modified().ok())
            )
            .as_bytes(),
        )
        .part("suite", suite.as_bytes());
    let key = k.finish();
    if let Some(entries) =
        cache.get_json::<Vec<(String, String)>>("rootfs", &format!("sources-{key}"))
    {
        return Ok(entries);
    }
    // A plain user where user namespaces are refused cannot build a rootfs,
    // but may find one in the build cache, whose key needs the sources:
    // fakechroot's mode, which needs no privilege, goes as far as the hook.
    let mode: &[&str] = match super::debian::Mode::here("base", runner) {
        Ok(mode) => mode.args(),
        Err(_) => &["--mode=fakechroot"],
    };
    let work = cache.work_dir("debian-sources")?;
    // The hook prints the files: it runs as the namespace's root, which as a
    // normal user is a subordinate id that cannot write to our directories.
    let mut args: Vec<String> = mode.iter().map(|a| a.to_string()).collect();
    args.extend([
        "--variant=essential".into(),
        format!(
            "--setup-hook=for f in \"$1/etc/apt/sources.list\" \"$1\"/etc/apt/sources.list.d/*; \
                 do [ -f \"$f\" ] || continue; echo \"{MARK} ${{f##*/}}\"; cat \"$f\"; echo; done; \
                 echo {MARK}; exit 75"
        ),
        suite.into(),
        work.path().join("probe.tar").display().to_string(),
    ]);
    let cmd = HostCommand {
        what: "mmdebstrap (which sources it uses by default)".into(),
        program,
        args,
        env: Vec::new(),
        stdin: None,
    };
    let out = runner.run_host(&cmd)?;
    let mut printed = String::from_utf8_lossy(&out.stdout).into_owned();
    printed.push_str(&String::from_utf8_lossy(&out.stderr));
    let entries = printed_sources(&printed);
    if entries.is_empty() {
        let text = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = text.lines().collect();
        return Err(RootfsError::Mmdebstrap {
            role: "base".into(),
            status: out.status,
            tail: lines[lines.len().saturating_sub(15)..].join("\n    "),
        });
    }
    cache.put_json("rootfs", &format!("sources-{key}"), &entries)?;
    Ok(entries)
}

/// Marks the start of each file the probe's hook prints (and the end).
const MARK: &str = "@@assemble-sources";

/// The sources in what the probe printed: after `MARK NAME`, the content
/// of file NAME (deb822 when it ends in `.sources`), up to the next mark.
fn printed_sources(printed: &str) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    let mut current: Option<(bool, String)> = None;
    for line in printed.lines() {
        if let Some(rest) = line.strip_prefix(MARK) {
            if let Some((deb822, text)) = current.take() {
                entries.extend(if deb822 {
                    deb822_entries(&text)
                } else {
                    one_line_entries(&text)
                });
            }
            let name = rest.trim();
            if !name.is_empty() {
                current = Some((name.ends_with(".sources"), String::new()));
            }
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    entries
}

/// The answers of this run, by `InRelease` URL: the base and the compiler
/// come from the same suites, and one build asks (and warns) once.
fn answers() -> &'static Mutex<HashMap<String, Result<SuiteState, String>>> {
    static ANSWERS: OnceLock<Mutex<HashMap<String, Result<SuiteState, String>>>> = OnceLock::new();
    ANSWERS.get_or_init(Default::default)
}

/// True the first time this run is told `reason`: a build checks the same
/// suites for the base and the compiler, and warns once.
pub fn first_warning(reason: &str) -> bool {
    static WARNED: OnceLock<Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    WARNED
        .get_or_init(Default::default)
        .lock()
        .expect("warned lock")
        .insert(reason.to_string())
}

/// The current state of `urls`, revalidating `last` (conditional requests
/// with its validators). Err: the first suite that could not be read, and
/// why (credentials masked).
pub fn revalidate(urls: &[String], last: Option<&ArchiveState>) -> Result<ArchiveState, String> {
    let mut suites = Vec::new();
    for url in urls {
        let public = strip_credentials(url);
        let known = last.and_then(|l| l.suites.iter().find(|s| s.url == public));
        let mut answers = answers().lock().expect("answers lock");
        let answer = answers
            .entry(url.clone())
            .or_insert_with(|| {
                fetch_in_release(url, known).map_err(|e| {
                    format!("{}: {}", public, redact_text(&e, std::slice::from_ref(url)))
                })
            })
            .clone();
        suites.push(answer?);
    }
    Ok(ArchiveState { suites })
}

/// One `InRelease`: read (file:, copy:) or fetched (http:, https:),
/// conditionally when `known` has validators.
fn fetch_in_release(url: &str, known: Option<&SuiteState>) -> Result<SuiteState, String> {
    let public = strip_credentials(url);
    let body = if let Some(path) = url
        .strip_prefix("file://")
        .or_else(|| url.strip_prefix("copy://"))
    {
        std::fs::read(path).map_err(|e| e.to_string())?
    } else if url.starts_with("http://") || url.starts_with("https://") {
        let mut req = client()?.get(url);
        if let Some(k) = known {
            if let Some(etag) = &k.etag {
                req = req.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &k.last_modified {
                req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
            }
        }
        let resp = req.send().map_err(|e| error_chain(&e))?;
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            if let Some(k) = known {
                return Ok(k.clone());
            }
        }
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, last_modified) = (
            header(reqwest::header::ETAG),
            header(reqwest::header::LAST_MODIFIED),
        );
        let body = resp.bytes().map_err(|e| e.to_string())?.to_vec();
        return state_of(&public, &body, etag, last_modified);
    } else {
        return Err("assemble reads http://, https://, file:// and copy:// mirrors only".into());
    };
    state_of(&public, &body, None, None)
}

/// The state of one `InRelease` body.
fn state_of(
    public: &str,
    body: &[u8],
    etag: Option<String>,
    last_modified: Option<String>,
) -> Result<SuiteState, String> {
    let text = String::from_utf8_lossy(body);
    let date = text
        .lines()
        .find_map(|l| l.strip_prefix("Date:"))
        .map(|d| d.trim().to_string())
        .ok_or("it has no Date: field (is it an InRelease file?)")?;
    Ok(SuiteState {
        url: public.to_string(),
        sha256: hex::encode(Sha256::digest(body)),
        date,
        etag,
        last_modified,
    })
}

/// Each package of `record` that the archive's current `Packages` indexes
/// (of the suites `urls`, for `arch`) no longer have, as `name=version
/// (arch)`: what a locked build cannot install. The indexes are those the
/// current `InRelease` lists (`.gz`, else uncompressed), checked against
/// its sha256.
pub fn missing_packages(
    record: &DebianRecord,
    urls: &[String],
    arch: &str,
) -> Result<Vec<String>, RootfsError> {
    let mut available = std::collections::HashSet::new();
    for url in urls {
        let public = strip_credentials(url);
        let unreachable = |reason: String| RootfsError::ArchiveUnreachable {
            role: "locked".into(),
            reason: format!(
                "{public}: {}",
                redact_text(&reason, std::slice::from_ref(url))
            ),
        };
        let in_release = fetch(url).map_err(unreachable)?;
        let base = url.trim_end_matches("InRelease");
        for (path, sha256) in packages_indexes(&String::from_utf8_lossy(&in_release), arch) {
            let body = fetch(&format!("{base}{path}")).map_err(unreachable)?;
            if hex::encode(Sha256::digest(&body)) != sha256 {
                return Err(RootfsError::BadRelease {
                    url: format!("{}{path}", strip_credentials(base)),
                    reason: "its sha256 is not the one InRelease names".into(),
                });
            }
            let text = if path.ends_with(".gz") {
                let mut text = String::new();
                std::io::Read::read_to_string(
                    &mut flate2::read::MultiGzDecoder::new(body.as_slice()),
                    &mut text,
                )
                .map_err(|e| RootfsError::BadRelease {
                    url: format!("{}{path}", strip_credentials(base)),
                    reason: e.to_string(),
                })?;
                text
            } else {
                String::from_utf8_lossy(&body).into_owned()
            };
            for p in stanzas(&text) {
                if let (Some(n), Some(v), Some(a)) =
                    (p.get("Package"), p.get("Version"), p.get("Architecture"))
                {
                    available.insert((n.clone(), v.clone(), a.clone()));
                }
            }
        }
    }
    Ok(record
        .packages
        .iter()
        .filter(|p| {
            !available.contains(&(p.name.clone(), p.version.clone(), p.architecture.clone()))
        })
        .map(|p| format!("{}={} ({})", p.name, p.version, p.architecture))
        .collect())
}

/// The `Packages` index of each component for `arch` that an `InRelease`
/// lists in its SHA256 section (the `.gz` one when there is one), with its hash.
fn packages_indexes(in_release: &str, arch: &str) -> Vec<(String, String)> {
    let mut in_sha256 = false;
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for line in in_release.lines() {
        if !line.starts_with(' ') {
            in_sha256 = line.starts_with("SHA256:");
            continue;
        }
        if !in_sha256 {
            continue;
        }
        let mut words = line.split_whitespace();
        if let (Some(hash), Some(_size), Some(path)) = (words.next(), words.next(), words.next()) {
            files.insert(path.to_string(), hash.to_string());
        }
    }
    let suffix = format!("binary-{arch}/Packages");
    files
        .iter()
        .filter(|(path, _)| path.ends_with(&suffix))
        .map(|(path, hash)| {
            let gz = format!("{path}.gz");
            match files.get(&gz) {
                Some(h) => (gz, h.clone()),
                None => (path.clone(), hash.clone()),
            }
        })
        .collect()
}

/// A whole file from the mirror (http, https, file, copy), unconditionally.
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    if let Some(path) = url
        .strip_prefix("file://")
        .or_else(|| url.strip_prefix("copy://"))
    {
        return std::fs::read(path).map_err(|e| e.to_string());
    }
    let resp = client()?.get(url).send().map_err(|e| error_chain(&e))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    Ok(resp.bytes().map_err(|e| error_chain(&e))?.to_vec())
}

/// The HTTP client for the mirror: bounded waits, the proxy variables honoured.
fn client() -> Result<reqwest::blocking::Client, String> {
    reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("assemble/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// The last 15 lines of a failed command's standard error, credentials
/// masked, indented under the message that names the command.
pub fn failure_tail(stderr: &[u8]) -> String {
    // No escape sequence of a program's reaches the user's terminal.
    let text: String = String::from_utf8_lossy(stderr)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect();
    let text = mask_credentials(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n    ")
}

/// Every user information of a URL in `text` masked (mmdebstrap's and
/// apt's messages name the mirror).
pub fn mask_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            out.push_str("***");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

/// The record of a rootfs mmdebstrap just built: checks that apt used the
/// `InRelease` files of `state` (copied out into `lists`), and names every
/// package of the tree's dpkg status with its `Packages` sha256.
pub fn record(
    state: &ArchiveState,
    epoch: u64,
    lists: &Path,
    tree: &Path,
) -> Result<DebianRecord, RootfsError> {
    let mut used = Vec::new();
    let mut hashes: HashMap<(String, String, String), String> = HashMap::new();
    let entries = fs_err::read_dir(lists).map_err(io_err(lists))?;
    for entry in entries {
        let path = entry.map_err(io_err(lists))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with("_InRelease") {
            let bytes = fs_err::read(&path).map_err(io_err(&path))?;
            used.push(hex::encode(Sha256::digest(&bytes)));
        } else if name.ends_with("_Packages") {
            let text = fs_err::read_to_string(&path).map_err(io_err(&path))?;
            for p in stanzas(&text) {
                if let (Some(n), Some(v), Some(a), Some(h)) = (
                    p.get("Package"),
                    p.get("Version"),
                    p.get("Architecture"),
                    p.get("SHA256"),
                ) {
                    hashes.insert((n.clone(), v.clone(), a.clone()), h.clone());
                }
            }
        }
    }
    if let Some(moved) = state.suites.iter().find(|s| !used.contains(&s.sha256)) {
        return Err(RootfsError::ArchiveMoved {
            url: moved.url.clone(),
        });
    }
    let status = tree.join("var/lib/dpkg/status");
    let text = fs_err::read_to_string(&status).map_err(io_err(&status))?;
    let mut packages = BTreeMap::new();
    for p in stanzas(&text) {
        if !p.get("Status").is_some_and(|s| s.ends_with(" installed")) {
            continue;
        }
        let field = |k: &str| p.get(k).cloned().unwrap_or_default();
        let (name, version, architecture) =
            (field("Package"), field("Version"), field("Architecture"));
        let sha256 = hashes
            .get(&(name.clone(), version.clone(), architecture.clone()))
            .cloned()
            .ok_or_else(|| RootfsError::UnknownPackage {
                package: format!("{name} {version} {architecture}"),
            })?;
        packages.insert(
            (name.clone(), architecture.clone()),
            DebPackage {
                name,
                version,
                architecture,
                sha256,
            },
        );
    }
    Ok(DebianRecord {
        epoch,
        suites: state.suites.clone(),
        packages: packages.into_values().collect(),
    })
}

/// The stanzas of a Debian control file (dpkg status, Packages): field →
/// value of the first line.
fn stanzas(text: &str) -> Vec<HashMap<String, String>> {
    text.split("\n\n")
        .map(|stanza| {
            stanza
                .lines()
                .filter(|l| !l.starts_with([' ', '\t']))
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect::<HashMap<_, _>>()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_of_one_line_entries_with_options_and_flat_repositories() {
        let text = "# comment\n\
                    deb [signed-by=/k.gpg arch=amd64] http://u:p@127.0.0.1:8/debian/ bookworm main\n\
                    deb-src http://127.0.0.1:8/debian bookworm main\n\
                    deb http://127.0.0.1:8/debian-security bookworm-security main contrib\n\
                    deb [trusted=yes] file:///srv/flat ./\n";
        let urls: Vec<String> = one_line_entries(text)
            .iter()
            .map(|(u, s)| in_release_url(u, s))
            .collect();
        assert_eq!(
            urls,
            [
                "http://u:p@127.0.0.1:8/debian/dists/bookworm/InRelease",
                "http://127.0.0.1:8/debian-security/dists/bookworm-security/InRelease",
                "file:///srv/flat/InRelease",
            ]
        );
    }

    #[test]
    fn suites_of_deb822_stanzas() {
        let text = "Types: deb deb-src\nURIs: http://127.0.0.1:8/debian\n\
                    Suites: bookworm bookworm-updates\nComponents: main\n\
                    Signed-By: /k.gpg\n\n\
                    Types: deb-src\nURIs: http://127.0.0.1:8/src\nSuites: bookworm\n\n\
                    Types: deb\nURIs: http://127.0.0.1:8/off\nSuites: bookworm\nEnabled: no\n";
        assert!(is_deb822(text));
        assert_eq!(
            deb822_entries(text),
            [
                (
                    "http://127.0.0.1:8/debian".to_string(),
                    "bookworm".to_string()
                ),
                (
                    "http://127.0.0.1:8/debian".to_string(),
                    "bookworm-updates".to_string()
                ),
            ]
        );
    }

    #[test]
    fn mirror_forms_assemble_debian_mirror_takes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let runner = crate::sandbox::Recorder::default();
        let url = |m: &str| suites(m, "bookworm", &cache, &runner).unwrap();
        assert_eq!(
            url("http://127.0.0.1:8/debian"),
            ["http://127.0.0.1:8/debian/dists/bookworm/InRelease"]
        );
        assert_eq!(
            url("deb http://127.0.0.1:8/a bookworm main\ndeb http://127.0.0.1:8/b bookworm-security main"),
            [
                "http://127.0.0.1:8/a/dists/bookworm/InRelease",
                "http://127.0.0.1:8/b/dists/bookworm-security/InRelease"
            ]
        );
        let file = dir.path().join("mirror.sources");
        std::fs::write(
            &file,
            "Types: deb\nURIs: http://127.0.0.1:8/c\nSuites: bookworm\n",
        )
        .unwrap();
        assert_eq!(
            url(file.to_str().unwrap()),
            ["http://127.0.0.1:8/c/dists/bookworm/InRelease"]
        );
        let err = suites("nonsense", "bookworm", &cache, &runner).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        let err = suites(
            "deb-src http://127.0.0.1:8/a bookworm main",
            "bookworm",
            &cache,
            &runner,
        )
        .unwrap_err();
        assert!(err.to_string().contains("names no `deb` source"), "{err}");
        assert!(
            runner.host_commands.lock().unwrap().is_empty(),
            "no probe for a given mirror"
        );
    }

    #[test]
    fn the_probe_output_gives_the_default_sources_of_each_file() {
        let printed = "I: running --setup-hook in shell: sh -c ...\n\
                       @@assemble-sources sources.list\n\
                       deb http://127.0.0.1:8/debian bookworm main\n\
                       deb http://127.0.0.1:8/debian bookworm-updates main\n\n\
                       @@assemble-sources extra.sources\n\
                       Types: deb\nURIs: http://127.0.0.1:8/sec\nSuites: bookworm-security\n\n\
                       @@assemble-sources\n\
                       E: command failed: ...\n";
        assert_eq!(
            printed_sources(printed),
            [
                (
                    "http://127.0.0.1:8/debian".to_string(),
                    "bookworm".to_string()
                ),
                (
                    "http://127.0.0.1:8/debian".to_string(),
                    "bookworm-updates".to_string()
                ),
                (
                    "http://127.0.0.1:8/sec".to_string(),
                    "bookworm-security".to_string()
                ),
            ]
        );
    }

    #[test]
    fn credentials_never_reach_a_record_or_a_message() {
        assert_eq!(
            strip_credentials("https://user:s3cret@127.0.0.1:8/debian/dists/x/InRelease"),
            "https://127.0.0.1:8/debian/dists/x/InRelease"
        );
        let masked = mask_credentials(
            "Err:1 http://user:s3cret@127.0.0.1:8/debian bookworm InRelease\n  at http://h/x@y",
        );
        assert!(
            !masked.contains("s3cret") && !masked.contains("user"),
            "{masked}"
        );
        assert!(masked.contains("http://***@127.0.0.1:8/debian"), "{masked}");
        assert!(masked.contains("http://h/x@y"), "{masked}");
        // A failure's tail: credentials masked, no escape sequence, the
        // last 15 lines.
        let stderr: String = (1..=20).map(|n| format!("line {n}\n")).collect::<String>()
            + "\x1b]0;title\x07\x1b[2Jhttp://u:s3cret@h/x\tend";
        let tail = failure_tail(stderr.as_bytes());
        assert!(!tail.contains('\x1b') && !tail.contains('\x07'), "{tail:?}");
        assert!(
            tail.contains("?]0;title??[2Jhttp://***@h/x\tend"),
            "{tail:?}"
        );
        assert!(
            !tail.contains("line 6\n") && tail.contains("line 7\n"),
            "{tail:?}"
        );
        // A read failure names the URL without them.
        let err = revalidate(&["gopher://user:s3cret@127.0.0.1:1/x".into()], None).unwrap_err();
        assert!(
            !err.contains("s3cret") && err.contains("gopher://127.0.0.1:1/x"),
            "{err}"
        );
    }

    #[test]
    fn the_state_of_an_in_release_is_its_hash_and_date_and_the_epoch_the_newest_date() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(
            &a,
            "-----BEGIN PGP SIGNED MESSAGE-----\nDate: Tue, 14 Nov 2023 22:13:20 UTC\n",
        )
        .unwrap();
        std::fs::write(&b, "Date: Tue, 14 Nov 2023 22:13:30 UTC\n").unwrap();
        let urls = [a, b].map(|p| format!("file://{}", p.display()));
        let state = revalidate(&urls, None).unwrap();
        assert_eq!(state.epoch().unwrap(), 1_700_000_010);
        assert_eq!(state.suites[0].date, "Tue, 14 Nov 2023 22:13:20 UTC");
        assert_eq!(state.suites[0].sha256.len(), 64);
        let mut moved = state.clone();
        moved.suites[1].sha256 = "0".repeat(64);
        moved.suites[1].date = "Wed, 15 Nov 2023 00:00:00 UTC".into();
        let why = moved.changes_since(&state);
        assert!(
            why.contains("(Tue, 14 Nov 2023 22:13:30 UTC → Wed, 15 Nov 2023 00:00:00 UTC)"),
            "{why}"
        );
    }

    #[test]
    fn the_packages_indexes_of_an_in_release_are_its_sha256_entries_for_the_arch() {
        let in_release = "Date: x\nMD5Sum:\n 00 1 main/binary-amd64/Packages.gz\nSHA256:\n \
                          aa 10 main/binary-amd64/Packages\n bb 5 main/binary-amd64/Packages.gz\n \
                          cc 9 contrib/binary-amd64/Packages\n dd 9 main/binary-arm64/Packages.gz\n \
                          ee 3 main/i18n/Translation-en\n";
        assert_eq!(
            packages_indexes(in_release, "amd64"),
            [
                (
                    "contrib/binary-amd64/Packages".to_string(),
                    "cc".to_string()
                ),
                (
                    "main/binary-amd64/Packages.gz".to_string(),
                    "bb".to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_record_names_each_installed_package_with_the_index_hash() {
        let dir = tempfile::tempdir().unwrap();
        let lists = dir.path().join("lists");
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&lists).unwrap();
        std::fs::create_dir_all(tree.join("var/lib/dpkg")).unwrap();
        std::fs::write(
            lists.join("h_dists_bookworm_InRelease"),
            "Date: Tue, 14 Nov 2023 22:13:20 UTC\n",
        )
        .unwrap();
        std::fs::write(
            lists.join("h_dists_bookworm_main_binary-amd64_Packages"),
            "Package: dash\nVersion: 0.5.12-2\nArchitecture: amd64\nDescription: x\n more\nSHA256: aa\n\n\
             Package: tzdata\nVersion: 2025b-0\nArchitecture: all\nSHA256: bb\n\n\
             Package: gone\nVersion: 1\nArchitecture: all\nSHA256: cc\n",
        )
        .unwrap();
        std::fs::write(
            tree.join("var/lib/dpkg/status"),
            "Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2025b-0\n\n\
             Package: dash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 0.5.12-2\n\n\
             Package: removed\nStatus: deinstall ok config-files\nArchitecture: all\nVersion: 9\n",
        )
        .unwrap();
        let url = format!(
            "file://{}",
            lists.join("h_dists_bookworm_InRelease").display()
        );
        let state = revalidate(&[url], None).unwrap();
        let rec = record(&state, 7, &lists, &tree).unwrap();
        assert_eq!(rec.epoch, 7);
        let names: Vec<(&str, &str)> = rec
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.sha256.as_str()))
            .collect();
        assert_eq!(names, [("dash", "aa"), ("tzdata", "bb")]);
        // apt used another InRelease than the one the key was made of.
        let mut other = state.clone();
        other.suites[0].sha256 = "0".repeat(64);
        assert!(matches!(
            record(&other, 7, &lists, &tree),
            Err(RootfsError::ArchiveMoved { .. })
        ));
    }
}
