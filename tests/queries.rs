//! The saved Logs Insights queries of template.yaml (`AWS::Logs::QueryDefinition`), run on the
//! webhook binary's real lines, one call of each kind: each query's `filter` must select exactly
//! the lines of the kinds it is about, and every field it names (`fields`, `stats`) must be on
//! each line it selects. The filter is run by this file's own tiny evaluator, for the subset
//! the template uses: `field = "value"` and `field in [...]` (JSON literals) joined by `and`;
//! anything else fails the test rather than pass unread.
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features --test queries`.

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use support::upstream::{Reply, Upstream};
use support::world::RetryQueue;
use support::{ACK, Call, Lambda, TOKEN, World, callback};

/// What each saved query is about: the kinds (`event/outcome`) of line it must select.
const ABOUT: [(&str, &[&str]); 7] = [
    ("ExceptionsByGroupQuery", EXCEPTIONS),
    ("ExceptionsBySenderQuery", EXCEPTIONS),
    ("ExceptionsByErrorCodeQuery", EXCEPTIONS),
    ("RejectedCallbacksQuery", &["callback/rejected"]),
    ("LastResortRecordsQuery", &["publish_failed/publish_failed"]),
    ("ForwardFailuresQuery", &["forward_failed/forward_failed"]),
    ("QueuedPublishesQuery", &["callback/queued"]),
];
const EXCEPTIONS: &[&str] = &[
    "callback/published",
    "callback/queued",
    "callback/logged",
    "publish_failed/publish_failed",
];

/// Each `QueryString: |` block of template.yaml, by the logical id of its resource.
fn query_definitions() -> BTreeMap<String, String> {
    let template = include_str!("../template.yaml");
    let lines: Vec<&str> = template.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let (mut found, mut id) = (BTreeMap::new(), "");
    for (i, line) in lines.iter().enumerate() {
        if indent(line) == 2 && line.ends_with(':') {
            id = line.trim().trim_end_matches(':');
        } else if line.trim() == "QueryString: |" {
            let block = lines[i + 1..]
                .iter()
                .take_while(|l| indent(l) > indent(line));
            let query: Vec<&str> = block.map(|l| l.trim()).collect();
            found.insert(id.to_owned(), query.join("\n"));
        }
    }
    let definitions = template.matches("Type: AWS::Logs::QueryDefinition").count();
    assert_eq!(
        found.len(),
        definitions,
        "one QueryString per QueryDefinition"
    );
    found
}

/// `text` split at `separator` where it stands outside quotes and brackets.
fn split_outside<'a>(text: &'a str, separator: &str) -> Vec<&'a str> {
    let (mut parts, mut start, mut depth, mut quoted) = (Vec::new(), 0, 0, false);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' | '(' if !quoted => depth += 1,
            ']' | ')' if !quoted => depth -= 1,
            _ if !quoted && depth == 0 && text[i..].starts_with(separator) && i >= start => {
                parts.push(text[start..i].trim());
                start = i + separator.len();
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts
}

/// One comparison of a filter: a field and the values it may have.
type Clause = (String, Vec<Value>);

/// The query's filter as its clauses, and the fields it names (`fields`, `stats` aggregates
/// and `by`), Logs Insights' own `@` fields left out.
fn parse(query: &str) -> (Vec<Clause>, BTreeSet<String>) {
    let (mut clauses, mut named) = (Vec::new(), BTreeSet::new());
    for command in split_outside(query, "|") {
        let (verb, rest) = command.split_once(' ').unwrap_or((command, ""));
        match verb {
            "filter" => clauses.extend(split_outside(rest, " and ").into_iter().map(clause)),
            "fields" | "stats" => {
                for term in rest.replace(" by ", ",").split(',') {
                    let term = term.split(" as ").next().unwrap().trim();
                    let term = term
                        .split_once('(')
                        .map_or(term, |(_, a)| a.trim_end_matches(')'));
                    if !term.starts_with('@') && term != "*" {
                        named.insert(term.to_owned());
                    }
                }
            }
            "sort" | "limit" => {}
            other => panic!("a command the test does not know: {other:?} in {query}"),
        }
    }
    assert!(!clauses.is_empty(), "a filter: {query}");
    (clauses, named)
}

/// `name = value` or `name in [values]`; anything else is outside the evaluator.
fn clause(text: &str) -> Clause {
    let (name, values) = match (text.split_once(" in "), text.split_once(" = ")) {
        (Some((name, list)), _) => (name, serde_json::from_str(list)),
        (None, Some((name, one))) => (name, serde_json::from_str(one).map(|v| vec![v])),
        _ => panic!("outside the evaluator's subset (`=`, `in`, `and`): {text:?}"),
    };
    let values = values.unwrap_or_else(|e| panic!("values are JSON literals ({e}): {text:?}"));
    (name.trim().to_owned(), values)
}

/// Whether `line` passes every clause; an absent field passes none.
fn passes(clauses: &[Clause], line: &Value) -> bool {
    let pass = |(name, values): &Clause| line.get(name).is_some_and(|v| values.contains(v));
    clauses.iter().all(pass)
}

/// Every JSON line the webhook's binary wrote on standard output for one call of each kind,
/// from three cold starts: SNS up, SNS down with a retry queue, SNS and the upstream down.
async fn real_lines() -> Vec<Value> {
    let world = World::standard("queries").await;
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let closed = support::moto::closed_url();
    let retry = RetryQueue::create(&world.endpoint, "queries", 3).await;
    let up = ("UPSTREAM_CALLBACK_URL", upstream.url("/im"));
    let sns_down = ("AWS_ENDPOINT_URL_SNS", closed.clone());
    let setups = [
        vec![up],
        vec![sns_down.clone(), ("RETRY_QUEUE_URL", retry.url.clone())],
        vec![sns_down, ("UPSTREAM_CALLBACK_URL", format!("{closed}/im"))],
    ];
    let mut lines = Vec::new();
    for setup in setups {
        let mut env = world.env();
        env.remove("TOPIC_ARN_UNCLASSIFIED");
        env.insert("IM_CALLBACK_TOKEN".into(), TOKEN.into());
        env.insert("PUBLISH_TIMEOUT_MS".into(), "800".into());
        env.extend(setup.into_iter().map(|(k, v)| (k.to_owned(), v)));
        // With an upstream, exceptions are forwarded too: `forward` lines beside them.
        let forwards = env.contains_key("UPSTREAM_CALLBACK_URL");
        if forwards {
            env.insert("FORWARD_EXCEPTIONS".into(), "true".into());
        }
        let mut lambda = Lambda::webhook(&world.endpoint, &env).await;
        let exception = |code| Call::chat(callback(json!(code), "@TGS#queries").to_string());
        let calls = [
            exception(10023).signed(TOKEN),
            exception(12345).signed(TOKEN),
            exception(10023),
            exception(10023)
                .signed(TOKEN)
                .set_param("SdkAppid", "1400000009"),
            Call::command("Group.CallbackBeforeSendMsg", "{}").signed(TOKEN),
        ];
        for call in &calls {
            lambda.invoke(&call.http_api()).await;
        }
        // One line per call, and one more per forwarded exception.
        let n = calls.len() + if forwards { 2 } else { 0 };
        let got = lambda.lines_when(|l| l.iter().filter(|l| l.get("event").is_some()).count() >= n);
        lines.extend(got.await);
        lambda.process.kill().await;
    }
    lines
}

fn kind(line: &Value) -> String {
    let text = |f: &str| line[f].as_str().unwrap_or_default().to_owned();
    format!("{}/{}", text("event"), text("outcome"))
}

#[tokio::test]
async fn each_saved_query_selects_exactly_the_real_lines_it_is_about() {
    let queries = query_definitions();
    let about: BTreeMap<&str, &[&str]> = ABOUT.into_iter().collect();
    let ids: BTreeSet<&str> = queries.keys().map(String::as_str).collect();
    assert!(!ids.is_empty(), "template.yaml has no QueryDefinition");
    assert_eq!(
        ids,
        about.keys().copied().collect(),
        "the queries are ABOUT's"
    );

    let lines = real_lines().await;
    let kinds: BTreeSet<String> = lines.iter().map(kind).collect();
    for wanted in about.values().flat_map(|k| k.iter()) {
        assert!(kinds.contains(*wanted), "no real {wanted} line: {kinds:?}");
    }
    for (id, query) in &queries {
        let (clauses, named) = parse(query);
        for line in &lines {
            let selected = passes(&clauses, line);
            let of_its_kinds = about[id.as_str()].contains(&kind(line).as_str());
            assert_eq!(selected, of_its_kinds, "{id}: {clauses:?} on {line}");
            let missing: Vec<&String> = named.iter().filter(|n| line.get(n).is_none()).collect();
            assert!(
                !selected || missing.is_empty(),
                "{id}: no {missing:?} on {line}"
            );
        }
    }
}
