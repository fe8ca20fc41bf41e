//! TLS towards registries: what each host is verified against and what it
//! is shown.
//!
//! A host's server certificate is verified against the system's roots, the
//! `--ca-file` certificates and the `*.crt` files of the host's certs.d
//! directory (`/etc/containers/certs.d/HOST[:PORT]/`, else
//! `/etc/docker/certs.d/HOST[:PORT]/`, as podman, skopeo and docker read
//! them); `client.cert` and `client.key` there are the client certificate
//! for registries that ask for one. A server certificate that is itself one
//! of the certificates given for the host, byte for byte, is accepted when it
//! names the host and is within its dates: the self-signed certificate the
//! CNCF distribution documentation makes carries `CA:TRUE`, which webpki
//! refuses as a server's own (`CaUsedAsEndEntity`) while Go, OpenSSL and curl
//! accept it once trusted. Anything else gets webpki's full verification. A
//! refused certificate leaves a sentence saying what was wrong with it, for
//! the error message.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Certificates or keys given for a host (certs.d, `--ca-file`) that
/// cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A certificate file is not PEM.
    #[error("{path} is not a PEM certificate file")]
    NotPem {
        /// The file.
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("{path} holds no PEM certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A client certificate without its key.
    #[error("{cert} has no key beside it: put the client certificate's key in {key}")]
    NoKey {
        /// The certificate.
        cert: PathBuf,
        /// Where its key belongs.
        key: PathBuf,
    },
    /// A client key without its certificate.
    #[error("{key} has no client certificate beside it: put it in {cert}")]
    NoClientCertificate {
        /// The key.
        key: PathBuf,
        /// Where its certificate belongs.
        cert: PathBuf,
    },
    /// A key file is not a PEM private key.
    #[error("{path} is not a PEM private key")]
    NotKey {
        /// The file.
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the configuration.
    #[error("cannot set up TLS")]
    Setup(#[source] rustls::Error),
    /// rustls refused to build the verifier.
    #[error("cannot set up TLS")]
    Verifier(#[source] rustls::client::VerifierBuilderError),
    /// rustls refused the client certificate.
    #[error("cannot use the client certificate {path}")]
    ClientCertificate {
        /// The certificate.
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// The certs.d roots read when `$ASSEMBLE_CERTS_D` is not set, first first.
pub const DEFAULT_CERTS_D: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

/// The certs.d roots in use: `$ASSEMBLE_CERTS_D` (colon-separated), else
/// [`DEFAULT_CERTS_D`].
pub fn certs_d_roots() -> Vec<PathBuf> {
    match std::env::var_os(crate::env::ASSEMBLE_CERTS_D) {
        Some(v) => std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => DEFAULT_CERTS_D.iter().map(PathBuf::from).collect(),
    }
}

/// A client certificate and its key, from certs.d.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// Where the certificate came from, for messages.
    pub cert_path: PathBuf,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientIdentity({}, key: ***)", self.cert_path.display())
    }
}

/// The certificates given for one host: trusted CAs (which are also accepted
/// as the server's own certificate) and a client identity.
#[derive(Clone, Debug, Default)]
pub struct HostCerts {
    /// Certificates trusted for this host besides the system's roots.
    pub trusted: Vec<CertificateDer<'static>>,
    /// The files they came from (`--ca-file`, certs.d `*.crt`).
    pub sources: Vec<PathBuf>,
    /// The client certificate, if certs.d has one.
    pub identity: Option<ClientIdentity>,
    /// The certs.d directory read for this host, if any.
    pub dir: Option<PathBuf>,
}

/// Reads the PEM certificates of a file; none at all is an error.
pub fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::NotPem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// A whole file, its path in the error.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certs.d directory of `host` (`HOST[:PORT]`, as written in the
/// reference) under the first root that has one, and what it holds.
pub fn read_certs_d(roots: &[PathBuf], host: &str) -> Result<HostCerts, TlsError> {
    let mut out = HostCerts::default();
    if host.contains('/') || host.starts_with('.') {
        return Ok(out);
    }
    let Some(dir) = roots.iter().map(|r| r.join(host)).find(|d| d.is_dir()) else {
        return Ok(out);
    };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|source| TlsError::Read {
            path: dir.clone(),
            source,
        })?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let path = dir.join(name);
        if name.ends_with(".crt") {
            out.trusted.extend(read_pem_certificates(&path)?);
            out.sources.push(path);
        } else if let Some(stem) = name.strip_suffix(".cert") {
            let key_path = dir.join(format!("{stem}.key"));
            if !key_path.is_file() {
                return Err(TlsError::NoKey {
                    cert: path,
                    key: key_path,
                });
            }
            if out.identity.is_some() {
                continue; // docker uses the first pair too
            }
            let chain = read_pem_certificates(&path)?;
            let key_pem = read(&key_path)?;
            let key =
                PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::NotKey {
                    path: key_path.clone(),
                    source,
                })?;
            out.identity = Some(ClientIdentity {
                chain,
                key: Arc::new(key),
                cert_path: path,
            });
        } else if let Some(stem) = name.strip_suffix(".key") {
            if !dir.join(format!("{stem}.cert")).is_file() {
                return Err(TlsError::NoClientCertificate {
                    key: path,
                    cert: dir.join(format!("{stem}.cert")),
                });
            }
        }
    }
    out.dir = Some(dir);
    Ok(out)
}

/// Where a verifier leaves the reason it refused a certificate.
pub type Problem = Arc<Mutex<Option<String>>>;

/// The rustls configuration for one host, and where its verifier leaves the
/// reason of a refusal.
pub fn client_config(
    provider: &Arc<CryptoProvider>,
    system_roots: &[CertificateDer<'static>],
    certs: &HostCerts,
    insecure: bool,
) -> Result<(rustls::ClientConfig, Problem), TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots.iter().cloned());
    // A certificate that is not a valid trust anchor (an end-entity one
    // given to be pinned) still counts through the byte-for-byte match.
    roots.add_parsable_certificates(certs.trusted.iter().cloned());
    let inner = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(TlsError::Verifier)?,
        )
    };
    let problem = Arc::new(Mutex::new(None));
    let verifier = Verifier {
        inner,
        pinned: certs.trusted.clone(),
        insecure,
        provider: provider.clone(),
        problem: problem.clone(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match &certs.identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|source| TlsError::ClientCertificate {
                path: id.cert_path.clone(),
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    // reqwest here speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, problem))
}

/// Verifies server certificates for one host (see the module's comment).
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    insecure: bool,
    provider: Arc<CryptoProvider>,
    problem: Problem,
}

impl Verifier {
    fn refuse(&self, error: rustls::Error) -> rustls::Error {
        *self.problem.lock().expect("lock") = Some(describe(&error));
        error
    }

    /// A certificate given for the host: it must still name the host and be
    /// within its dates.
    fn check_pinned(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| {
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                    expected: server_name.to_owned(),
                    presented: cert.valid_dns_names().map(str::to_string).collect(),
                })
            })?;
        let (not_before, not_after) = validity(end_entity).ok_or(
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
        )?;
        let now_secs = now.as_secs();
        if now_secs < not_before {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYetContext {
                    time: now,
                    not_before: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        not_before,
                    )),
                },
            ));
        }
        if now_secs > not_after {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ExpiredContext {
                    time: now,
                    not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        not_after,
                    )),
                },
            ));
        }
        Ok(())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return self
                .check_pinned(end_entity, server_name, now)
                .map(|()| ServerCertVerified::assertion())
                .map_err(|e| self.refuse(e));
        }
        match &self.inner {
            Some(inner) => inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map_err(|e| self.refuse(e)),
            None => Err(self.refuse(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What was wrong with a certificate, as a sentence's end.
fn describe(error: &rustls::Error) -> String {
    let rustls::Error::InvalidCertificate(e) = error else {
        return error.to_string();
    };
    match e {
        CertificateError::UnknownIssuer => {
            "it is signed by an authority that is not trusted".to_string()
        }
        CertificateError::NotValidForName => "it does not name the host".to_string(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            if presented.is_empty() {
                format!(
                    "it is not valid for {}: it names no host (no subjectAltName)",
                    expected.to_str()
                )
            } else {
                format!(
                    "it is not valid for {}: its subjectAltName names {}",
                    expected.to_str(),
                    presented.join(", ")
                )
            }
        }
        CertificateError::Expired => "it has expired".to_string(),
        CertificateError::ExpiredContext { not_after, .. } => {
            format!(
                "it expired on {}",
                crate::epoch::utc_date(not_after.as_secs())
            )
        }
        CertificateError::NotValidYet => "it is not valid yet".to_string(),
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!(
                "it is not valid before {}",
                crate::epoch::utc_date(not_before.as_secs())
            )
        }
        CertificateError::BadSignature => "its signature does not verify".to_string(),
        CertificateError::Revoked => "it has been revoked".to_string(),
        CertificateError::BadEncoding => "it is not a well-formed certificate".to_string(),
        CertificateError::Other(other)
            if other.0.downcast_ref::<webpki::Error>()
                == Some(&webpki::Error::CaUsedAsEndEntity) =>
        {
            "it is a CA certificate (basic constraints CA:TRUE) presented as the server's \
             own, and not one of the certificates given for this host (such a certificate is \
             accepted when given itself, byte for byte)"
                .to_string()
        }
        other => format!("{other:?}"),
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One DER element: (tag, contents, what follows).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// notBefore and notAfter of a DER certificate, in seconds since the epoch
/// (RFC 5280 section 4.1: the validity follows the version, serial number,
/// signature algorithm and issuer of the TBSCertificate).
fn validity(cert: &[u8]) -> Option<(u64, u64)> {
    let (0x30, cert, _) = der(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = der(cert)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der(rest)?.2;
    }
    for expected in [0x02, 0x30, 0x30] {
        let (tag, _, next) = der(rest)?;
        if tag != expected {
            return None;
        }
        rest = next;
    }
    let (0x30, validity, _) = der(rest)? else {
        return None;
    };
    let (tag1, t1, rest) = der(validity)?;
    let (tag2, t2, _) = der(rest)?;
    Some((time(tag1, t1)?, time(tag2, t2)?))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let digits = text.strip_suffix('Z')?;
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| -> i64 { rest[i..i + 2].parse().unwrap_or(0) };
    let days = days_from_civil(year, n(0), n(2));
    let secs = days * 86_400 + n(4) * 3600 + n(6) * 60 + n(8);
    u64::try_from(secs).ok()
}

/// The system's trusted roots (as rustls-native-certs finds them: the
/// `SSL_CERT_FILE`/`SSL_CERT_DIR` variables, else the distribution's bundle).
pub fn system_roots() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "a system root could not be read");
    }
    found.certs
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256
    // -nodes -days 2 -subj /CN=t -addext subjectAltName=IP:127.0.0.1`:
    // notBefore 2026-11-30 07:37:14 UTC, notAfter 2026-12-02 07:37:14 UTC.
    const CERT: &str = include_str!("testdata/validity.pem");

    #[test]
    fn the_validity_of_a_certificate_is_read_from_its_der() {
        let der = CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap();
        let (not_before, not_after) = validity(der.as_ref()).unwrap();
        assert_eq!(
            crate::epoch::utc_date(not_before),
            "2026-11-30 07:37:14 UTC"
        );
        assert_eq!(crate::epoch::utc_date(not_after), "2026-12-02 07:37:14 UTC");
        assert_eq!(not_after - not_before, 2 * 86_400);
    }

    #[test]
    fn utc_and_generalized_times_agree() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x18, b"19700101000000Z"), Some(0));
        assert_eq!(time(0x17, b"491231235959Z"), time(0x18, b"20491231235959Z"));
        assert_eq!(time(0x18, b"20000301000000Z"), Some(951_868_800));
        assert_eq!(time(0x17, b"0001010000Z"), None, "too short");
        assert_eq!(time(0x17, b"000101000000+0100"), None, "not UTC");
    }

    #[test]
    fn truncated_der_is_refused_without_a_panic() {
        let der = CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap();
        for n in 0..der.as_ref().len() {
            let _ = validity(&der.as_ref()[..n]);
        }
        assert!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    }

    #[test]
    fn a_certs_d_key_without_its_certificate_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("127.0.0.1:5000");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("client.key"), "x").unwrap();
        let e = read_certs_d(&[t.path().to_path_buf()], "127.0.0.1:5000")
            .unwrap_err()
            .to_string();
        assert!(e.contains("client.key has no client certificate"), "{e}");
    }

    #[test]
    fn the_first_root_with_a_directory_for_the_host_wins() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(b.join("reg:5000")).unwrap();
        std::fs::write(b.join("reg:5000/ca.crt"), CERT).unwrap();
        let found = read_certs_d(&[a.clone(), b.clone()], "reg:5000").unwrap();
        assert_eq!(found.trusted.len(), 1);
        assert_eq!(found.dir, Some(b.join("reg:5000")));
        assert!(read_certs_d(&[a, b], "other:5000").unwrap().dir.is_none());
    }
}
