//! `assemble cache prune`: deletes the build cache entries of a registry
//! repository that were last written more than N days ago, and nothing
//! else.
//!
//! An entry is assemble's when its tag names an OCI image manifest whose
//! `artifactType` starts with [`ARTIFACT_PREFIX`]; its age is its
//! [`CREATED`] annotation (RFC 3339), when the entry was last written.
//! Anything else in the repository (images, other artifacts, indexes, an
//! entry without a readable date) stays, and so does a manifest that a tag
//! kept also names, or that an index of the repository names. Every tag's
//! manifest is read before the first delete; entries are deleted by digest
//! (the distribution spec has no other way, and a delete takes every tag of
//! the manifest with it), one at a time, stopping at the first refusal.
//! Blobs are left to the registry's garbage collector. With `--dry-run`
//! nothing is deleted and the repository is only read.
//!
//! [`select`] decides, from what the tags' manifests say and the time; it
//! does no I/O and is where the rules are tested. [`prune`] reads the
//! repository, asks [`select`] and deletes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::digest::Digest;
use crate::epoch;
use crate::image::media;
use crate::output::Printer;
use crate::registry::{Client, Deletion, Reference, RegistryError, Repository};

/// The artifact types of the entries assemble writes in a cache repository
/// start with this (`application/vnd.assemble.build-record.v1`, and the
/// kinds to come).
pub const ARTIFACT_PREFIX: &str = "application/vnd.assemble.";

/// The manifest annotation holding when an entry was last written.
pub const CREATED: &str = "org.opencontainers.image.created";

/// Seconds in a day, for ages in days.
const DAY: u64 = 86_400;

/// Why a prune stopped.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The tags or a tag's manifest could not be read: nothing was deleted.
    #[error("cannot read the build cache {repository}; nothing was deleted")]
    Read {
        /// The repository.
        repository: String,
        #[source]
        source: Box<RegistryError>,
    },
    /// The registry does not delete manifests.
    #[error(
        "registry {host} has deletes disabled: it refused to delete {digest} from \
         {repository} (405 UNSUPPORTED), and {}; enable deletes on the registry (CNCF \
         distribution: storage.delete.enabled: true in its configuration, or \
         REGISTRY_STORAGE_DELETE_ENABLED=true in its environment) and prune again \
         (--dry-run lists what would go without deleting)",
        deleted_before(*.deleted)
    )]
    DeletesDisabled {
        /// The registry.
        host: String,
        /// The repository.
        repository: String,
        /// The manifest refused.
        digest: Digest,
        /// Entries deleted before the refusal.
        deleted: usize,
    },
    /// A delete failed.
    #[error("cannot delete {digest} from {repository}{hint}; {}", deleted_before(*.deleted))]
    Delete {
        /// The repository.
        repository: String,
        /// What to check, when the registry refused.
        hint: &'static str,
        /// The manifest.
        digest: Digest,
        /// Entries deleted before the failure.
        deleted: usize,
        #[source]
        source: Box<RegistryError>,
    },
}

/// How many entries went before a prune stopped (none after it).
fn deleted_before(n: usize) -> String {
    match n {
        0 => "nothing was deleted".into(),
        1 => "1 entry was deleted before that, none after".into(),
        n => format!("{n} entries were deleted before that, none after"),
    }
}

/// What to check when a delete is refused for want of access: a token or
/// account that may pull and push but not delete.
fn access_hint(e: &RegistryError) -> &'static str {
    match e {
        RegistryError::Unauthorized { .. } | RegistryError::Status { status: 403, .. } => {
            " (the credentials may lack delete access to the repository)"
        }
        _ => "",
    }
}

impl PruneError {
    /// True for bad input: a certificate or credentials file that cannot be
    /// used (exit 2). A registry that fails or refuses, deletes disabled
    /// included, is exit 1, as for any other registry operation: the
    /// command was right, the registry would not do it.
    pub fn is_bad_input(&self) -> bool {
        match self {
            PruneError::Read { source, .. } | PruneError::Delete { source, .. } => {
                source.is_bad_input()
            }
            PruneError::DeletesDisabled { .. } => false,
        }
    }
}

/// What prune needs of the manifest a tag names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Manifest {
    /// An OCI image manifest: its `artifactType` and [`CREATED`]
    /// annotation, as written.
    Oci {
        /// `artifactType`.
        artifact_type: Option<String>,
        /// The annotation's text.
        created: Option<String>,
    },
    /// An index (OCI or Docker list): the manifests it names.
    Index {
        /// Their digests.
        manifests: Vec<Digest>,
    },
    /// Anything else: its media type (escaped unless plain), or what it is.
    Other(String),
}

impl Manifest {
    /// What a manifest's bytes say, `content_type` being the registry's
    /// `Content-Type` (used when the manifest has no `mediaType`).
    pub fn read(bytes: &[u8], content_type: &str) -> Self {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Doc {
            media_type: Option<String>,
            artifact_type: Option<String>,
            annotations: Option<BTreeMap<String, String>>,
            manifests: Option<Vec<Descriptor>>,
        }
        #[derive(serde::Deserialize)]
        struct Descriptor {
            digest: String,
        }
        let Ok(doc) = serde_json::from_slice::<Doc>(bytes) else {
            return Manifest::Other("a manifest that is not JSON".into());
        };
        let media_type = doc
            .media_type
            .clone()
            .unwrap_or_else(|| content_type.to_string());
        match media_type.as_str() {
            media::OCI_MANIFEST => Manifest::Oci {
                artifact_type: doc.artifact_type,
                created: doc.annotations.and_then(|mut a| a.remove(CREATED)),
            },
            media::OCI_INDEX | media::DOCKER_MANIFEST_LIST => Manifest::Index {
                manifests: doc
                    .manifests
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|d| d.digest.parse().ok())
                    .collect(),
            },
            "" => Manifest::Other("a manifest without a media type".into()),
            other => Manifest::Other(printable(other)),
        }
    }
}

/// One tag of the repository and the manifest it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tagged {
    /// The tag.
    pub tag: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// What the manifest says.
    pub manifest: Manifest,
}

/// Why an entry stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Written within the last N days (or, by the clocks' difference, after now).
    Recent,
    /// Assemble's, without a [`CREATED`] annotation.
    NoDate,
    /// Assemble's, with a [`CREATED`] annotation that is not RFC 3339.
    BadDate(String),
    /// Not assemble's: an image, another artifact, an index (what it is,
    /// the registry's strings in it escaped).
    NotAssembles(String),
    /// Old, but an index kept in the repository names it.
    InIndex,
}

impl Kept {
    /// The reason, for a line of output.
    fn describe(&self, keep_days: u64) -> String {
        match self {
            Kept::Recent => format!("written in the last {}", days(keep_days)),
            Kept::NoDate => format!("an assemble entry without an {CREATED} annotation"),
            Kept::BadDate(d) => format!("an assemble entry whose {CREATED} is not RFC 3339: {d:?}"),
            Kept::NotAssembles(what) => format!("not an assemble entry ({what})"),
            Kept::InIndex => "an index of the repository names it".into(),
        }
    }

    /// The group it is counted in, for the summary.
    fn group(&self, keep_days: u64) -> String {
        match self {
            Kept::Recent => format!("written in the last {}", days(keep_days)),
            Kept::NoDate | Kept::BadDate(_) => "without a readable date".into(),
            Kept::NotAssembles(_) => "not assemble's".into(),
            Kept::InIndex => "named by an index".into(),
        }
    }
}

/// A manifest of the repository, with every tag naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its digest.
    pub digest: Digest,
    /// Its tags, sorted.
    pub tags: Vec<String>,
    /// Whole days since it was written, when that is known.
    pub age_days: Option<u64>,
}

/// What [`select`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Entries to delete, in the order of their first tag.
    pub prune: Vec<Entry>,
    /// Entries that stay, and why, in the order of their first tag.
    pub kept: Vec<(Entry, Kept)>,
}

/// The decision for one tag: its entry's age in seconds, or why it stays.
fn judge(manifest: &Manifest, keep_days: u64, now: u64) -> (Option<u64>, Result<(), Kept>) {
    let created = match manifest {
        Manifest::Oci {
            artifact_type: Some(t),
            created,
        } if t.starts_with(ARTIFACT_PREFIX) => created,
        Manifest::Oci {
            artifact_type: Some(t),
            ..
        } => {
            let what = format!("artifact {}", printable(t));
            return (None, Err(Kept::NotAssembles(what)));
        }
        Manifest::Oci {
            artifact_type: None,
            ..
        } => return (None, Err(Kept::NotAssembles("an image".into()))),
        Manifest::Index { .. } => return (None, Err(Kept::NotAssembles("an index".into()))),
        Manifest::Other(what) => return (None, Err(Kept::NotAssembles(what.clone()))),
    };
    let Some(text) = created else {
        return (None, Err(Kept::NoDate));
    };
    let Some(written) = epoch::from_rfc3339(text) else {
        let shown: String = text.chars().take(40).collect();
        return (None, Err(Kept::BadDate(shown)));
    };
    let Some(age) = now.checked_sub(written) else {
        return (None, Err(Kept::Recent));
    };
    let verdict = if age > keep_days.saturating_mul(DAY) {
        Ok(())
    } else {
        Err(Kept::Recent)
    };
    (Some(age), verdict)
}

/// Decides which manifests go: those whose every tag names an assemble
/// entry written more than `keep_days` days before `now` (seconds since
/// the epoch), and that no index of the repository names. Everything else
/// stays, with its reason.
pub fn select(tagged: &[Tagged], keep_days: u64, now: u64) -> Selection {
    struct Group {
        tags: BTreeSet<String>,
        age: Option<u64>,
        kept: Option<Kept>,
    }
    let mut groups: BTreeMap<&Digest, Group> = BTreeMap::new();
    let mut in_index: BTreeSet<&Digest> = BTreeSet::new();
    for t in tagged {
        if let Manifest::Index { manifests } = &t.manifest {
            in_index.extend(manifests);
        }
        let (age, verdict) = judge(&t.manifest, keep_days, now);
        let g = groups.entry(&t.digest).or_insert(Group {
            tags: BTreeSet::new(),
            age: None,
            kept: None,
        });
        g.tags.insert(t.tag.clone());
        g.age = g.age.max(age);
        // One tag kept keeps the manifest: a delete would take that tag too.
        if let (Err(why), None) = (verdict, &g.kept) {
            g.kept = Some(why);
        }
    }
    let mut selection = Selection::default();
    for (digest, g) in groups {
        let entry = Entry {
            digest: digest.clone(),
            tags: g.tags.into_iter().collect(),
            age_days: g.age.map(|a| a / DAY),
        };
        match g.kept {
            Some(why) => selection.kept.push((entry, why)),
            None if in_index.contains(digest) => selection.kept.push((entry, Kept::InIndex)),
            None => selection.prune.push(entry),
        }
    }
    selection.prune.sort_by(|a, b| a.tags.cmp(&b.tags));
    selection.kept.sort_by(|a, b| a.0.tags.cmp(&b.0.tags));
    selection
}

/// What a prune did (or, with `--dry-run`, would do).
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    /// Entries deleted (or that would be).
    pub pruned: usize,
    /// Manifests the repository's tags name.
    pub total: usize,
}

impl Summary {
    /// `pruned K of M entries (L kept)`.
    pub fn line(&self, dry_run: bool) -> String {
        format!(
            "{} {} of {} entries ({} kept)",
            if dry_run { "would prune" } else { "pruned" },
            self.pruned,
            self.total,
            self.total - self.pruned
        )
    }
}

/// Prunes `repository` (a repository reference, no tag): reads every tag's
/// manifest, then deletes the entries [`select`] chose, one line each;
/// with `dry_run`, deletes nothing and needs only pull access.
pub fn prune(
    client: Arc<Client>,
    repository: &Reference,
    keep_days: u64,
    dry_run: bool,
    now: u64,
    printer: &Printer,
) -> Result<Summary, PruneError> {
    let repo = if dry_run {
        Repository::for_pull(client, repository)
    } else {
        Repository::for_delete(client, repository)
    };
    let name = repository.to_string();
    let read_error = |source| PruneError::Read {
        repository: name.clone(),
        source: Box::new(source),
    };
    let tags = repo.tags().map_err(read_error)?;
    printer.step(&format!(
        "{name}: {} tag{}; reading their manifests",
        tags.len(),
        if tags.len() == 1 { "" } else { "s" }
    ));
    let mut tagged = Vec::with_capacity(tags.len());
    let mut unread = 0;
    for tag in tags {
        // Not put in a URL: a registry's list is not trusted to be tags.
        if !is_tag(&tag) {
            printer.warn(&format!(
                "{name} lists {}, which is not a tag; left alone",
                printable(&tag)
            ));
            unread += 1;
            continue;
        }
        let manifest = match repo.get_manifest(&tag) {
            Ok((bytes, content_type)) => Tagged {
                digest: Digest::of(&bytes),
                manifest: Manifest::read(&bytes, &content_type),
                tag,
            },
            // Deleted since the list was made (another prune, a push).
            Err(RegistryError::Status { status: 404, .. }) => {
                if printer.verbose() {
                    printer.step(&format!("tag {} is gone; skipped", printable(&tag)));
                }
                continue;
            }
            // No entry of assemble's is that large: kept, unread.
            Err(RegistryError::TooLarge { limit, .. }) => {
                if printer.verbose() {
                    printer.step(&format!(
                        "kept tag {}: its manifest is over {limit} bytes, more than an \
                         assemble entry",
                        printable(&tag)
                    ));
                }
                unread += 1;
                continue;
            }
            Err(e) => return Err(read_error(e)),
        };
        tagged.push(manifest);
    }
    let selection = select(&tagged, keep_days, now);
    let total = selection.prune.len() + selection.kept.len() + unread;
    if printer.verbose() {
        for (entry, why) in &selection.kept {
            printer.step(&format!(
                "kept {}: {}",
                describe(entry),
                why.describe(keep_days)
            ));
        }
    }
    let mut pruned = 0;
    for entry in &selection.prune {
        let age = entry.age_days.unwrap_or_default();
        let line = |verb: &str| format!("{verb} {} ({} old)", describe(entry), days(age));
        if dry_run {
            printer.step(&line("would prune"));
            pruned += 1;
            continue;
        }
        match repo.delete_manifest(&entry.digest) {
            Ok(Deletion::Deleted) => printer.step(&line("pruned")),
            Ok(Deletion::Absent) => {
                printer.step(&format!("{}; it was already gone", line("pruned")))
            }
            Ok(Deletion::Unsupported) => {
                return Err(PruneError::DeletesDisabled {
                    host: repo.host().to_string(),
                    repository: name,
                    digest: entry.digest.clone(),
                    deleted: pruned,
                })
            }
            Err(source) => {
                return Err(PruneError::Delete {
                    hint: access_hint(&source),
                    repository: name,
                    digest: entry.digest.clone(),
                    deleted: pruned,
                    source: Box::new(source),
                })
            }
        }
        pruned += 1;
    }
    if total > pruned {
        let hint = if printer.verbose() {
            ""
        } else {
            " (--verbose lists them)"
        };
        printer.step(&format!(
            "{}{hint}",
            kept_line(&selection.kept, unread, keep_days)
        ));
    }
    if !dry_run && pruned > 0 {
        printer
            .step("the registry's garbage collector reclaims the blobs no manifest names any more");
    }
    Ok(Summary { pruned, total })
}

/// `kept 3: 2 written in the last 30 days, 1 not assemble's`; `unread`
/// manifests were too large to read.
fn kept_line(kept: &[(Entry, Kept)], unread: usize, keep_days: u64) -> String {
    let mut groups: Vec<(String, usize)> = Vec::new();
    let reasons = kept
        .iter()
        .map(|(_, why)| why.group(keep_days))
        .chain(std::iter::repeat_n("not assemble's".to_string(), unread));
    for g in reasons {
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, n)) => *n += 1,
            None => groups.push((g, 1)),
        }
    }
    let parts: Vec<String> = groups.iter().map(|(g, n)| format!("{n} {g}")).collect();
    format!("kept {}: {}", kept.len() + unread, parts.join(", "))
}

/// True for a tag as the distribution spec defines them:
/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn is_tag(s: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    s.len() <= 128
        && s.bytes().next().is_some_and(word)
        && s.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// `1 day`, `30 days`.
fn days(n: u64) -> String {
    format!("{n} day{}", if n == 1 { "" } else { "s" })
}

/// `tag build-ab12, build-cd34 sha256:…`.
fn describe(entry: &Entry) -> String {
    let tags: Vec<String> = entry.tags.iter().map(|t| printable(t)).collect();
    format!(
        "tag{} {} {}",
        if tags.len() == 1 { "" } else { "s" },
        tags.join(", "),
        entry.digest
    )
}

/// A string from the registry, as it is when it is a plain tag or media
/// type, else escaped: a registry's answer must not write control
/// characters to a terminal.
fn printable(s: &str) -> String {
    let plain = s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+/".contains(&b));
    if plain {
        s.to_string()
    } else {
        let shown: String = s.chars().take(128).collect();
        format!("{shown:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_790_000_000;
    const BUILD_RECORD: &str = "application/vnd.assemble.build-record.v1";

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn ours(days_ago: u64) -> Manifest {
        Manifest::Oci {
            artifact_type: Some(BUILD_RECORD.into()),
            created: Some(epoch::rfc3339(NOW - days_ago * DAY - 60)),
        }
    }

    fn tagged(tag: &str, n: u8, manifest: Manifest) -> Tagged {
        Tagged {
            tag: tag.into(),
            digest: digest(n),
            manifest,
        }
    }

    fn tags_of(entries: &[Entry]) -> Vec<Vec<&str>> {
        entries
            .iter()
            .map(|e| e.tags.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn only_assembles_entries_older_than_the_days_kept_go() {
        let list = [
            tagged("old", 1, ours(40)),
            tagged("recent", 2, ours(3)),
            tagged(
                "no-date",
                3,
                Manifest::Oci {
                    artifact_type: Some("application/vnd.assemble.cache-entry.v1".into()),
                    created: None,
                },
            ),
            tagged(
                "bad-date",
                4,
                Manifest::Oci {
                    artifact_type: Some(BUILD_RECORD.into()),
                    created: Some("last Tuesday".into()),
                },
            ),
            tagged(
                "image",
                5,
                Manifest::Oci {
                    artifact_type: None,
                    created: Some(epoch::rfc3339(0)),
                },
            ),
            tagged(
                "sbom",
                6,
                Manifest::Oci {
                    artifact_type: Some("application/spdx+json".into()),
                    created: Some(epoch::rfc3339(0)),
                },
            ),
            tagged("docker", 7, Manifest::Other(media::DOCKER_MANIFEST.into())),
            tagged(
                "future",
                8,
                Manifest::Oci {
                    artifact_type: Some(BUILD_RECORD.into()),
                    created: Some(epoch::rfc3339(NOW + 3600)),
                },
            ),
        ];
        let s = select(&list, 30, NOW);
        assert_eq!(tags_of(&s.prune), [["old"]]);
        assert_eq!(s.prune[0].age_days, Some(40));
        assert_eq!(s.prune[0].digest, digest(1));
        let kept: Vec<(&str, &Kept)> = s
            .kept
            .iter()
            .map(|(e, k)| (e.tags[0].as_str(), k))
            .collect();
        assert_eq!(
            kept,
            [
                ("bad-date", &Kept::BadDate("last Tuesday".into())),
                ("docker", &Kept::NotAssembles(media::DOCKER_MANIFEST.into())),
                ("future", &Kept::Recent),
                ("image", &Kept::NotAssembles("an image".into())),
                ("no-date", &Kept::NoDate),
                ("recent", &Kept::Recent),
                (
                    "sbom",
                    &Kept::NotAssembles("artifact application/spdx+json".into())
                ),
            ]
        );
    }

    #[test]
    fn a_manifest_goes_only_when_every_tag_naming_it_goes() {
        // Tags of one digest say the same (the digest is of the bytes), but
        // the rule holds for whatever the reads said.
        let list = [
            tagged("a1", 1, ours(50)),
            tagged("a2", 1, ours(50)),
            tagged("b1", 2, ours(50)),
            tagged("b2", 2, ours(1)),
        ];
        let s = select(&list, 7, NOW);
        assert_eq!(tags_of(&s.prune), [["a1", "a2"]]);
        assert_eq!(s.kept.len(), 1);
        assert_eq!(s.kept[0].0.tags, ["b1", "b2"]);
        assert_eq!(s.kept[0].1, Kept::Recent);
    }

    #[test]
    fn an_entry_an_index_names_stays() {
        let list = [
            tagged("old", 1, ours(50)),
            tagged(
                "multi",
                9,
                Manifest::Index {
                    manifests: vec![digest(1)],
                },
            ),
        ];
        let s = select(&list, 7, NOW);
        assert!(s.prune.is_empty());
        assert_eq!(s.kept[1].1, Kept::InIndex);
    }

    #[test]
    fn the_boundary_is_n_whole_days_and_zero_prunes_every_dated_entry() {
        let at = |secs_ago: u64| Manifest::Oci {
            artifact_type: Some(BUILD_RECORD.into()),
            created: Some(epoch::rfc3339(NOW - secs_ago)),
        };
        let list = [
            tagged("exactly", 1, at(2 * DAY)),
            tagged("just-over", 2, at(2 * DAY + 1)),
        ];
        assert_eq!(tags_of(&select(&list, 2, NOW).prune), [["just-over"]]);
        assert_eq!(select(&list, 0, NOW).prune.len(), 2);
        assert!(select(&list, u64::MAX, NOW).prune.is_empty());
    }

    #[test]
    fn manifests_are_read_by_their_media_type() {
        let oci = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "artifactType": BUILD_RECORD,
            "annotations": {CREATED: "2026-11-30T20:15:00Z", "x": "y"},
        });
        assert_eq!(
            Manifest::read(&serde_json::to_vec(&oci).unwrap(), ""),
            Manifest::Oci {
                artifact_type: Some(BUILD_RECORD.into()),
                created: Some("2026-11-30T20:15:00Z".into())
            }
        );
        // Without mediaType, the Content-Type says.
        let bare = br#"{"schemaVersion":2,"config":{}}"#;
        assert_eq!(
            Manifest::read(bare, media::OCI_MANIFEST),
            Manifest::Oci {
                artifact_type: None,
                created: None
            }
        );
        assert_eq!(
            Manifest::read(bare, media::DOCKER_MANIFEST),
            Manifest::Other(media::DOCKER_MANIFEST.into())
        );
        let index = serde_json::json!({
            "mediaType": media::OCI_INDEX,
            "manifests": [{"digest": digest(1).to_string()}, {"digest": "nonsense"}],
        });
        assert_eq!(
            Manifest::read(&serde_json::to_vec(&index).unwrap(), ""),
            Manifest::Index {
                manifests: vec![digest(1)]
            }
        );
        assert!(matches!(Manifest::read(b"<html>", ""), Manifest::Other(_)));
        assert!(matches!(
            Manifest::read(br#"{"mediaType": 7}"#, media::OCI_MANIFEST),
            Manifest::Other(_)
        ));
    }

    #[test]
    fn the_summary_and_the_kept_line_say_what_stays() {
        let s = Summary {
            pruned: 2,
            total: 6,
        };
        assert_eq!(s.line(false), "pruned 2 of 6 entries (4 kept)");
        assert_eq!(s.line(true), "would prune 2 of 6 entries (4 kept)");
        assert_eq!(Kept::Recent.describe(1), "written in the last 1 day");
        let entry = |t: &str| Entry {
            digest: digest(1),
            tags: vec![t.into()],
            age_days: None,
        };
        let kept = [
            (entry("a"), Kept::Recent),
            (entry("b"), Kept::NoDate),
            (entry("c"), Kept::Recent),
            (entry("d"), Kept::NotAssembles("an image".into())),
        ];
        assert_eq!(
            kept_line(&kept, 1, 30),
            "kept 5: 2 written in the last 30 days, 1 without a readable date, 2 not assemble's"
        );
    }

    #[test]
    fn the_entries_remote_cache_writes_are_assembles() {
        assert!(crate::remote_cache::ARTIFACT_TYPE.starts_with(ARTIFACT_PREFIX));
    }

    #[test]
    fn only_tags_of_the_spec_are_asked_for() {
        assert!(is_tag("build-0123abc") && is_tag("_x.Y-1") && is_tag(&"a".repeat(128)));
        for bad in [
            "",
            "-x",
            ".x",
            "../x",
            "a/b",
            "a?b",
            "a b",
            &"a".repeat(129),
        ] {
            assert!(!is_tag(bad), "{bad}");
        }
    }

    #[test]
    fn registry_strings_are_printed_escaped_unless_plain() {
        assert_eq!(printable("build-0123abc"), "build-0123abc");
        assert_eq!(printable(media::OCI_MANIFEST), media::OCI_MANIFEST);
        assert_eq!(printable("x\u{1b}[2J"), r#""x\u{1b}[2J""#);
        assert_eq!(
            Manifest::read(br#"{"mediaType": "text/x\u001b[2J"}"#, ""),
            Manifest::Other(r#""text/x\u{1b}[2J""#.into())
        );
    }

    #[test]
    fn deletes_disabled_says_how_to_enable_them_and_is_not_bad_input() {
        let e = PruneError::DeletesDisabled {
            host: "127.0.0.1:5000".into(),
            repository: "127.0.0.1:5000/team/cache".into(),
            digest: digest(1),
            deleted: 0,
        };
        let text = e.to_string();
        assert!(
            text.contains("deletes disabled")
                && text.contains("REGISTRY_STORAGE_DELETE_ENABLED=true")
                && text.contains("nothing was deleted"),
            "{text}"
        );
        assert!(!e.is_bad_input());
        let denied = RegistryError::Status {
            what: "DELETE".into(),
            status: 403,
            body: "DENIED".into(),
        };
        let e = PruneError::Delete {
            hint: access_hint(&denied),
            repository: "127.0.0.1:5000/team/cache".into(),
            digest: digest(1),
            deleted: 2,
            source: Box::new(denied),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "cannot delete {} from 127.0.0.1:5000/team/cache (the credentials may lack \
                 delete access to the repository); 2 entries were deleted before that, none after",
                digest(1)
            )
        );
        assert!(!e.is_bad_input());
    }
}
