//! The runtime layer: entrypoint, cron wrapper, templates, default settings,
//! the volume directories, and `/home/blue/etc/assemble.json` that tells the
//! entrypoint about the project. Every file is embedded in the binary.

use std::collections::BTreeMap;

use crate::image::layer::{Entry, Layer, Owner};
use crate::python::{blue_home_skeleton, Installed, BLUE, VENV};

/// `layers/runner/entrypoint`.
pub const ENTRYPOINT: &str = include_str!("../layers/runner/entrypoint");
/// `layers/runner/cronwrapper.sh`.
pub const CRONWRAPPER: &str = include_str!("../layers/runner/cronwrapper.sh");
/// `layers/runner/supervisor-listener`: ends `start` when a service is FATAL.
pub const SUPERVISOR_LISTENER: &str = include_str!("../layers/runner/supervisor-listener");
/// Templates rendered by the entrypoint at start, by file name.
pub const TEMPLATES: [(&str, &str); 4] = [
    ("nginx.conf", include_str!("../templates/nginx.conf")),
    ("uwsgi.ini", include_str!("../templates/uwsgi.ini")),
    (
        "supervisord.conf",
        include_str!("../templates/supervisord.conf"),
    ),
    ("cron.env", include_str!("../templates/cron.env")),
];
/// `templates/settings.ini`, shipped as `50_default_settings.ini`.
pub const SETTINGS: &str = include_str!("../templates/settings.ini");

/// Path of the entrypoint in the image.
pub const ENTRYPOINT_PATH: &str = "/home/blue/bin/entrypoint";
/// Where the merged ini files live in the image.
pub const CONFIG_DIR: &str = "/home/blue/config/app";
/// Where the image's own processes write, besides `/tmp` and the volumes:
/// the rendered configuration, pid files and sockets (`run`), logs, and the
/// merged settings. `assemble run`, whose root is read-only, makes each a
/// tmpfs holding a copy of what the image ships there.
pub const SCRATCH: [&str; 3] = ["/home/blue/run", "/home/blue/logs", CONFIG_DIR];
/// The volumes of the image contract.
pub const VOLUMES: [&str; 3] = ["/media", "/scripts", "/config"];

/// What the runtime layer needs to know about the project.
#[derive(Clone, Debug)]
pub struct Project<'a> {
    /// Project name (`milborne`).
    pub name: &'a str,
    /// `X.Y`.
    pub python: &'a str,
    /// What the install found.
    pub installed: &'a Installed,
    /// Service name to WSGI callable, from assemble.toml.
    pub services: &'a BTreeMap<String, String>,
}

impl Project<'_> {
    /// `MILBORNE` for `milborne`, `MY_APP` for `my-app`.
    pub fn env_prefix(&self) -> String {
        self.name
            .chars()
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
    pub fn config_env(&self) -> String {
        format!("{}_CONFIG", self.env_prefix())
    }

    fn crontab_path(&self) -> Option<String> {
        self.installed.crontab.then(|| {
            format!(
                "{VENV}/lib/python{}/site-packages/{}/crontab",
                self.python, self.installed.module
            )
        })
    }
}

/// Builds the runtime layer. It depends on the project's name and module,
/// never on its version, so a release bump leaves it unchanged.
pub fn layer(project: &Project) -> Layer {
    let mut l = Layer::new();
    blue_home_skeleton(&mut l);
    let file = |l: &mut Layer, path: &str, text: &str, mode: u32| {
        l.add(
            Entry::bytes(path, text.as_bytes().to_vec(), mode, BLUE),
            BLUE,
        )
    };
    for d in [
        "home/blue/bin",
        "home/blue/etc",
        "home/blue/templates",
        "home/blue/config",
        "home/blue/config/app",
        "home/blue/run",
        "home/blue/logs",
    ] {
        l.add(Entry::dir(d, 0o755, BLUE), BLUE);
    }
    file(
        &mut l,
        ENTRYPOINT_PATH.trim_start_matches('/'),
        ENTRYPOINT,
        0o755,
    );
    file(&mut l, "home/blue/bin/cronwrapper.sh", CRONWRAPPER, 0o755);
    file(
        &mut l,
        "home/blue/bin/supervisor-listener",
        SUPERVISOR_LISTENER,
        0o755,
    );
    for (name, text) in TEMPLATES {
        file(&mut l, &format!("home/blue/templates/{name}"), text, 0o644);
    }
    let settings = SETTINGS.replace("${project_name}", project.name);
    file(
        &mut l,
        "home/blue/config/app/50_default_settings.ini",
        &settings,
        0o644,
    );
    let info = serde_json::json!({
        "project": project.name,
        "module": project.installed.module,
        "python": project.python,
        "django": project.installed.django,
        "services": project.services,
        "crontab": project.crontab_path(),
        "config_env": project.config_env(),
        "service_env": format!("{}_SERVICE", project.env_prefix()),
    });
    file(
        &mut l,
        "home/blue/etc/assemble.json",
        &String::from_utf8(crate::image::documents::canonical_json(&info)).expect("JSON is UTF-8"),
        0o644,
    );
    for v in VOLUMES {
        l.add(
            Entry::dir(v.trim_start_matches('/'), 0o755, BLUE),
            Owner::ROOT,
        );
    }
    l.add(Entry::dir("config/app", 0o755, BLUE), BLUE);
    l
}

/// The image's environment, in a fixed order.
pub fn environment(
    project: &Project,
    version: &str,
    extra: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut env = vec![
        format!("PATH={VENV}/bin:/home/blue/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG=C.UTF-8".to_string(),
        "HOME=/home/blue".to_string(),
        format!("VIRTUAL_ENV={VENV}"),
        format!("PROJECT_NAME={}", project.name),
        format!("PROJECT_VERSION={version}"),
        format!("PYTHON_VERSION={}", project.python),
        format!("{}={CONFIG_DIR}/*.ini", project.config_env()),
    ];
    if project.installed.django {
        env.push(format!(
            "DJANGO_SETTINGS_MODULE={}.settings",
            project.installed.module
        ));
    }
    for (k, v) in extra {
        env.retain(|e| !e.starts_with(&format!("{k}=")));
        env.push(format!("{k}={v}"));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed() -> Installed {
        Installed {
            distributions: BTreeMap::new(),
            module: "my_app".into(),
            django: true,
            crontab: true,
        }
    }

    #[test]
    fn environment_names_follow_the_project() {
        let i = installed();
        let s = BTreeMap::new();
        let p = Project {
            name: "my-app",
            python: "3.11",
            installed: &i,
            services: &s,
        };
        let env = environment(
            &p,
            "1.0",
            &BTreeMap::from([("LANG".to_string(), "fr_FR.UTF-8".to_string())]),
        );
        assert!(env.contains(&"MY_APP_CONFIG=/home/blue/config/app/*.ini".to_string()));
        assert!(env.contains(&"DJANGO_SETTINGS_MODULE=my_app.settings".to_string()));
        assert!(env.contains(&"LANG=fr_FR.UTF-8".to_string()));
        assert!(!env.contains(&"LANG=C.UTF-8".to_string()));
        assert!(env[0].starts_with("PATH=/home/blue/app/bin:"));
    }

    #[test]
    fn runtime_layer_keeps_home_owned_by_root_and_volumes_by_blue() {
        let i = installed();
        let s = BTreeMap::new();
        let p = Project {
            name: "my-app",
            python: "3.11",
            installed: &i,
            services: &s,
        };
        let l = layer(&p);
        let find = |path: &str| l.entries().find(|e| e.path == path).unwrap().clone();
        assert_eq!(find("home").owner, Owner::ROOT);
        assert_eq!(find("home/blue").owner, BLUE);
        assert_eq!(find("media").owner, BLUE);
        assert_eq!(find("home/blue/bin/entrypoint").mode, 0o755);
    }
}
