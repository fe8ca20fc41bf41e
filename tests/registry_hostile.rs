//! Hostile registry answers, from a proxy in front of the real registry:
//! a blob with the wrong digest, a body shorter than its Content-Length, an
//! oversized manifest, and a redirect to another host. Each is refused with a
//! clear error, nothing lands under a final name, and credentials never
//! reach the other host.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};

use support::*;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    CorruptBlob,
    ShortBody,
    HugeManifest,
    RedirectBlob(u16),
}

/// Reads one request: (request line, headers without Connection, body).
fn read_request(conn: &TcpStream) -> Option<(String, Vec<String>, Vec<u8>)> {
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
                let _ = c.write_all(&answer);
            });
        }
    });
    port
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
        .output()
        .unwrap();
    (out, dest)
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
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
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
