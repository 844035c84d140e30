//! Key and query decoding (`api::keys`) against a reference decoder.

use super::*;

/// Strict percent-encoding: everything but unreserved ASCII as %XX.
fn encode(s: &str, upper: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// Reference: every `%` is followed by two hex digits.
fn escapes_well_formed(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Reference decoder (lenient on UTF-8) for well-formed input.
fn reference_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Strings rich in `%` and hex digits, plus some multi-byte characters.
fn percentish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => Just("%".to_string()),
            3 => "[0-9a-fA-F]",
            2 => "[g-zG-Z/+ ?=&]",
            1 => "%[0-9a-fA-F]{2}",
            1 => "%[cCdDeEfF][0-9a-fA-F]%[89abAB][0-9a-fA-F]",
            1 => any::<char>().prop_map(|c| c.to_string()),
        ],
        0..24,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn decode_never_panics_and_matches_the_reference(s in prop_oneof![any::<String>(), percentish()]) {
        let r = keys::decode(&s, "key");
        if !escapes_well_formed(&s) {
            prop_assert!(r.is_err(), "malformed escape accepted: {s:?} -> {r:?}");
        } else {
            let want = String::from_utf8(reference_decode(&s));
            match (&r, want) {
                (Ok(got), Ok(want)) => prop_assert_eq!(got, &want),
                (Err(e), Err(_)) => prop_assert!(!e.to_string().is_empty()),
                (got, want) => prop_assert!(false, "{s:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn decode_inverts_strict_percent_encoding(s in any::<String>(), upper in any::<bool>()) {
        prop_assert_eq!(keys::decode(&encode(&s, upper), "key").unwrap(), s.clone());
        // Unreserved characters need no escape: decoding is the identity.
        let plain: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        prop_assert_eq!(keys::decode(&plain, "key").unwrap(), plain.clone());
    }

    #[test]
    fn malformed_escapes_are_rejected(
        pre in "[a-z0-9/]{0,8}",
        bad in prop_oneof![
            Just(String::new()),
            "[g-zG-Z_ /]",
            "[0-9a-fA-F]",
            "[0-9a-fA-F][g-zG-Z_ /%]",
            "[g-zG-Z_ /%][0-9a-fA-F]",
        ],
        post in "[a-z0-9/]{0,8}",
    ) {
        // `bad` at the end: a truncated escape; otherwise a non-hex digit.
        let s = if bad.len() < 2 { format!("{pre}%{bad}") } else { format!("{pre}%{bad}{post}") };
        prop_assert!(keys::decode(&s, "key").is_err(), "{s:?} accepted");
    }

    #[test]
    fn parse_query_never_panics(q in prop_oneof![any::<String>(), percentish(), "[a-z=&%+0-9]{0,40}"]) {
        match keys::parse_query(Some(&q)) {
            Ok(pairs) => {
                // A well-formed query yields at most one pair per `&` part.
                prop_assert!(pairs.len() <= q.split('&').count());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        prop_assert!(keys::parse_query(None).unwrap().is_empty());
    }

    #[test]
    fn validate_never_panics(s in any::<String>(), max in 0usize..64) {
        let r = keys::validate(&s, max);
        prop_assert_eq!(r.is_ok(), !s.is_empty() && s.len() <= max);
    }
}
