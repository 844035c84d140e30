//! `node.json`: binds a data dir to one node id, so a data dir copied or
//! mounted under the wrong node is refused instead of joining Raft under a
//! second identity.
//!
//! It also holds the node's *incarnation*: a random number drawn when the
//! data dir is first used and drawn again when the dir's Raft state is found
//! gone. The cluster records it in the membership; peers address Raft RPCs
//! to (id, incarnation), so a member that lost its data answers none of them
//! (it must not vote or acknowledge entries as the member it no longer is)
//! until it has been removed and joined again.
//!
//! Format: `{"id":"node1","incarnation":N,"crc32":C}` where C is the CRC32
//! of the id's UTF-8 bytes followed by N as 8 little-endian bytes; written to
//! a temp file, fsynced, renamed, directory fsynced. Older files (no
//! `crc32`, or no `incarnation`) are accepted and rewritten; a file whose
//! checksum does not match is damaged and refused.

use std::path::Path;

use serde::Deserialize;
use serde::Serialize;

use crate::error::Error;
use crate::error::Result;
use crate::id::NodeId;

/// Name of the file that binds a data dir to a node id.
pub const IDENTITY_FILE: &str = "node.json";

#[derive(Serialize, Deserialize)]
struct Identity {
    id: String,
    #[serde(default)]
    incarnation: Option<u64>,
    #[serde(default)]
    crc32: Option<u32>,
}

fn checksum(id: &str, incarnation: Option<u64>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(id.as_bytes());
    if let Some(n) = incarnation {
        h.update(&n.to_le_bytes());
    }
    h.finalize()
}

/// What [`check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The file was already there: the dir has run a node before.
    pub ran_before: bool,
    /// This data dir's incarnation (never 0: 0 means "unknown" on the wire).
    pub incarnation: u64,
}

fn new_incarnation() -> u64 {
    rand::random::<u64>().max(1)
}

fn startup(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Startup(format!("{what} {}: {e}", path.display()))
}

/// Create the data dir if needed and check (or record) that it belongs to
/// `id`.
pub fn check(dir: &Path, id: &NodeId) -> Result<Found> {
    std::fs::create_dir_all(dir).map_err(|e| startup(dir, "cannot create node.data_dir", e))?;
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: Identity = serde_json::from_slice(&bytes)
                .map_err(|e| startup(&path, "damaged identity file", e))?;
            if let Some(crc) = found.crc32
                && crc != checksum(&found.id, found.incarnation)
            {
                return Err(startup(&path, "damaged identity file", "checksum mismatch"));
            }
            if found.id != id.0 {
                return Err(Error::Startup(format!(
                    "data dir {} belongs to node {:?}, not {:?}; use that node id or another data dir",
                    dir.display(),
                    found.id,
                    id.0
                )));
            }
            let incarnation = match found.incarnation {
                Some(n) if n != 0 && found.crc32.is_some() => n,
                _ => {
                    let n = new_incarnation();
                    write(dir, id, n)?;
                    n
                }
            };
            Ok(Found {
                ran_before: true,
                incarnation,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let incarnation = new_incarnation();
            write(dir, id, incarnation)?;
            Ok(Found {
                ran_before: false,
                incarnation,
            })
        }
        Err(e) => Err(startup(&path, "cannot read", e)),
    }
}

/// Draw a new incarnation for a data dir whose Raft state is gone, so the
/// cluster does not take this node for the member it was.
pub fn renew(dir: &Path, id: &NodeId) -> Result<u64> {
    let n = new_incarnation();
    write(dir, id, n)?;
    Ok(n)
}

fn write(dir: &Path, id: &NodeId, incarnation: u64) -> Result<()> {
    let path = dir.join(IDENTITY_FILE);
    let path = path.as_path();
    let body = serde_json::to_vec(&Identity {
        id: id.0.clone(),
        incarnation: Some(incarnation),
        crc32: Some(checksum(&id.0, Some(incarnation))),
    })
    .expect("a struct of a string and a number serializes");
    let tmp = path.with_extension("json.tmp");
    let cannot_write = |e| startup(path, "cannot write", e);
    std::fs::write(&tmp, body).map_err(cannot_write)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(cannot_write)?;
    std::fs::rename(&tmp, path).map_err(cannot_write)?;
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(cannot_write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_a_dir_to_one_id_with_a_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let a = NodeId::from("a");
        let first = check(dir.path(), &a).unwrap();
        assert!(!first.ran_before, "new dir");
        let again = check(dir.path(), &a).unwrap();
        assert!(again.ran_before, "known dir");
        assert_eq!(again.incarnation, first.incarnation, "kept across starts");
        let renewed = renew(dir.path(), &a).unwrap();
        assert_ne!(renewed, first.incarnation);
        assert_eq!(check(dir.path(), &a).unwrap().incarnation, renewed);
        let e = check(dir.path(), &NodeId::from("b"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to node \"a\""), "{e}");
        let text = std::fs::read_to_string(dir.path().join(IDENTITY_FILE)).unwrap();
        assert!(text.contains("\"crc32\":"), "{text}");
    }

    #[test]
    fn a_damaged_file_is_refused_and_an_old_one_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        std::fs::write(&path, r#"{"id":"a","crc32":1}"#).unwrap();
        let e = check(dir.path(), &NodeId::from("a"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("checksum mismatch") && e.contains("node.json"),
            "{e}"
        );
        std::fs::write(&path, r#"{"id":"a"}"#).unwrap();
        check(dir.path(), &NodeId::from("a")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("crc32") && text.contains("incarnation"),
            "old format not upgraded: {text}"
        );
        // A file with a checksum but no incarnation (before incarnations).
        let crc = crc32fast::hash(b"a");
        std::fs::write(&path, format!(r#"{{"id":"a","crc32":{crc}}}"#)).unwrap();
        let found = check(dir.path(), &NodeId::from("a")).unwrap();
        assert!(found.ran_before && found.incarnation != 0);
    }
}
