//! Names of the environment variables `assemble` reads, in one place.

/// Overrides the cache directory (default `$XDG_CACHE_HOME/assemble`).
pub const ASSEMBLE_CACHE_DIR: &str = "ASSEMBLE_CACHE_DIR";
/// Default registry (`HOST[/PREFIX]`), like `--registry`.
pub const ASSEMBLE_REGISTRY: &str = "ASSEMBLE_REGISTRY";
/// The build cache repository (`HOST/REPO`), like `--cache-repo`.
pub const ASSEMBLE_CACHE_REPO: &str = "ASSEMBLE_CACHE_REPO";
/// Debian mirror for mmdebstrap (default: mmdebstrap's own choice).
pub const ASSEMBLE_DEBIAN_MIRROR: &str = "ASSEMBLE_DEBIAN_MIRROR";
/// Log filter for `tracing` (`debug`, `assemble=trace`).
pub const ASSEMBLE_LOG: &str = "ASSEMBLE_LOG";
/// Fixed timestamp for reproducible builds (seconds since the epoch).
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";
/// Base of the default cache directory.
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
/// Base of the user's configuration (pip's `pip/pip.conf`).
pub const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";
/// The user's home: the last default of the cache, pip.conf and the Docker config.
pub const HOME: &str = "HOME";
/// Where programs are looked for (bwrap, mmdebstrap, credential helpers).
pub const PATH: &str = "PATH";
/// The registry credentials file, as podman and skopeo read it.
pub const REGISTRY_AUTH_FILE: &str = "REGISTRY_AUTH_FILE";
/// Docker's configuration directory (`config.json` in it).
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";
/// pip's index URL.
pub const PIP_INDEX_URL: &str = "PIP_INDEX_URL";
/// pip's extra index URLs, space separated.
pub const PIP_EXTRA_INDEX_URL: &str = "PIP_EXTRA_INDEX_URL";
/// pip's trusted hosts, space separated.
pub const PIP_TRUSTED_HOST: &str = "PIP_TRUSTED_HOST";
/// pip's configuration file.
pub const PIP_CONFIG_FILE: &str = "PIP_CONFIG_FILE";
/// pip's CA bundle.
pub const PIP_CERT: &str = "PIP_CERT";
/// Proxy variables handed to pip in the compile sandbox.
pub const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];
/// certs.d roots searched for a registry's `HOST[:PORT]` directory, colon
/// separated (default `/etc/containers/certs.d:/etc/docker/certs.d`).
pub const ASSEMBLE_CERTS_D: &str = "ASSEMBLE_CERTS_D";
