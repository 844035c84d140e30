//! `dcache token new`: make a bearer token and the tokens-file line that
//! accepts it. Local only: no node is contacted, nothing is stored.

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
    /// line to add to every node's `auth.tokens_file`.
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
    },
}

pub fn run(cmd: TokenCmd) -> ExitCode {
    let TokenCmd::New { name, role, prefix } = cmd;
    match dcache::auth::new_token(&name, role.into(), prefix.as_deref()) {
        Ok((token, line)) => {
            println!("token (shown once; give it to the client):\n  {token}");
            println!("line to add to auth.tokens_file on every node:\n  {line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dcache: {e}");
            ExitCode::from(1)
        }
    }
}
