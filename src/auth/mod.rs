//! Bearer tokens and roles: the tokens file, token creation, and checking
//! a presented token (argon2, with a cache of verified tokens).
//!
//! A token is `dct.<name>.<secret>`; the tokens file holds, per token, one
//! line `name role prefix hash`: `role` is `read`, `write` or `admin`,
//! `prefix` the key prefix the token is limited to (`*` for every key),
//! `hash` the secret's argon2id hash in PHC form. `#` starts a comment.
//!
//! Why a file and not the replicated state: a token must be checkable
//! before the node can reach Raft (a follower cut off, a node that has not
//! joined yet, the very first admin request that sets a cluster up); hashes
//! in the Raft log would travel to every node and into every snapshot and
//! backup; and a file is rotated by the same configuration management that
//! ships the rest of a node's config. The price: every node's file must be
//! kept the same (the node reads it at start and again on SIGHUP).
//!
//! Invariants:
//! - No token or hash is ever logged; `Debug` of [`Tokens`] shows names only.
//! - A presented token is compared with the cached SHA-256 of the token
//!   that verified under its name in constant time; only an unknown token
//!   reaches argon2, and at most [`MAX_CONCURRENT_VERIFY`] argon2
//!   verifications run at once (CPU bound under a flood of bad tokens).
//! - A prefix-limited token reaches only keys under its prefix.
//!
//! Not here: which route needs which role (`api::guard`).
//!
//! Uses: nothing in the crate (a leaf).

mod file;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;

use argon2::Argon2;
use argon2::password_hash::PasswordHash;
use argon2::password_hash::PasswordHasher;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::SaltString;
use sha2::Digest;
use subtle::ConstantTimeEq;

pub use file::ParseError;
pub use file::parse;

/// argon2 verifications allowed at once.
pub const MAX_CONCURRENT_VERIFY: usize = 2;
/// Prefix of every token.
pub const TOKEN_PREFIX: &str = "dct.";

/// What a token may do. Ordered: each role may do what the ones below it
/// may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read keys, scans, watches, status.
    Read,
    /// Read, and write and delete keys.
    Write,
    /// Everything: membership, leadership transfer, all keys.
    Admin,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the tokens file.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenLine {
    pub name: String,
    pub role: Role,
    /// Key prefix the token is limited to (None: every key).
    pub prefix: Option<String>,
    /// argon2 PHC hash of the token's secret part.
    pub hash: String,
}

impl fmt::Debug for TokenLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TokenLine({} {} {:?})",
            self.name, self.role, self.prefix
        )
    }
}

/// Whether `name` may name a token: 1 to 64 of `A-Z a-z 0-9 _ -`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A new token and its tokens-file line. The token is shown once; only its
/// hash is kept.
pub fn new_token(name: &str, role: Role, prefix: Option<&str>) -> Result<(String, String), String> {
    use base64::Engine;
    use rand::RngCore;
    if !valid_name(name) {
        return Err(format!(
            "invalid token name {name:?}: 1 to 64 of A-Z a-z 0-9 _ -"
        ));
    }
    if let Some(p) = prefix
        && (p.is_empty() || p == "*" || p.chars().any(char::is_whitespace))
    {
        return Err(format!(
            "invalid prefix {p:?}: non-empty, not \"*\", no whitespace"
        ));
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let hash = Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| e.to_string())?
        .to_string();
    let token = format!("{TOKEN_PREFIX}{name}.{secret}");
    let line = format!("{name} {role} {} {hash}", prefix.unwrap_or("*"));
    Ok((token, line))
}

/// Who a verified token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub prefix: Option<String>,
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing (an open probe).
    Open,
    /// A role, no key involved.
    Role(Role),
    /// A role on one key.
    Key(Role, Vec<u8>),
    /// A role on every key under a prefix.
    Prefix(Role, Vec<u8>),
    /// A role on keys the request names in its body or a range: only
    /// tokens limited to no prefix.
    AnyKey(Role),
}

/// Why a principal may not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

impl Principal {
    /// Ok if this principal may do what `need` says.
    pub fn allows(&self, need: &Need) -> Result<(), Denied> {
        let (role, keys) = match need {
            Need::Open => return Ok(()),
            Need::Role(r) => (*r, None),
            Need::Key(r, k) | Need::Prefix(r, k) => (*r, Some(Some(k.as_slice()))),
            Need::AnyKey(r) => (*r, Some(None)),
        };
        if self.role < role {
            return Err(Denied(format!(
                "token {:?} has role {}; this needs {role}",
                self.name, self.role
            )));
        }
        match (&self.prefix, keys) {
            (None, _) | (Some(_), None) => Ok(()),
            (Some(p), Some(Some(k))) if k.starts_with(p.as_bytes()) => Ok(()),
            (Some(p), Some(Some(_))) => Err(Denied(format!(
                "token {:?} is limited to keys starting with {p:?}",
                self.name
            ))),
            (Some(p), Some(None)) => Err(Denied(format!(
                "token {:?} is limited to keys starting with {p:?}; this request names keys in its body or a range (use the per-key routes, or a prefix under {p:?})",
                self.name
            ))),
        }
    }
}

struct Entry {
    line: TokenLine,
    /// SHA-256 of the token that last verified under this name.
    verified: Mutex<Option<[u8; 32]>>,
}

type ByName = HashMap<String, Arc<Entry>>;

/// The tokens a node accepts. [`Tokens::reload`] replaces them (SIGHUP):
/// requests after it see the new set; a request being verified finishes
/// against the set it started with.
pub struct Tokens {
    by_name: RwLock<Arc<ByName>>,
    /// The file they came from (None: built in memory).
    path: Option<PathBuf>,
    verify: tokio::sync::Semaphore,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.current().keys()).finish()
    }
}

/// The entries for `lines`, reusing those of `old` whose line is unchanged
/// (they keep their verification cache).
fn entries(lines: Vec<TokenLine>, old: Option<&ByName>) -> ByName {
    lines
        .into_iter()
        .map(|line| {
            let entry = match old.and_then(|o| o.get(&line.name)) {
                Some(e) if e.line == line => e.clone(),
                _ => Arc::new(Entry {
                    line,
                    verified: Mutex::new(None),
                }),
            };
            (entry.line.name.clone(), entry)
        })
        .collect()
}

/// Read and parse a tokens file.
fn read_file(path: &Path) -> Result<Vec<TokenLine>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

impl Tokens {
    pub fn new(lines: Vec<TokenLine>) -> Tokens {
        Tokens {
            by_name: RwLock::new(Arc::new(entries(lines, None))),
            path: None,
            verify: tokio::sync::Semaphore::new(MAX_CONCURRENT_VERIFY),
        }
    }

    /// Read and parse a tokens file.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let mut t = Tokens::new(read_file(path)?);
        t.path = Some(path.to_path_buf());
        Ok(t)
    }

    /// Read the tokens file again and accept exactly its tokens from now
    /// on (a removed line's token is refused at its next request). A file
    /// that does not read or parse changes nothing. Returns how many
    /// tokens there are now.
    pub fn reload(&self) -> Result<usize, String> {
        let Some(path) = &self.path else {
            return Err("these tokens were not read from a file".into());
        };
        let lines = read_file(path)?;
        let mut guard = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        let next = entries(lines, Some(&guard));
        let n = next.len();
        *guard = Arc::new(next);
        Ok(n)
    }

    fn current(&self) -> Arc<ByName> {
        self.by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn len(&self) -> usize {
        self.current().len()
    }

    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }

    /// Who `token` is, or None if it is not a valid token.
    pub async fn authenticate(&self, token: &str) -> Option<Principal> {
        let rest = token.strip_prefix(TOKEN_PREFIX)?;
        let (name, secret) = rest.split_once('.')?;
        let entry = self.current().get(name)?.clone();
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let cached = *entry.verified.lock().unwrap_or_else(|p| p.into_inner());
        let ok = match cached {
            Some(d) if bool::from(d.ct_eq(&digest)) => true,
            _ => {
                let _permit = self.verify.acquire().await.ok()?;
                let (e, secret) = (entry.clone(), secret.to_string());
                let verified = tokio::task::spawn_blocking(move || {
                    let hash = PasswordHash::new(&e.line.hash).ok()?;
                    Argon2::default()
                        .verify_password(secret.as_bytes(), &hash)
                        .ok()
                })
                .await
                .ok()
                .flatten()
                .is_some();
                if verified {
                    *entry.verified.lock().unwrap_or_else(|p| p.into_inner()) = Some(digest);
                }
                verified
            }
        };
        ok.then(|| Principal {
            name: entry.line.name.clone(),
            role: entry.line.role,
            prefix: entry.line.prefix.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
