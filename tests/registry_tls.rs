//! TLS as registries are actually run: the self-signed certificate the CNCF
//! distribution documentation tells people to make, per-host certs.d
//! directories with a client certificate for a registry that requires one,
//! and what a refused certificate's message says. The certs.d roots are
//! named by `ASSEMBLE_CERTS_D`, so nothing is written to /etc.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::*;

fn sh(dir: &Path, script: &str) {
    let out = run(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
    assert!(out.status.success(), "{script}");
}

/// The certificate of the distribution documentation ("Use self-signed
/// certificates"), exactly its command with the subjectAltName it asks for,
/// made non-interactive with -subj: CA:TRUE, no EKU.
fn docs_certificate(dir: &Path, san: &str) {
    need("openssl");
    sh(
        dir,
        &format!(
            "openssl req -newkey rsa:4096 -nodes -sha256 -keyout domain.key -x509 -days 365 \
             -out domain.crt -subj '/CN=assemble test registry' -addext 'subjectAltName = {san}' 2>/dev/null"
        ),
    );
}

fn tls_registry(dir: &Path, extra_http: &str) -> Registry {
    let d = dir.display();
    Registry::start(
        "",
        &format!("  tls:\n    certificate: {d}/domain.crt\n    key: {d}/domain.key\n{extra_http}"),
    )
}

fn push(host: &str, repo: &str, cache: &Path, args: &[&str], certs_d: &Path) -> Output {
    run(assemble()
        .env("ASSEMBLE_CERTS_D", certs_d)
        .arg("push")
        .arg(format!("oci:{}:0.4.0", image().display()))
        .arg(format!("{host}/{repo}:1"))
        .arg("--cache-dir")
        .arg(cache)
        .args(args))
}

fn certs_d_for(root: &Path, host: &str, files: &[(&Path, &str)]) -> PathBuf {
    let dir = root.join(host);
    std::fs::create_dir_all(&dir).unwrap();
    for (from, name) in files {
        std::fs::copy(from, dir.join(name)).unwrap();
    }
    dir
}

/// Regression: the documentation's self-signed certificate (CA:TRUE) was
/// refused even with --ca-file (rustls: CaUsedAsEndEntity), which skopeo,
/// podman, docker and curl accept.
#[test]
fn the_distribution_docs_self_signed_certificate_is_accepted_when_given() {
    let tmp = tempfile::tempdir().unwrap();
    docs_certificate(tmp.path(), "IP:127.0.0.1");
    let reg = tls_registry(tmp.path(), "");
    let crt = tmp.path().join("domain.crt");
    let nowhere = tmp.path().join("no-certs.d");
    let out = push(
        &reg.host,
        "team/docs",
        &tmp.path().join("cache"),
        &["--ca-file", crt.to_str().unwrap()],
        &nowhere,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim()
        .ends_with(&image_digest()));
    // The same certificate in the host's certs.d directory, as docker and
    // podman read it, without --ca-file.
    let root = tmp.path().join("certs.d");
    certs_d_for(&root, &reg.host, &[(&crt, "domain.crt")]);
    let tags = run(assemble()
        .env(
            "ASSEMBLE_CERTS_D",
            format!("{}:{}", nowhere.display(), root.display()),
        )
        .arg("tags")
        .arg(format!("{}/team/docs", reg.host)));
    assert!(
        tags.status.success(),
        "{}",
        String::from_utf8_lossy(&tags.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&tags.stdout).trim(), "1");
}

/// Regression: a refused certificate's message told the user to pass the
/// --ca-file they had passed, and did not say what was wrong.
#[test]
fn a_refused_certificate_says_what_was_wrong_without_asking_for_the_given_ca_file() {
    let tmp = tempfile::tempdir().unwrap();
    // Made for `localhost`, reached as 127.0.0.1.
    docs_certificate(tmp.path(), "DNS:localhost");
    let reg = tls_registry(tmp.path(), "");
    let crt = tmp.path().join("domain.crt");
    let nowhere = tmp.path().join("no-certs.d");
    let out = push(
        &reg.host,
        "team/name",
        &tmp.path().join("cache"),
        &["--ca-file", crt.to_str().unwrap()],
        &nowhere,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the TLS certificate of registry {}", reg.host))
            && err.contains("it is not valid for 127.0.0.1: its subjectAltName names localhost")
            && err.contains(&crt.display().to_string()),
        "{err}"
    );
    assert!(!err.contains("pass --ca-file"), "{err}");
    // Another self-signed certificate given instead: the one presented is
    // neither it nor signed by it.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    docs_certificate(&other, "IP:127.0.0.1");
    let other_crt = other.join("domain.crt");
    let out = push(
        &reg.host,
        "team/other",
        &tmp.path().join("cache"),
        &["--ca-file", other_crt.to_str().unwrap()],
        &nowhere,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("it is a CA certificate (basic constraints CA:TRUE) presented as the server's own, and not one of the certificates given for this host")
            && err.contains(&format!(
                "checked against the system's roots and {}",
                other_crt.display()
            )),
        "{err}"
    );
    assert!(!err.contains("pass --ca-file"), "{err}");
    // Nothing given: then, and only then, the message says what to give.
    let out = push(
        &reg.host,
        "team/none",
        &tmp.path().join("cache"),
        &[],
        &nowhere,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pass --ca-file FILE")
            && err.contains(&format!("{}/{}/ca.crt", nowhere.display(), reg.host)),
        "{err}"
    );
}

/// A registry with `tls: clientcas:` requires a client certificate: the one
/// in the host's certs.d directory (client.cert, client.key) is presented,
/// as docker and podman do; without it the error says where it goes.
#[test]
fn a_registry_that_requires_a_client_certificate_gets_the_one_in_certs_d() {
    need("openssl");
    let tmp = tempfile::tempdir().unwrap();
    sh(
        tmp.path(),
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=assemble test server CA' 2>/dev/null
         openssl req -newkey rsa:2048 -nodes -keyout domain.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > server.ext
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out domain.crt -days 2 -extfile server.ext 2>/dev/null
         openssl req -x509 -newkey rsa:2048 -nodes -keyout client-ca.key -out client-ca.pem -days 2 -subj '/CN=assemble test client CA' 2>/dev/null
         openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj '/CN=assemble test client' 2>/dev/null
         printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > client.ext
         openssl x509 -req -in client.csr -CA client-ca.pem -CAkey client-ca.key -CAcreateserial -out client.cert -days 2 -extfile client.ext 2>/dev/null",
    );
    let d = tmp.path();
    let reg = tls_registry(
        d,
        &format!(
            "    clientcas:\n      - {}\n",
            d.join("client-ca.pem").display()
        ),
    );
    let root = d.join("certs.d");
    let host_dir = certs_d_for(&root, &reg.host, &[(&d.join("ca.pem"), "ca.crt")]);
    let out = push(&reg.host, "team/mtls", &d.join("cache"), &[], &root);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("registry {} refused the TLS connection", reg.host))
            && err.contains(&format!(
                "put client.cert and client.key in {}",
                host_dir.display()
            )),
        "{err}"
    );
    std::fs::copy(d.join("client.cert"), host_dir.join("client.cert")).unwrap();
    std::fs::copy(d.join("client.key"), host_dir.join("client.key")).unwrap();
    let out = push(&reg.host, "team/mtls", &d.join("cache"), &[], &root);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim()
        .ends_with(&image_digest()));
    assert!(
        reg.count("PUT /v2/team/mtls/manifests/1") >= 1,
        "the manifest reached the registry"
    );
}
