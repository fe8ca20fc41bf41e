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

/// The package's crontab inside the image, where a test binds its own.
const IMAGE_CRONTAB: &str = "/home/blue/app/lib/python3.11/site-packages/milborne/crontab";

/// Regression: a crontab written for the old chain (system syntax, with a
/// user field, calling the old wrapper's path) ran `www-data` as a command
/// and failed with 127.
#[test]
fn cron_runs_a_system_crontab_written_for_the_old_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let media = tmp.path().join("media");
    std::fs::create_dir(&media).unwrap();
    let crontab = tmp.path().join("crontab");
    std::fs::write(
        &crontab,
        "# As the old chain installed it, in /etc/cron.d/app.\n\
         MAILTO=\"\"\n\
         * * * * * www-data /usr/share/bluesys-cronwrapper/bin/cronwrapper.sh --all ping_cron\n\
         * * * * * root echo \"system syntax uid=$(id -u)\" >> /media/shell.log\n",
    )
    .unwrap();
    let _run = start(
        &["cron"],
        &[(media.clone(), "/media"), (crontab, IMAGE_CRONTAB)],
    );
    let start = Instant::now();
    let (log, shell) = (media.join("cron.log"), media.join("shell.log"));
    while start.elapsed() < Duration::from_secs(130)
        && (read(&log).is_empty() || read(&shell).is_empty())
    {
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        read(&log).contains("ping uid=1000 config=/home/blue/config/app/*.ini"),
        "the old wrapper's line ran the management command: {:?}",
        read(&log)
    );
    assert!(
        read(&shell).contains("system syntax uid=1000"),
        "the root line ran, as blue: {:?}",
        read(&shell)
    );
}

/// Runs a bash script in the image (through the entrypoint, so with the
/// application's environment), `/media` and `/config` bound.
fn in_image(
    script: &str,
    media: &std::path::Path,
    config: &std::path::Path,
) -> std::process::Output {
    run(assemble()
        .arg("-q")
        .arg("run")
        .arg("--cache-dir")
        .arg(cache())
        .arg("-v")
        .arg(format!("{}:/media", media.display()))
        .arg("-v")
        .arg(format!("{}:/config", config.display()))
        .arg(image())
        .args(["bash", "-c", script]))
}

/// Regression: the image's wrapper took a shell command only, while the old
/// chain's crontabs call it with its own interface: --all|--master,
/// --environment, --fleet, --kill-previous, then a management command.
#[test]
fn the_cronwrapper_keeps_the_old_chains_interface() {
    let tmp = tempfile::tempdir().unwrap();
    let media = tmp.path().join("media");
    std::fs::create_dir(&media).unwrap();
    let config = tmp.path().join("config");
    std::fs::create_dir_all(config.join("app")).unwrap();
    std::fs::write(
        config.join("app/90_site.ini"),
        "[app]\nenvironment = production\nfleet = east\n",
    )
    .unwrap();
    let out = in_image(
        r#"
        w=/home/blue/bin/cronwrapper.sh
        cd /media
        $w --all --environment staging ping_cron > env-skip.out 2>&1; echo $? > env-skip.rc
        [ -e cron.log ] && echo ran > env-skip.ran
        $w --all --fleet west ping_cron > fleet-skip.out 2>&1; echo $? > fleet-skip.rc
        $w --master --environment production --fleet east ping_cron > run.out 2>&1; echo $? > run.rc
        $w --all shell -c 'import time; time.sleep(120)' > first.out 2>&1 &
        first=$!
        for _ in $(seq 300); do [ -s ~/run/cronwrapper/shell.pid ] && break; sleep 0.1; done
        $w --all shell -c 'print("second")' > second.out 2>&1; echo $? > second.rc
        $w --all --kill-previous shell -c 'print("third")' > third.out 2>&1; echo $? > third.rc
        wait $first; echo $? > first.rc
        [ -e ~/run/cronwrapper/shell.pid ] && echo left > pid.left
        $w 'echo plain $((6 * 7))' > plain.out 2>&1; echo $? > plain.rc
        true
        "#,
        &media,
        &config,
    );
    assert!(out.status.success());
    let r = |name: &str| read(&media.join(name));
    assert_eq!(r("env-skip.rc").trim(), "0");
    assert!(
        r("env-skip.out").contains("disabled: ENVIRONMENT is 'production', not 'staging'"),
        "{}",
        r("env-skip.out")
    );
    assert!(r("env-skip.ran").is_empty(), "a skipped job did not run");
    assert_eq!(r("fleet-skip.rc").trim(), "0");
    assert!(
        r("fleet-skip.out").contains("disabled: FLEET_ID is 'east', not 'west'"),
        "{}",
        r("fleet-skip.out")
    );
    assert_eq!(r("run.rc").trim(), "0", "{}", r("run.out"));
    assert!(
        r("run.out").contains("[milborne.cron.ping_cron] ping uid=1000")
            && r("run.out").contains(
                "[milborne.cron.ping_cron] Cron --master --environment production --fleet east ping_cron: OK"
            ),
        "{}",
        r("run.out")
    );
    assert!(r("cron.log").contains("ping uid=1000"));
    assert_eq!(r("second.rc").trim(), "1", "{}", r("second.out"));
    assert!(
        r("second.out").contains("Previous instance still running as")
            && r("second.out").contains("aborting")
            && !r("second.out").contains("second\n"),
        "{}",
        r("second.out")
    );
    assert_eq!(r("third.rc").trim(), "0", "{}", r("third.out"));
    assert!(
        r("third.out").contains("killing it")
            && r("third.out").contains("[milborne.cron.shell] third"),
        "{}",
        r("third.out")
    );
    assert_ne!(r("first.rc").trim(), "0", "the first instance was stopped");
    assert!(r("first.out").contains("NOK (code"), "{}", r("first.out"));
    assert!(r("pid.left").is_empty(), "the pid file is removed");
    assert_eq!(r("plain.rc").trim(), "0");
    assert!(
        r("plain.out").contains("[milborne.cron] plain 42"),
        "a shell command as before: {}",
        r("plain.out")
    );
}

/// With a syslog socket at /dev/log, the old interface's output goes there
/// tagged `<project>.cron.<command>`, as the old wrapper's did.
#[test]
fn the_cronwrapper_logs_to_syslog_tagged_project_cron_command() {
    let tmp = tempfile::tempdir().unwrap();
    let media = tmp.path().join("media");
    std::fs::create_dir(&media).unwrap();
    let sock_path = tmp.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
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
    let out = run(assemble()
        .arg("-q")
        .arg("run")
        .arg("--cache-dir")
        .arg(cache())
        .arg("-v")
        .arg(format!("{}:/media", media.display()))
        .arg("-v")
        .arg(format!("{}:/dev/log", sock_path.display()))
        .arg(image())
        .args(["/home/blue/bin/cronwrapper.sh", "--all", "ping_cron"]));
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = String::new();
    while Instant::now() < deadline {
        all = lines.lock().unwrap().join("\n");
        if all.contains("Cron --all ping_cron: OK") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.join().unwrap();
    assert!(
        all.contains("milborne.cron.ping_cron: ping uid=1000")
            && all.contains("milborne.cron.ping_cron: Cron --all ping_cron: OK"),
        "{all}"
    );
    assert!(read(&media.join("cron.log")).contains("ping uid=1000"));
}
