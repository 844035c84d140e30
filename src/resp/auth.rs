//! Who a Redis connection is, and what it may run: `AUTH` / `HELLO ...
//! AUTH` with the same bearer tokens and roles as the HTTP API
//! (`auth.enabled`, `auth::Tokens`), and the role check of every command.
//!
//! Invariants:
//! - With tokens configured, a connection that has not authenticated may
//!   run only AUTH, HELLO (with AUTH, or it is refused) and QUIT; anything
//!   else answers `-NOAUTH Authentication required.`, as Redis does.
//! - A wrong token answers `-WRONGPASS invalid username-password pair or
//!   user is disabled.` and leaves the connection as it was (Redis keeps a
//!   previously authenticated user too).
//! - Every command is checked against the principal before it runs, is
//!   queued (MULTI) or joins a batch: reads need `read`, writes `write`,
//!   CONFIG and CLIENT LIST/KILL `admin`; every key the command names (each
//!   key of MGET, MSET, DEL, ...) must be under the token's prefix, and
//!   commands over the whole key space (KEYS, SCAN, RANDOMKEY, FLUSHALL)
//!   need a token without a prefix. A refusal is `-NOPERM ...` in Redis
//!   7.0's words, and nothing runs.
//! - No token is logged or echoed in an error.
//!
//! Not here: verifying a token (`auth::Tokens`), the HTTP routes' needs
//! (`api::guard`).

use crate::auth::Need;
use crate::auth::Principal;
use crate::auth::Role;

use super::reply::Frame;
use super::table::COMMANDS;

/// Redis's answer to a command before authentication.
pub const NOAUTH: &str = "NOAUTH Authentication required.";
/// Redis's answer to a wrong password (here: token).
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
/// Redis's answer to HELLO without AUTH before authentication.
const NOAUTH_HELLO: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";
/// Redis's answer to AUTH when no password is configured.
const AUTH_NOT_CONFIGURED: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";

/// A connection's authentication state.
#[derive(Debug, Default, Clone)]
pub struct Login {
    pub principal: Option<Principal>,
}

/// Commands a connection may run before it authenticates.
fn open_before_auth(name: &str) -> bool {
    matches!(name, "auth" | "hello" | "quit")
}

/// What `AUTH`'s or `HELLO AUTH`'s arguments present: (user, token).
/// The user must be `default` or the token's own name.
fn user_matches(user: Option<&[u8]>, p: &Principal) -> bool {
    match user {
        None => true,
        Some(u) => u == b"default" || u == p.name.as_bytes(),
    }
}

/// Authenticate `token` (as `user`, if given) and remember who it is.
pub async fn login(
    tokens: Option<&crate::auth::Tokens>,
    login: &mut Login,
    user: Option<&[u8]>,
    token: &[u8],
) -> Result<(), Frame> {
    let Some(tokens) = tokens else {
        return Err(Frame::err(AUTH_NOT_CONFIGURED));
    };
    let token = std::str::from_utf8(token).map_err(|_| Frame::err(WRONGPASS))?;
    match tokens.authenticate(token).await {
        Some(p) if user_matches(user, &p) => {
            login.principal = Some(p);
            Ok(())
        }
        _ => Err(Frame::err(WRONGPASS)),
    }
}

/// `AUTH <token>` / `AUTH <user> <token>`.
pub async fn auth(tokens: Option<&crate::auth::Tokens>, l: &mut Login, args: &[Vec<u8>]) -> Frame {
    let r = match args {
        [_, token] => login(tokens, l, None, token).await,
        [_, user, token] => login(tokens, l, Some(user), token).await,
        _ => return Frame::err(super::cmd::wrong_args("auth")),
    };
    r.map_or_else(|e| e, |()| Frame::ok())
}

/// The `AUTH user token` option of a HELLO, if it has one.
pub fn hello_auth(args: &[Vec<u8>]) -> Option<(&[u8], &[u8])> {
    let at = args
        .iter()
        .skip(2)
        .position(|a| a.eq_ignore_ascii_case(b"auth"))?
        + 2;
    Some((args.get(at + 1)?, args.get(at + 2)?))
}

/// Whether the connection may run `args` (`name` is its lowercase name):
/// Err is the refusal to send instead. `tokens_on`: `auth.enabled`.
pub fn check(tokens_on: bool, login: &Login, name: &str, args: &[Vec<u8>]) -> Result<(), Frame> {
    if !tokens_on {
        return Ok(());
    }
    let Some(p) = &login.principal else {
        return match name {
            "hello" if hello_auth(args).is_none() => Err(Frame::err(NOAUTH_HELLO)),
            n if open_before_auth(n) => Ok(()),
            _ => Err(Frame::err(NOAUTH)),
        };
    };
    for need in needs(name, args) {
        if let Err(d) = p.allows(&need) {
            let msg = match need {
                Need::Key(..) | Need::AnyKey(_) if p.role >= role_of(&need) => {
                    "NOPERM this user has no permissions to access one of the keys used as arguments"
                        .to_string()
                }
                _ => format!("NOPERM this user has no permissions to run the '{name}' command"),
            };
            tracing::debug!(token = %p.name, command = name, why = %d.0, "Redis command refused");
            return Err(Frame::err(msg));
        }
    }
    Ok(())
}

fn role_of(need: &Need) -> Role {
    match need {
        Need::Open => Role::Read,
        Need::Role(r) | Need::Key(r, _) | Need::Prefix(r, _) | Need::AnyKey(r) => *r,
    }
}

/// What running `args` needs: one entry per key it names, or one for the
/// command.
fn needs(name: &str, args: &[Vec<u8>]) -> Vec<Need> {
    let Some(&(_, _, flags, first, last, step)) = COMMANDS.iter().find(|c| c.0 == name) else {
        // Unknown: answered with an error, needs only a valid token.
        return vec![Need::Role(Role::Read)];
    };
    let role = if flags.contains(&"write") {
        Role::Write
    } else {
        Role::Read
    };
    match name {
        "config" => return vec![Need::Role(Role::Admin)],
        "client" => {
            let sub = args.get(1).map(|a| a.to_ascii_lowercase());
            return match sub.as_deref() {
                Some(b"list" | b"kill" | b"info" | b"pause" | b"unpause") => {
                    vec![Need::Role(Role::Admin)]
                }
                _ => vec![Need::Role(Role::Read)],
            };
        }
        // The whole key space.
        "keys" | "scan" | "randomkey" | "flushall" | "flushdb" => {
            return vec![Need::AnyKey(role)];
        }
        _ => {}
    }
    if first <= 0 {
        return vec![Need::Role(role)];
    }
    let (first, step) = (first as usize, step.max(1) as usize);
    let end = if last < 0 {
        args.len().saturating_sub((-last - 1) as usize)
    } else {
        (last as usize + 1).min(args.len())
    };
    let keys: Vec<Need> = (first..end)
        .step_by(step)
        .filter_map(|i| args.get(i))
        .map(|k| Need::Key(role, k.clone()))
        .collect();
    if keys.is_empty() {
        vec![Need::Role(role)]
    } else {
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|a| a.as_bytes().to_vec()).collect()
    }

    fn who(role: Role, prefix: Option<&str>) -> Login {
        Login {
            principal: Some(Principal {
                name: "t".into(),
                role,
                prefix: prefix.map(str::to_string),
            }),
        }
    }

    fn run(l: &Login, cmd: &str) -> Result<(), String> {
        let a = args(cmd);
        let name = String::from_utf8_lossy(&a[0]).to_ascii_lowercase();
        check(true, l, &name, &a).map_err(|f| match f {
            Frame::Error(e) => e,
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn before_auth_only_auth_hello_auth_and_quit() {
        let none = Login::default();
        assert_eq!(run(&none, "GET a").unwrap_err(), NOAUTH);
        assert_eq!(run(&none, "PING").unwrap_err(), NOAUTH);
        assert_eq!(run(&none, "HELLO 3").unwrap_err(), NOAUTH_HELLO);
        run(&none, "HELLO 3 AUTH default tok").unwrap();
        run(&none, "AUTH tok").unwrap();
        run(&none, "QUIT").unwrap();
        // Without tokens configured, everything is open.
        check(false, &none, "get", &args("GET a")).unwrap();
    }

    #[test]
    fn roles_and_every_key_are_checked() {
        let read = who(Role::Read, None);
        run(&read, "GET a").unwrap();
        run(&read, "MGET a b").unwrap();
        run(&read, "PING").unwrap();
        let e = run(&read, "SET a 1").unwrap_err();
        assert_eq!(
            e,
            "NOPERM this user has no permissions to run the 'set' command"
        );
        assert!(run(&read, "DEL a").is_err());
        assert!(run(&read, "CONFIG GET maxmemory").is_err());
        assert!(run(&who(Role::Write, None), "CONFIG GET maxmemory").is_err());
        run(&who(Role::Admin, None), "CONFIG GET maxmemory").unwrap();

        let tenant = who(Role::Write, Some("a/"));
        run(&tenant, "SET a/x 1").unwrap();
        run(&tenant, "MSET a/x 1 a/y 2").unwrap();
        let e = run(&tenant, "MSET a/x 1 b/y 2").unwrap_err();
        assert!(e.starts_with("NOPERM") && e.contains("keys"), "{e}");
        // The value of MSET is not a key: "b/v" as a value is fine.
        run(&tenant, "MSET a/x b/v").unwrap();
        assert!(run(&tenant, "DEL a/x b/x").is_err());
        assert!(run(&tenant, "MGET a/x b/x").is_err());
        assert!(run(&tenant, "KEYS *").is_err());
        assert!(run(&tenant, "SCAN 0").is_err());
        assert!(run(&tenant, "FLUSHALL").is_err());
        run(&tenant, "WATCH a/x").unwrap();
        assert!(run(&tenant, "WATCH b/x").is_err());
    }

    #[test]
    fn hello_auth_option_is_found() {
        let a = args("HELLO 3 SETNAME x AUTH u p");
        assert_eq!(hello_auth(&a), Some((&b"u"[..], &b"p"[..])));
        assert_eq!(hello_auth(&args("HELLO 3 AUTH u")), None);
        assert_eq!(hello_auth(&args("HELLO")), None);
    }
}
