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

/// `assemble run` of the shared image with output to files, spawned.
fn spawn_logged(
    cache_dir: &std::path::Path,
    pre: &[&str],
    args: &[&str],
    volumes: &[(std::path::PathBuf, &str)],
    log: &std::path::Path,
) -> std::process::Child {
    let mut cmd = assemble();
    cmd.arg("run").arg("--cache-dir").arg(cache_dir).args(pre);
    for (host, dest) in volumes {
        cmd.arg("-v").arg(format!("{}:{dest}", host.display()));
    }
    let out = std::fs::File::create(log.with_extension("out")).unwrap();
    let err = std::fs::File::create(log.with_extension("err")).unwrap();
    cmd.arg(image()).args(args).stdout(out).stderr(err);
    spawn_with_deathsig(&mut cmd)
}

/// Waits for the child; past `guard` (a hang guard, not a timing
/// assertion) it is killed and the test fails with its logs.
fn finish(mut child: std::process::Child, guard: Duration, log: &std::path::Path) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            return status.code().unwrap_or(128 + status.signal().unwrap_or(0));
        }
        if start.elapsed() > guard {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {guard:?}\nstdout:\n{}\nstderr:\n{}",
                read(&log.with_extension("out")),
                read(&log.with_extension("err"))
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY (test): kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

#[test]
fn sigterm_and_sigint_make_supervisord_stop_the_services_in_order() {
    // Regression: SIGTERM or SIGINT to `assemble run … start www` killed the
    // services without supervisord's orderly stop.
    let _port = lock("port-8080");
    let tmp = tempfile::tempdir().unwrap();
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let log = tmp.path().join(name);
        let child = spawn_logged(&cache(), &[], &["start", "www"], &[], &log);
        wait_http(8080, "/", Duration::from_secs(90)).expect("nginx answers on 8080");
        signal(&child, sig);
        let code = finish(child, Duration::from_secs(120), &log);
        let out = read(&log.with_extension("out"));
        let err = read(&log.with_extension("err"));
        assert_eq!(
            code, 0,
            "{name}: the entrypoint stopped cleanly\n{out}\n{err}"
        );
        assert!(err.contains(&format!("run: {name} received")), "{err}");
        let (nginx, uwsgi) = (
            out.find("stopped: nginx (exit status 0)"),
            out.find("stopped: uwsgi (exit status 0)"),
        );
        assert!(
            out.contains("waiting for") && nginx.is_some() && uwsgi.is_some() && nginx < uwsgi,
            "{name}: supervisord stopped nginx, then uwsgi:\n{out}"
        );
        assert!(
            wait_port_closed(8080),
            "nothing listens on 8080 after the run"
        );
    }
}

fn wait_port_closed(port: u16) -> bool {
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn after_the_stop_timeout_what_ignores_the_signal_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("run");
    let child = spawn_logged(
        &cache(),
        &["--stop-timeout", "1"],
        &[
            "sh",
            "-c",
            "trap '' TERM INT; echo ready; while :; do sleep 1; done",
        ],
        &[],
        &log,
    );
    let start = Instant::now();
    while !read(&log.with_extension("out")).contains("ready") {
        assert!(start.elapsed() < Duration::from_secs(120), "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, libc::SIGTERM);
    let code = finish(child, Duration::from_secs(120), &log);
    assert_eq!(code, 137, "{}", read(&log.with_extension("err")));
    assert!(read(&log.with_extension("err")).contains("did not stop within 1 s"));
}

/// The unpacked trees in a cache's run/ directory.
fn trees(cache: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(cache.join("run"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect()
}

#[test]
fn the_image_is_unpacked_once_read_only_and_clean_and_purge_remove_it() {
    // Regression: every run unpacked the image again into tmp/run-* and spent
    // up to 30 s deleting it afterwards.
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    // A layout of our own (hard links to the shared image's files), so
    // that clean may remove it.
    let layout = tmp.path().join("build/oci");
    std::fs::create_dir_all(layout.parent().unwrap()).unwrap();
    assert!(Command::new("cp")
        .arg("-al")
        .arg(image())
        .arg(&layout)
        .status()
        .unwrap()
        .success());
    let run_in = |script: &str| {
        assemble()
            .arg("run")
            .arg("--cache-dir")
            .arg(&cache_dir)
            .arg(&layout)
            .args(["sh", "-c", script])
            .output()
            .unwrap()
    };
    let first = run_in("true");
    assert!(first.status.success());
    assert!(String::from_utf8_lossy(&first.stderr).contains("unpacking"));
    assert_eq!(
        trees(&cache_dir),
        [image_digest().trim_start_matches("sha256:")]
    );
    let second = run_in(
        "touch /home/blue/x 2>&1; for d in /tmp /run /home/blue/run /home/blue/logs \
         /home/blue/config/app /media /scripts /config; do touch $d/w && echo writable $d; done; \
         ls /home/blue/config/app",
    );
    assert!(second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        !err.contains("unpacking"),
        "the cached tree is reused: {err}"
    );
    assert!(
        out.contains("Read-only file system"),
        "the root is read-only: {out}"
    );
    for d in [
        "/tmp",
        "/run",
        "/home/blue/run",
        "/home/blue/logs",
        "/home/blue/config/app",
        "/media",
        "/scripts",
        "/config",
    ] {
        assert!(out.contains(&format!("writable {d}\n")), "{d}: {out}");
    }
    assert!(
        out.contains("50_default_settings.ini"),
        "the writable copy holds what the image ships: {out}"
    );
    let third = run_in("ls /home/blue/run /media");
    assert!(
        !String::from_utf8_lossy(&third.stdout).contains('w'),
        "nothing written by one run is seen by the next"
    );
    let clean = run(assemble()
        .arg("clean")
        .arg("--output")
        .arg(tmp.path().join("build"))
        .arg("--cache-dir")
        .arg(&cache_dir));
    assert!(clean.status.success());
    assert!(
        String::from_utf8_lossy(&clean.stderr).contains("removed unpacked image"),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(trees(&cache_dir).is_empty());
    assert!(!layout.exists(), "the layout went too");
    std::fs::create_dir_all(layout.parent().unwrap()).unwrap();
    assert!(Command::new("cp")
        .arg("-al")
        .arg(image())
        .arg(&layout)
        .status()
        .unwrap()
        .success());
    assert!(run_in("true").status.success());
    let purge = run(assemble()
        .arg("purge")
        .arg("--output")
        .arg(tmp.path().join("none"))
        .arg("--cache-dir")
        .arg(&cache_dir));
    assert!(purge.status.success());
    assert!(!cache_dir.exists());
}

#[test]
fn a_killed_run_leaves_nothing_that_later_runs_do_not_remove() {
    // Regression: a SIGKILLed `assemble run` left tmp/run-* behind for good.
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    let log = tmp.path().join("run");
    let mut child = spawn_logged(&cache_dir, &[], &["sleep", "600"], &[], &log);
    // Killed while it unpacks: its work directory is there.
    let start = Instant::now();
    let work = || {
        std::fs::read_dir(cache_dir.join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .count()
    };
    // (Should the unpack end between two looks, the tree is there instead.)
    while work() == 0 && trees(&cache_dir).is_empty() && child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = run(assemble()
        .arg("run")
        .arg("--cache-dir")
        .arg(&cache_dir)
        .arg(image())
        .arg("true"));
    assert!(out.status.success());
    assert_eq!(work(), 0, "the next run removed what the killed one left");
    assert_eq!(trees(&cache_dir).len(), 1);
    // Killed while the container runs: nothing of it stays on disk.
    let mut child = spawn_logged(&cache_dir, &[], &["sleep", "600"], &[], &log);
    let start = Instant::now();
    while !read(&log.with_extension("err")).contains("run: /home/blue/bin/entrypoint") {
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(work(), 0);
    assert_eq!(trees(&cache_dir).len(), 1);
}

#[test]
fn nginx_that_cannot_bind_8080_ends_the_container_naming_it() {
    // Regression: supervisord restarted nginx every 2.5 s for ever and the
    // container never exited.
    let _port = lock("port-8080");
    let busy = std::net::TcpListener::bind("0.0.0.0:8080").expect("8080 is free under the lock");
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("run");
    let child = spawn_logged(&cache(), &[], &["start", "www"], &[], &log);
    let code = finish(child, Duration::from_secs(240), &log);
    drop(busy);
    let out = read(&log.with_extension("out"));
    let err = read(&log.with_extension("err"));
    assert_eq!(code, 1, "{out}\n{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("entrypoint: service nginx cannot start"))
        .unwrap_or_else(|| panic!("one line names the service:\n{err}"));
    assert!(line.contains("Address already in use"), "{line}");
    assert!(
        out.contains("stopped: uwsgi"),
        "the others were stopped:\n{out}"
    );
}

#[test]
fn a_broken_mounted_ini_makes_uwsgi_fatal_and_ends_the_container() {
    // Regression: uwsgi went FATAL and nginx answered 502 for ever.
    let _port = lock("port-8080");
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    std::fs::create_dir_all(config.join("app")).unwrap();
    std::fs::write(
        config.join("app/90_broken.ini"),
        "this is not an ini file\n",
    )
    .unwrap();
    let log = tmp.path().join("run");
    let child = spawn_logged(
        &cache(),
        &[],
        &["start", "www"],
        &[(config, "/config")],
        &log,
    );
    let code = finish(child, Duration::from_secs(240), &log);
    let out = read(&log.with_extension("out"));
    let err = read(&log.with_extension("err"));
    assert_eq!(code, 1, "{out}\n{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("entrypoint: service uwsgi cannot start"))
        .unwrap_or_else(|| panic!("one line names the service:\n{err}"));
    assert!(line.contains("MissingSectionHeaderError"), "{line}");
    assert!(
        out.contains("stopped: nginx"),
        "the others were stopped:\n{out}"
    );
}

/// The state of listening TCP sockets on a port, from /proc/net/tcp:
/// local addresses in the kernel's hex form (`0100007F` is 127.0.0.1).
fn listening_addresses(port: u16) -> Vec<String> {
    read(std::path::Path::new("/proc/net/tcp"))
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (addr, p) = f.get(1)?.split_once(':')?;
            (u16::from_str_radix(p, 16).ok()? == port && f.get(3) == Some(&"0A"))
                .then(|| addr.to_string())
        })
        .collect()
}

#[test]
fn supervisords_http_interface_is_loopback_only_unless_credentials_are_mounted() {
    // Regression: 8081 had no authentication and listened on every interface.
    let _port = lock("port-8080");
    let tmp = tempfile::tempdir().unwrap();
    let run1 = start(&["start", "www"], &[]);
    wait_http(8080, "/", Duration::from_secs(90)).expect("nginx answers on 8080");
    assert!(wait_http(8081, "/", Duration::from_secs(30)).is_some());
    assert_eq!(listening_addresses(8081), ["0100007F"], "127.0.0.1 only");
    drop(run1);
    assert!(wait_port_closed(8081));

    let config = tmp.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("supervisord.ini"),
        "[inet_http_server]\nusername = ops\npassword = s3cret-pa55\n",
    )
    .unwrap();
    let log = tmp.path().join("auth");
    let child = spawn_logged(
        &cache(),
        &[],
        &["start", "www"],
        &[(config.clone(), "/config")],
        &log,
    );
    let _running = Running(child);
    wait_http(8080, "/", Duration::from_secs(90)).expect("nginx answers on 8080");
    let start = Instant::now();
    while listening_addresses(8081).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(listening_addresses(8081), ["00000000"], "every interface");
    let (status, _) = http_get(8081, "/").unwrap();
    assert_eq!(status, 401, "credentials are required");
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("ops:s3cret-pa55");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", 8081)).unwrap();
    use std::io::{Read as _, Write as _};
    write!(
        s,
        "GET / HTTP/1.0\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\n\r\n"
    )
    .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    assert!(
        page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
        "{page}"
    );
    let logs = read(&log.with_extension("out")) + &read(&log.with_extension("err"));
    assert!(!logs.contains("s3cret-pa55"), "the password reaches no log");
    drop(_running);

    std::fs::write(
        config.join("supervisord.ini"),
        "[inet_http_server]\nusername = ops\n",
    )
    .unwrap();
    let out = assemble()
        .arg("-q")
        .arg("run")
        .arg("--cache-dir")
        .arg(cache())
        .arg("-v")
        .arg(format!("{}:/config", config.display()))
        .arg(image())
        .args(["start", "www"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("/config/supervisord.ini must hold exactly"),
        "{err}"
    );
}

#[test]
fn script_errors_are_one_line_with_the_shells_codes() {
    // Regression: a /scripts entry without #! or with a missing interpreter
    // ended in a Python traceback (exit 1).
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    for (name, text, mode) in [
        ("noshebang", "echo hi\n", 0o755),
        ("badinterp", "#!/usr/bin/nope\necho hi\n", 0o755),
        ("badinterp-noexec", "#!/nope/python -u\necho hi\n", 0o644),
    ] {
        std::fs::write(scripts.join(name), text).unwrap();
        std::fs::set_permissions(scripts.join(name), std::fs::Permissions::from_mode(mode))
            .unwrap();
    }
    for (args, code, words) in [
        (
            &["noshebang"][..],
            126,
            &["/scripts/noshebang", "no #! line"][..],
        ),
        (
            &["badinterp"],
            127,
            &["/scripts/badinterp", "/usr/bin/nope", "not found"],
        ),
        (
            &["badinterp-noexec"],
            127,
            &["/scripts/badinterp-noexec", "/nope/python"],
        ),
        (
            &["no-such-command"],
            127,
            &["no-such-command", "command not found"],
        ),
    ] {
        let out = assemble()
            .arg("-q")
            .arg("run")
            .arg("--cache-dir")
            .arg(cache())
            .arg("-v")
            .arg(format!("{}:/scripts", scripts.display()))
            .arg(image())
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line:\n{err}");
        for w in words {
            assert!(err.contains(w), "{args:?}: {w}: {err}");
        }
    }
}

#[test]
fn env_without_a_key_is_refused_before_anything_is_unpacked() {
    // Regression: `assemble run -e =x` failed inside bwrap after unpacking.
    let tmp = tempfile::tempdir().unwrap();
    let out = assemble()
        .arg("run")
        .arg("--cache-dir")
        .arg(tmp.path())
        .args(["-e", "=x"])
        .arg(image())
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"=x\"") && !err.contains("unpacking"),
        "{err}"
    );
    assert!(trees(tmp.path()).is_empty());
}

#[test]
fn a_second_start_names_the_port_in_use() {
    // Regression: the second `start www` said another program listens "on a port".
    let _port = lock("port-8080");
    let _first = start(&["start", "www"], &[]);
    wait_http(8080, "/", Duration::from_secs(90)).expect("nginx answers on 8080");
    let out = assemble()
        .arg("-q")
        .arg("run")
        .arg("--cache-dir")
        .arg(cache())
        .arg(image())
        .args(["start", "www"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port 8081"), "{err}");
}

#[test]
fn a_signal_right_after_the_start_is_handled_not_lost() {
    // Regression: the handlers were installed, and the child's pid recorded,
    // only after the sandbox was spawned: a signal in between killed
    // `assemble run` outright instead of stopping the container.
    let tmp = tempfile::tempdir().unwrap();
    let _ = run(assemble()
        .arg("run")
        .arg("--cache-dir")
        .arg(cache())
        .arg(image())
        .arg("true"));
    for round in 0..5 {
        let log = tmp.path().join(format!("run{round}"));
        let child = spawn_logged(
            &cache(),
            &[],
            &[
                "sh",
                "-c",
                "trap 'exit 7' TERM; while :; do sleep 0.1; done",
            ],
            &[],
            &log,
        );
        let start = Instant::now();
        while !read(&log.with_extension("err")).contains("run: /home/blue/bin/entrypoint") {
            assert!(start.elapsed() < Duration::from_secs(120));
            std::thread::sleep(Duration::from_millis(1));
        }
        signal(&child, libc::SIGTERM);
        let mut child = child;
        let guard = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(guard.elapsed() < Duration::from_secs(120), "hung");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.code().is_some(),
            "round {round}: assemble handled the signal and exited with the container's code \
             ({status:?})\n{}",
            read(&log.with_extension("err"))
        );
    }
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

/// `--python 3.13` builds from the Debian release that ships it (trixie,
/// base and compiler): the fixture's C extension is compiled for cp313,
/// and the image serves through nginx and uWSGI with that interpreter.
#[test]
fn python_3_13_builds_from_trixie_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("oci");
    let result = tmp.path().join("result.json");
    let lock_file = tmp.path().join("pylock.toml");
    let out = run(build_cmd("milborne==0.4.0", &layout)
        .args(["--python", "3.13"])
        .arg("--result-file")
        .arg(&result)
        .arg("--lock")
        .arg(&lock_file));
    assert!(out.status.success());
    // Its lock builds it again without --python: the lock's Python picks
    // the release.
    let again = run(build_cmd("milborne==0.4.0", &tmp.path().join("oci-locked"))
        .arg("--locked")
        .arg(&lock_file));
    assert!(again.status.success());
    assert_eq!(digest_of(&again), digest_of(&out));
    let doc: serde_json::Value = serde_json::from_str(&read(&result)).unwrap();
    assert_eq!(doc["python"]["version"], "3.13", "{doc}");
    let wheels: Vec<&str> = doc["python"]["set"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["wheel"].as_str())
        .collect();
    assert!(
        wheels
            .iter()
            .any(|w| w.starts_with("milborne-0.4.0-cp313-cp313-")),
        "{wheels:?}"
    );
    for role in ["base", "compiler"] {
        let suites = doc["debian"][role]["suites"].as_array().unwrap();
        assert!(
            suites
                .iter()
                .all(|s| s["url"].as_str().unwrap().contains("/dists/trixie")),
            "{role}: {suites:?}"
        );
    }
    let _port = lock("port-8080");
    let mut cmd = assemble();
    cmd.arg("run")
        .arg("--cache-dir")
        .arg(cache())
        .arg(&layout)
        .args(["start", "www"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _run = Running(spawn_with_deathsig(&mut cmd));
    let body = wait_http(8080, "/", Duration::from_secs(90)).expect("nginx answers on 8080");
    assert!(body.contains("service=www"), "{body}");
    assert!(
        body.contains("checksum=1122270825"),
        "the C extension answered: {body}"
    );
}
