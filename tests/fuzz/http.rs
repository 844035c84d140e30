//! The HTTP handlers answer arbitrary requests without a 5xx.

use super::*;

#[derive(Debug, Clone)]
struct HttpCase {
    method: reqwest::Method,
    path: String,
    query: Option<String>,
    body: Vec<u8>,
    json_type: bool,
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        ".{0,12}".prop_map(Value::String),
        Just(Value::String("n0".into())),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,5}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A Raft address for `/join`: never one that resolves a name or reaches a
/// host other than this machine (127.0.0.1:1 refuses at once).
fn join_addr() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::json!("127.0.0.1:1")),
        "[0-9.:\\[\\]]{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![
        Just(serde_json::json!("n0")),
        Just(serde_json::json!("")),
        json_value()
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..128),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (".{0,10}", ".{0,10}").prop_map(|(k, v)| serde_json::json!({"key": k, "value": v})
            .to_string()
            .into_bytes()),
        (json_value(), json_value()).prop_map(|(k, v)| serde_json::json!({"key": k, "value": v})
            .to_string()
            .into_bytes()),
        (id.clone(), join_addr()).prop_map(|(i, a)| serde_json::json!({"id": i, "addr": a})
            .to_string()
            .into_bytes()),
        id.clone()
            .prop_map(|i| serde_json::json!({"id": i, "to": i})
                .to_string()
                .into_bytes()),
        "[{}\\[\\]\":,a-z0-9 \\\\]{0,40}".prop_map(String::into_bytes),
    ]
}

fn http_case() -> impl Strategy<Value = HttpCase> {
    let suffix = "[A-Za-z0-9%._~!$&'()*+,;=:@/ -]{0,40}";
    let method = prop_oneof![
        Just(reqwest::Method::GET),
        Just(reqwest::Method::PUT),
        Just(reqwest::Method::POST),
        Just(reqwest::Method::DELETE),
        Just(reqwest::Method::HEAD),
        Just(reqwest::Method::PATCH),
    ];
    let path = prop_oneof![
        3 => suffix.prop_map(|s| format!("/v1/kv/{s}")),
        3 => suffix.prop_map(|s| format!("/store/{s}")),
        2 => Just("/store".to_string()),
        1 => Just("/join".to_string()),
        1 => Just("/leave".to_string()),
        1 => Just("/v1/cluster/members".to_string()),
        1 => suffix.prop_map(|s| format!("/v1/cluster/members/{s}")),
        1 => Just("/v1/cluster/transfer-leader".to_string()),
    ];
    let query = proptest::option::of(prop_oneof![
        "[A-Za-z0-9%=&+._-]{0,30}",
        "(cas|consistency|redirect)=[a-z0-9%+-]{0,8}(&(cas|consistency|redirect)=[a-z0-9%-]{0,6})?",
    ]);
    (method, path, query, body(), any::<bool>()).prop_map(
        |(method, path, query, body, json_type)| {
            // Seed write routes are POSTs; send most bodies where they matter.
            let method = match path.as_str() {
                "/store"
                | "/join"
                | "/leave"
                | "/v1/cluster/members"
                | "/v1/cluster/transfer-leader"
                    if method != reqwest::Method::HEAD =>
                {
                    reqwest::Method::POST
                }
                _ => method,
            };
            HttpCase {
                method,
                path,
                query,
                body,
                json_type,
            }
        },
    )
}

/// 502 is documented for a joiner whose Raft address cannot be reached.
fn allowed_5xx(case: &HttpCase, status: u16) -> bool {
    status == 502 && (case.path == "/join" || case.path == "/v1/cluster/members")
}

async fn check_http(
    client: &reqwest::Client,
    base: &str,
    case: &HttpCase,
    seen: &std::sync::Mutex<std::collections::BTreeMap<u16, u32>>,
) -> Result<(), TestCaseError> {
    let mut url = format!("{base}{}", case.path);
    if let Some(q) = &case.query {
        url.push('?');
        url.push_str(q);
    }
    // The generators only make URLs that parse; one that does not is a
    // broken generator, not a pass.
    let url = reqwest::Url::parse(&url)
        .map_err(|e| TestCaseError::fail(format!("generated an unparsable URL {url:?}: {e}")))?;
    let mut req = client.request(case.method.clone(), url.clone());
    if case.json_type {
        req = req.header("content-type", "application/json");
    }
    if case.method != reqwest::Method::GET && case.method != reqwest::Method::HEAD {
        req = req.body(case.body.clone());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("{} {url}: {e}", case.method)))?;
    let status = resp.status().as_u16();
    *seen.lock().unwrap().entry(status).or_default() += 1;
    let body = resp
        .bytes()
        .await
        .map_err(|e| TestCaseError::fail(format!("{} {url}: body not read: {e}", case.method)))?;
    prop_assert!(
        status < 500 || allowed_5xx(case, status),
        "{} {url} body {:?}: {status} {}",
        case.method,
        String::from_utf8_lossy(&case.body),
        String::from_utf8_lossy(&body)
    );
    if status >= 400 && case.method != reqwest::Method::HEAD {
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            TestCaseError::fail(format!(
                "{} {url}: {status} body is not JSON ({e}): {:?}",
                case.method,
                String::from_utf8_lossy(&body)
            ))
        })?;
        prop_assert!(
            v["error"].is_string(),
            "{} {url}: {status} body has no error field: {v}",
            case.method
        );
    }
    Ok(())
}

#[test]
fn http_handlers_answer_arbitrary_requests_without_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = rt.block_on(TestCluster::start(1, |cfg| {
        cfg.http.max_key_bytes = 64;
        cfg.http.max_value_bytes = 96;
    }));
    let client = dcache_testkit::http::client();
    let base = cluster.url(0, "");
    let mut runner = TestRunner::new(cfg(300));
    let count = Cell::new(0u32);
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let result = runner.run(&http_case(), |case| {
        let n = count.get() + 1;
        count.set(n);
        rt.block_on(async {
            check_http(&client, &base, &case, &seen).await?;
            if n.is_multiple_of(50) {
                let r = client.get(format!("{base}/readyz")).send().await;
                prop_assert!(
                    r.is_ok_and(|r| r.status() == 200),
                    "not ready after {n} cases"
                );
            }
            Ok(())
        })
    });
    let ready = rt.block_on(async {
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        r.status().as_u16()
    });
    rt.block_on(cluster.shutdown_all());
    result.unwrap();
    assert_eq!(ready, 200, "node not ready after the fuzzing");
    let seen = seen.into_inner().unwrap();
    eprintln!("HTTP fuzz statuses: {seen:?}");
    // The generator reaches both the success and the error paths.
    assert!(
        seen.keys().any(|s| *s < 300) && seen.keys().any(|s| *s >= 400),
        "{seen:?}"
    );
}
