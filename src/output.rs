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
    bars: indicatif::MultiProgress,
}

/// Progress of one transfer: a bar on a terminal, nothing elsewhere (the
/// caller prints a line when it starts and ends).
#[derive(Clone)]
pub struct Transfer {
    bar: Option<indicatif::ProgressBar>,
}

impl Transfer {
    /// Counts bytes sent or received.
    pub fn add(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Starts counting again (a retried upload).
    pub fn restart_at(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        }
    }

    /// Ends the bar with a last word.
    pub fn finish(&self, word: &str) {
        if let Some(b) = &self.bar {
            b.finish_with_message(word.to_string());
        }
    }
}

impl Printer {
    /// A printer; `quiet` drops progress, `verbose` echoes sandbox output.
    pub fn new(quiet: bool, verbose: bool) -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            quiet,
            verbose,
            start: Instant::now(),
            bars: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
        }
    }

    /// A progress bar for a transfer of `total` bytes, on a terminal only.
    pub fn transfer(&self, label: &str, total: u64) -> Transfer {
        if !self.terminal || self.quiet {
            return Transfer { bar: None };
        }
        let bar = self.bars.add(indicatif::ProgressBar::new(total));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Transfer { bar: Some(bar) }
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
        if self.terminal {
            // Above any bars, which redraw below.
            let _ = self.bars.println(format!("\x1b[1m==>\x1b[0m {msg}"));
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
