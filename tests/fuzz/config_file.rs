//! The YAML config: the example parses, mutations are errors, not crashes.

use super::*;

const EXAMPLE_YAML: &str = include_str!("../../configs/config.example.yaml");

fn check_config(yaml: &str) -> Result<(), TestCaseError> {
    match Config::from_yaml_str(yaml, "fuzz.yaml") {
        Ok(c) => prop_assert!(c.validate().is_ok()),
        Err(e) => prop_assert!(!e.to_string().trim().is_empty(), "empty error for {yaml:?}"),
    }
    Ok(())
}

/// Edit `base` at char boundaries: delete, insert or replace short pieces.
pub(super) fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(String::new()),
        "[ :\\-\\[\\]{}#'\"\n\t|>&*!%@`,?0-9a-z]{1,4}",
        any::<String>(),
    ];
    proptest::collection::vec((any::<prop::sample::Index>(), 0usize..8, piece), 1..6).prop_map(
        move |edits| {
            let mut s: Vec<char> = base.chars().collect();
            for (at, del, ins) in edits {
                let i = at.index(s.len() + 1);
                let j = (i + del).min(s.len());
                s.splice(i..j, ins.chars());
            }
            s.into_iter().collect()
        },
    )
}

#[test]
fn config_example_parses() {
    Config::from_yaml_str(EXAMPLE_YAML, "config.example.yaml").expect("example config");
}

#[test]
fn config_deeply_nested_yaml_is_an_error_not_a_crash() {
    for open in ["[", "{a: ", "- "] {
        let yaml = open.repeat(50_000);
        let e = Config::from_yaml_str(&yaml, "deep.yaml").unwrap_err();
        assert!(!e.to_string().is_empty());
    }
}

proptest! {
    #![proptest_config(cfg(400))]

    #[test]
    fn config_parse_of_arbitrary_text_never_panics(s in prop_oneof![
        any::<String>(),
        "([a-z_]{1,10}:( [a-z0-9_.:\\[\\]]{0,12})?\n(  [a-z_]{1,20}: [^\n]{0,12}\n){0,3}){0,4}",
    ]) {
        check_config(&s)?;
    }

    #[test]
    fn config_parse_of_mutated_example_never_panics(s in mutated(EXAMPLE_YAML)) {
        check_config(&s)?;
    }
}
