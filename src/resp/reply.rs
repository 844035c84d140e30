//! Reply frames and their RESP2 / RESP3 encodings (the protocol a
//! connection speaks is chosen by `HELLO 2|3`; RESP2 until then).
//!
//! Invariant: every frame has an encoding in both protocols: RESP3-only
//! types fall back as Redis does (a null is `$-1` or `*-1`, a map is a
//! flat array, a double is a bulk string).

use bytes::BufMut;
use bytes::BytesMut;

use crate::kv::redis::Reply;

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Simple(String),
    /// The text after `-` (it starts with the error code: `ERR ...`).
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// A null bulk string (RESP2 `$-1`).
    Nil,
    /// A null array (RESP2 `*-1`): EXEC that did not run.
    NilArray,
    Array(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
}

impl Frame {
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    pub fn err(s: impl Into<String>) -> Frame {
        Frame::Error(s.into())
    }

    pub fn bulk(s: impl Into<Vec<u8>>) -> Frame {
        Frame::Bulk(s.into())
    }

    /// A verbatim-free text bulk (INFO, CLIENT INFO).
    pub fn text(s: impl AsRef<str>) -> Frame {
        Frame::Bulk(s.as_ref().as_bytes().to_vec())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// Append the encoding in protocol `proto` (2 or 3) to `out`.
    pub fn encode(&self, proto: u8, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => line(out, b'+', s.as_bytes()),
            Frame::Error(s) => line(out, b'-', s.as_bytes()),
            Frame::Int(n) => line(out, b':', n.to_string().as_bytes()),
            Frame::Bulk(b) => {
                line(out, b'$', b.len().to_string().as_bytes());
                out.put_slice(b);
                out.put_slice(b"\r\n");
            }
            Frame::Nil if proto >= 3 => out.put_slice(b"_\r\n"),
            Frame::Nil => out.put_slice(b"$-1\r\n"),
            Frame::NilArray if proto >= 3 => out.put_slice(b"_\r\n"),
            Frame::NilArray => out.put_slice(b"*-1\r\n"),
            Frame::Array(items) => {
                line(out, b'*', items.len().to_string().as_bytes());
                for i in items {
                    i.encode(proto, out);
                }
            }
            Frame::Map(pairs) => {
                if proto >= 3 {
                    line(out, b'%', pairs.len().to_string().as_bytes());
                } else {
                    line(out, b'*', (pairs.len() * 2).to_string().as_bytes());
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
        }
    }
}

fn line(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    // Simple strings and errors must not break the line.
    out.extend(
        body.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.put_slice(b"\r\n");
}

impl From<Reply> for Frame {
    fn from(r: Reply) -> Frame {
        match r {
            Reply::Ok => Frame::ok(),
            Reply::Status(s) => Frame::Simple(s),
            Reply::Nil => Frame::Nil,
            Reply::Int(n) => Frame::Int(n),
            Reply::Bulk(b) => Frame::Bulk(b),
            Reply::Array(items) => Frame::Array(items.into_iter().map(Frame::from).collect()),
            Reply::Error(e) => Frame::Error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: &Frame, proto: u8) -> String {
        let mut b = BytesMut::new();
        f.encode(proto, &mut b);
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn both_protocols() {
        assert_eq!(enc(&Frame::ok(), 2), "+OK\r\n");
        assert_eq!(enc(&Frame::Nil, 2), "$-1\r\n");
        assert_eq!(enc(&Frame::Nil, 3), "_\r\n");
        assert_eq!(enc(&Frame::NilArray, 2), "*-1\r\n");
        assert_eq!(enc(&Frame::err("ERR x\r\ny"), 2), "-ERR x  y\r\n");
        let m = Frame::Map(vec![(Frame::bulk("a"), Frame::Int(1))]);
        assert_eq!(enc(&m, 2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&m, 3), "%1\r\n$1\r\na\r\n:1\r\n");
    }
}
