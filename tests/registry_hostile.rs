//! Hostile registry answers, from a proxy in front of the real registry:
//! a blob with the wrong digest, a body shorter than its Content-Length, an
//! oversized manifest, a redirect and an upload `Location` to another host,
//! a body that stops coming, and an error body that never ends. Each is
//! refused with a clear error (or, for a body that keeps coming slowly,
//! accepted), nothing lands under a final name, credentials never reach the
//! other host, and no request hangs.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    CorruptBlob,
    ShortBody,
    HugeManifest,
    RedirectBlob(u16),
    /// Half of each blob, then nothing, the connection held open.
    StallBody,
    /// Each blob over 1 MiB in 8 pieces a second apart: longer in all than
    /// the client's timeout (5 s), each pause well within it.
    TrickleBody,
}

/// True when the client opened with a TLS ClientHello (the HTTPS attempt
/// made on loopback and insecure hosts): these listeners speak plain HTTP
/// only, so they close the connection, which sends the client to HTTP.
fn is_tls(conn: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(conn.peek(&mut first), Ok(1) if first[0] == 0x16)
}

/// Reads one request: (request line, headers without Connection, body).
fn read_request(conn: &TcpStream) -> Option<(String, Vec<String>, Vec<u8>)> {
    if is_tls(conn) {
        return None;
    }
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            headers.push(line.trim_end().to_string());
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some((first.trim_end().to_string(), headers, body))
}

fn start_proxy(upstream: String, mode: Mode) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let Some((line, headers, body)) = read_request(&conn) else {
                    return;
                };
                let mut c = conn;
                let is_blob_get = line.starts_with("GET ") && line.contains("/blobs/sha256:");
                let is_manifest_get = line.starts_with("GET ") && line.contains("/manifests/");
                // Credentials are asked for by the proxy itself, so that the
                // client has some to (not) forward.
                if !headers
                    .iter()
                    .any(|h| h.to_ascii_lowercase().starts_with("authorization: basic "))
                {
                    let _ = write!(c, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"proxy\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    return;
                }
                if let (Mode::RedirectBlob(other), true) = (mode, is_blob_get) {
                    let path = line.split_whitespace().nth(1).unwrap_or("/");
                    let _ = write!(c, "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.2:{other}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    return;
                }
                if mode == Mode::HugeManifest && is_manifest_get {
                    let huge = vec![b' '; 5 << 20];
                    let _ = write!(c, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", huge.len());
                    let _ = c.write_all(&huge);
                    return;
                }
                let Ok(mut up) = TcpStream::connect(&upstream) else {
                    return;
                };
                let mut head = format!("{line}\r\n");
                for h in headers
                    .iter()
                    .filter(|h| !h.to_ascii_lowercase().starts_with("authorization:"))
                {
                    head.push_str(h);
                    head.push_str("\r\n");
                }
                head.push_str("Connection: close\r\n\r\n");
                let _ = up.write_all(head.as_bytes());
                let _ = up.write_all(&body);
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer);
                if is_blob_get && answer.starts_with(b"HTTP/1.1 200") {
                    let split = answer
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|p| p + 4)
                        .unwrap_or(answer.len());
                    match mode {
                        Mode::CorruptBlob if answer.len() > split + 100 => {
                            let i = split + (answer.len() - split) / 2;
                            answer[i] ^= 0xff;
                        }
                        Mode::ShortBody if answer.len() > split + 100 => {
                            answer.truncate(split + (answer.len() - split) / 2);
                        }
                        _ => {}
                    }
                }
                if is_blob_get && answer.starts_with(b"HTTP/1.1 200") && mode == Mode::StallBody {
                    let split = head_end(&answer);
                    let _ = c.write_all(&answer[..split + (answer.len() - split) / 2]);
                    // Hold the connection open, sending nothing more.
                    std::thread::sleep(std::time::Duration::from_secs(600));
                    return;
                }
                if is_blob_get && answer.starts_with(b"HTTP/1.1 200") && mode == Mode::TrickleBody {
                    let split = head_end(&answer);
                    let _ = c.write_all(&answer[..split]);
                    let body = &answer[split..];
                    let (pieces, pause) = if body.len() > 1 << 20 {
                        (8, std::time::Duration::from_secs(1))
                    } else {
                        (1, std::time::Duration::ZERO)
                    };
                    for part in body.chunks(body.len().div_ceil(pieces).max(1)) {
                        std::thread::sleep(pause);
                        if c.write_all(part).is_err() {
                            return;
                        }
                    }
                    return;
                }
                let _ = c.write_all(&answer);
            });
        }
    });
    port
}

/// Where the head of an HTTP answer ends.
fn head_end(answer: &[u8]) -> usize {
    answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(answer.len())
}

struct Setup {
    reg: Registry,
    tmp: tempfile::TempDir,
}

fn setup() -> Setup {
    let reg = Registry::start("", "");
    let tmp = tempfile::tempdir().unwrap();
    let out = run(assemble()
        .arg("push")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .arg(format!("{}/team/src:1", reg.host))
        .arg("--insecure-registry")
        .arg(&reg.host)
        .arg("--cache-dir")
        .arg(tmp.path().join("cache")));
    assert!(out.status.success());
    Setup { reg, tmp }
}

fn pull_through(s: &Setup, mode: Mode) -> (std::process::Output, std::path::PathBuf) {
    pull_through_with(s, mode, &[])
}

fn pull_through_with(
    s: &Setup,
    mode: Mode,
    extra: &[&str],
) -> (std::process::Output, std::path::PathBuf) {
    let port = start_proxy(s.reg.host.clone(), mode);
    let proxy = format!("127.0.0.1:{port}");
    let config = s.tmp.path().join(format!("docker-{port}"));
    std::fs::create_dir_all(&config).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("puller:proxy-pa55");
    std::fs::write(
        config.join("config.json"),
        format!(r#"{{"auths":{{"{proxy}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let dest = s.tmp.path().join(format!("pulled-{port}"));
    let out = assemble()
        .env("DOCKER_CONFIG", &config)
        .arg("pull")
        .arg(format!("{proxy}/team/src:1"))
        .arg(&dest)
        .args(["--insecure-registry", &proxy, "--attempts", "2"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (finish_within_guard(out), dest)
}

fn no_final_blob_is_wrong(dest: &std::path::Path) {
    for e in std::fs::read_dir(dest.join("blobs/sha256"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() == 64 {
            let sum = Command::new("sha256sum").arg(e.path()).output().unwrap();
            assert!(
                String::from_utf8_lossy(&sum.stdout).starts_with(&name),
                "a wrong blob under a final name"
            );
        }
    }
    assert!(
        !dest.join("index.json").exists(),
        "no index.json after a refused pull"
    );
}

#[test]
fn a_blob_with_the_wrong_digest_is_refused() {
    let s = setup();
    let (out, dest) = pull_through(&s, Mode::CorruptBlob);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected") && err.contains("digest"), "{err}");
    no_final_blob_is_wrong(&dest);
}

#[test]
fn a_body_shorter_than_its_content_length_is_refused() {
    let s = setup();
    let (out, dest) = pull_through(&s, Mode::ShortBody);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // The connection ends before Content-Length bytes: a broken download of
    // that blob, not a digest mismatch of what arrived.
    assert!(
        err.contains("blob sha256:") && err.contains("the download broke"),
        "{err}"
    );
    no_final_blob_is_wrong(&dest);
}

#[test]
fn an_oversized_manifest_is_refused() {
    let s = setup();
    let (out, dest) = pull_through(&s, Mode::HugeManifest);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is over 4194304 bytes"), "{err}");
    no_final_blob_is_wrong(&dest);
}

#[test]
fn a_redirect_to_another_host_gets_no_credentials() {
    let s = setup();
    // The other host: records what it is sent, serves nothing.
    let other = TcpListener::bind("127.0.0.2:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for conn in other.incoming().flatten() {
            if let Some((line, headers, _)) = read_request(&conn) {
                seen2
                    .lock()
                    .unwrap()
                    .push(format!("{line}\n{}", headers.join("\n")));
            }
            let mut c = conn;
            let _ = write!(
                c,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let (out, dest) = pull_through(&s, Mode::RedirectBlob(other_port));
    assert_eq!(out.status.code(), Some(1));
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "the redirect was followed");
    for request in seen.iter() {
        assert!(
            !request.to_ascii_lowercase().contains("authorization"),
            "credentials went to another host:\n{request}"
        );
    }
    no_final_blob_is_wrong(&dest);
}

/// Waits for a command, killing it if it runs past a generous guard: the
/// tests here are about requests that used to hang.
fn finish_within_guard(mut child: std::process::Child) -> std::process::Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the command hung and was killed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Regression: an upload `Location` on another host got the registry's
/// Authorization header.
#[test]
fn an_upload_location_on_another_host_gets_no_credentials() {
    let reg = Registry::start("", "");
    // The other host: records each request, then forwards it to the
    // registry (its own Locations rewritten to itself), so the push can end.
    let other = TcpListener::bind("127.0.0.2:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let (seen2, upstream) = (seen.clone(), reg.host.clone());
    std::thread::spawn(move || {
        for conn in other.incoming().flatten() {
            let (seen, upstream) = (seen2.clone(), upstream.clone());
            std::thread::spawn(move || {
                if let Some((line, headers, body)) = read_request(&conn) {
                    seen.lock()
                        .unwrap()
                        .push(format!("{line}\n{}", headers.join("\n")));
                    let answer = forward(&upstream, &line, &headers, &body);
                    let mut c = conn;
                    let _ = c.write_all(&relocate(
                        &answer,
                        &format!("http://127.0.0.2:{other_port}"),
                    ));
                }
            });
        }
    });
    // The registry's stand-in: asks for credentials, forwards to the
    // registry, and names the other host in the Location of an upload start.
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_host = format!("127.0.0.1:{}", proxy.local_addr().unwrap().port());
    let upstream = reg.host.clone();
    std::thread::spawn(move || {
        for conn in proxy.incoming().flatten() {
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let Some((line, headers, body)) = read_request(&conn) else {
                    return;
                };
                let mut c = conn;
                if !headers
                    .iter()
                    .any(|h| h.to_ascii_lowercase().starts_with("authorization: basic "))
                {
                    let _ = write!(c, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"proxy\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    return;
                }
                let answer = forward(&upstream, &line, &headers, &body);
                let answer = if line.starts_with("POST ") && line.contains("/blobs/uploads/") {
                    relocate(&answer, &format!("http://127.0.0.2:{other_port}"))
                } else {
                    answer
                };
                let _ = c.write_all(&answer);
            });
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("pusher:proxy-pa55");
    std::fs::write(
        config.join("config.json"),
        format!(r#"{{"auths":{{"{proxy_host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let out = run(assemble()
        .env("DOCKER_CONFIG", &config)
        .arg("push")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .arg(format!("{proxy_host}/team/located:1"))
        .args(["--insecure-registry", &proxy_host, "--parallel", "1"])
        .arg("--cache-dir")
        .arg(tmp.path().join("cache")));
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().any(|r| r.starts_with("PUT ")),
        "the uploads went to the other host:\n{seen:?}"
    );
    for request in seen.iter() {
        assert!(
            !request.to_ascii_lowercase().contains("authorization"),
            "credentials went to another host:\n{request}"
        );
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim()
        .ends_with(&image_digest()));
}

/// Sends a request to the registry as it came (without its Authorization)
/// and returns the whole answer.
fn forward(upstream: &str, line: &str, headers: &[String], body: &[u8]) -> Vec<u8> {
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec();
    };
    let mut head = format!("{line}\r\n");
    for h in headers
        .iter()
        .filter(|h| !h.to_ascii_lowercase().starts_with("authorization:"))
    {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    let _ = up.write_all(head.as_bytes());
    let _ = up.write_all(body);
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
    answer
}

/// Rewrites an answer's Location to the same path on `origin`.
fn relocate(answer: &[u8], origin: &str) -> Vec<u8> {
    let split = head_end(answer);
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let head: String = head
        .split("\r\n")
        .map(|l| match l.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("location") => {
                let v = v.trim();
                let path = match v.find("://") {
                    Some(i) => v[i + 3..].find('/').map(|j| &v[i + 3 + j..]).unwrap_or("/"),
                    None => v,
                };
                format!("Location: {origin}{path}")
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&answer[split..]);
    out
}

/// Regression: requests had no timeout, so a registry that accepts the
/// connection and never answers hung the command (and CI) until killed.
#[test]
fn a_registry_that_accepts_and_stalls_fails_naming_the_host_and_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let held = Arc::new(Mutex::new(Vec::new()));
    let held2 = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            // Accepted, never read from nor answered, never closed.
            held2.lock().unwrap().push(conn);
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let child = assemble()
        .arg("pull")
        .arg(format!("{host}/team/stall:1"))
        .arg(tmp.path().join("pulled"))
        .args([
            "--insecure-registry",
            &host,
            "--timeout",
            "2",
            "--attempts",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish_within_guard(child);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("registry {host} did not answer")) && err.contains("within 2 s"),
        "{err}"
    );
    assert!(!held.lock().unwrap().is_empty(), "the listener was reached");
}

/// Regression: a blob body that stopped coming mid-way held the pull forever.
#[test]
fn a_body_that_stops_coming_fails_after_the_idle_timeout() {
    let s = setup();
    let (out, dest) = pull_through_with(&s, Mode::StallBody, &["--timeout", "2"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did not answer the rest of blob sha256:")
            && err.contains("it stopped sending")
            && err.contains("within 2 s"),
        "{err}"
    );
    no_final_blob_is_wrong(&dest);
}

/// The timeout is an idle one: a body that keeps coming, slowly, for longer
/// than the timeout in all, is read to its end.
#[test]
fn a_body_that_keeps_coming_slowly_is_not_cut() {
    let s = setup();
    let (out, dest) = pull_through_with(&s, Mode::TrickleBody, &["--timeout", "5"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dest.join("index.json").is_file());
    no_final_blob_is_wrong_in_a_complete_layout(&dest);
}

fn no_final_blob_is_wrong_in_a_complete_layout(dest: &std::path::Path) {
    let out = run(Command::new("sh")
        .arg("-c")
        .arg("cd blobs/sha256 && for f in *; do echo \"$f  $f\"; done | sha256sum -c --quiet")
        .current_dir(dest));
    assert!(out.status.success(), "every blob matches its name");
}

/// Regression: error bodies were read whole for the message, so an error
/// answer whose body never ends held the command (and its memory grew).
#[test]
fn an_endless_error_body_is_cut_for_the_message() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Some((line, _, _)) = read_request(&conn) else {
                    return;
                };
                let mut c = conn;
                if line.starts_with("GET /v2/ ") {
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                    );
                    return;
                }
                let _ = write!(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
                let chunk = format!("1000\r\n{}\r\n", "endless ".repeat(512));
                while c.write_all(chunk.as_bytes()).is_ok() {}
            });
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let child = assemble()
        .arg("pull")
        .arg(format!("{host}/team/endless:1"))
        .arg(tmp.path().join("pulled"))
        .args(["--insecure-registry", &host])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish_within_guard(child);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed with HTTP 400: endless endless") && err.contains('…'),
        "{err}"
    );
    assert!(
        err.len() < 4096,
        "the message is short: {} bytes",
        err.len()
    );
}
