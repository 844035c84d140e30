use super::*;

fn tokens(specs: &[(&str, Role, Option<&str>)]) -> (Tokens, Vec<String>) {
    let mut lines = Vec::new();
    let mut toks = Vec::new();
    for (name, role, prefix) in specs {
        let (t, l) = new_token(name, *role, *prefix).unwrap();
        toks.push(t);
        lines.push(l);
    }
    (Tokens::new(parse(&lines.join("\n")).unwrap()), toks)
}

#[tokio::test]
async fn a_new_token_verifies_and_others_do_not() {
    let (ts, toks) = tokens(&[
        ("a", Role::Write, Some("tenant-a/")),
        ("b", Role::Read, None),
    ]);
    let p = ts.authenticate(&toks[0]).await.unwrap();
    assert_eq!(
        p,
        Principal {
            name: "a".into(),
            role: Role::Write,
            prefix: Some("tenant-a/".into())
        }
    );
    // Cached, and still right.
    assert_eq!(ts.authenticate(&toks[0]).await.unwrap(), p);
    assert_eq!(ts.authenticate(&toks[1]).await.unwrap().role, Role::Read);
    // b's secret under a's name, a tampered secret, junk.
    let b_secret = toks[1].rsplit('.').next().unwrap();
    assert!(
        ts.authenticate(&format!("dct.a.{b_secret}"))
            .await
            .is_none()
    );
    let mut bad = toks[0].clone();
    bad.pop();
    bad.push('x');
    assert!(ts.authenticate(&bad).await.is_none());
    assert!(ts.authenticate("dct.zz.abc").await.is_none());
    assert!(ts.authenticate("").await.is_none());
    assert!(!format!("{ts:?}").contains("argon2"));
}

#[test]
fn roles_and_prefixes() {
    let p = |role, prefix: Option<&str>| Principal {
        name: "t".into(),
        role,
        prefix: prefix.map(str::to_string),
    };
    let w = p(Role::Write, Some("a/"));
    assert!(w.allows(&Need::Key(Role::Write, b"a/x".to_vec())).is_ok());
    assert!(w.allows(&Need::Key(Role::Read, b"a/x".to_vec())).is_ok());
    assert!(w.allows(&Need::Key(Role::Write, b"b/x".to_vec())).is_err());
    assert!(
        w.allows(&Need::Prefix(Role::Read, b"a/sub".to_vec()))
            .is_ok()
    );
    assert!(w.allows(&Need::Prefix(Role::Read, b"".to_vec())).is_err());
    assert!(w.allows(&Need::AnyKey(Role::Write)).is_err());
    assert!(w.allows(&Need::Role(Role::Admin)).is_err());
    assert!(w.allows(&Need::Role(Role::Read)).is_ok());
    let r = p(Role::Read, None);
    assert!(r.allows(&Need::AnyKey(Role::Read)).is_ok());
    assert!(r.allows(&Need::Key(Role::Write, b"k".to_vec())).is_err());
    assert!(
        p(Role::Admin, None)
            .allows(&Need::Role(Role::Admin))
            .is_ok()
    );
}

#[test]
fn the_file_format() {
    let (_, line) = new_token("x", Role::Admin, None).unwrap();
    let text = format!("# tokens\n\n{line}  # the admin\n");
    let t = parse(&text).unwrap();
    assert_eq!(
        (t[0].name.as_str(), t[0].role, t[0].prefix.clone()),
        ("x", Role::Admin, None)
    );
    let err = |s: &str| parse(s).unwrap_err();
    assert_eq!(err("a read *").line, 1);
    assert!(err("a root * $argon2id$x").message.contains("role"));
    assert!(err("a read * plain").message.contains("argon2"));
    assert!(err(&format!("{line}\n{line}")).message.contains("twice"));
    assert!(
        !err("a read * $argon2id$v=19$nonsense")
            .message
            .contains("nonsense")
    );
    // A field that holds (part of) a hash is never quoted (found by
    // tests/fuzz/auth.rs: a mutation glued the hash onto the role).
    let glued = err("a read$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA * x");
    assert!(
        glued.message.contains("role") && !glued.message.contains("argon2"),
        "{glued}"
    );
    let glued = err("a$argon2id$v=19$secret read * x");
    assert!(
        glued.message.contains("name") && !glued.message.contains("secret"),
        "{glued}"
    );
    assert!(new_token("bad name", Role::Read, None).is_err());
    assert!(new_token("x", Role::Read, Some("*")).is_err());
}

#[tokio::test]
async fn reload_takes_the_file_as_it_is_now_and_keeps_it_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    let (ta, la) = new_token("a", Role::Write, None).unwrap();
    let (tb, lb) = new_token("b", Role::Read, None).unwrap();
    let (tc, lc) = new_token("c", Role::Admin, None).unwrap();
    std::fs::write(&file, format!("{la}\n{lb}\n")).unwrap();
    let ts = Tokens::load(&file).unwrap();
    assert!(ts.authenticate(&ta).await.is_some());
    assert!(ts.authenticate(&tb).await.is_some());
    assert!(ts.authenticate(&tc).await.is_none());

    // b revoked, c added.
    std::fs::write(&file, format!("# rotated\n{la}\n{lc}\n")).unwrap();
    assert_eq!(ts.reload(), Ok(2));
    assert!(ts.authenticate(&ta).await.is_some(), "a kept");
    assert!(ts.authenticate(&tb).await.is_none(), "b revoked");
    assert_eq!(ts.authenticate(&tc).await.unwrap().role, Role::Admin);

    // A file that does not parse changes nothing, and the error never
    // quotes a hash.
    std::fs::write(&file, format!("{la} extra\n")).unwrap();
    let e = ts.reload().unwrap_err();
    assert!(!e.contains("argon2"), "{e}");
    assert!(
        ts.authenticate(&tc).await.is_some(),
        "kept after a bad file"
    );
    std::fs::remove_file(&file).unwrap();
    assert!(ts.reload().is_err());
    assert_eq!(ts.len(), 2);
    // Tokens built in memory have no file to reload.
    assert!(Tokens::new(Vec::new()).reload().is_err());
}
