//! The package index as assemble itself sees it, without pip and without a
//! sandbox: the project pages (PEP 503) a resolution consulted, fetched to
//! record their state and fetched again, conditionally, to tell whether
//! anything moved since. The body's sha256 is the validator (pypiserver,
//! artifact stores and mirrors send no `ETag` or `Last-Modified`, or send
//! them without honouring them); `ETag` and `Last-Modified` are used when
//! an index gives them, and a `304` means unchanged.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::digest::Digest;
use crate::output::{redact_url, strip_credentials};
use crate::spec::PipSettings;

/// How long a page may take: connect, answer and body.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a file (a wheel, an sdist) may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(900);
/// The largest page read (PyPI's page for a project with thousands of files
/// is a few MB).
const MAX_PAGE: u64 = 64 << 20;
/// The representation asked for, always the same so that recorded hashes
/// compare: PEP 503 HTML, which every index serves.
const ACCEPT: &str = "text/html";

/// One project page as it was when a resolution read it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexPage {
    /// The page's URL, without credentials.
    pub url: String,
    /// sha256 of its body.
    pub sha256: String,
    /// The `ETag` the index sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The `Last-Modified` the index sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the index page {url}: {why}")]
pub struct PageError {
    /// The page (credentials redacted).
    pub url: String,
    /// What went wrong.
    pub why: String,
    /// True when the index could not be reached at all (no connection, no
    /// answer in time), as opposed to an answer that refused the page.
    pub unreachable: bool,
}

/// The client for index pages, with pip's CA and trusted hosts and the
/// credentials of the configured indexes.
pub struct IndexClient {
    client: reqwest::blocking::Client,
    /// pip's `--trusted-host`s, and a client that does not check their
    /// certificates (theirs only, as pip does).
    trusted: Vec<String>,
    relaxed: Option<reqwest::blocking::Client>,
    /// Configured index URLs that carry credentials.
    with_credentials: Vec<reqwest::Url>,
}

impl IndexClient {
    /// A client for the indexes of `pip`.
    pub fn new(pip: &PipSettings) -> Result<Self, PageError> {
        let fail = |why: String| PageError {
            url: pip
                .index_url
                .as_deref()
                .map(redact_url)
                .unwrap_or_else(|| "(pip's default index)".into()),
            why,
            unreachable: false,
        };
        let certs = match &pip.cert {
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| fail(format!("pip's CA bundle cannot be read: {e}")))?,
            None => Vec::new(),
        };
        let build = |check_certificates: bool| {
            let mut builder = reqwest::blocking::Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(TIMEOUT)
                .user_agent(concat!("assemble/", env!("CARGO_PKG_VERSION")))
                .danger_accept_invalid_certs(!check_certificates);
            for cert in &certs {
                builder = builder.add_root_certificate(cert.clone());
            }
            builder
                .build()
                .map_err(|e| fail(format!("no HTTP client: {e}")))
        };
        let client = build(true)?;
        let relaxed = if pip.trusted_hosts.is_empty() {
            None
        } else {
            Some(build(false)?)
        };
        let with_credentials = pip
            .indexes()
            .filter_map(|u| reqwest::Url::parse(u).ok())
            .filter(|u| !u.username().is_empty())
            .collect();
        Ok(Self {
            client,
            trusted: pip.trusted_hosts.clone(),
            relaxed,
            with_credentials,
        })
    }

    /// The request for `url` (no credentials in it): the client for its
    /// host (relaxed for a trusted one), the credentials of the configured
    /// index on the same origin.
    fn request(&self, url: &str) -> Result<reqwest::blocking::RequestBuilder, PageError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| PageError {
            url: url.to_string(),
            why: e.to_string(),
            unreachable: false,
        })?;
        // pip's --trusted-host is a host or host:port.
        let host = parsed.host_str().unwrap_or_default();
        let host_port = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let client = match &self.relaxed {
            Some(relaxed) if self.trusted.iter().any(|t| *t == host || *t == host_port) => relaxed,
            _ => &self.client,
        };
        let mut request = client.get(parsed.clone());
        if let Some(index) = self
            .with_credentials
            .iter()
            .find(|i| i.origin() == parsed.origin())
        {
            request = request.basic_auth(
                percent_decode(index.username()),
                index.password().map(percent_decode),
            );
        }
        Ok(request)
    }

    /// Downloads the file at `url` (no credentials in it) to `dest`,
    /// returning the sha256 of what came; the caller compares it.
    pub fn download(&self, url: &str, dest: &Path) -> Result<Digest, PageError> {
        let fail = failure(url);
        let response = send(url, self.request(url)?.timeout(DOWNLOAD_TIMEOUT))?;
        if !response.status().is_success() {
            return Err(fail(format!("the index answered {}", response.status())));
        }
        let file = fs_err::File::create(dest).map_err(|e| fail(e.to_string()))?;
        let mut out = crate::digest::HashingWriter::new(std::io::BufWriter::new(file));
        let mut response = response;
        std::io::copy(&mut response, &mut out)
            .map_err(|e| fail(format!("the file stopped coming: {e}")))?;
        let (mut file, digest, _) = out.finish();
        std::io::Write::flush(&mut file).map_err(|e| fail(e.to_string()))?;
        Ok(digest)
    }

    /// Where `index` (no credentials in it) serves the file named `file` of
    /// the project `name`: the link of its page (PEP 503) whose last path
    /// segment is the file, made absolute; None when the page lists none.
    pub fn file_url(
        &self,
        index: &str,
        name: &str,
        file: &str,
    ) -> Result<Option<String>, PageError> {
        let page = super::resolve::page_url(index, name);
        let fail = failure(&page);
        let response = send(&page, self.request(&page)?.header("Accept", ACCEPT))?;
        if !response.status().is_success() {
            return Err(fail(format!("the index answered {}", response.status())));
        }
        let mut body = String::new();
        response
            .take(MAX_PAGE)
            .read_to_string(&mut body)
            .map_err(|e| fail(format!("the page stopped coming: {e}")))?;
        let base = reqwest::Url::parse(&page).map_err(|e| fail(e.to_string()))?;
        for part in body.split("href=").skip(1) {
            let Some(quote) = part.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let Some(href) = part[1..].split(quote).next() else {
                continue;
            };
            let href = href.replace("&amp;", "&");
            let path = href.split(['#', '?']).next().unwrap_or("");
            let last = percent_decode(path.rsplit('/').next().unwrap_or(""));
            if last == file {
                let url = base.join(&href).map_err(|e| fail(e.to_string()))?;
                return Ok(Some(strip_credentials(url.as_str())));
            }
        }
        Ok(None)
    }

    /// The page at `url` (no credentials in it), with the credentials of the
    /// configured index on the same origin.
    fn get(&self, url: &str, previous: Option<&IndexPage>) -> Result<Fetched, PageError> {
        let fail = failure(url);
        let mut request = self.request(url)?.header("Accept", ACCEPT);
        if let Some(p) = previous {
            if let Some(etag) = &p.etag {
                request = request.header("If-None-Match", etag);
            }
            if let Some(lm) = &p.last_modified {
                request = request.header("If-Modified-Since", lm);
            }
        }
        let response = send(url, request)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED && previous.is_some() {
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            return Err(fail(format!("the index answered {status}")));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, last_modified) = (header("etag"), header("last-modified"));
        let mut body = Vec::new();
        response
            .take(MAX_PAGE)
            .read_to_end(&mut body)
            .map_err(|e| fail(format!("the page stopped coming: {e}")))?;
        Ok(Fetched::Page(IndexPage {
            url: url.to_string(),
            sha256: Digest::of(&body).hex().to_string(),
            etag,
            last_modified,
        }))
    }

    /// Reads the pages at `urls` now, to record them.
    pub fn record(&self, urls: &[String]) -> Result<Vec<IndexPage>, PageError> {
        urls.iter()
            .map(|u| match self.get(u, None)? {
                Fetched::Page(p) => Ok(p),
                Fetched::NotModified => unreachable!("no conditional request was made"),
            })
            .collect()
    }

    /// The recorded pages that are no longer what they were, each with its
    /// new state; empty when nothing moved.
    pub fn changed(&self, pages: &[IndexPage]) -> Result<Vec<IndexPage>, PageError> {
        let mut changed = Vec::new();
        for p in pages {
            match self.get(&p.url, Some(p))? {
                Fetched::NotModified => {}
                Fetched::Page(now) if now.sha256 == p.sha256 => {}
                Fetched::Page(now) => changed.push(now),
            }
        }
        Ok(changed)
    }
}

enum Fetched {
    Page(IndexPage),
    NotModified,
}

/// Sends a request for `url`: a transport failure is an error that says
/// whether the index could not be reached.
fn send(
    url: &str,
    request: reqwest::blocking::RequestBuilder,
) -> Result<reqwest::blocking::Response, PageError> {
    request.send().map_err(|e| PageError {
        url: url.to_string(),
        why: without_url(&e),
        unreachable: e.is_connect() || e.is_timeout(),
    })
}

/// An error about `url` that is not the network's.
fn failure(url: &str) -> impl Fn(String) -> PageError + '_ {
    move |why| PageError {
        url: url.to_string(),
        why,
        unreachable: false,
    }
}

/// A reqwest error's text without the URL it carries (which may hold
/// credentials): the caller names the page.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.without_url_ref().to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        if self.is_timeout() {
            "no answer in time".into()
        } else if self.is_connect() {
            "cannot connect".into()
        } else if self.is_body() || self.is_decode() {
            "the page stopped coming".into()
        } else {
            "the request failed".into()
        }
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoded_credentials_are_decoded_for_basic_auth() {
        assert_eq!(percent_decode("p%40ss%3Aword"), "p@ss:word");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("trail%4"), "trail%4");
    }

    /// A one-connection HTTP server on loopback answering `answers` in turn,
    /// recording each request's head.
    fn serve(answers: Vec<String>) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for answer in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut head = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                tx.send(head).unwrap();
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        (format!("http://127.0.0.1:{port}/simple/django/"), rx)
    }

    fn ok(body: &str, extra: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn an_unchanged_body_is_unchanged_and_a_new_file_is_a_change() {
        let v1 = "<a href=\"/packages/django-4.2.30.whl#sha256=aa\">d</a>";
        let v2 = "<a href=\"/packages/django-4.2.31.whl#sha256=bb\">d</a>";
        let (url, rx) = serve(vec![ok(v1, ""), ok(v1, ""), ok(v2, "")]);
        let client = IndexClient::new(&PipSettings::default()).unwrap();
        let recorded = client.record(std::slice::from_ref(&url)).unwrap();
        assert_eq!(recorded[0].sha256, Digest::of(v1.as_bytes()).hex());
        assert!(client.changed(&recorded).unwrap().is_empty());
        let changed = client.changed(&recorded).unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].sha256, Digest::of(v2.as_bytes()).hex());
        let heads: Vec<String> = rx.try_iter().collect();
        assert_eq!(heads.len(), 3);
        assert!(heads[0].to_lowercase().contains("accept: text/html"));
    }

    #[test]
    fn validators_are_sent_back_and_304_means_unchanged() {
        let (url, rx) = serve(vec![
            ok(
                "page",
                "ETag: \"v1\"\r\nLast-Modified: Mon, 30 Nov 2026 10:00:00 GMT\r\n",
            ),
            "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".into(),
        ]);
        let client = IndexClient::new(&PipSettings::default()).unwrap();
        let recorded = client.record(&[url]).unwrap();
        assert_eq!(recorded[0].etag.as_deref(), Some("\"v1\""));
        assert!(client.changed(&recorded).unwrap().is_empty());
        let heads: Vec<String> = rx.try_iter().collect();
        let second = heads[1].to_lowercase();
        assert!(second.contains("if-none-match: \"v1\""), "{second}");
        assert!(
            second.contains("if-modified-since: mon, 30 nov 2026"),
            "{second}"
        );
    }

    #[test]
    fn credentials_of_the_configured_index_go_to_its_origin_only() {
        let (url, rx) = serve(vec![ok("a", ""), ok("b", "")]);
        let origin = url.trim_end_matches("/simple/django/");
        let pip = PipSettings {
            index_url: Some(format!(
                "{}/simple/",
                origin.replace("http://", "http://ci:s%40cret@")
            )),
            ..Default::default()
        };
        let client = IndexClient::new(&pip).unwrap();
        client.record(&[url]).unwrap();
        let other = serve(vec![ok("c", "")]);
        client.record(&[other.0]).unwrap();
        let first = rx.recv().unwrap().to_lowercase();
        // ci:s@cret
        assert!(
            first.contains("authorization: basic y2k6c0bjcmv0"),
            "{first}"
        );
        let elsewhere = other.1.recv().unwrap().to_lowercase();
        assert!(!elsewhere.contains("authorization"), "{elsewhere}");
    }

    #[test]
    fn an_unreachable_index_is_an_error_naming_the_page_without_credentials() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = IndexClient::new(&PipSettings::default()).unwrap();
        let err = client
            .record(&[format!("http://127.0.0.1:{port}/simple/x/")])
            .unwrap_err();
        assert!(err.to_string().contains("/simple/x/"), "{err}");
        assert!(err.to_string().contains("cannot connect"), "{err}");
    }
}
