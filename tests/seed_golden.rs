//! Golden tests of the seed routes: the exchanges in tests/golden/seed/*.txt
//! (format in that folder's README) run against a fresh single-node dcache
//! and must match byte for byte: status, the listed headers and the body.
//! An `x-dcache-error` value in a golden file must be one of
//! `dcache::wire::Code`'s strings (checked when parsing).

use std::path::Path;
use std::path::PathBuf;

use dcache::wire::Code;
use dcache::wire::header;
use dcache_testkit::cluster::TestCluster;

struct Exchange {
    line: usize,
    method: String,
    path: String,
    body: String,
    status: u16,
    headers: Vec<(String, String)>,
    expect: String,
}

fn parse(text: &str) -> Vec<Exchange> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.trim().is_empty() || l.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let (method, path) = l.split_once(' ').expect("request line: METHOD /path");
        i += 1;
        let mut body = Vec::new();
        while !lines[i].starts_with("=> ") {
            body.push(lines[i]);
            i += 1;
        }
        let mut parts = lines[i]["=> ".len()..].split_whitespace();
        let status = parts.next().unwrap().parse().expect("status");
        let headers = parts
            .map(|h| {
                let (n, v) = h.split_once('=').expect("header name=value");
                if n == header::ERROR {
                    v.parse::<Code>()
                        .unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
                }
                (n.to_string(), v.to_string())
            })
            .collect();
        i += 1;
        let mut expect = String::new();
        while i < lines.len() && !lines[i].is_empty() {
            expect.push_str(lines[i]);
            expect.push('\n');
            i += 1;
        }
        out.push(Exchange {
            line: start,
            method: method.to_string(),
            path: path.to_string(),
            body: body.join("\n"),
            status,
            headers,
            expect,
        });
    }
    out
}

fn golden_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/seed");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_routes_match_the_golden_exchanges() {
    let files = golden_files();
    assert!(files.len() >= 3, "golden files missing: {files:?}");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let exchanges = parse(&std::fs::read_to_string(&file).unwrap());
        assert!(!exchanges.is_empty(), "{name}: no exchanges");
        let c = TestCluster::start(1, |cfg| {
            cfg.http.max_value_bytes = 64;
            cfg.http.max_key_bytes = 32;
        })
        .await;
        let raft = c.nodes[0].raft.to_string();
        for x in &exchanges {
            let m = reqwest::Method::from_bytes(x.method.as_bytes()).unwrap();
            let body = x.body.replace("$RAFT_ADDR", &raft);
            let r = c
                .client
                .request(m, c.url(0, &x.path))
                .body(body)
                .send()
                .await
                .unwrap();
            let at = format!("{name}:{} {} {}", x.line, x.method, x.path);
            assert_eq!(r.status().as_u16(), x.status, "{at}");
            for (h, v) in &x.headers {
                let got = r.headers().get(h).map(|v| v.to_str().unwrap().to_string());
                assert_eq!(got.as_deref(), Some(v.as_str()), "{at}: header {h}");
            }
            if x.status >= 400 && x.method != "HEAD" {
                assert_eq!(r.headers()["content-type"], "application/json", "{at}");
            }
            let got = r.text().await.unwrap();
            assert_eq!(got, x.expect, "{at}: body");
        }
        c.shutdown_all().await;
    }
}

#[test]
fn the_parser_reads_bodies_and_blank_request_bodies() {
    let xs = parse("# c\nPOST /a\n\n=> 400 x=y\n{\"e\":1}\n\nHEAD /b\n=> 200\n");
    let e = std::panic::catch_unwind(|| parse("GET /a\n=> 404 x-dcache-error=not_a_code\n"));
    assert!(e.is_err(), "an unknown code in a golden file is refused");
    assert_eq!(xs.len(), 2);
    assert_eq!((xs[0].body.as_str(), xs[0].status), ("", 400));
    assert_eq!(xs[0].headers, [("x".to_string(), "y".to_string())]);
    assert_eq!(xs[0].expect, "{\"e\":1}\n");
    assert_eq!((xs[1].method.as_str(), xs[1].expect.as_str()), ("HEAD", ""));
}
