//! The image contract: what every image assemble builds promises the
//! people who run it, in one place.
//!
//! The user `blue` (uid 1000, gid 33 `www-data`, made by
//! `layers/base/setup.sh`) with its home `/home/blue`; the venv at
//! `/home/blue/app`; the entrypoint at `/home/blue/bin/entrypoint`; ports
//! 8080 (the application) and 8081 (nginx's status, with credentials); the
//! volumes `/media`, `/scripts` and `/config`; the OCI labels; and the
//! environment the entrypoint and the application read. The runtime layer,
//! the Python stages and the image configuration all read these values from
//! here, so that changing the contract is one edit. It writes nothing itself.

use std::collections::BTreeMap;

use crate::image::layer::{Entry, Layer, Owner};

/// The image's user.
pub const USER: &str = "blue";
/// Owner of everything under `/home/blue`: blue (1000), www-data (33).
pub const OWNER: Owner = Owner { uid: 1000, gid: 33 };
/// The user's home, the image's working directory.
pub const HOME: &str = "/home/blue";
/// Where the application's virtualenv lives in the image.
pub const VENV: &str = "/home/blue/app";
/// Path of the entrypoint in the image.
pub const ENTRYPOINT_PATH: &str = "/home/blue/bin/entrypoint";
/// Where the merged ini files live in the image.
pub const CONFIG_DIR: &str = "/home/blue/config/app";
/// Where the image's own processes write, besides `/tmp` and the volumes:
/// the rendered configuration, pid files and sockets (`run`), logs, and the
/// merged settings. `assemble run`, whose root is read-only, makes each a
/// tmpfs holding a copy of what the image ships there.
pub const SCRATCH: [&str; 3] = ["/home/blue/run", "/home/blue/logs", CONFIG_DIR];
/// The volumes every image declares.
pub const VOLUMES: [&str; 3] = ["/media", "/scripts", "/config"];
/// The ports every image exposes: the application (nginx in front of
/// uwsgi) and nginx's status page.
pub const PORTS: [u16; 2] = [8080, 8081];
/// The distribution the venv gets from the index when the base's
/// interpreter is not Debian's: uWSGI, compiled for that interpreter (its
/// `bin/uwsgi` serves instead of Debian's `/usr/bin/uwsgi` and plugin).
pub const UWSGI_DISTRIBUTION: &str = "uwsgi";
/// Debian's uWSGI, with its python3 plugin, for Debian's interpreter.
pub const DEBIAN_UWSGI: &str = "/usr/bin/uwsgi";

/// Directories of the image's own files (the venv, the entrypoint, its
/// templates and settings), which no volume may be or lie under.
pub const IMAGE_DIRS: [&str; 5] = [
    VENV,
    "/home/blue/bin",
    "/home/blue/etc",
    "/home/blue/templates",
    "/home/blue/config",
];

/// `home` (root, 0755) and `home/blue` (blue, 0755) as in the base, so that a
/// layer never changes their owner.
pub fn home_skeleton(l: &mut Layer) {
    l.add(Entry::dir("home", 0o755, Owner::ROOT), Owner::ROOT);
    l.add(Entry::dir("home/blue", 0o755, OWNER), OWNER);
}

/// What the contract needs to know of the application.
#[derive(Clone, Copy, Debug)]
pub struct App<'a> {
    /// Project name (`milborne`).
    pub name: &'a str,
    /// `X.Y`.
    pub python: &'a str,
    /// The project's import package (`milborne`).
    pub module: &'a str,
    /// Django is installed and the project has a settings module.
    pub django: bool,
}

/// `MILBORNE` for `milborne`, `MY_APP` for `my-app`: the prefix of the
/// project's variables.
pub fn env_prefix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Name of the variable holding the settings glob (`MILBORNE_CONFIG`).
pub fn config_env(name: &str) -> String {
    format!("{}_CONFIG", env_prefix(name))
}

/// Name of the variable naming the service to start (`MILBORNE_SERVICE`).
pub fn service_env(name: &str) -> String {
    format!("{}_SERVICE", env_prefix(name))
}

/// The image's environment, in a fixed order; `extra` (assemble.toml's
/// `env`) replaces or adds variables.
pub fn environment(app: &App, version: &str, extra: &BTreeMap<String, String>) -> Vec<String> {
    let mut env = vec![
        format!("PATH={VENV}/bin:{HOME}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG=C.UTF-8".to_string(),
        format!("HOME={HOME}"),
        format!("VIRTUAL_ENV={VENV}"),
        format!("PROJECT_NAME={}", app.name),
        format!("PROJECT_VERSION={version}"),
        format!("PYTHON_VERSION={}", app.python),
        format!("{}={CONFIG_DIR}/*.ini", config_env(app.name)),
    ];
    if app.django {
        env.push(format!("DJANGO_SETTINGS_MODULE={}.settings", app.module));
    }
    for (k, v) in extra {
        env.retain(|e| !e.starts_with(&format!("{k}=")));
        env.push(format!("{k}={v}"));
    }
    env
}

/// The exposed ports (`8080/tcp`): the contract's and `extra`, sorted.
pub fn exposed_ports(extra: &[u16]) -> Vec<String> {
    let mut ports: Vec<String> = PORTS
        .iter()
        .chain(extra)
        .map(|p| format!("{p}/tcp"))
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

/// The volumes: the contract's and `extra`, sorted.
pub fn volumes(extra: &[String]) -> Vec<String> {
    let mut volumes: Vec<String> = VOLUMES.iter().map(|v| v.to_string()).collect();
    volumes.extend(extra.iter().cloned());
    volumes.sort();
    volumes.dedup();
    volumes
}

/// The OCI labels: title, version and creation time (RFC 3339).
pub fn labels(name: &str, version: &str, created: &str) -> Vec<(String, String)> {
    BTreeMap::from([
        (
            "org.opencontainers.image.title".to_string(),
            name.to_string(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            version.to_string(),
        ),
        (
            "org.opencontainers.image.created".to_string(),
            created.to_string(),
        ),
    ])
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_follow_the_project() {
        let app = App {
            name: "my-app",
            python: "3.11",
            module: "my_app",
            django: true,
        };
        let env = environment(
            &app,
            "1.0",
            &BTreeMap::from([("LANG".to_string(), "fr_FR.UTF-8".to_string())]),
        );
        assert!(env.contains(&"MY_APP_CONFIG=/home/blue/config/app/*.ini".to_string()));
        assert!(env.contains(&"DJANGO_SETTINGS_MODULE=my_app.settings".to_string()));
        assert!(env.contains(&"LANG=fr_FR.UTF-8".to_string()));
        assert!(!env.contains(&"LANG=C.UTF-8".to_string()));
        assert!(env[0].starts_with("PATH=/home/blue/app/bin:"));
    }
}
