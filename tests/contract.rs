//! README's "Errors" table is the client contract: it must list exactly the
//! codes of `dcache::wire::Code`, with their statuses and classes.

use dcache::wire::Code;

fn readme_rows() -> Vec<(String, u16, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("### Errors")
        .nth(1)
        .expect("README has an Errors section");
    section
        .lines()
        .skip_while(|l| !l.starts_with("| Code |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let code = cells[1].trim_matches('`').to_string();
            let status = cells[2]
                .parse()
                .unwrap_or_else(|_| panic!("bad status in {l}"));
            (code, status, cells[3].to_string())
        })
        .collect()
}

#[test]
fn readme_error_table_matches_the_code_enum() {
    let rows = readme_rows();
    assert!(!rows.is_empty(), "no rows found in README's Errors table");
    for code in Code::ALL {
        let row = rows
            .iter()
            .find(|(c, _, _)| c == code.as_str())
            .unwrap_or_else(|| panic!("README's Errors table has no row for `{code}`"));
        assert_eq!(row.1, code.status(), "status of `{code}` in README");
        assert_eq!(
            row.2,
            code.class().describe(),
            "class of `{code}` in README"
        );
    }
    for (c, _, _) in &rows {
        assert!(
            c.parse::<Code>().is_ok(),
            "README lists `{c}`, which the server never sends"
        );
    }
    assert_eq!(rows.len(), Code::ALL.len(), "duplicate rows in README");
}
