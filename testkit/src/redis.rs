//! A minimal RESP2 client for tests (raw commands, pipelines, exact reply
//! comparison), and the Redis tools the tests drive (`redis-cli`,
//! `redis-benchmark`, `redis-server`).
//!
//! Every read is bounded in time ([`REPLY_TIMEOUT`]); a malformed reply is
//! a panic naming what was read.

use std::time::Duration;

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

    /// Read one reply.
    pub async fn read(&mut self) -> Value {
        tokio::time::timeout(REPLY_TIMEOUT, read_value(&mut self.rd))
            .await
            .expect("a reply within the timeout")
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

async fn line(rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    let mut l = Vec::new();
    rd.read_until(b'\n', &mut l).await.expect("read");
    assert!(
        l.ends_with(b"\r\n"),
        "truncated reply line {:?}",
        String::from_utf8_lossy(&l)
    );
    l.truncate(l.len() - 2);
    String::from_utf8(l).expect("utf-8 reply line")
}

fn read_value(
    rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::pin::Pin<Box<dyn Future<Output = Value> + Send + '_>> {
    Box::pin(async move {
        let l = line(rd).await;
        let (tag, rest) = l.split_at(1);
        match tag {
            "+" => Value::Simple(rest.into()),
            "-" => Value::Error(rest.into()),
            ":" => Value::Int(rest.parse().expect("integer reply")),
            "$" if rest == "-1" => Value::Nil,
            "$" => {
                let n: usize = rest.parse().expect("bulk length");
                let mut b = vec![0; n + 2];
                rd.read_exact(&mut b).await.expect("bulk body");
                b.truncate(n);
                Value::Bulk(b)
            }
            // RESP3 (after HELLO 3): null, map (as a flat array).
            "_" => Value::Nil,
            "%" => {
                let n: usize = rest.parse().expect("map length");
                let mut items = Vec::with_capacity(2 * n);
                for _ in 0..2 * n {
                    items.push(read_value(rd).await);
                }
                Value::Array(items)
            }
            "*" if rest == "-1" => Value::NilArray,
            "*" => {
                let n: usize = rest.parse().expect("array length");
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(read_value(rd).await);
                }
                Value::Array(items)
            }
            _ => panic!("unexpected reply line {l:?}"),
        }
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
