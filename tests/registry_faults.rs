//! Faults between client and registry: a proxy in front of the real registry
//! cuts a connection in the middle of a chunk, answers 500 and 429 (with
//! Retry-After) a few times, and drops the answer to a blob's final PUT after
//! the registry stored it. The push must complete with exactly the right
//! digests, resuming chunked uploads where the registry says they stand.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};

use support::*;

#[derive(Default)]
struct State {
    posts: u32,
    patches: u32,
    final_puts: u32,
    requests: u32,
    too_many: u32,
    heads: u32,
    log: Vec<String>,
}

enum Fault {
    None,
    Status(u16, &'static str),
    CutBeforeForward,
    DropAnswer,
}

fn start_proxy(upstream: String) -> (u16, Arc<Mutex<State>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(State::default()));
    let st = state.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (st, upstream) = (st.clone(), upstream.clone());
            std::thread::spawn(move || {
                let _ = handle(conn, &upstream, &st);
            });
        }
    });
    (port, state)
}

fn handle(conn: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    let mut content_length = 0usize;
    let mut request_line = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if request_line.is_empty() {
            request_line = line.trim_end().to_string();
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0u8; content_length];
    let fault = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        let method = request_line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let range = String::from_utf8_lossy(&head)
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-range:")
                    .map(|r| r.trim().to_string())
            })
            .unwrap_or_default();
        let session = path
            .split("/blobs/uploads/")
            .nth(1)
            .and_then(|r| r.split('?').next())
            .unwrap_or("")
            .to_string();
        s.log.push(format!("{method} {session} {range}"));
        let is_upload = path.contains("/blobs/uploads/");
        if method == "POST" && is_upload {
            s.posts += 1;
        }
        if method == "PATCH" {
            s.patches += 1;
        }
        if method == "HEAD" {
            s.heads += 1;
        }
        let final_put = method == "PUT" && is_upload && path.contains("digest=");
        if final_put {
            s.final_puts += 1;
        }
        if method == "POST" && is_upload && s.posts <= 2 {
            Fault::Status(500, "")
        } else if method == "PATCH" && s.patches == 3 {
            Fault::CutBeforeForward
        } else if final_put && s.final_puts == 2 {
            Fault::DropAnswer
        } else if method == "HEAD" && (2..=3).contains(&s.heads) {
            s.too_many += 1;
            Fault::Status(429, "Retry-After: 1\r\n")
        } else {
            Fault::None
        }
    };
    match fault {
        Fault::CutBeforeForward => {
            // Read part of the body, then hang up: a connection reset mid-chunk.
            let half = content_length / 2;
            reader.read_exact(&mut body[..half])?;
            return Ok(());
        }
        Fault::Status(code, extra) => {
            reader.read_exact(&mut body)?;
            let mut c = conn;
            write!(
                c,
                "HTTP/1.1 {code} Fault\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return Ok(());
        }
        _ => reader.read_exact(&mut body)?,
    }
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&head)?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    if matches!(fault, Fault::DropAnswer) {
        return Ok(());
    }
    let mut c = conn;
    c.write_all(&answer)?;
    Ok(())
}

#[test]
fn push_through_faults_completes_with_the_right_digests() {
    let reg = Registry::start("", "");
    let (port, state) = start_proxy(reg.host.clone());
    let proxy = format!("127.0.0.1:{port}");
    let cache = tempfile::tempdir().unwrap();
    let out = run(assemble()
        .arg("push")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .arg(format!("{proxy}/team/faulty:1"))
        .args([
            "--insecure-registry",
            &proxy,
            "--chunk-size",
            "1048576",
            "--parallel",
            "2",
        ])
        .arg("--cache-dir")
        .arg(cache.path()));
    let s = state.lock().unwrap();
    let log = s.log.join("\n");
    assert!(
        out.status.success(),
        "push through faults failed; proxy saw:\n{log}"
    );
    assert!(
        s.posts > 2 && s.patches > 3 && s.final_puts >= 2 && s.too_many >= 1,
        "every fault was injected:\n{log}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("confirmed after a lost answer"), "{stderr}");
    // The chunk that was cut is sent again in the same session, from where
    // the registry stood, not from byte 0 in a new session.
    let patches: Vec<&String> = s.log.iter().filter(|l| l.starts_with("PATCH")).collect();
    let cut = patches[2];
    let again = patches[3..].iter().filter(|p| *p == &cut).count();
    assert_eq!(
        again, 1,
        "the cut chunk {cut} was resumed in its session:\n{log}"
    );
    assert!(
        !cut.ends_with(" 0-1048575"),
        "the cut chunk was not the first one: {cut}"
    );
    drop(s);
    // Read back from the registry itself, every blob checked by skopeo.
    assert_eq!(
        skopeo_inspect(&format!("{}/team/faulty:1", reg.host), false)["Digest"]
            .as_str()
            .unwrap(),
        image_digest()
    );
    let copy = cache.path().join("copy");
    let out = run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/team/faulty:1", reg.host))
        .arg(format!("oci:{}:x", copy.display())));
    assert!(
        out.status.success(),
        "every blob in the registry has the right digest"
    );
}
