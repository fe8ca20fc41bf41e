//! The registry in `auth: token` mode, with the token server of
//! tests/token_server.py: tokens carry every scope an operation needs (pull on
//! a mount's source, pull,push on the target) and are reused.

mod support;

use base64::Engine as _;
use support::*;

const USER: &str = TokenRegistry::USER;

#[test]
fn bearer_tokens_carry_every_scope_an_operation_needs() {
    let tr = TokenRegistry::start();
    let (reg, log) = (&tr.reg, &tr.log);
    let config = tr.writer.clone();
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let push = |repo: &str| {
        assemble()
            .env("DOCKER_CONFIG", &config)
            .env("ASSEMBLE_LOG", "assemble=debug")
            .arg("push")
            .arg(format!("oci:{}:0.4.0", image().display()))
            .arg(format!("{}/{repo}:1", reg.host))
            .arg("--insecure-registry")
            .arg(&reg.host)
            .arg("--cache-dir")
            .arg(d.join("cache"))
            .output()
            .unwrap()
    };
    let out = push("team/first");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first_grants = read(log)
        .lines()
        .filter(|l| l.starts_with("GRANTED"))
        .count();
    assert!(
        (1..=2).contains(&first_grants),
        "one token for the whole push (plus one if it expired): {first_grants}\n{}\n{}",
        read(log),
        String::from_utf8_lossy(&out.stderr)
    );

    let out = push("team/second");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("mounted from team/first"));
    let log_text = read(log);
    assert!(
        log_text.lines().any(|l| l.starts_with("GRANTED")
            && l.contains("repository:team/first:pull")
            && l.contains("repository:team/second:pull,push")),
        "the mount's token carries pull on the source and pull,push on the target:\n{log_text}"
    );
    assert!(!log_text.contains("REFUSED"), "{log_text}");

    let out = run(assemble()
        .env("DOCKER_CONFIG", &config)
        .arg("tags")
        .arg(format!("{}/team/second", reg.host))
        .arg("--insecure-registry")
        .arg(&reg.host));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    std::fs::write(
        config.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            reg.host,
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:wrong"))
        ),
    )
    .unwrap();
    let out = push("team/third");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&reg.host) && err.contains("not accepted"),
        "{err}"
    );

    // An identity token (OAuth2 refresh token) from config.json is exchanged
    // with a POST to the realm; the secret never shows.
    std::fs::write(
        config.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"identitytoken":"{}"}}}}}}"#,
            reg.host,
            TokenRegistry::REFRESH_TOKEN
        ),
    )
    .unwrap();
    let out = push("team/fourth");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(TokenRegistry::REFRESH_TOKEN));
    assert!(
        read(log)
            .lines()
            .any(|l| l.starts_with("GRANTED(refresh)")
                && l.contains("repository:team/fourth:pull,push")),
        "{}",
        read(log)
    );
}
