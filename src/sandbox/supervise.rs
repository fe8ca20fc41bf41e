//! `assemble run`'s stop, as an engine's: SIGTERM, SIGINT and SIGHUP (as
//! SIGTERM) are forwarded to the entrypoint's process, then after the stop
//! timeout everything is killed; a second signal kills at once.
//!
//! The signal goes to the entrypoint itself, not to bubblewrap: bwrap does
//! not forward signals (it dies of them, and its init then kills the
//! sandbox with SIGKILL), and bwrap's pid 1 inside the sandbox only reaps.
//! A chrooted entrypoint has no pid namespace: it leads a session of its
//! own, and "everything" is every process descending from assemble, which
//! starts nothing else during a run and is their subreaper (an orphan, a
//! daemon that forked twice, comes back to it rather than to init).

use std::io;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::output::Printer;
use crate::sandbox::error::SandboxError;

/// What was started, and how to find the entrypoint and everything.
#[derive(Clone, Copy, Debug)]
pub(super) enum Started {
    /// bwrap's pid: its init is pid 1 inside, the entrypoint init's child.
    Bwrap(i32),
    /// The entrypoint itself, leading a session of its own, assemble being
    /// the subreaper of everything it starts.
    Group(i32),
}

impl Started {
    fn pid(self) -> i32 {
        match self {
            Started::Bwrap(p) | Started::Group(p) => p,
        }
    }

    /// The entrypoint's host pid, once it is there.
    fn entrypoint(self) -> Option<i32> {
        match self {
            Started::Bwrap(bwrap) => {
                let init = *children_of(bwrap).first()?;
                children_of(init).first().copied()
            }
            Started::Group(pid) => Some(pid),
        }
    }

    /// Kills everything: bwrap's init inside (whose death takes every
    /// process of the pid namespace with it) and bwrap; or every process
    /// descending from assemble (found in /proc: only our own descendants,
    /// so a pid number used again elsewhere is never hit).
    fn kill(self) {
        let pids = match self {
            Started::Bwrap(bwrap) => children_of(bwrap).into_iter().chain([bwrap]).collect(),
            // SAFETY: getpid(2) has no preconditions and cannot fail.
            Started::Group(_) => descendants_of(unsafe { libc::getpid() }),
        };
        for pid in pids {
            // SAFETY: kill(2) on pids of our own sandbox; it touches no memory.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Where a stop stands.
struct Stop {
    /// Signals handled so far.
    seen: usize,
    /// The signal still to forward (the entrypoint may not have started).
    to_forward: Option<libc::c_int>,
    /// When everything is killed.
    deadline: Option<Instant>,
    timeout: Duration,
}

impl Stop {
    /// How long to wait for the next event.
    fn wait_time(&self) -> Duration {
        match (self.deadline, self.to_forward) {
            (Some(d), Some(_)) => d
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
            (Some(d), None) => d.saturating_duration_since(Instant::now()),
            (None, _) => Duration::from_secs(3600),
        }
    }

    /// Takes in the signals received: the first starts the stop, a second
    /// kills the sandbox.
    fn received(&mut self, count: usize, signal: libc::c_int, started: Started, printer: &Printer) {
        if count <= self.seen {
            return;
        }
        if self.seen == 0 {
            let forwarded = if signal == libc::SIGHUP {
                libc::SIGTERM
            } else {
                signal
            };
            printer.step(&format!(
                "run: {} received: stopping the container (killed after {} s)",
                signal_name(signal),
                self.timeout.as_secs()
            ));
            self.to_forward = Some(forwarded);
            self.deadline = Some(Instant::now() + self.timeout);
        } else {
            printer.step("run: a second signal: killing the container now");
            started.kill();
            self.deadline = None;
            self.to_forward = None;
        }
        self.seen = count;
    }

    /// Forwards the pending signal once the entrypoint is there, and kills
    /// the sandbox past the deadline.
    fn act(&mut self, started: Started, printer: &Printer) {
        if let Some(sig) = self.to_forward {
            if let Some(entry) = started.entrypoint() {
                // SAFETY: kill(2) on a pid read from /proc; it touches no memory.
                unsafe {
                    libc::kill(entry, sig);
                }
                self.to_forward = None;
            }
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            printer.step(&format!(
                "run: the container did not stop within {} s: killing it",
                self.timeout.as_secs()
            ));
            started.kill();
            self.deadline = None;
            self.to_forward = None;
        }
    }
}

/// Waits for the sandbox, forwarding the first stop signal to the
/// entrypoint and killing everything after `timeout` or a second signal.
pub(super) fn supervise(
    mut child: std::process::Child,
    started: Started,
    signals: &Signals,
    timeout: Duration,
    printer: &Printer,
) -> Result<std::process::ExitStatus, SandboxError> {
    debug_assert_eq!(started.pid(), child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    let wake = signals.wake_fd();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(status);
        // SAFETY: write(2) of one byte from a live buffer to the self-pipe,
        // which stays open until the status has been received.
        unsafe {
            libc::write(wake, b"x".as_ptr().cast(), 1);
        }
    });
    let mut stop = Stop {
        seen: 0,
        to_forward: None,
        deadline: None,
        timeout,
    };
    loop {
        if let Ok(status) = rx.try_recv() {
            // The waiter writes to the self-pipe after sending: it must be
            // done before the pipe can be closed.
            let _ = waiter.join();
            return status.map_err(SandboxError::Spawn);
        }
        let wait = match started {
            // Orphans of a chrooted container are reaped as they end: a
            // long run would keep their zombies otherwise.
            Started::Group(entrypoint) => {
                reap_orphans(entrypoint);
                stop.wait_time().min(ORPHANS_EVERY)
            }
            Started::Bwrap(_) => stop.wait_time(),
        };
        signals.wait(wait);
        let (count, signal) = signals.received();
        stop.received(count, signal, started, printer);
        stop.act(started, printer);
    }
}

/// How often a chrooted run's ended orphans are reaped.
const ORPHANS_EVERY: Duration = Duration::from_secs(1);

/// Reaps the children of assemble that have ended (zombies), but the
/// entrypoint, whose status its waiter collects.
fn reap_orphans(entrypoint: i32) {
    // SAFETY: getpid(2) has no preconditions and cannot fail.
    let me = unsafe { libc::getpid() };
    for pid in zombie_children_of(me) {
        if pid != entrypoint {
            // SAFETY: waitpid(2) on one of our own children, known to have
            // ended, with no status pointer: it only collects it.
            unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
    }
}

/// The children of `pid` that have ended and wait to be reaped.
fn zombie_children_of(pid: i32) -> Vec<i32> {
    children_of(pid)
        .into_iter()
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "Z"))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// After a chrooted run: kills every process still descending from
/// assemble (the container's, reparented to it) and reaps them, until
/// none is left.
pub(super) fn end_descendants() {
    // SAFETY: getpid(2) has no preconditions and cannot fail.
    let me = unsafe { libc::getpid() };
    for _ in 0..500 {
        reap();
        let left = descendants_of(me);
        if left.is_empty() {
            return;
        }
        for pid in left {
            // SAFETY: kill(2) on our own descendants; it touches no memory.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reaps the children that have ended (the entrypoint was reaped before).
fn reap() {
    // SAFETY: waitpid(2) with no status pointer and WNOHANG: it only
    // collects children that have ended.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

/// Every process descending from `pid`, from /proc.
fn descendants_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut next = vec![pid];
    while let Some(p) = next.pop() {
        for child in children_of(p) {
            if !out.contains(&child) {
                out.push(child);
                next.push(child);
            }
        }
    }
    out
}

/// Pids whose parent is `pid`, from /proc (no kernel option needed).
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out.sort();
    out
}

fn signal_name(signal: libc::c_int) -> String {
    match signal {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// Signals received: how many, and the last one.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);
static LAST: AtomicI32 = AtomicI32::new(0);
/// The write end of the self-pipe the handler wakes the supervisor with.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    LAST.store(signal, Ordering::SeqCst);
    RECEIVED.fetch_add(1, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer is a static byte
        // and the descriptor is non-blocking, so the handler never waits.
        unsafe {
            libc::write(fd, b"s".as_ptr().cast(), 1);
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP handlers (sigaction) that count the signal
/// and wake the supervisor through a self-pipe; the previous handlers come
/// back when dropped.
pub(super) struct Signals {
    pipe: [libc::c_int; 2],
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

impl Signals {
    pub(super) fn install() -> io::Result<Self> {
        let mut pipe = [-1; 2];
        // SAFETY: pipe2(2) writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        WAKE_FD.store(pipe[1], Ordering::SeqCst);
        RECEIVED.store(0, Ordering::SeqCst);
        let mut previous = Vec::new();
        for s in STOP_SIGNALS {
            // SAFETY: a zeroed sigaction is a valid value (empty mask, no
            // flags); sigemptyset and sigaction get pointers to live locals,
            // and the handler only touches atomics and write(2).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(s, &action, &mut old) != 0 {
                    return Err(io::Error::last_os_error());
                }
                previous.push((s, old));
            }
        }
        Ok(Self { pipe, previous })
    }

    fn wake_fd(&self) -> libc::c_int {
        self.pipe[1]
    }

    /// (how many signals so far, the last one).
    fn received(&self) -> (usize, libc::c_int) {
        (RECEIVED.load(Ordering::SeqCst), LAST.load(Ordering::SeqCst))
    }

    /// Waits until woken (a signal, the sandbox's end) or `timeout`.
    fn wait(&self, timeout: Duration) {
        let mut fds = libc::pollfd {
            fd: self.pipe[0],
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll(2) on one pollfd that lives on this stack frame; an
        // EINTR return is as good as a wake-up here.
        unsafe {
            libc::poll(&mut fds, 1, ms);
        }
        let mut buf = [0u8; 64];
        // SAFETY: read(2) into a live local buffer of the length given; the
        // descriptor is non-blocking, so this only drains what is there.
        while unsafe { libc::read(self.pipe[0], buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for (s, old) in &self.previous {
            // SAFETY: restores a sigaction value that sigaction(2) itself
            // returned for this signal.
            unsafe {
                libc::sigaction(*s, old, std::ptr::null_mut());
            }
        }
        WAKE_FD.store(-1, Ordering::SeqCst);
        for fd in self.pipe {
            // SAFETY: closes the two descriptors pipe2(2) gave this value,
            // once; no other code closes them.
            unsafe {
                libc::close(fd);
            }
        }
    }
}
