//! The command line, defined in one place (clap derive). `main.rs` parses it,
//! [`crate::settings`] turns it into validated settings, and
//! [`crate::commands`] runs them.
// The doc comments here are clap's `--help` text, where `DIR[:TAG]` is
// option syntax, not a rustdoc link; escaping it would show in the help.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Builds OCI images of Python web applications, without a container engine.
#[derive(Debug, Parser)]
#[command(
    name = "assemble",
    version,
    after_help = "`assemble REQUIREMENT` is the same as `assemble build REQUIREMENT`.\n\
                  Exit codes: 0 success, 1 build or push failed, 2 bad usage or input."
)]
pub struct Cli {
    /// Command (default: build).
    #[command(subcommand)]
    pub command: Command,
    /// Output options.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Show the output of pip and other sandboxed commands as they run (and
    /// each entry `cache prune` keeps).
    #[arg(long, global = true)]
    pub verbose: bool,
    /// Print only results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Progress, results and errors as JSON lines on stderr (for CI dashboards).
    #[arg(long, global = true, conflicts_with = "quiet")]
    pub json: bool,
    /// Cache directory (default: $ASSEMBLE_CACHE_DIR, else $XDG_CACHE_HOME/assemble).
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Names of the commands, for [`Cli::parse_with_default`].
const COMMANDS: [&str; 12] = [
    "build", "push", "pull", "tags", "login", "vendor", "base", "run", "clean", "purge", "cache",
    "help",
];

impl Cli {
    /// Parses the command line; `assemble REQUIREMENT ...` means
    /// `assemble build REQUIREMENT ...`. clap has no default subcommand that
    /// also accepts global options first, so `build` is inserted when the first
    /// positional argument names no command.
    pub fn parse_with_default<I: IntoIterator<Item = std::ffi::OsString>>(
        args: I,
    ) -> Result<Self, clap::Error> {
        let mut args: Vec<std::ffi::OsString> = args.into_iter().collect();
        let mut i = 1;
        while i < args.len() {
            let a = args[i].to_string_lossy();
            if a == "--cache-dir" {
                i += 2;
                continue;
            }
            if a.starts_with('-') {
                i += 1;
                continue;
            }
            if !COMMANDS.contains(&a.as_ref()) {
                args.insert(1, "build".into());
            }
            break;
        }
        Self::try_parse_from(args)
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a requirement (the default command).
    Build(Box<BuildArgs>),
    /// Push an image of an OCI layout (oci:DIR[:TAG]) or oci-archive:FILE to a registry.
    Push {
        /// oci:DIR[:TAG] or oci-archive:FILE.
        source: String,
        /// Destination reference, HOST[:PORT]/PATH[:TAG].
        reference: String,
        /// Registry options.
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Pull an image into an OCI layout, tagged with the reference's tag.
    Pull {
        /// Image reference.
        reference: String,
        /// Destination directory.
        dir: PathBuf,
        /// Registry options.
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// List a repository's tags, one a line.
    Tags {
        /// Repository, HOST[:PORT]/PATH.
        repository: String,
        /// Registry options.
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Check credentials against a registry and store them in the Docker config (mode 0600).
    Login {
        /// Registry host[:port].
        registry: String,
        /// User name.
        #[arg(short, long)]
        username: String,
        /// Read the password from standard input (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Registry options.
        #[command(flatten)]
        registry_args: RegistryArgs,
    },
    /// Fill the offline store (vendor/) so that --offline builds need no network.
    Vendor {
        /// The requirement and build options, as for `assemble build`.
        #[command(flatten)]
        build: Box<BuildArgs>,
        /// Also write the store as one file, to carry across an air gap.
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
    },
    /// Build or refresh the base and compiler rootfs.
    Base {
        /// assemble.toml (default ./assemble.toml when present).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run an image from an OCI layout, rootless, without an engine.
    Run(Box<RunArgs>),
    /// Remove what assemble wrote in the output directory (./build): OCI
    /// layouts, archives, temporary files; every other file stays.
    Clean {
        /// Output directory: it and its direct subdirectories are looked at.
        #[arg(long, default_value = "build", value_name = "DIR")]
        output: PathBuf,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Clean, then remove the cache (only a directory carrying assemble's
    /// cache marker, CACHEDIR.TAG).
    Purge {
        /// Output directory, cleaned as by `assemble clean`.
        #[arg(long, default_value = "build", value_name = "DIR")]
        output: PathBuf,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The build cache in a registry repository.
    #[command(subcommand)]
    Cache(CacheCommand),
}

/// `assemble cache ...`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Delete the build cache entries written more than N days ago from a
    /// registry repository (assemble's entries only; the registry's garbage
    /// collector then reclaims their blobs).
    Prune {
        /// The cache repository, HOST[:PORT]/PATH (no tag or digest).
        repository: String,
        /// Keep the entries written in the last N days (0: prune every dated entry).
        #[arg(long, value_name = "N", required = true)]
        keep_days: String,
        /// Say what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Registry options.
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// How registries are reached.
#[derive(Debug, Args, Clone)]
pub struct RegistryArgs {
    /// Plain HTTP or unverified TLS for this registry host (HOST[:PORT]). Repeatable.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// PEM file of CA certificates to trust besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Blobs larger than this are sent in resumable chunks of this many bytes
    /// (smaller ones in one PUT: on loopback, 16 MiB chunks made a push 1.2x
    /// slower than skopeo's, one PUT 0.8x; see benches/push.sh).
    #[arg(long, default_value_t = 128 << 20, value_name = "BYTES")]
    pub chunk_size: u64,
    /// Blobs sent at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
    /// Attempts per request before giving up.
    #[arg(long, default_value_t = 6, value_name = "N")]
    pub attempts: u32,
    /// Seconds a registry may take to accept a connection, to answer, or to
    /// send the next bytes of a body (uploads also get a second per 256 KiB).
    #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Manifest format pushed: oci, or docker (schema 2) for registries that want it.
    #[arg(long, value_enum, default_value = "oci")]
    pub format: crate::image::mutate::ManifestFormat,
}

/// `assemble run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// oci:DIR[:TAG], or DIR[:TAG].
    pub image: String,
    /// Bind a host path: HOST:CONTAINER[:ro]. Repeatable.
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER")]
    pub volumes: Vec<String>,
    /// Set an environment variable: KEY=VALUE. Repeatable.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// On SIGTERM or SIGINT, seconds the entrypoint gets to stop after the
    /// signal is forwarded to it, before everything is killed (as `docker stop`).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub stop_timeout: u64,
    /// How the container is isolated: userns (bubblewrap) or chroot (root
    /// where user namespaces are refused); default: the first that works
    /// (not read from ASSEMBLE_ISOLATION, which may name proot for builds).
    #[arg(long, value_enum, value_name = "ISOLATION")]
    pub isolation: Option<crate::sandbox::Isolation>,
    /// Arguments for the entrypoint (start SERVICE, cron, COMMAND...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `assemble build`.
#[derive(Debug, Args, Clone)]
pub struct BuildArgs {
    /// NAME[EXTRAS]==VERSION, a .whl path (optionally [EXTRAS]), a project
    /// directory (its pylock.toml or requirements.txt used when present), or a pylock.toml.
    #[arg(required_unless_present = "requirements")]
    pub requirement: Option<String>,
    /// A pip requirements file to build (with or without --hash lines); the
    /// project is its first named requirement, or --name.
    #[arg(short = 'r', long, value_name = "FILE", conflicts_with = "requirement")]
    pub requirements: Option<PathBuf>,
    /// The project of a requirements file or lock, when its first named
    /// requirement is not.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Interpreter in the base (default: the base's python3).
    #[arg(long, value_name = "X.Y")]
    pub python: Option<String>,
    /// Base: docker://REF | oci:DIR[:TAG] | FILE.tar[.gz] (default: built from layers/base).
    #[arg(long, value_name = "SOURCE")]
    pub base: Option<String>,
    /// Compiler: docker://REF | oci:DIR[:TAG] | FILE.tar[.gz], an image with the base's Python
    /// and C library and the build tools (default: built from layers/compiler).
    #[arg(long, value_name = "SOURCE")]
    pub compiler: Option<String>,
    /// pip index URL (beats PIP_INDEX_URL and pip.conf).
    #[arg(long, value_name = "URL")]
    pub index_url: Option<String>,
    /// Extra pip index URL. Repeatable.
    #[arg(long, value_name = "URL")]
    pub extra_index_url: Vec<String>,
    /// pip configuration file (default: the user's pip.conf).
    #[arg(long, value_name = "FILE")]
    pub pip_conf: Option<PathBuf>,
    /// pip constraints file.
    #[arg(long, value_name = "FILE")]
    pub constraint: Option<PathBuf>,
    /// Registry for the image name: HOST[/PREFIX] (else $ASSEMBLE_REGISTRY, else assemble.toml's).
    #[arg(long, value_name = "HOST[/PREFIX]")]
    pub registry: Option<String>,
    /// Full image reference, overriding --registry.
    #[arg(long, value_name = "REF")]
    pub tag: Option<String>,
    /// Push the image to the registry.
    #[arg(long)]
    pub push: bool,
    /// OCI layout directory.
    #[arg(long, default_value = "build/oci", value_name = "DIR")]
    pub output: PathBuf,
    /// Also write an archive: oci-archive:FILE | docker-archive:FILE. Repeatable.
    #[arg(long, value_name = "KIND:FILE")]
    pub archive: Vec<String>,
    /// Build from the offline store alone (no network, no mmdebstrap).
    #[arg(long)]
    pub offline: bool,
    /// The offline store.
    #[arg(long = "vendor", default_value = "vendor", value_name = "DIR")]
    pub vendor: PathBuf,
    /// Verify and use an offline store bundled by `assemble vendor --bundle` (implies --offline).
    #[arg(long, value_name = "FILE")]
    pub from_bundle: Option<PathBuf>,
    /// assemble.toml (default ./assemble.toml when present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write a JSON description of the result.
    #[arg(long, value_name = "FILE")]
    pub result_file: Option<PathBuf>,
    /// Write what the build resolved as a PEP 751 lock (pylock.toml).
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// Build exactly the set a PEP 751 lock names, hashes required; no resolution.
    #[arg(long, value_name = "FILE")]
    pub locked: Option<PathBuf>,
    /// Registry options.
    #[command(flatten)]
    pub registry_args: RegistryArgs,
    /// Registry repository used as the build cache, read and written (HOST/REPO; else
    /// $ASSEMBLE_CACHE_REPO, else assemble.toml's cache-repo; with --push, <image repository>/cache).
    #[arg(long, value_name = "HOST/REPO")]
    pub cache_repo: Option<String>,
    /// Registry repository read as a build cache, never written. Repeatable.
    #[arg(long, value_name = "HOST/REPO")]
    pub cache_from: Vec<String>,
    /// Registry repository the build cache is written to (and not read).
    #[arg(long, value_name = "HOST/REPO")]
    pub cache_to: Option<String>,
    /// Use no registry as the build cache, not even the default one of --push.
    #[arg(long)]
    pub no_remote_cache: bool,
    /// Rebuild the wheelhouse and layers even when cached (the rootfs stay cached).
    #[arg(long)]
    pub rebuild: bool,
    /// Compression of the layers assemble builds: gzip (every engine) or zstd.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: crate::image::layer::Compression,
    /// How the build's commands are isolated: userns (bubblewrap), chroot
    /// (root where user namespaces are refused) or proot (a plain user
    /// there); default: the first that works.
    #[arg(long, value_enum, env = "ASSEMBLE_ISOLATION", value_name = "ISOLATION")]
    pub isolation: Option<crate::sandbox::Isolation>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::parse_with_default(args.iter().map(|a| a.into())).unwrap()
    }

    #[test]
    fn bare_requirement_means_build() {
        let cli = parse(&[
            "assemble",
            "-q",
            "--cache-dir",
            "/c",
            "milborne==0.4.0",
            "--python",
            "3.11",
        ]);
        let Command::Build(b) = cli.command else {
            panic!("build expected")
        };
        assert_eq!(b.requirement.as_deref(), Some("milborne==0.4.0"));
        assert!(cli.global.quiet);
    }

    #[test]
    fn global_options_may_precede_a_command() {
        let cli = parse(&[
            "assemble",
            "--quiet",
            "--cache-dir",
            "/c",
            "run",
            "build/oci",
            "start",
            "www",
        ]);
        let Command::Run(r) = cli.command else {
            panic!("run expected")
        };
        assert_eq!(r.args, ["start", "www"]);
        assert_eq!(
            cli.global.cache_dir.as_deref(),
            Some(std::path::Path::new("/c"))
        );
    }

    /// Every command's `--help`, long form.
    fn all_help() -> Vec<(String, String)> {
        let mut cmd = Cli::command();
        cmd.build();
        let mut out = vec![("assemble".to_string(), cmd.render_long_help().to_string())];
        for sub in cmd.get_subcommands_mut() {
            let name = sub.get_name().to_string();
            out.push((name, sub.render_long_help().to_string()));
        }
        out
    }

    #[test]
    fn help_is_plain_text_without_rustdoc_links() {
        // Regression: `build --help` showed ``[`GZIP_CHUNK`]`` from a doc comment.
        let all = all_help();
        assert!(all.len() > 10, "every command is rendered");
        for (name, text) in all {
            for markup in ["[`", "`]", "]("] {
                assert!(
                    !text.contains(markup),
                    "{name} --help shows {markup}:\n{text}"
                );
            }
        }
    }

    #[test]
    fn cache_is_a_command_not_a_requirement() {
        let cli = parse(&[
            "assemble",
            "--cache-dir",
            "/c",
            "cache",
            "prune",
            "h:5000/team/cache",
            "--keep-days",
            "7",
        ]);
        let Command::Cache(CacheCommand::Prune {
            repository,
            keep_days,
            dry_run,
            ..
        }) = cli.command
        else {
            panic!("cache prune expected")
        };
        assert_eq!(
            (repository.as_str(), keep_days.as_str()),
            ("h:5000/team/cache", "7")
        );
        assert!(!dry_run);
    }

    #[test]
    fn run_takes_docker_style_volume_flags() {
        let cli = parse(&["assemble", "run", "-v", "/a:/b", "build/oci", "hello", "-v"]);
        let Command::Run(r) = cli.command else {
            panic!("run expected")
        };
        assert_eq!(r.volumes, ["/a:/b"]);
        assert_eq!(r.args, ["hello", "-v"]);
    }
}
