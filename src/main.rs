//! The `assemble` binary: parses the command line, turns it into validated
//! settings ([`assemble::settings`]), calls the one function of the command
//! ([`assemble::commands`]) and maps errors to exit codes (0 ok, 1 failed,
//! 2 bad usage or input). Nothing else happens here.

use std::process::ExitCode;

use assemble::cli::Cli;
use assemble::output::{Mode, Printer};
use assemble::settings::Settings;
use assemble::{commands, env, Error};

fn main() -> ExitCode {
    let cli = match Cli::parse_with_default(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env(env::ASSEMBLE_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let mode = if cli.global.json {
        Mode::Json
    } else if cli.global.quiet {
        Mode::Quiet
    } else {
        Mode::Human
    };
    let printer = Printer::new(mode, cli.global.verbose);
    match dispatch(cli, &printer) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let mut causes = Vec::new();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                causes.push(s.to_string());
                source = s.source();
            }
            printer.error(&e.to_string(), &causes, e.exit_code());
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Validates the command line, then runs its command.
fn dispatch(cli: Cli, printer: &Printer) -> Result<i32, Error> {
    match Settings::from_cli(cli)? {
        Settings::Build(s) => commands::build(*s, printer),
        Settings::Vendor(s) => commands::vendor(*s, printer),
        Settings::Push(s) => commands::push(s, printer),
        Settings::Pull(s) => commands::pull(s, printer),
        Settings::Tags(s) => commands::tags(s, printer),
        Settings::Login(s) => commands::login(s, printer),
        Settings::Base(s) => commands::base(s, printer),
        Settings::Run(s) => commands::run(s, printer),
        Settings::Clean(s) => commands::clean(s, printer),
        Settings::Purge(s) => commands::purge(s, printer),
        Settings::CachePrune(s) => commands::cache_prune(s, printer),
    }
}
