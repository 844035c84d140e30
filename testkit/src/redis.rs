//! A minimal RESP2 client for tests (raw commands, pipelines, exact reply
//! comparison), and the Redis tools the tests drive (`redis-cli`,
//! `redis-benchmark`, `redis-server`).
//!
//! Every read is bounded in time ([`REPLY_TIMEOUT`]) and in size
//! ([`Bounds`]); [`read_value`] is the one reply parser (fallible: the
//! fault harness uses it too), [`Client`] panics on a malformed reply,
//! naming what was read.

use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::AsyncBufRead;
use tokio::io::AsyncBufReadExt;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::io::BufReader;
use tokio::net::TcpStream;

/// How long one reply may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// The Debian packages of the Redis tools (for `tools::require`).
pub const REDIS_PACKAGES: &str = "apt-get install redis-tools redis-server";

/// A RESP2 reply, compared exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Value>),
    NilArray,
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Simple(s) => write!(f, "+{s}"),
            Value::Error(s) => write!(f, "-{s}"),
            Value::Int(n) => write!(f, ":{n}"),
            Value::Bulk(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Value::Nil => write!(f, "(nil)"),
            Value::NilArray => write!(f, "(nil array)"),
            Value::Array(items) => {
                write!(f, "[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                write!(f, "]")
            }
        }
    }
}

impl Value {
    pub fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    pub fn ok() -> Value {
        Value::Simple("OK".into())
    }
}

/// How far a reply may go: a length or nesting beyond these is an error,
/// not an allocation.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Longest reply line or bulk string, in bytes.
    pub bulk: usize,
    /// Most elements of one array (or pairs of one map).
    pub items: usize,
    /// Deepest nesting of arrays.
    pub depth: usize,
}

impl Bounds {
    /// The tests' bounds: Redis's own bulk limit, wide arrays (KEYS,
    /// COMMAND), COMMAND's nesting with room.
    pub const TESTS: Bounds = Bounds {
        bulk: 512 << 20,
        items: 1 << 20,
        depth: 8,
    };
}

/// One connection.
pub struct Client {
    rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
    wr: tokio::net::tcp::OwnedWriteHalf,
}

/// A command in RESP2 multibulk form.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

impl Client {
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> Client {
        let s = TcpStream::connect(addr)
            .await
            .expect("connect to redis port");
        s.set_nodelay(true).ok();
        let (rd, wr) = s.into_split();
        Client {
            rd: BufReader::new(rd),
            wr,
        }
    }

    /// Send raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.expect("write");
    }

    /// Send one command and read its reply.
    pub async fn cmd(&mut self, args: &[&str]) -> Value {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.cmd_bytes(&a).await
    }

    pub async fn cmd_bytes(&mut self, args: &[&[u8]]) -> Value {
        self.send_raw(&encode(args)).await;
        self.read().await
    }

    /// Read one reply (a test's reply must come and be well formed: a
    /// panic otherwise).
    pub async fn read(&mut self) -> Value {
        tokio::time::timeout(REPLY_TIMEOUT, read_value(&mut self.rd, Bounds::TESTS))
            .await
            .expect("a reply within the timeout")
            .expect("a well-formed reply")
    }

    /// Whether the server closed the connection (EOF within the timeout).
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(REPLY_TIMEOUT, self.rd.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

async fn line<R: AsyncBufRead + Unpin + Send>(rd: &mut R, max: usize) -> io::Result<String> {
    let mut l = Vec::new();
    (&mut *rd)
        .take(max as u64 + 2)
        .read_until(b'\n', &mut l)
        .await?;
    if !l.ends_with(b"\r\n") {
        return Err(bad(format!(
            "reply line cut or too long: {:?}",
            String::from_utf8_lossy(&l)
        )));
    }
    l.truncate(l.len() - 2);
    String::from_utf8(l).map_err(|e| bad(format!("reply line not UTF-8: {e}")))
}

/// Read one reply (RESP2, and RESP3's null and map after `HELLO 3`). A
/// malformed or out-of-bounds reply, or a cut connection, is an error:
/// the one reply parser of the tests (which panic on it, [`Client::read`])
/// and of the fault harness (which records the command's outcome as
/// unknown).
pub fn read_value<R: AsyncBufRead + Unpin + Send>(
    rd: &mut R,
    bounds: Bounds,
) -> Pin<Box<dyn Future<Output = io::Result<Value>> + Send + '_>> {
    read_nested(rd, bounds, 0)
}

fn read_nested<R: AsyncBufRead + Unpin + Send>(
    rd: &mut R,
    bounds: Bounds,
    depth: usize,
) -> Pin<Box<dyn Future<Output = io::Result<Value>> + Send + '_>> {
    Box::pin(async move {
        if depth > bounds.depth {
            return Err(bad(format!("reply nested deeper than {}", bounds.depth)));
        }
        let l = line(rd, bounds.bulk).await?;
        let (tag, rest) = l.split_at(l.len().min(1));
        let len = |max: usize| -> io::Result<Option<usize>> {
            match rest.parse::<i64>() {
                Ok(-1) => Ok(None),
                Ok(n) if n >= 0 && n as u64 <= max as u64 => Ok(Some(n as usize)),
                _ => Err(bad(format!("bad length in {l:?}"))),
            }
        };
        let items = async |rd: &mut R, n: usize| -> io::Result<Vec<Value>> {
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_nested(rd, bounds, depth + 1).await?);
            }
            Ok(items)
        };
        Ok(match tag {
            "+" => Value::Simple(rest.into()),
            "-" => Value::Error(rest.into()),
            ":" => Value::Int(
                rest.parse()
                    .map_err(|_| bad(format!("bad integer reply {l:?}")))?,
            ),
            "$" => match len(bounds.bulk)? {
                None => Value::Nil,
                Some(n) => {
                    let mut b = vec![0; n + 2];
                    rd.read_exact(&mut b).await?;
                    if !b.ends_with(b"\r\n") {
                        return Err(bad("bulk string not ended by CRLF".into()));
                    }
                    b.truncate(n);
                    Value::Bulk(b)
                }
            },
            // RESP3 (after HELLO 3): null, map (as a flat array).
            "_" => Value::Nil,
            "%" => match len(bounds.items)? {
                None => return Err(bad(format!("bad map length in {l:?}"))),
                Some(n) => Value::Array(items(rd, 2 * n).await?),
            },
            "*" => match len(bounds.items)? {
                None => Value::NilArray,
                Some(n) => Value::Array(items(rd, n).await?),
            },
            _ => return Err(bad(format!("unexpected reply line {l:?}"))),
        })
    })
}

/// `redis-cli -h 127.0.0.1 -p port args...`: (success, stdout).
pub fn cli(port: u16, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim_end().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8], bounds: Bounds) -> io::Result<Value> {
        read_value(&mut BufReader::new(bytes), bounds).await
    }

    #[tokio::test]
    async fn replies_parse_and_malformed_ones_are_errors() {
        let ok = parse(b"*3\r\n+OK\r\n$-1\r\n*1\r\n$2\r\nab\r\n", Bounds::TESTS).await;
        assert_eq!(
            ok.unwrap(),
            Value::Array(vec![
                Value::ok(),
                Value::Nil,
                Value::Array(vec![Value::bulk("ab")])
            ])
        );
        assert_eq!(
            parse(b"%1\r\n+a\r\n:1\r\n", Bounds::TESTS).await.unwrap(),
            Value::Array(vec![Value::Simple("a".into()), Value::Int(1)])
        );
        let tight = Bounds {
            bulk: 4,
            items: 2,
            depth: 1,
        };
        for bad in [
            &b"?x\r\n"[..],
            b"$5\r\nhello\r\n",
            b"*3\r\n:1\r\n:2\r\n:3\r\n",
            b"*1\r\n*1\r\n*1\r\n:1\r\n",
            b"$2\r\nabcd",
            b":1",
            b":x\r\n",
        ] {
            assert!(
                parse(bad, tight).await.is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
