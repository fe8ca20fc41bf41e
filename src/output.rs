//! The one printer for user-facing output: progress on stderr, results on stdout.
//!
//! On a terminal, steps are shown with a leading arrow; elsewhere (CI) they are
//! plain lines with a timestamp offset, so a log shows where time went.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Prints progress to stderr and results to stdout.
#[derive(Debug)]
pub struct Printer {
    terminal: bool,
    quiet: bool,
    verbose: bool,
    start: Instant,
}

impl Printer {
    /// A printer; `quiet` drops progress, `verbose` echoes sandbox output.
    pub fn new(quiet: bool, verbose: bool) -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            quiet,
            verbose,
            start: Instant::now(),
        }
    }

    /// True when sandboxed commands' output should be shown as it comes.
    pub fn verbose(&self) -> bool {
        self.verbose
    }

    /// One progress line.
    pub fn step(&self, msg: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = writeln!(err, "\x1b[1m==>\x1b[0m {msg}");
        } else {
            let _ = writeln!(err, "[{:7.1}s] {msg}", self.start.elapsed().as_secs_f64());
        }
    }

    /// One result line on stdout.
    pub fn result(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}
