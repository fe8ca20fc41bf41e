//! The runtime layer: entrypoint, cron wrapper, templates, default settings,
//! the volume directories, and `/home/blue/etc/assemble.json` that tells the
//! entrypoint about the project. Every file is embedded in the binary.

use std::collections::BTreeMap;

use crate::contract::{self, App, ENTRYPOINT_PATH, OWNER as BLUE, VENV, VOLUMES};
use crate::image::layer::{Entry, Layer, Owner};
use crate::python::Installed;
use crate::rootfs::Interpreter;

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

/// What the runtime layer needs to know about the project.
#[derive(Clone, Debug)]
pub struct Project<'a> {
    /// Project name (`milborne`).
    pub name: &'a str,
    /// The interpreter the venv is made with.
    pub python: &'a Interpreter,
    /// What the install found.
    pub installed: &'a Installed,
    /// Service name to WSGI callable, from assemble.toml.
    pub services: &'a BTreeMap<String, String>,
}

impl Project<'_> {
    /// What the image contract needs to know of the project.
    pub fn app(&self) -> App<'_> {
        App {
            name: self.name,
            python: &self.python.version,
            module: &self.installed.module,
            django: self.installed.django,
        }
    }

    /// The uWSGI the image serves with: Debian's (and its python3 plugin)
    /// for Debian's interpreter, else the venv's own.
    fn uwsgi(&self) -> serde_json::Value {
        if self.python.debian() {
            serde_json::json!({"program": contract::DEBIAN_UWSGI, "plugin": "python3"})
        } else {
            serde_json::json!({"program": format!("{VENV}/bin/uwsgi"), "plugin": null})
        }
    }

    fn crontab_path(&self) -> Option<String> {
        self.installed.crontab.then(|| {
            format!(
                "{VENV}/lib/python{}/site-packages/{}/crontab",
                self.python.version, self.installed.module
            )
        })
    }
}

/// Builds the runtime layer. It depends on the project's name and module,
/// never on its version, so a release bump leaves it unchanged.
pub fn layer(project: &Project) -> Layer {
    let mut l = Layer::new();
    contract::home_skeleton(&mut l);
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
    // The Python scripts run with the base's interpreter.
    let script = |text: &str| match text.split_once('\n') {
        Some((_, rest)) => format!("{}\n{rest}", project.python.shebang()),
        None => text.to_string(),
    };
    file(
        &mut l,
        ENTRYPOINT_PATH.trim_start_matches('/'),
        &script(ENTRYPOINT),
        0o755,
    );
    file(&mut l, "home/blue/bin/cronwrapper.sh", CRONWRAPPER, 0o755);
    file(
        &mut l,
        "home/blue/bin/supervisor-listener",
        &script(SUPERVISOR_LISTENER),
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
        "python": project.python.version,
        "uwsgi": project.uwsgi(),
        "django": project.installed.django,
        "services": project.services,
        "crontab": project.crontab_path(),
        "config_env": contract::config_env(project.name),
        "service_env": contract::service_env(project.name),
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
    fn runtime_layer_keeps_home_owned_by_root_and_volumes_by_blue() {
        let i = installed();
        let s = BTreeMap::new();
        let p = Project {
            name: "my-app",
            python: &Interpreter::in_usr_bin("3.11"),
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
