//! The image contract, exercised by running the image rootless: with
//! `assemble run` and, once, with umoci and bubblewrap directly.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn start(args: &[&str], volumes: &[(std::path::PathBuf, &str)]) -> Running {
    let mut cmd = assemble();
    cmd.arg("run").arg("--cache-dir").arg(cache());
    for (host, dest) in volumes {
        cmd.arg("-v").arg(format!("{}:{dest}", host.display()));
    }
    cmd.arg(image())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Running(spawn_with_deathsig(&mut cmd))
}

fn config_dir(tmp: &std::path::Path) -> std::path::PathBuf {
    let app = tmp.join("config/app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("10_low.ini"),
        "[app]\nenvironment = low-priority\n",
    )
    .unwrap();
    std::fs::write(
        app.join("90_override.ini"),
        "[app]\nenvironment = production\n",
    )
    .unwrap();
    tmp.join("config")
}

#[test]
fn start_www_serves_through_nginx_and_uwsgi_with_the_override_winning() {
    let _port = lock("port-8080");
    let tmp = tempfile::tempdir().unwrap();
    let _run = start(&["start", "www"], &[(config_dir(tmp.path()), "/config")]);
    let body = wait_http(8080, "/", Duration::from_secs(90)).expect("nginx answers on 8080");
    assert!(body.contains("service=www"), "{body}");
    assert!(
        body.contains("environment=production"),
        "90_override.ini beats the default and 10_*.ini: {body}"
    );
    assert!(
        body.contains("checksum=1122270825"),
        "the C extension answered: {body}"
    );
    assert!(body.contains("uid=1000"), "{body}");
    let (status, page) = http_get(8081, "/").expect("supervisord answers on 8081");
    assert_eq!(status, 200);
    assert!(
        page.contains("uwsgi") && page.contains("nginx"),
        "supervisord lists both programs"
    );
}

#[test]
fn start_ops_reports_ops() {
    let _port = lock("port-8080");
    let _run = start(&["start", "ops"], &[]);
    let body = wait_http(8080, "/", Duration::from_secs(90)).expect("nginx answers on 8080");
    assert!(body.contains("service=ops"), "{body}");
    assert!(
        body.contains("environment=default"),
        "the image default applies without /config: {body}"
    );
}

#[test]
fn a_script_in_scripts_runs_from_scripts_with_the_app_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    // Not executable on purpose: the entrypoint honours its #! line.
    std::fs::write(scripts.join("report"), "#!/bin/sh\necho \"cwd=$(pwd) config=$MILBORNE_CONFIG dsm=$DJANGO_SETTINGS_MODULE args=$*\"\n").unwrap();
    let out = run(assemble()
        .arg("-q")
        .arg("run")
        .arg("--cache-dir")
        .arg(cache())
        .arg("-v")
        .arg(format!("{}:/scripts", scripts.display()))
        .arg(image())
        .args(["report", "a", "b"]));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "cwd=/scripts config=/home/blue/config/app/*.ini dsm=milborne.settings args=a b"
        ),
        "{stdout}"
    );
}

#[test]
fn django_admin_migrate_runs_and_commands_report_their_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let media = tmp.path().join("media");
    std::fs::create_dir(&media).unwrap();
    let out = run(assemble()
        .arg("-q")
        .arg("run")
        .arg("--cache-dir")
        .arg(cache())
        .arg("-v")
        .arg(format!("{}:/media", media.display()))
        .arg(image())
        .args(["django-admin", "migrate"]));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Applying auth.0001_initial... OK"));
    assert!(media.join("milborne.sqlite3").is_file());
    let out = assemble()
        .arg("-q")
        .arg("run")
        .arg("--cache-dir")
        .arg(cache())
        .arg(image())
        .args(["sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn cron_runs_the_crontab_job_as_blue_within_two_minutes() {
    let tmp = tempfile::tempdir().unwrap();
    let media = tmp.path().join("media");
    std::fs::create_dir(&media).unwrap();
    let _run = start(&["cron"], &[(media.clone(), "/media")]);
    let start = Instant::now();
    let log = media.join("cron.log");
    while start.elapsed() < Duration::from_secs(130) && read(&log).is_empty() {
        std::thread::sleep(Duration::from_secs(2));
    }
    let text = read(&log);
    assert!(
        text.contains("ping uid=1000 config=/home/blue/config/app/*.ini"),
        "cron.log: {text:?}"
    );
}

#[test]
fn with_a_syslog_socket_nginx_and_uwsgi_log_there() {
    let _port = lock("port-8080");
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Drained from the start: a unix datagram queue holds few messages, and
    // nginx drops its lines (non-blocking sends) when the queue is full.
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (lines, stop) = (lines.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    lines
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        })
    };
    let _run = start(&["start", "www"], &[(sock_path.clone(), "/dev/log")]);
    wait_http(8080, "/", Duration::from_secs(90)).expect("nginx answers on 8080");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut all = String::new();
    while Instant::now() < deadline {
        http_get(8080, "/");
        std::thread::sleep(Duration::from_millis(500));
        all = lines.lock().unwrap().join("\n");
        if all.contains("nginx: ") && all.contains("GET / ") && all.contains("milborne-uwsgi") {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.join().unwrap();
    assert!(
        all.contains("nginx: ") && all.contains("GET / "),
        "nginx access log reached syslog:\n{all}"
    );
    assert!(
        all.contains("milborne-uwsgi"),
        "uwsgi log reached syslog:\n{all}"
    );
}

#[test]
fn umoci_unpack_and_bubblewrap_run_the_image_without_assemble() {
    need("umoci");
    need("bwrap");
    let _port = lock("port-8080");
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let out = run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:0.4.0", image().display()))
        .arg(&bundle));
    assert!(out.status.success());
    let spec: serde_json::Value = serde_json::from_str(&read(&bundle.join("config.json"))).unwrap();
    let process = &spec["process"];
    let mut cmd = Command::new("bwrap");
    cmd.args([
        "--unshare-user",
        "--unshare-pid",
        "--uid",
        "1000",
        "--gid",
        "33",
        "--die-with-parent",
    ])
    .arg("--bind")
    .arg(bundle.join("rootfs"))
    .arg("/")
    .args([
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--clearenv",
    ]);
    for e in process["env"].as_array().unwrap() {
        let (k, v) = e.as_str().unwrap().split_once('=').unwrap();
        cmd.args(["--setenv", k, v]);
    }
    cmd.args(["--chdir", process["cwd"].as_str().unwrap(), "--"]);
    let args: Vec<&str> = process["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, ["/home/blue/bin/entrypoint"]);
    cmd.args(args)
        .args(["start", "ops"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _run = Running(spawn_with_deathsig(&mut cmd));
    let body = wait_http(8080, "/", Duration::from_secs(90)).expect("nginx answers on 8080");
    assert!(body.contains("service=ops"), "{body}");
}

#[test]
fn a_service_mapped_in_assemble_toml_serves_its_callable() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("assemble.toml");
    std::fs::write(
        &config,
        "[env]\nGREETING = \"hello\"\n[services]\napi = \"milborne.wsgi:application\"\n",
    )
    .unwrap();
    let layout = tmp.path().join("oci");
    let out = run(build_cmd(repo().join("tests/fixtures/milborne"), &layout)
        .arg("--config")
        .arg(&config));
    assert!(out.status.success());
    let _port = lock("port-8080");
    let mut cmd = assemble();
    cmd.arg("run")
        .arg("--cache-dir")
        .arg(cache())
        .arg(&layout)
        .args(["start", "api"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _run = Running(spawn_with_deathsig(&mut cmd));
    let body = wait_http(8080, "/", Duration::from_secs(90)).expect("nginx answers on 8080");
    assert!(body.contains("service=api"), "{body}");
    let raw = http_raw(8080, "/").expect("a second answer");
    assert!(
        raw.contains("X-Milborne-Entry: milborne.wsgi"),
        "the mapped callable answered:\n{raw}"
    );
    let env = run(assemble()
        .arg("-q")
        .arg("run")
        .arg("--cache-dir")
        .arg(cache())
        .arg(&layout)
        .args(["sh", "-c", "echo $GREETING"]));
    assert_eq!(String::from_utf8_lossy(&env.stdout).trim(), "hello");
}
