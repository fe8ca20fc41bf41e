//! The one printer for user-facing output: progress on stderr, results on stdout.
//!
//! On a terminal, steps are shown with a leading arrow and transfers as
//! bars; elsewhere (CI) steps are plain lines with the elapsed seconds, so a
//! log shows where time went; with `--json`, every event is one JSON object
//! a line on stderr, for dashboards. stdout carries only results.
//!
//! Secrets never reach it: [`redact_url`] and [`redact_text`] mask the
//! credentials of index URLs in messages and in captured output.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Arrows and bars on a terminal, timed lines elsewhere.
    Human,
    /// JSON lines on stderr.
    Json,
    /// Nothing but results and errors.
    Quiet,
}

/// Prints progress to stderr and results to stdout.
#[derive(Debug)]
pub struct Printer {
    terminal: bool,
    mode: Mode,
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

    /// Starts counting again from `n` (a resumed upload).
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
    /// A printer; `verbose` echoes sandbox output as it comes.
    pub fn new(mode: Mode, verbose: bool) -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            mode,
            verbose,
            start: Instant::now(),
            bars: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
        }
    }

    /// A progress bar for a transfer of `total` bytes, on a terminal only.
    pub fn transfer(&self, label: &str, total: u64) -> Transfer {
        if !self.terminal || self.mode != Mode::Human {
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

    fn json_event(&self, value: serde_json::Value) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{value}");
    }

    fn elapsed(&self) -> f64 {
        (self.start.elapsed().as_secs_f64() * 10.0).round() / 10.0
    }

    /// One progress step.
    pub fn step(&self, msg: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => self.json_event(
                serde_json::json!({"event": "step", "elapsed": self.elapsed(), "message": msg}),
            ),
            Mode::Human if self.terminal => {
                // Above any bars, which redraw below.
                let _ = self.bars.println(format!("\x1b[1m==>\x1b[0m {msg}"));
            }
            Mode::Human => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "[{:7.1}s] {msg}", self.start.elapsed().as_secs_f64());
            }
        }
    }

    /// A warning: something the user should know that does not stop the
    /// command (`warning: …` on stderr, a `warning` event with `--json`;
    /// shown with `--quiet` too).
    pub fn warn(&self, msg: &str) {
        match self.mode {
            Mode::Json => self.json_event(
                serde_json::json!({"event": "warning", "elapsed": self.elapsed(), "message": msg}),
            ),
            Mode::Human if self.terminal => {
                let _ = self
                    .bars
                    .println(format!("\x1b[1;33mwarning:\x1b[0m {msg}"));
            }
            Mode::Human | Mode::Quiet => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "warning: {msg}");
            }
        }
    }

    /// What changed in the resolved set since the recorded build: one step
    /// line (`changed: django 4.2.30 → 4.2.31`), or a `changes` event with
    /// `--json` listing each name with its versions before and after.
    pub fn changes<T: serde::Serialize + std::fmt::Display>(&self, changes: &[T]) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => self.json_event(serde_json::json!({
                "event": "changes",
                "elapsed": self.elapsed(),
                "changes": changes,
            })),
            Mode::Human => {
                let list: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                self.step(&format!(
                    "changed since the recorded build: {}",
                    list.join(", ")
                ));
            }
        }
    }

    /// One line of a sandboxed command's output (`--verbose`): indented on
    /// stderr (above any bars on a terminal), or an `output` event with
    /// `--json`, whose stderr carries only JSON lines.
    pub fn output(&self, source: &str, line: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => self.json_event(serde_json::json!({
                "event": "output",
                "elapsed": self.elapsed(),
                "source": source,
                "line": line,
            })),
            Mode::Human if self.terminal => {
                let _ = self.bars.println(format!("    {line}"));
            }
            Mode::Human => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "    {line}");
            }
        }
    }

    /// One result line on stdout (and a `result` event with `--json`).
    pub fn result(&self, line: &str) {
        if self.mode == Mode::Json {
            self.json_event(
                serde_json::json!({"event": "result", "elapsed": self.elapsed(), "result": line}),
            );
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }

    /// The error that ends the command.
    pub fn error(&self, message: &str, causes: &[String], exit_code: i32) {
        if self.mode == Mode::Json {
            self.json_event(serde_json::json!({"event": "error", "elapsed": self.elapsed(), "message": message, "causes": causes, "exit_code": exit_code}));
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "error: {message}");
        for c in causes {
            let _ = writeln!(err, "  caused by: {c}");
        }
    }
}

/// A URL with any user information replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://***@{host}{path}");
        }
    }
    url.to_string()
}

/// `url` without its user information (for what is kept: records, keys).
pub fn strip_credentials(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some((_, host)) = rest[..end].rsplit_once('@') {
            return format!("{scheme}://{host}{}", &rest[end..]);
        }
    }
    url.to_string()
}

/// Replaces every occurrence of the secrets' user information in `text`.
pub fn redact_text(text: &str, urls: &[String]) -> String {
    let mut out = text.to_string();
    for url in urls {
        if let Some((_, rest)) = url.split_once("://") {
            let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                if !userinfo.is_empty() {
                    out = out.replace(userinfo, "***");
                    if let Some((_, password)) = userinfo.split_once(':') {
                        if password.len() >= 4 {
                            out = out.replace(password, "***");
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact_url("https://user:s3cret@pkgs.local/simple/"),
            "https://***@pkgs.local/simple/"
        );
        let urls = vec!["https://user:s3cret@pkgs.local/simple/".to_string()];
        assert!(!redact_text("GET https://user:s3cret@pkgs.local/x", &urls).contains("s3cret"));
    }
}
