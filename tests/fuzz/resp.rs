//! The RESP request parser (`dcache::resp::parse`): any bytes give an
//! error or commands, never a panic, and the buffer only shrinks; valid
//! commands split at every byte parse as they do whole.

use bytes::BytesMut;
use dcache::resp::parse::Limits;
use dcache::resp::parse::parse;
use proptest::prelude::*;

use super::cfg;

const LIM: Limits = Limits {
    max_bulk: 1024,
    max_args: 64,
};

/// A command as a client sends it (testkit's one RESP encoder).
fn encode(cmd: &[Vec<u8>]) -> Vec<u8> {
    let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
    dcache_testkit::redis::encode(&args)
}

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn garbage_never_panics(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut buf = BytesMut::from(&input[..]);
        for _ in 0..input.len() + 1 {
            let before = buf.len();
            match parse(&mut buf, LIM) {
                Ok(Some(_)) => prop_assert!(buf.len() < before),
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn split_at_every_byte(cmds in proptest::collection::vec(
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6), 1..4)
    ) {
        let wire: Vec<u8> = cmds.iter().flat_map(|c| encode(c)).collect();
        for cut in 0..=wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(c) = parse(&mut buf, LIM).unwrap() {
                got.push(c);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(c) = parse(&mut buf, LIM).unwrap() {
                got.push(c);
            }
            prop_assert_eq!(&got, &cmds);
            prop_assert!(buf.is_empty());
        }
    }
}
