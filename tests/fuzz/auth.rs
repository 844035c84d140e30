//! The tokens file, route needs and presented bearer tokens.

use super::config_file::mutated;
use super::*;

/// A tokens file made of valid lines (one per role) to mutate.
fn tokens_file_text() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        use dcache::auth::Role;
        let mut lines = vec!["# tokens".to_string()];
        for (name, role, prefix) in [
            ("r", Role::Read, None),
            ("w", Role::Write, Some("t/")),
            ("a", Role::Admin, None),
        ] {
            lines.push(dcache::auth::new_token(name, role, prefix).unwrap().1);
        }
        lines.join("\n") + "\n"
    })
}

proptest! {
    #![proptest_config(cfg(300))]

    /// Any edit of a tokens file parses or fails with a line number, never
    /// panics, and an error never quotes a hash.
    #[test]
    fn tokens_file_parse_never_panics(text in mutated(tokens_file_text())) {
        match dcache::auth::parse(&text) {
            Ok(lines) => {
                for l in lines {
                    prop_assert!(dcache::auth::valid_name(&l.name));
                }
            }
            Err(e) => {
                prop_assert!(e.line >= 1);
                prop_assert!(!e.to_string().contains("$argon2"), "{e}");
            }
        }
    }

    /// Any request line maps to a need without panicking; routes that
    /// change membership always need admin.
    #[test]
    fn route_needs_never_panic(path in "/[ -~]{0,40}", probes in any::<bool>(), m in 0usize..5) {
        use axum::http::Method;
        let method = [Method::GET, Method::HEAD, Method::PUT, Method::POST, Method::DELETE][m].clone();
        if let Ok(uri) = path.parse::<axum::http::Uri>() {
            let need = dcache::api::guard::need(&method, &uri, probes);
            if dcache::api::guard::is_membership(&method, uri.path()) {
                prop_assert_eq!(need, dcache::auth::Need::Role(dcache::auth::Role::Admin));
            }
        }
    }
}

/// Presented tokens that are not valid are refused, whatever their shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bearer_tokens_are_refused() {
    let tokens = dcache::auth::Tokens::new(dcache::auth::parse(tokens_file_text()).unwrap());
    let mut runner = TestRunner::new(cfg(100));
    let strategy = prop_oneof![
        any::<String>(),
        "dct\\.[rwa]\\.[A-Za-z0-9_-]{0,50}",
        "dct\\.[a-z]{0,3}\\.[ -~]{0,10}",
    ];
    use proptest::strategy::ValueTree;
    let mut cases: Vec<String> = Vec::new();
    for _ in 0..100 {
        cases.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    for t in cases {
        assert!(tokens.authenticate(&t).await.is_none(), "{t:?} accepted");
    }
}
