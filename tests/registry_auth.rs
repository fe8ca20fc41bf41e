//! A registry behind htpasswd and TLS with a CA made for the test: config.json
//! credentials, a credential helper, `assemble login`, and the errors for a
//! wrong password and a missing CA.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::*;

const USER: &str = "tester";
const PASSWORD: &str = "s3cret-Pa55-word";

struct Secured {
    reg: Registry,
    ca: PathBuf,
    dir: tempfile::TempDir,
}

fn sh(dir: &Path, script: &str) {
    let out = run(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
    assert!(out.status.success(), "{script}");
}

fn secured() -> Secured {
    need("openssl");
    need("htpasswd");
    let dir = tempfile::tempdir().unwrap();
    sh(
        dir.path(),
        &format!(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=assemble test CA' 2>/dev/null
             openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null
             printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext 2>/dev/null
             htpasswd -Bbn {USER} '{PASSWORD}' > htpasswd"
        ),
    );
    let d = dir.path().display();
    let reg = Registry::start(
        &format!("auth:\n  htpasswd:\n    realm: assemble-test\n    path: {d}/htpasswd\n"),
        &format!("  tls:\n    certificate: {d}/server.pem\n    key: {d}/server.key\n"),
    );
    Secured {
        ca: dir.path().join("ca.pem"),
        reg,
        dir,
    }
}

fn docker_config(dir: &Path, json: &str) -> PathBuf {
    let d = dir.join("docker");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("config.json"), json).unwrap();
    d
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

fn push(s: &Secured, config: &Path, repo: &str, ca: bool) -> std::process::Output {
    let mut c = assemble();
    c.env("DOCKER_CONFIG", config)
        .env("ASSEMBLE_LOG", "debug")
        .arg("push")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .arg(format!("{}/{repo}:1", s.reg.host))
        .arg("--cache-dir")
        .arg(s.dir.path().join("cache"));
    if ca {
        c.arg("--ca-file").arg(&s.ca);
    }
    c.output().unwrap()
}

fn assert_no_secret(out: &std::process::Output) {
    for text in [
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    ] {
        assert!(
            !text.contains(PASSWORD) && !text.contains(&basic(USER, PASSWORD)),
            "a secret leaked:\n{text}"
        );
    }
}

#[test]
fn push_with_config_json_credentials_and_the_ca() {
    let s = secured();
    let config = docker_config(
        s.dir.path(),
        &format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            s.reg.host,
            basic(USER, PASSWORD)
        ),
    );
    let out = push(&s, &config, "team/auths", true);
    assert_no_secret(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = String::from_utf8_lossy(&out.stdout);
    assert!(digest.trim().ends_with(&image_digest()));
    // The same file named by REGISTRY_AUTH_FILE (podman's variable) instead.
    let out = assemble()
        .env("REGISTRY_AUTH_FILE", config.join("config.json"))
        .arg("push")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .arg(format!("{}/team/authfile:1", s.reg.host))
        .arg("--ca-file")
        .arg(&s.ca)
        .arg("--cache-dir")
        .arg(s.dir.path().join("cache"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn push_with_a_credential_helper() {
    let s = secured();
    let bin = s.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-assembletest");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\n[ \"$host\" = '{}' ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\necho '{{\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n", s.reg.host),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = docker_config(
        s.dir.path(),
        &format!(r#"{{"credHelpers":{{"{}":"assembletest"}}}}"#, s.reg.host),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = assemble()
        .env("DOCKER_CONFIG", &config)
        .env("PATH", path)
        .arg("push")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .arg(format!("{}/team/helper:1", s.reg.host))
        .arg("--ca-file")
        .arg(&s.ca)
        .arg("--cache-dir")
        .arg(s.dir.path().join("cache"))
        .output()
        .unwrap();
    assert_no_secret(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn login_stores_credentials_with_mode_0600_and_push_uses_them() {
    let s = secured();
    let config = s.dir.path().join("docker");
    let login = |password: &str| {
        let mut child = assemble()
            .env("DOCKER_CONFIG", &config)
            .args([
                "login",
                &s.reg.host,
                "-u",
                USER,
                "--password-stdin",
                "--ca-file",
            ])
            .arg(&s.ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let bad = login("not-the-password");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains(&s.reg.host));
    assert!(
        !config.join("config.json").exists(),
        "a failed login stores nothing"
    );
    let out = login(PASSWORD);
    assert_no_secret(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(config.join("config.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let out = push(&s, &config, "team/login", true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_wrong_password_exits_1_naming_the_registry() {
    let s = secured();
    let config = docker_config(
        s.dir.path(),
        &format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            s.reg.host,
            basic(USER, "wrong-password")
        ),
    );
    let out = push(&s, &config, "team/wrong", true);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&s.reg.host) && err.contains("not accepted"),
        "{err}"
    );
    assert!(!err.contains("wrong-password"));
}

#[test]
fn a_missing_ca_file_says_how_to_fix() {
    let s = secured();
    let config = docker_config(s.dir.path(), "{}");
    let out = push(&s, &config, "team/noca", false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--ca-file") && err.contains(&s.reg.host),
        "{err}"
    );
}
