//! An incremental, bounded RESP2 request parser: multibulk (`*N\r\n$L\r\n
//! ...`) and inline (`SET k v\r\n`, as telnet sends) commands.
//!
//! Invariants:
//! - [`parse`] never panics and never consumes a partial command: it
//!   returns `Ok(None)` until a whole command is buffered, then removes
//!   exactly that command from the buffer.
//! - Bounded: a bulk string longer than [`Limits::max_bulk`], an array
//!   longer than [`Limits::max_args`], an inline command (or a `*`/`$`
//!   header line) longer than [`MAX_INLINE`] are protocol errors, detected
//!   as soon as the header (or that many bytes without a line end) is
//!   buffered. So the buffer never holds more than one command's declared,
//!   bounded size plus one read.
//! - A protocol error is final: the connection answers
//!   `-ERR Protocol error: ...` and closes, as Redis does.

use bytes::Buf;
use bytes::BytesMut;

/// Longest inline command, and longest `*`/`$` header line (Redis: 64 KiB).
pub const MAX_INLINE: usize = 64 * 1024;
/// Default most arguments in one command.
pub const MAX_ARGS: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest bulk string (the value cap).
    pub max_bulk: usize,
    /// Most arguments in one command.
    pub max_args: usize,
}

/// A protocol error; the text follows `-ERR Protocol error: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl ProtocolError {
    fn new(s: impl Into<String>) -> Self {
        ProtocolError(s.into())
    }
}

/// Take one whole command off the front of `buf`. `Ok(None)`: more bytes
/// are needed (nothing consumed). An empty command (a blank inline line,
/// `*0`, `*-1`) yields `Some(vec![])`, which callers skip.
pub fn parse(buf: &mut BytesMut, lim: Limits) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'*' {
        multibulk(buf, lim)
    } else {
        inline(buf)
    }
}

/// Position of the `\r\n` ending the line that starts at `from`, if
/// buffered.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

/// Parse a header number as Redis does (string2ll rules).
fn number(s: &[u8]) -> Option<i64> {
    crate::kv::redis::parse_i64(s)
}

fn multibulk(buf: &mut BytesMut, lim: Limits) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
    let Some(end) = line_end(buf, 0) else {
        if buf.len() > MAX_INLINE {
            return Err(ProtocolError::new("too big mbulk count string"));
        }
        return Ok(None);
    };
    let n = number(&buf[1..end]).ok_or_else(|| ProtocolError::new("invalid multibulk length"))?;
    if n > lim.max_args as i64 {
        return Err(ProtocolError::new("invalid multibulk length"));
    }
    if n <= 0 {
        buf.advance(end + 2);
        return Ok(Some(Vec::new()));
    }
    let mut pos = end + 2;
    let mut spans = Vec::with_capacity((n as usize).min(1024));
    for _ in 0..n {
        if pos >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            let got = (buf[pos] as char).escape_default().to_string();
            return Err(ProtocolError(format!("expected '$', got '{got}'")));
        }
        let Some(end) = line_end(buf, pos) else {
            if buf.len() - pos > MAX_INLINE {
                return Err(ProtocolError::new("too big bulk count string"));
            }
            return Ok(None);
        };
        let len = number(&buf[pos + 1..end])
            .filter(|l| *l >= 0 && *l as u64 <= lim.max_bulk as u64)
            .ok_or_else(|| ProtocolError::new("invalid bulk length"))? as usize;
        let start = end + 2;
        if buf.len() < start + len + 2 {
            // Make room for the rest of the argument up front: one
            // allocation rather than doubling.
            buf.reserve(start + len + 2 - buf.len());
            return Ok(None);
        }
        if &buf[start + len..start + len + 2] != b"\r\n" {
            return Err(ProtocolError::new("invalid bulk length"));
        }
        spans.push((start, len));
        pos = start + len + 2;
    }
    let args = spans.iter().map(|&(s, l)| buf[s..s + l].to_vec()).collect();
    buf.advance(pos);
    Ok(Some(args))
}

fn inline(buf: &mut BytesMut) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_INLINE {
            return Err(ProtocolError::new("too big inline request"));
        }
        return Ok(None);
    };
    if nl > MAX_INLINE {
        return Err(ProtocolError::new("too big inline request"));
    }
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    let args =
        split_args(line).ok_or_else(|| ProtocolError::new("unbalanced quotes in request"))?;
    buf.advance(nl + 1);
    Ok(Some(args))
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Split an inline line as Redis's `sdssplitargs`: blanks separate words;
/// `"..."` with `\n \r \t \b \a \\ \" \xHH` escapes; `'...'` with `\'`; a
/// closing quote must be followed by a blank or the end. `None`: unbalanced
/// quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    let blank = |b: u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c);
    loop {
        while i < line.len() && blank(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let mut quote: Option<u8> = None;
        loop {
            match quote {
                Some(q) => {
                    let c = *line.get(i)?;
                    if c == q {
                        // A closing quote must end the argument.
                        if i + 1 < line.len() && !blank(line[i + 1]) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    let (byte, used) = if c == b'\\' {
                        escape(q, &line[i + 1..])
                    } else {
                        (c, 0)
                    };
                    cur.push(byte);
                    i += used;
                }
                None => match line.get(i) {
                    None => break,
                    Some(&c) if blank(c) => break,
                    Some(&c @ (b'"' | b'\'')) => quote = Some(c),
                    Some(&c) => cur.push(c),
                },
            }
            i += 1;
        }
        args.push(cur);
    }
}

/// What a backslash inside `quote` quotes stands for, given the bytes
/// after it: the byte and how many of those bytes it used. In double
/// quotes `\xHH` and `\n \r \t \b \a` (any other byte stands for
/// itself); in single quotes only `\'`. A backslash that escapes nothing is
/// itself.
fn escape(quote: u8, rest: &[u8]) -> (u8, usize) {
    match (quote, rest) {
        (b'"', [b'x', h, l, ..]) if hex(*h).is_some() && hex(*l).is_some() => {
            (hex(*h).unwrap() * 16 + hex(*l).unwrap(), 3)
        }
        (b'"', [c, ..]) => {
            let byte = match c {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 8,
                b'a' => 7,
                other => *other,
            };
            (byte, 1)
        }
        (b'\'', [b'\'', ..]) => (b'\'', 1),
        _ => (b'\\', 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: Limits = Limits {
        max_bulk: 1024,
        max_args: 64,
    };

    fn all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(cmd) = parse(&mut buf, LIM)? {
            out.push(cmd);
        }
        Ok(out)
    }

    #[test]
    fn inline_quotes_and_escapes() {
        let args = split_args(br#""a\n\q\x4" 'b\c' "\x4a" '\''"#).unwrap();
        assert_eq!(args, [&b"a\nqx4"[..], b"b\\c", b"J", b"'"]);
        assert_eq!(split_args(b"  "), Some(vec![]));
        for bad in [&b"\"abc"[..], b"'abc", b"\"a\"b", b"'a'b", b"\"a\\"] {
            assert_eq!(split_args(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn multibulk_and_inline() {
        let got =
            all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\nset a \"b c\\x41\" 'd\\'e'\r\n").unwrap();
        assert_eq!(got[0], vec![b"GET".to_vec(), b"k".to_vec()]);
        assert_eq!(got[1], vec![b"PING".to_vec()]);
        assert_eq!(
            got[2],
            vec![
                b"set".to_vec(),
                b"a".to_vec(),
                b"b cA".to_vec(),
                b"d'e".to_vec()
            ]
        );
        assert_eq!(all(b"\r\n*0\r\n").unwrap(), vec![Vec::<Vec<u8>>::new(); 2]);
    }

    #[test]
    fn errors_as_redis_words_them() {
        let e = |i: &[u8]| all(i).unwrap_err().0;
        assert_eq!(e(b"*x\r\n"), "invalid multibulk length");
        assert_eq!(e(b"*65\r\n"), "invalid multibulk length");
        assert_eq!(e(b"*1\r\n+a\r\n"), "expected '$', got '+'");
        assert_eq!(e(b"*1\r\n$2000\r\n"), "invalid bulk length");
        assert_eq!(e(b"*1\r\n$1\r\nab\r\n"), "invalid bulk length");
        assert_eq!(e(b"set a \"b\r\n"), "unbalanced quotes in request");
        assert_eq!(e(&vec![b'a'; MAX_INLINE + 1]), "too big inline request");
    }
}
