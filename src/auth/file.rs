//! The tokens file: one `name role prefix hash` line per token.

use super::Role;
use super::TokenLine;
use super::valid_name;

/// A line of the tokens file that does not parse (the message never quotes
/// the hash).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// A field as an error message may show it: quoted, unless it could hold
/// (part of) a hash (a `$`, as in every PHC string) or is long.
fn shown(field: &str) -> String {
    if field.contains('$') || field.chars().count() > 64 {
        format!("({} characters, not shown)", field.chars().count())
    } else {
        format!("{field:?}")
    }
}

/// Parse a tokens file's text.
pub fn parse(text: &str) -> Result<Vec<TokenLine>, ParseError> {
    let mut out: Vec<TokenLine> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| ParseError { line, message };
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let fields: Vec<&str> = content.split_whitespace().collect();
        let [name, role, prefix, hash] = fields[..] else {
            return Err(err(format!(
                "expected 4 fields `name role prefix hash`, found {}",
                fields.len()
            )));
        };
        if !valid_name(name) {
            return Err(err(format!(
                "invalid token name {}: 1 to 64 of A-Z a-z 0-9 _ -",
                shown(name)
            )));
        }
        let role = Role::parse(role).ok_or_else(|| {
            err(format!(
                "invalid role {}: expected read, write or admin",
                shown(role)
            ))
        })?;
        let phc = argon2::password_hash::PasswordHash::new(hash);
        let complete = phc.is_ok_and(|h| {
            h.algorithm.as_str().starts_with("argon2") && h.salt.is_some() && h.hash.is_some()
        });
        if !complete {
            return Err(err(
                "the hash is not an argon2 PHC string (make one with `dcache token new`)".into(),
            ));
        }
        if out.iter().any(|t| t.name == name) {
            return Err(err(format!("token name {name:?} appears twice")));
        }
        out.push(TokenLine {
            name: name.to_string(),
            role,
            prefix: (prefix != "*").then(|| prefix.to_string()),
            hash: hash.to_string(),
        });
    }
    Ok(out)
}
