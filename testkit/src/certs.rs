//! Test certificates: `scripts/make-certs.sh` (openssl), the same script
//! compose and README use, run into a test's temp dir.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

use dcache::config::Config;

/// The repository's `scripts/make-certs.sh`.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-certs.sh")
}

/// Make (in `dir`, with its CA, made on first use) a certificate for every
/// name, valid for `days` (negative: already expired). Panics if openssl
/// fails.
pub fn make(dir: &Path, days: i32, names: &[&str]) {
    let out = Command::new("bash")
        .arg(script())
        .args(["--days", &days.to_string()])
        .arg(dir)
        .args(names)
        .output()
        .expect("run make-certs.sh (needs bash and openssl)");
    assert!(
        out.status.success(),
        "make-certs.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dir/<name>.crt`, `dir/<name>.key`.
pub fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

/// Point `cfg`'s `tls.*` at `dir`'s CA and the certificate of `name`.
pub fn configure(cfg: &mut Config, dir: &Path, name: &str) {
    let (cert, key) = pair(dir, name);
    cfg.tls.cert_file = cert;
    cfg.tls.key_file = key;
    cfg.tls.ca_file = dir.join("ca.crt");
}

/// A TLS client trusting `dir`'s CA and presenting `dir`'s `client`
/// certificate (None: none).
pub fn client_tls(dir: &Path, client: Option<&str>) -> dcache::net::tls::ClientTls {
    let pair = client.map(|c| pair(dir, c));
    dcache::net::tls::ClientTls::from_files(
        &dir.join("ca.crt"),
        pair.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
    )
    .expect("test TLS client config")
}
