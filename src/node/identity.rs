//! `node.json`: binds a data dir to one node id, so a data dir copied or
//! mounted under the wrong node is refused instead of joining Raft under a
//! second identity.
//!
//! Format: `{"id":"node1","crc32":<CRC32 of the id's UTF-8 bytes>}`,
//! written to a temp file, fsynced, renamed, directory fsynced. A file
//! without `crc32` (written before checksums) is accepted and rewritten
//! with one; a file whose checksum does not match is damaged and refused.

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
    crc32: Option<u32>,
}

fn startup(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Startup(format!("{what} {}: {e}", path.display()))
}

/// Create the data dir if needed and check (or record) that it belongs to
/// `id`. Returns whether the file was already there (the dir has run a
/// node before).
pub fn check(dir: &Path, id: &NodeId) -> Result<bool> {
    std::fs::create_dir_all(dir).map_err(|e| startup(dir, "cannot create node.data_dir", e))?;
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: Identity = serde_json::from_slice(&bytes)
                .map_err(|e| startup(&path, "damaged identity file", e))?;
            match found.crc32 {
                Some(crc) if crc != crc32fast::hash(found.id.as_bytes()) => {
                    return Err(startup(&path, "damaged identity file", "checksum mismatch"));
                }
                Some(_) => {}
                None if found.id == id.0 => write(dir, &path, id)?,
                None => {}
            }
            if found.id != id.0 {
                return Err(Error::Startup(format!(
                    "data dir {} belongs to node {:?}, not {:?}; use that node id or another data dir",
                    dir.display(),
                    found.id,
                    id.0
                )));
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write(dir, &path, id).map(|()| false),
        Err(e) => Err(startup(&path, "cannot read", e)),
    }
}

fn write(dir: &Path, path: &Path, id: &NodeId) -> Result<()> {
    let body = serde_json::to_vec(&Identity {
        id: id.0.clone(),
        crc32: Some(crc32fast::hash(id.0.as_bytes())),
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
        assert!(!check(dir.path(), &a).unwrap(), "new dir");
        assert!(check(dir.path(), &a).unwrap(), "known dir");
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
        assert!(text.contains("crc32"), "old format not upgraded: {text}");
    }
}
