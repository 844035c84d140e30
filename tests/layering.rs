//! The dependency rules of src/lib.rs and docs/ARCHITECTURE.md, checked
//! against the code: every `crate::<module>` reference in a module's files
//! must name a module that module may use. A new top-level module must be
//! added to [`RULES`] (the test fails until it is).

use std::collections::BTreeMap;
use std::path::Path;

/// module → the crate modules it may use. Leaves first.
const RULES: &[(&str, &[&str])] = &[
    ("id", &[]),
    ("wire", &[]),
    ("net", &[]),
    ("config", &[]),
    ("auth", &[]),
    ("error", &["id", "wire"]),
    ("telemetry", &["config"]),
    ("kv", &[]),
    ("client", &["wire", "net"]),
    ("raft", &["kv", "id", "net", "wire"]),
    (
        "cluster",
        &["raft", "kv", "id", "error", "net", "config", "wire"],
    ),
    (
        "api",
        &["cluster", "kv", "id", "error", "net", "wire", "auth"],
    ),
    (
        "resp",
        &[
            "cluster", "kv", "wire", "error", "id", "net", "config", "auth",
        ],
    ),
    (
        "node",
        &[
            "api", "resp", "cluster", "raft", "kv", "config", "error", "id", "net", "wire", "auth",
        ],
    ),
];

/// The top-level module a file under src/ belongs to (None: lib.rs, the
/// binary).
fn module_of(rel: &Path) -> Option<String> {
    let mut parts = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string());
    let first = parts.next()?;
    match first.as_str() {
        "lib.rs" | "bin" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// Every `crate::name` in `text` (comments included: a doc link to a
/// module above is a dependency of the reader's mind too).
fn crate_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn imports_follow_the_stated_direction() {
    let rules: BTreeMap<&str, &[&str]> = RULES.iter().copied().collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut violations = Vec::new();
    for path in all {
        let rel = path.strip_prefix(&src).unwrap();
        let Some(module) = module_of(rel) else {
            continue;
        };
        let Some(allowed) = rules.get(module.as_str()) else {
            violations.push(format!(
                "{}: module {module} has no rule in RULES",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        for r in crate_refs(&text) {
            if r != module && rules.contains_key(r.as_str()) && !allowed.contains(&r.as_str()) {
                violations.push(format!("{}: {module} uses crate::{r}", rel.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the stated direction:\n{}",
        violations.join("\n")
    );
}

/// The modules a module's doc names on its `//! Uses:` line (up to `Used
/// by:` or the end of the paragraph), in backticks.
fn stated_uses(doc: &str) -> Option<Vec<String>> {
    let start = doc.find("//! Uses:")?;
    let mut text = String::new();
    for line in doc[start..].lines() {
        let Some(l) = line.strip_prefix("//!") else {
            break;
        };
        if l.trim().is_empty() {
            break;
        }
        text.push_str(l);
        text.push(' ');
    }
    let text = text.split("Used by:").next().unwrap_or("");
    Some(
        text.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

#[test]
fn every_module_doc_states_its_rule() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (module, allowed) in RULES {
        let file = [
            src.join(format!("{module}.rs")),
            src.join(module).join("mod.rs"),
        ]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no file for module {module}"));
        let doc = std::fs::read_to_string(&file).unwrap();
        let Some(mut stated) = stated_uses(&doc) else {
            wrong.push(format!("{}: no `//! Uses:` line", file.display()));
            continue;
        };
        stated.retain(|m| RULES.iter().any(|(r, _)| r == m));
        stated.sort();
        let mut rule: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        rule.sort();
        if stated != rule {
            wrong.push(format!(
                "{}: doc says it uses {stated:?}, RULES say {rule:?}",
                file.display()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "module docs against RULES:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_references() {
    assert_eq!(
        crate_refs("use crate::kv::Cache; x = crate::wire::Code::A;"),
        ["kv", "wire"]
    );
    assert_eq!(
        module_of(Path::new("api/seed/mod.rs")).as_deref(),
        Some("api")
    );
    assert_eq!(module_of(Path::new("wire.rs")).as_deref(), Some("wire"));
    assert_eq!(module_of(Path::new("bin/dcache/main.rs")), None);
}
