//! `dcache token`: make a bearer token (`new`), and keep a tokens file
//! (`list`, `revoke`). Local only: no node is contacted; a node reads its
//! `auth.tokens_file` at start and again on SIGHUP, so after changing the
//! file, copy it to every node and send each `SIGHUP`.
//!
//! Exit codes: 0 done, 1 an error (the file does not read or parse, a bad
//! name or prefix, a name already in the file), 3 `revoke` of a name the
//! file does not hold.

use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use clap::ValueEnum;
use dcache::auth::Role;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleArg {
    Read,
    Write,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Read => Role::Read,
            RoleArg::Write => Role::Write,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Make a token: prints the token (once: only its hash is kept) and the
    /// line for every node's `auth.tokens_file` (with --file, appends it).
    New {
        /// The token's name (1 to 64 of A-Z a-z 0-9 _ -), unique in the file.
        #[arg(long)]
        name: String,
        /// What the token may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Limit the token to keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Append the line to this tokens file (created if absent; a name
        /// already in it is refused).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// The tokens of a tokens file: name, role, prefix (never the hash).
    List {
        #[arg(long)]
        file: PathBuf,
    },
    /// Remove a token's line from a tokens file (the rest of the file is
    /// kept as it is); nodes refuse the token once they reload the file.
    Revoke {
        #[arg(long)]
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
}

pub fn run(cmd: TokenCmd) -> ExitCode {
    let r = match cmd {
        TokenCmd::New {
            name,
            role,
            prefix,
            file,
        } => new(&name, role.into(), prefix.as_deref(), file.as_deref()),
        TokenCmd::List { file } => list(&file),
        TokenCmd::Revoke { name, file } => revoke(&name, &file),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("dcache: {msg}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

/// The file's text and its parsed lines (a missing file is empty when
/// `missing_ok`).
fn read(file: &Path, missing_ok: bool) -> Result<(String, Vec<dcache::auth::TokenLine>), Failure> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err((1, format!("cannot read {}: {e}", file.display()))),
    };
    let lines = dcache::auth::parse(&text).map_err(|e| (1, format!("{}: {e}", file.display())))?;
    Ok((text, lines))
}

/// Replace `file` with `text`: a temp file beside it, fsynced, renamed
/// over it (a reader sees the old file or the new one, never half).
fn write(file: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    let fail = |e: std::io::Error| (1, format!("cannot write {}: {e}", file.display()));
    let tmp = file.with_extension("dcache-tmp");
    let mut f = std::fs::File::create(&tmp).map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, file).map_err(fail)
}

fn new(name: &str, role: Role, prefix: Option<&str>, file: Option<&Path>) -> Result<(), Failure> {
    let existing = match file {
        Some(f) => Some(read(f, true)?),
        None => None,
    };
    if let Some((_, lines)) = &existing
        && lines.iter().any(|l| l.name == name)
    {
        return Err((
            1,
            format!(
                "{} already has a token named {name:?} (revoke it first)",
                file.expect("read").display()
            ),
        ));
    }
    let (token, line) = dcache::auth::new_token(name, role, prefix).map_err(|e| (1, e))?;
    println!("token (shown once; give it to the client):\n  {token}");
    match (file, existing) {
        (Some(f), Some((mut text, _))) => {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&line);
            text.push('\n');
            write(f, &text)?;
            println!(
                "added to {} (copy it to every node and send each SIGHUP)",
                f.display()
            );
        }
        _ => println!("line to add to auth.tokens_file on every node:\n  {line}"),
    }
    Ok(())
}

fn list(file: &Path) -> Result<(), Failure> {
    let (_, lines) = read(file, false)?;
    for l in lines {
        println!(
            "{} {} {}",
            l.name,
            l.role,
            l.prefix.as_deref().unwrap_or("*")
        );
    }
    Ok(())
}

fn revoke(name: &str, file: &Path) -> Result<(), Failure> {
    let (text, lines) = read(file, false)?;
    if !lines.iter().any(|l| l.name == name) {
        return Err((3, format!("{} has no token named {name:?}", file.display())));
    }
    // The file parsed, so each content line's first field is its name.
    let kept: String = text
        .lines()
        .filter(|raw| {
            let content = raw.split('#').next().unwrap_or("");
            content.split_whitespace().next() != Some(name)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write(file, &kept)?;
    println!(
        "revoked {name:?} in {} (copy it to every node and send each SIGHUP)",
        file.display()
    );
    Ok(())
}
