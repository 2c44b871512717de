//! Security, through API Gateway events and the webhook in process, against moto: the body
//! limit holds before any parsing; SdkAppid, Sign and RequestTime cannot be got round by the
//! case, repetition or percent-encoding of names; each class of refusal is answered and logged
//! as the table says, and neither the token nor a Sign ever reaches a log line or an answer.
//!
//! Run with `MOTO_SERVER=$PWD/.venv/bin/moto_server cargo test --all-features --test security`.

mod support;

use im_exception_webhook::domain::classify::Category;
use serde_json::{Value, json};
use support::upstream::{Reply, Upstream};
use support::{ACK, Answer, Call, Function, SDK_APP_ID, World, callback};

const TOKEN: &str = "s3cr3t-Token-for-security-tests";
const OTHER_APP: &str = "1400000001";

/// A test's topics, and the webhook with [`TOKEN`] and `extra`.
struct Site {
    world: World,
    f: Function,
}

impl Site {
    async fn new(test: &str, extra: &[(&str, &str)]) -> Site {
        let world = World::standard(test).await;
        let mut env = world.env();
        env.insert("IM_CALLBACK_TOKEN".into(), TOKEN.into());
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let f = Function::new(&env, &world.endpoint).await;
        Site { world, f }
    }

    /// Sends `event` (made of `call`). `code` 0: the acknowledgement and one delivery; else
    /// FAIL `code` with status `code / 10`, as every FAIL code is made, and nothing published.
    /// No secret of `call` shows anywhere.
    async fn expect(&self, call: &Call, event: &Value, code: u64) {
        let answer = self.f.invoke(event).await;
        if code == 0 {
            answer.assert_acknowledged();
            self.world.only_delivery(Category::FrequencyLimit).await;
        } else {
            answer.assert_fail((code / 10) as u16, code);
            self.world.assert_nothing_published().await;
        }
        assert_no_secret(&answer, &self.f.lines(), call);
    }

    /// As an HTTP API event, whose raw query string keeps its percent-encoding.
    async fn http(&self, call: Call, code: u64) {
        self.expect(&call, &call.http_api(), code).await;
    }

    /// As an HTTP API event and as a REST API event (repeated names as multi-value lists).
    async fn both(&self, call: Call, code: u64) {
        self.expect(&call, &call.http_api(), code).await;
        self.expect(&call, &call.rest_api(), code).await;
    }
}

/// Neither the token nor any hex run of 32 characters or more of a query value (a Sign), nor
/// its first or last 32 (half a Sign, or one beside the text around it), in the answer or the
/// lines.
#[track_caller]
fn assert_no_secret(answer: &Answer, lines: &[Value], call: &Call) {
    let seen = format!("{} {}", answer.raw, serde_json::to_string(lines).unwrap());
    let values = call.query.iter().map(|(_, v)| v.as_str());
    let hex = values.flat_map(|v| v.split(|c: char| !c.is_ascii_hexdigit()));
    let signs = hex.filter(|run| run.len() >= 32);
    let halves = signs.flat_map(|s| [s, &s[..32], &s[s.len() - 32..]]);
    for secret in halves.chain([TOKEN]) {
        assert!(!seen.contains(secret), "{secret} in {seen}");
    }
}

fn body() -> String {
    callback(json!(10023), "@TGS#2J4SZEAEL").to_string()
}

/// Chat's call with `query` added to its parameters, where `{a}` and `{o}` stand for the
/// accepted SdkAppid and another, `{g}`, `{b}` and `{G}` for a good Sign, a bad one and the good
/// one in upper case, `{t}`, `{T}` and `{l}` for RequestTime now, now with every digit
/// percent-encoded, and 5 s later.
fn with(call: Call, query: &str) -> Call {
    let now = support::events::now_secs();
    let time = now.to_string();
    let encoded: String = time.bytes().map(|b| format!("%{b:02X}")).collect();
    let query = query
        .replace("{a}", SDK_APP_ID)
        .replace("{o}", OTHER_APP)
        .replace("{g}", &sign(now))
        .replace("{b}", &sign(now - 1))
        .replace("{G}", &sign(now).to_uppercase())
        .replace("{T}", &encoded)
        .replace("{t}", &time)
        .replace("{l}", &(now + 5).to_string());
    let params = query.split('&').map(|p| p.split_once('=').unwrap());
    params.fold(call, |call, (k, v)| call.param(k, v))
}

fn sign(time: u64) -> String {
    let sign = im_exception_webhook::domain::auth::sign(TOKEN, &time.to_string());
    hex::encode(sign)
}

#[tokio::test]
async fn the_body_limit_holds_before_any_parsing_and_counts_decoded_bytes() {
    let site = Site::new("body-limit", &[("MAX_BODY_BYTES", "1024")]).await;
    let signed = |body: &str| Call::chat(body).signed(TOKEN);
    // 1 MiB, neither JSON nor UTF-8, base64 as API Gateway sends binary bodies: parsing first
    // would answer 400.
    let junk: Vec<u8> = (0..1 << 20).map(|i| [0xff, b'{', 0xfe][i % 3]).collect();
    site.http(signed("").binary_body(&junk), 4130).await;
    site.http(signed(&"{".repeat(1 << 20)), 4130).await;
    // Neither SdkAppid nor Sign: the size decides first.
    let unsigned = Call::chat("x".repeat(1 << 20)).without_param("SdkAppid");
    site.both(unsigned, 4130).await;
    // At the limit the body is read (and is not JSON); one byte more is not.
    site.http(signed(&"x".repeat(1024)), 4003).await;
    site.http(signed(&"x".repeat(1025)), 4130).await;
    // Base64 makes the event larger, not the body: the decoded bytes count.
    let full = format!("{:1024}", body());
    site.http(signed(&full).base64_body(), 0).await;
    let over = format!("{full} ");
    site.http(signed(&over).base64_body(), 4130).await;
}

#[tokio::test]
async fn deeply_nested_json_within_the_limit_is_published_as_sent_without_crashing() {
    // Nesting is skipped without recursion and the callback kept raw: published as it came.
    // (A subscriber whose parser limits depth cannot read such an envelope: docs/security.md.)
    let extra = [("MAX_BODY_BYTES", "65536"), ("PUBLISH_TIMEOUT_MS", "1900")];
    let site = Site::new("deep-nesting", &extra).await;
    let deep = format!("{}{}", "[".repeat(32_000), "]".repeat(32_000));
    for field in ["MsgBody", "SomethingNew"] {
        let text = format!(r#"{{"ErrorCode":10023,"GroupId":"g","{field}":{deep}}}"#);
        assert!(text.len() <= 65536);
        let call = Call::chat(text.as_str()).signed(TOKEN);
        site.f.invoke(&call.http_api()).await.assert_acknowledged();
        // Read straight from the subscribed queue: the harness's read-back parses each envelope
        // for its schema check, and serde_json's `Value` stops at 128 levels.
        let queue = &site.world.topic(Category::FrequencyLimit).queue_url;
        let receive = site.world.sqs.receive_message().queue_url(queue);
        let received = receive.max_number_of_messages(10).send().await.unwrap();
        let ending = format!(r#""callback":{text}}}"#);
        let delivered = received.messages().iter().any(|m| {
            let notification: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            notification["Message"].as_str().unwrap().ends_with(&ending)
        });
        assert!(delivered, "{field}: the body as sent");
    }
}

#[tokio::test]
async fn sdk_app_id_cannot_be_got_round_by_case_repetition_or_encoding() {
    let site = Site::new("app-id", &[]).await;
    let call =
        |query: &str| with(Call::chat(body()).without_param("SdkAppid"), query).signed(TOKEN);
    // The answer's ErrorCode, 0 for the acknowledgement; its status is the code / 10.
    for (query, code) in [
        ("sdkappid={a}", 0),
        ("SDKAPPID={a}", 0),
        ("sDkApPiD={o}", 4031),
        ("SdkAppid={a}&SdkAppid={o}", 4032),
        ("SdkAppid={o}&sdkappid={a}", 4032),
        ("SdkAppid={a}&SDKAPPID={a}", 0),
        // An empty copy beside a valid one is a conflict, in either order.
        ("SdkAppid=&SdkAppid={a}", 4032),
        ("SdkAppid={a}&sdkappid=", 4032),
        ("Sdk_Appid={a}", 4030),
    ] {
        site.both(call(query), code).await;
    }
    // Percent-encoded names and values are decoded before they are checked.
    for (query, code) in [
        ("Sdk%41ppid={a}", 0),
        ("Sdk%41ppid={o}", 4031),
        ("%53%44%4B%41%50%50%49%44={o}", 4031),
        ("SdkAppid={a}&Sdk%41ppid={o}", 4032),
        ("Sdk%41ppid={o}&SdkAppid={a}", 4032),
        ("SdkAppid=14000000%30%30", 0),
        ("SdkAppid=1400000000%00", 4031),
        ("SdkAppid=%201400000000", 4031),
        ("SdkAppid=1400000000+", 4031),
        ("SdkAppid%20={a}", 4030),
        ("%C5%BFdkappid={a}", 4030),
    ] {
        site.http(call(query), code).await;
    }
}

#[tokio::test]
async fn sign_and_request_time_cannot_be_got_round_by_case_repetition_or_encoding() {
    let site = Site::new("sign", &[]).await;
    let call = |query: &str| with(Call::chat(body()), query);
    for (query, code) in [
        ("sign={g}&requesttime={t}", 0),
        ("SIGN={g}&REQUESTTIME={t}", 0),
        ("sIgN={b}&rEqUeStTiMe={t}", 4014),
        ("Sign={g}&Sign={b}&RequestTime={t}", 4015),
        ("Sign={b}&sign={g}&RequestTime={t}", 4015),
        // An empty copy beside a valid one is a conflict too, in either order.
        ("Sign=&Sign={g}&RequestTime={t}", 4015),
        ("Sign={g}&SIGN=&RequestTime={t}", 4015),
        ("Sign={g}&RequestTime={t}&RequestTime=", 4015),
        // One signature in two cases of hex is two values: refused, not guessed.
        ("Sign={g}&Sign={G}&RequestTime={t}", 4015),
        ("Sign={g}&Sign={g}&RequestTime={t}", 0),
        ("Sign={g}&RequestTime={t}&requesttime={l}", 4015),
        ("Sign={g}&RequestTime={l}&RequestTime={t}", 4015),
    ] {
        site.both(call(query), code).await;
    }
    // The signed text is the decoded RequestTime: its digits encoded are the same time, and
    // anything that decodes to other text is not what Chat signed.
    for (query, code) in [
        ("%53ign={g}&Request%54ime={t}", 0),
        ("Sign={g}&RequestTime={T}", 0),
        ("%53ign={b}&RequestTime={t}", 4014),
        ("Sign={g}&%53ign={b}&RequestTime={t}", 4015),
        ("%73%69%67%6e={b}&Sign={g}&RequestTime={t}", 4015),
        ("Sign={g}&RequestTime=%2B{t}", 4012),
        ("Sign={g}&RequestTime={t}%00", 4012),
        ("Sign={g}&RequestTime={t}+", 4012),
        ("Sign=%20{g}&RequestTime={t}", 4014),
        ("Sign={g}00&RequestTime={t}", 4014),
    ] {
        site.http(call(query), code).await;
    }
}

/// One call per class of answer, end to end (every row of the table is checked at `decide`):
/// each answered with its FAIL and logged with its reason, nothing published, and neither the
/// token nor the Sign in any answer or line, a forward's and the last resort's included.
#[tokio::test]
async fn each_class_of_answer_is_logged_and_the_token_and_the_sign_reach_no_line_or_answer() {
    let upstream = Upstream::start(Reply::json(ACK)).await;
    let url = upstream.url("/im");
    let site = Site::new("secrets", &[("UPSTREAM_CALLBACK_URL", &url)]).await;
    let now = support::events::now_secs();
    let signed = || Call::chat(body()).signed(TOKEN);
    let big = Call::chat("x".repeat(70_000));
    let stale = Call::chat(body()).signed_at(TOKEN, now - 600);
    for (call, code, reason) in [
        (signed(), 0, ""),
        (signed().method("GET"), 4050, "method_not_allowed"),
        (big.signed(TOKEN), 4130, "body_too_large"),
        (signed().without_param("SdkAppid"), 4030, "sdk_app_id"),
        (Call::chat(body()).signed("wrong-token"), 4014, "signature"),
        (stale, 4013, "request_time_skew"),
        (signed().param("Sign", &sign(now - 1)), 4015, "signature"),
        (Call::chat("not json").signed(TOKEN), 4003, "bad_body"),
    ] {
        site.http(call, code).await;
        let line = site.f.lines().pop().unwrap();
        let logged = line["Reason"].as_str().unwrap_or_default();
        assert_eq!(logged, reason, "{line}");
    }
    let rejected = &site.f.lines()[1..];
    let warned = |l: &Value| l["sourceIp"] == support::CLIENT_IP && l["level"] == "WARN";
    assert!(rejected.iter().all(warned), "{rejected:#?}");
    let metrics = support::emf::assert_valid(rejected).concat();
    assert_eq!(metrics, ["Rejected"; 7]);

    // A forward, answered and then failed: the query (Sign included) goes to the upstream,
    // never to a line.
    let forward = Call::command("Group.CallbackAfterSendMsg", "{}").signed(TOKEN);
    let answer = site.f.invoke(&forward.http_api()).await;
    answer.assert_acknowledged();
    upstream.stop();
    let failed = site.f.invoke(&forward.http_api()).await;
    failed.assert_fail(502, 5020);
    assert_no_secret(&failed, &site.f.lines(), &forward);

    // The last resort's record of a signed call: SNS unreachable, no retry queue.
    let mut env = site.world.env();
    env.insert("IM_CALLBACK_TOKEN".into(), TOKEN.into());
    env.insert("PUBLISH_TIMEOUT_MS".into(), "300".into());
    let f = Function::new(&env, &support::moto::closed_url()).await;
    let call = signed();
    let answer = f.invoke(&call.http_api()).await;
    answer.assert_fail(503, 5030);
    assert_eq!(f.lines()[0]["event"], "publish_failed");
    assert_no_secret(&answer, &f.lines(), &call);
}
