#!/usr/bin/env python3
"""Writes events/*.json and events/README.md: one API Gateway HTTP API (payload 2.0) event per
case, each shaped like a call from Tencent Cloud Chat's callback service.

Deterministic (fixed times, ids derived from the case name), so re-running it changes nothing
unless this file changed. Run from anywhere:  python3 scripts/make_events.py

The expectations table in events/README.md is what scripts/local_run.py checks against, so
the events and their expected outcomes are written from one place: CASES below.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote_plus, urlencode

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"

SDK_APP_ID = "1400000000"
EXCEPTION = "Group.CallbackSendMsgException"
BEFORE_SEND = "Group.CallbackBeforeSendMsg"
AFTER_SEND = "Group.CallbackAfterSendMsg"
NEW_MEMBER = "Group.CallbackAfterNewMemberJoin"
# The token scripts/local_run.py configures; every event is signed with it.
LOCAL_RUN_TOKEN = "local-run-token"
# The function's defaults (docs/configuration.md) and configuration B's raised body limit.
DEFAULT_MAX_BODY_BYTES = 65_536
B_MAX_BODY_BYTES = 262_144
UPSTREAM_TIMEOUT_MS = 1_500
# SNS's limit on a message and CloudWatch Logs' on a log event (src/publish.rs, src/record.rs).
SNS_AND_RECORD_LIMIT = 262_144
# The query parameter make run's local upstream reads to misbehave (the function ignores it and
# forwards it with the rest of the query).
UPSTREAM_SWITCH = "LocalUpstream"
# What the local upstream answers (scripts/local_run.py holds the same bytes).
UPSTREAM_BLOCKED = '{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"blocked by moderation"}'
UPSTREAM_ACK = '{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}'
FUNCTION_ACK = '{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'

# 2026-11-25T20:00:00Z; each case is one second after the previous one.
BASE_TIME_S = 1_795_636_800
API_ID = "a1b2c3d4e5"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
# Chat's callback server as API Gateway sees it (ClientIP in the query is the app user's IP).
CHAT_SERVER_IP = "198.51.100.23"
TOPIC_PREFIX = "im-exception-"


@dataclass
class Case:
    name: str
    summary: str
    status: int
    error_code: int  # the ErrorCode of the answer Chat gets (the upstream's, when passed on)
    body: str | None
    config: str = "A"  # the function configuration the expectation assumes (see readme())
    condition: str | None = None  # what make run does before sending it (see readme())
    topic: str | None = None  # category whose topic receives it
    upstream: int = 0  # requests the local upstream receives for it
    publish_failed: bool = False  # a publish_failed record in the function's log
    method: str = "POST"
    command: str | None = EXCEPTION  # CallbackCommand in the query; None leaves it out
    sdk_app_id: str | None = SDK_APP_ID
    client_ip: str = "203.0.113.5"
    opt_platform: str = "RESTAPI"
    # Sign and RequestTime; None: the Sign Chat makes with the local token at the event's time.
    signature: list[tuple[str, str]] | None = None
    extra_query: list[tuple[str, str]] = field(default_factory=list)
    base64: bool = False


def event_time_ms(index: int) -> int:
    return (BASE_TIME_S + index) * 1000 + 123


def callback(
    index: int,
    error_code,
    error_info: str,
    *,
    group_id: str,
    group_type: str,
    sender: str,
    operator: str,
    text: str,
    random: int,
    event_time_as_string: bool = False,
    cloud_custom_data: str = "",
    online_only: int = 0,
) -> dict:
    """A Group.CallbackSendMsgException body, fields in the order Chat's document lists them."""
    et = event_time_ms(index)
    return {
        "CallbackCommand": EXCEPTION,
        "GroupId": group_id,
        "Type": group_type,
        "From_Account": sender,
        "Operator_Account": operator,
        "Random": random,
        "OnlineOnlyFlag": online_only,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}],
        "CloudCustomData": cloud_custom_data,
        "ErrorCode": error_code,
        "ErrorInfo": error_info,
        # Chat's own sample sends EventTime as a string although its table says Integer.
        "EventTime": str(et) if event_time_as_string else et,
    }


def compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# The exception callbacks the category cases (and most refusals) are built from.
INVALID_GROUP = callback(
    1, 10004, "group id invalid or group does not exist",
    group_id="@TGS#2J4SZEAEL", group_type="Public", sender="jared", operator="administrator",
    text="see you all at 8", random=1832418471,
)
FREQUENCY_LIMIT = callback(
    2, 10023, "the message frequency exceeded the limit",
    group_id="@TGS#aC5SZEAEF", group_type="AVChatRoom", sender="viewer_2041",
    operator="viewer_2041", text="666666", random=2914087762, event_time_as_string=True,
    online_only=1, cloud_custom_data='{"liveRoom":"rm-88","gift":false}',
)
CONTENT_FILTER = callback(
    3, 80001, "the text contains sensitive words and was filtered",
    group_id="@TGS#1NVTZEAE4", group_type="Work", sender="sales_lily", operator="sales_lily",
    text="加我微信领红包 wx: red-packet-888", random=401963552,
)
MUTED_SENDER = callback(
    4, "10017", "the sender is muted in this group",
    group_id="@TGS#3FWNZEAEH", group_type="Meeting", sender="guest_77", operator="guest_77",
    text="can everyone hear me?", random=3159004261,
)
UNCLASSIFIED = callback(
    5, 12345, "an error code this webhook has no category for",
    group_id="@TGS#_@TGS#cQVLVHIM62CJ", group_type="Community", sender="mod_ana",
    operator="administrator", text="weekly digest is out", random=774301258,
)

# Chat's document shows its sample body with // comments and a missing comma: not JSON.
CHAT_DOC_SAMPLE = """{
    "CallbackCommand": "Group.CallbackSendMsgException", // Callback command
    "GroupId": "@TGS#2J4SZEAEL",
    "Type": "Public", // Group type
    "From_Account": "jared", // Sender
    "Operator_Account": "admin", // Request initiator
    "Random": 123456789, // Random number
    "OnlineOnlyFlag": 0,
    "MsgBody": [
        {
            "MsgType": "TIMTextElem", // Text
            "MsgContent": {
                "Text": "red packet"
            }
        }
    ],
    "CloudCustomData": "your cloud custom data",
    "ErrorCode": 10016
    "ErrorInfo": "Message is rejected by the before-send webhook",
    "EventTime": "1670574414123" // Event trigger timestamp in milliseconds
}"""


def with_fields(base: dict, index: int, **changes) -> dict:
    """A copy of `base` with its own Random and EventTime, so every case has its own dedupKey."""
    out = dict(base)
    out["Random"] = 100_000_000 + index * 7_919
    et = event_time_ms(index)
    out["EventTime"] = str(et) if isinstance(base["EventTime"], str) else et
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def before_send(index: int, text: str, *, sender: str = "jared") -> str:
    """A Group.CallbackBeforeSendMsg body, as in Chat's document."""
    return compact({
        "CallbackCommand": BEFORE_SEND, "GroupId": "@TGS#2J4SZEAEL", "Type": "Public",
        "From_Account": sender, "Operator_Account": sender, "Random": 300_000_000 + index,
        "OnlineOnlyFlag": 0,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}],
        "CloudCustomData": "", "EventTime": str(event_time_ms(index)),
    })


def after_send(index: int, text: str) -> str:
    """A Group.CallbackAfterSendMsg body, as in Chat's document."""
    return compact({
        "CallbackCommand": AFTER_SEND, "GroupId": "@TGS#2J4SZEAEL", "Type": "Public",
        "From_Account": "jared", "Operator_Account": "jared", "Random": 2_046_331_190 + index,
        "MsgSeq": 183 + index, "MsgTime": BASE_TIME_S + index, "OnlineOnlyFlag": 0,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}],
        "CloudCustomData": "", "EventTime": event_time_ms(index),
    })


def oversized_body(index: int) -> str:
    """A valid callback of 70,000 bytes, its CloudCustomData padded: refused for size alone."""
    cb = with_fields(FREQUENCY_LIMIT, index)
    target = 70_000
    cb["CloudCustomData"] = ""
    pad = target - len(compact(cb).encode())
    cb["CloudCustomData"] = ("pad-" + "0123456789abcdef" * (pad // 16 + 1))[:pad]
    body = compact(cb)
    assert len(body.encode()) == target > DEFAULT_MAX_BODY_BYTES
    return body


def escaping_body(index: int) -> str:
    """A callback well under configuration B's body limit whose publish_failed record would
    not be: pretty-printed (line breaks), so the record keeps its envelope as a JSON string
    (src/record.rs), and its CloudCustomData is JSON text full of escaped quotes, each of
    which that string escapes once more."""
    cb = with_fields(FREQUENCY_LIMIT, index)
    mentions = []
    while True:
        mentions += [f"u{len(mentions) + i:05d}" for i in range(500)]
        cb["CloudCustomData"] = compact({"mentions": mentions})
        body = json.dumps(cb, ensure_ascii=False, indent=2)
        # The record holds at least the body as a JSON string.
        if len(json.dumps(body, ensure_ascii=False).encode()) > SNS_AND_RECORD_LIMIT + 4_096:
            break
    size = len(body.encode())
    assert DEFAULT_MAX_BODY_BYTES < size < B_MAX_BODY_BYTES - 40_000, size
    return body


def sign(token: str, request_time: str) -> str:
    return hashlib.sha256((token + request_time).encode()).hexdigest()


def signature(index: int, *, token: str = LOCAL_RUN_TOKEN, skew_s: int = 0,
              request_time: str | None = None) -> list[tuple[str, str]]:
    request_time = request_time or str(BASE_TIME_S + index + skew_s)
    return [("Sign", sign(token, request_time)), ("RequestTime", request_time)]


def iso_time(index: int) -> str:
    return datetime.fromtimestamp(BASE_TIME_S + index, tz=timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def cases() -> list[Case]:
    """Every case, in the order make run sends them (the README table's order). A case's
    position (from 1) is its index: its EventTime and RequestTime fall in the same second as
    its event's requestContext."""
    out: list[Case] = []

    def add(make):
        out.append(make(len(out) + 1))

    # One per category.
    add(lambda i: Case("invalid_group", "ErrorCode 10004, Public group", 200, 0,
                       compact(INVALID_GROUP), topic="invalid_group"))
    add(lambda i: Case("frequency_limit", "ErrorCode 10023, AVChatRoom, EventTime as a string",
                       200, 0, compact(FREQUENCY_LIMIT), topic="frequency_limit",
                       opt_platform="Android"))
    add(lambda i: Case("content_filter", "ErrorCode 80001, Work group, non-ASCII text", 200, 0,
                       compact(CONTENT_FILTER), topic="content_filter", opt_platform="iOS"))
    add(lambda i: Case("muted_sender", "ErrorCode \"10017\" (a numeric string), Meeting group",
                       200, 0, compact(MUTED_SENDER), topic="muted_sender", opt_platform="Web"))
    add(lambda i: Case("unclassified", "ErrorCode 12345, Community group", 200, 0,
                       compact(UNCLASSIFIED), topic="unclassified"))
    # API Gateway may hand the body over base64-encoded.
    add(lambda i: Case("base64_body", "content_filter callback, isBase64Encoded true", 200, 0,
                       compact(with_fields(CONTENT_FILTER, i)), topic="content_filter",
                       opt_platform="iOS", base64=True))

    # Other commands, forwarded to the upstream; Chat gets the upstream's answer.
    add(lambda i: Case(
        "before_send_blocked",
        f"{BEFORE_SEND} with a blocked word: the upstream answers `{UPSTREAM_BLOCKED}`",
        200, 1, before_send(i, "免费领红包 加微信 wx: red-packet-888", sender="promo_bot"),
        command=BEFORE_SEND, upstream=1, opt_platform="Android"))
    add(lambda i: Case(
        "after_send",
        f"{AFTER_SEND}, IPv6 ClientIP (percent-encoded): the upstream answers "
        f"`{UPSTREAM_ACK}`",
        200, 0, after_send(i, "hi all"), command=AFTER_SEND, upstream=1,
        client_ip="2001:db8::5", opt_platform="Android"))
    add(lambda i: Case(
        "command_in_body_only",
        f"no CallbackCommand in the query, {NEW_MEMBER} in the body: the upstream answers "
        f"`{UPSTREAM_ACK}`",
        200, 0, compact({
            "CallbackCommand": NEW_MEMBER, "GroupId": "@TGS#2J4SZEAEL", "Type": "Public",
            "JoinType": "Apply", "Operator_Account": "leckie",
            "NewMemberList": [{"Member_Account": "jared"}, {"Member_Account": "tommy"}],
            "EventTime": event_time_ms(i),
        }), command=None, upstream=1, opt_platform="Web"))
    add(lambda i: Case(
        "upstream_closed",
        f"{BEFORE_SEND}, {UPSTREAM_SWITCH}=drop: the upstream closes the connection without an "
        "answer, twice (the function tries a new connection once)",
        502, 5020, before_send(i, "is anyone there?"), command=BEFORE_SEND, upstream=2,
        extra_query=[(UPSTREAM_SWITCH, "drop")], opt_platform="iOS"))
    add(lambda i: Case(
        "upstream_slow",
        f"{BEFORE_SEND}, {UPSTREAM_SWITCH}=slow: the upstream answers after 3 s, beyond "
        f"UPSTREAM_TIMEOUT_MS ({UPSTREAM_TIMEOUT_MS:,} ms)",
        504, 5040, before_send(i, "hello?"), command=BEFORE_SEND, upstream=1,
        extra_query=[(UPSTREAM_SWITCH, "slow")], opt_platform="Web"))

    # Refusals, in the order the function checks them (src/decision.rs).
    add(lambda i: Case("method_not_allowed", "GET instead of POST", 405, 4050, None,
                       method="GET", opt_platform="Web"))
    add(lambda i: Case("body_too_large",
                       f"70,000-byte body (limit {DEFAULT_MAX_BODY_BYTES:,}), padded "
                       "CloudCustomData", 413, 4130, oversized_body(i)))
    add(lambda i: Case("sdkappid_missing", "no SdkAppid in the query", 403, 4030,
                       compact(with_fields(INVALID_GROUP, i)), sdk_app_id=None))
    add(lambda i: Case("sdkappid_not_accepted", "SdkAppid=1400000001", 403, 4031,
                       compact(with_fields(INVALID_GROUP, i)), sdk_app_id="1400000001"))
    add(lambda i: Case("sdkappid_conflicting",
                       "SdkAppid=1400000000 and sdkappid=1400000001", 403, 4032,
                       compact(with_fields(INVALID_GROUP, i)),
                       extra_query=[("sdkappid", "1400000001")]))
    add(lambda i: Case("sign_missing", "RequestTime but no Sign", 401, 4010,
                       compact(with_fields(FREQUENCY_LIMIT, i)), opt_platform="iOS",
                       signature=signature(i)[1:]))
    add(lambda i: Case("request_time_missing", "Sign but no RequestTime", 401, 4011,
                       compact(with_fields(FREQUENCY_LIMIT, i)), opt_platform="Android",
                       signature=signature(i)[:1]))
    add(lambda i: Case("request_time_malformed",
                       f"RequestTime={iso_time(i)} (not Unix seconds), signed as sent", 401,
                       4012, compact(with_fields(FREQUENCY_LIMIT, i)), opt_platform="Web",
                       signature=signature(i, request_time=iso_time(i))))
    add(lambda i: Case("request_time_skewed",
                       "right Sign, RequestTime 10 minutes before the event's time", 401, 4013,
                       compact(with_fields(FREQUENCY_LIMIT, i)), opt_platform="iOS",
                       signature=signature(i, skew_s=-600)))
    add(lambda i: Case("sign_wrong", "Sign made with another token", 401, 4014,
                       compact(with_fields(FREQUENCY_LIMIT, i)), opt_platform="Android",
                       signature=signature(i, token="not-the-token")))
    add(lambda i: Case("sign_conflicting",
                       "the right Sign and a second Sign made with another token", 401, 4015,
                       compact(with_fields(FREQUENCY_LIMIT, i)), opt_platform="Web",
                       signature=signature(i) + signature(i, token="not-the-token")[:1]))
    add(lambda i: Case("command_missing",
                       "no CallbackCommand in the query, none in the body", 400, 4000,
                       compact(with_fields(MUTED_SENDER, i, CallbackCommand=None)),
                       command=None, opt_platform="Web"))
    add(lambda i: Case("command_conflicting",
                       f"CallbackCommand={EXCEPTION} and CallbackCommand={BEFORE_SEND}", 400,
                       4001, compact(with_fields(MUTED_SENDER, i)),
                       extra_query=[("CallbackCommand", BEFORE_SEND)], opt_platform="Web"))
    add(lambda i: Case("command_mismatch",
                       f"query says {EXCEPTION}, body says {AFTER_SEND}", 400, 4002,
                       compact(with_fields(MUTED_SENDER, i, CallbackCommand=AFTER_SEND)),
                       opt_platform="Web"))
    add(lambda i: Case("body_not_json",
                       "Chat's documented sample, // comments and a missing comma", 400, 4003,
                       CHAT_DOC_SAMPLE))
    add(lambda i: Case("body_not_object", "a JSON array holding the callback", 400, 4003,
                       compact([with_fields(INVALID_GROUP, i)])))
    add(lambda i: Case("error_code_missing", "no ErrorCode field", 400, 4003,
                       compact(with_fields(CONTENT_FILTER, i, ErrorCode=None)),
                       opt_platform="iOS"))
    add(lambda i: Case("error_code_wrong_type", "ErrorCode \"10023 frequency limit\"", 400,
                       4003, compact(with_fields(FREQUENCY_LIMIT, i,
                                                 ErrorCode="10023 frequency limit")),
                       opt_platform="Android"))

    # Configuration B: exceptions forwarded too, and a body limit large enough for 4131.
    add(lambda i: Case(
        "exception_forwarded",
        "frequency_limit callback, FORWARD_EXCEPTIONS=true: published and forwarded; Chat gets "
        "the publish's answer, the upstream's is not passed on",
        200, 0, compact(with_fields(FREQUENCY_LIMIT, i)), config="B", topic="frequency_limit",
        upstream=1, opt_platform="Android"))
    add(lambda i: Case(
        "exception_forward_failed",
        f"muted_sender callback, {UPSTREAM_SWITCH}=drop: published, the forward fails twice; "
        "Chat still gets the publish's answer",
        200, 0, compact(with_fields(MUTED_SENDER, i)), config="B", topic="muted_sender",
        upstream=2, extra_query=[(UPSTREAM_SWITCH, "drop")], opt_platform="Web"))
    body = escaping_body(len(out) + 1)
    escaped = len(json.dumps(body, ensure_ascii=False).encode())
    add(lambda i: Case(
        "message_too_large",
        f"a pretty-printed {len(body.encode()):,}-byte body (under B's {B_MAX_BODY_BYTES:,}), "
        "its CloudCustomData JSON text: the publish_failed record would keep the envelope as a "
        f"JSON string of over {escaped:,} bytes", 413, 4131, body, config="B",
        opt_platform="Android"))

    # SNS failing: make run sends these last, after the queues are drained.
    add(lambda i: Case(
        "publish_refused",
        "invalid_group callback whose topic no longer exists: SNS refuses it, no retry", 503,
        5030, compact(with_fields(INVALID_GROUP, i)),
        condition=f"`{TOPIC_PREFIX}invalid_group` deleted", publish_failed=True))
    add(lambda i: Case(
        "publish_sns_down",
        "content_filter callback with SNS unreachable: retried until PUBLISH_TIMEOUT_MS "
        "(1,500 ms)", 503, 5030, compact(with_fields(CONTENT_FILTER, i)),
        condition="SNS stopped", publish_failed=True, opt_platform="iOS"))
    return out


CASES = cases()


def query_pairs(index: int, case: Case) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    if case.sdk_app_id is not None:
        pairs.append(("SdkAppid", case.sdk_app_id))
    if case.command is not None:
        pairs.append(("CallbackCommand", case.command))
    pairs += [("contenttype", "json"), ("ClientIP", case.client_ip),
              ("OptPlatform", case.opt_platform)]
    pairs += signature(index) if case.signature is None else case.signature
    return pairs + case.extra_query


def query_parameters(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """queryStringParameters as API Gateway writes them: names as sent (case-sensitive), the
    values of a repeated name joined with commas."""
    params: dict[str, str] = {}
    for key, value in pairs:
        params[key] = f"{params[key]},{value}" if key in params else value
    return params


def api_gateway_event(index: int, case: Case) -> dict:
    """An HTTP API payload-2.0 event as API Gateway would hand the call to the function."""
    pairs = query_pairs(index, case)
    at = datetime.fromtimestamp(BASE_TIME_S + index, tz=timezone.utc)
    request_id = uuid.uuid5(uuid.NAMESPACE_URL, f"im-exception-webhook/{case.name}")
    headers = {"accept": "*/*"}
    if case.body is not None:
        headers["content-length"] = str(len(case.body.encode()))
        headers["content-type"] = "application/json"
    headers |= {
        "host": DOMAIN,
        "x-amzn-trace-id": f"Root=1-{BASE_TIME_S + index:08x}-{request_id.hex[:24]}",
        "x-forwarded-for": CHAT_SERVER_IP,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    # Only a catch-all route would let a GET reach the function; POST /callback would not.
    route_key = "POST /callback" if case.method == "POST" else "ANY /callback"
    event = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": "/callback",
        "rawQueryString": urlencode(pairs, quote_via=quote_plus),
        "headers": headers,
        "queryStringParameters": query_parameters(pairs),
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "domainName": DOMAIN,
            "domainPrefix": API_ID,
            "http": {
                "method": case.method,
                "path": "/callback",
                "protocol": "HTTP/1.1",
                "sourceIp": CHAT_SERVER_IP,
                "userAgent": "",
            },
            "requestId": request_id.hex[:16].upper() + "=",
            "routeKey": route_key,
            "stage": "$default",
            "time": at.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": (BASE_TIME_S + index) * 1000,
        },
        "isBase64Encoded": case.base64,
    }
    if case.body is not None:
        event["body"] = (base64.b64encode(case.body.encode()).decode() if case.base64
                         else case.body)
    return event


def outcome(case: Case) -> str:
    """The outcome cell: what make run checks, in backticks (scripts/local_run.py parses it)."""
    parts = []
    if case.topic:
        parts.append(f"`{TOPIC_PREFIX}{case.topic}`")
    if case.upstream:
        parts.append("`upstream`" + (f" ×{case.upstream}" if case.upstream > 1 else ""))
    if case.publish_failed:
        parts.append("`publish_failed` record")
    return " + ".join(parts) or "—"


def config_cell(case: Case) -> str:
    return case.config + (f", {case.condition}" if case.condition else "")


def readme() -> str:
    rows = []
    for case in CASES:
        cells = [f"`{case.name}`", case.summary, config_cell(case), str(case.status),
                 str(case.error_code), outcome(case)]
        assert not any("|" in c for c in cells), case.name
        rows.append("| " + " | ".join(cells) + " |")
    table = "\n".join(rows)
    return f"""# events/

API Gateway HTTP API (payload format 2.0) events, one per case, each shaped like a call from
Tencent Cloud Chat: `POST /callback` with Chat's query string
(`SdkAppid=1400000000&CallbackCommand=...&contenttype=json&ClientIP=...&OptPlatform=...&Sign=...&RequestTime=...`)
and a callback body, mostly `Group.CallbackSendMsgException`. Generated by
`python3 scripts/make_events.py` (deterministic): edit the script, not the files. Each works
with `cargo lambda invoke --data-file` (see the end of this file).

`scripts/local_run.py` (`make run`) POSTs every event to the function, in the table's order,
and checks each outcome against the table below: keep its layout (`| \\`case\\` | what it is |
config | status | ErrorCode | outcome |`, the outcome's parts in backticks).

## What the table assumes

`make run` runs two instances of the function, both with `IM_SDK_APP_ID=1400000000`,
`IM_CALLBACK_TOKEN={LOCAL_RUN_TOKEN}`, a topic for each of the five categories (including
`TOPIC_ARN_UNCLASSIFIED`) and `UPSTREAM_CALLBACK_URL` pointing at its local upstream:

- **A**: everything else at its default: `MAX_BODY_BYTES` {DEFAULT_MAX_BODY_BYTES:,}, `UPSTREAM_TIMEOUT_MS`
  {UPSTREAM_TIMEOUT_MS:,}, `PUBLISH_TIMEOUT_MS` 1,500, `FORWARD_EXCEPTIONS=false`.
- **B**: as A, with `FORWARD_EXCEPTIONS=true` and `MAX_BODY_BYTES={B_MAX_BODY_BYTES}`. Under the
  default body limit no body can bring its SNS message or `publish_failed` record over
  {SNS_AND_RECORD_LIMIT:,} bytes (413/4131): escaping at most doubles a body, and the record
  holds its GroupId once more.

A condition after the configuration is what `make run` does first: it sends those rows last,
after reading back what was published, deleting the topic named, then stopping moto (its SNS).

**status** and **ErrorCode** are those of the answer Chat gets: the function's own
(`{FUNCTION_ACK}`,
or `ActionStatus` `FAIL` with the refusal's code), or, for another command, the upstream's
answer passed on unchanged. **outcome** is where the callback went:
the topic that received it, `upstream` (how many requests the local upstream received for it,
each checked to be the query string and body as sent), a `publish_failed` record in the
function's log (with the callback in its envelope), or nothing (—).

The local upstream `make run` starts (stdlib `http.server` on a free loopback port) plays the
app's existing callback backend:

- `{UPSTREAM_SWITCH}=drop` in the query: it reads the request and closes the connection without
  an answer; `{UPSTREAM_SWITCH}=slow`: it answers after 3 s. The function ignores the
  parameter and forwards it with the rest of the query.
- a `{BEFORE_SEND}` whose text holds a blocked word (`red-packet`, `加微信`):
  HTTP 200 `{UPSTREAM_BLOCKED}`,
  Chat's before-send answer for "do not deliver" (`ErrorCode` 0 lets the message through, 1
  rejects it, 2 discards it silently).
- anything else: HTTP 200 `{UPSTREAM_ACK}`. Its fields are in
  another order than in the function's own acknowledgement, so the table shows whose answer
  Chat got.

Signatures: every event carries the `Sign` Chat makes with `{LOCAL_RUN_TOKEN}` for the event's
own `RequestTime` (the second of its `requestContext.timeEpoch`), except where the case says
otherwise. A fixed `RequestTime` is outside the allowed skew of a function with a token, so
`make run` moves every Unix-seconds `RequestTime` by the same amount, to the time of sending,
and re-signs every `Sign` that was right for the old one; the other parameters are sent byte
for byte. `request_time_skewed` thus stays ten minutes old, and a wrong `Sign` stays wrong.

| case | what it is | config | status | ErrorCode | outcome |
| --- | --- | --- | --- | --- | --- |
{table}

## Under another configuration

- Without `IM_CALLBACK_TOKEN` the signature is not checked: the `sign_*` and `request_time_*`
  events are answered 200 and published to `{TOPIC_PREFIX}frequency_limit`. With a token, every
  event sent as it is fails the skew check (401/4013), unless its refusal comes earlier.
- Without `UPSTREAM_CALLBACK_URL` another command is acknowledged by the function itself
  (200, `{FUNCTION_ACK}`) and forwarded nowhere:
  `before_send_blocked`, `after_send`, `command_in_body_only`, `upstream_closed` and
  `upstream_slow`.
- Without `FORWARD_EXCEPTIONS=true`, `exception_forwarded` and `exception_forward_failed` are
  only published. With the default `MAX_BODY_BYTES`, `message_too_large` is refused as
  413/4130.
- With the topics in place, `publish_refused` and `publish_sns_down` are published (200).

Notes:

- `EventTime` is a string in the `frequency_limit` family of events, as in Chat's own sample;
  `ErrorCode` is the numeric string `"10017"` in `muted_sender`.
- Every callback has its own `Random` and `EventTime`, so each has its own `dedupKey`.
- `queryStringParameters` is written as API Gateway writes it (a repeated name's values joined
  with commas); the function reads `rawQueryString`.
- `method_not_allowed` has `routeKey` `ANY /callback`: a GET reaches the function only through a
  catch-all route.
- `base64_body` is a `content_filter` callback with `isBase64Encoded: true`; `make run` sends
  its decoded body over HTTP, so only `cargo lambda invoke` hands it over base64-encoded.

## Invoking one with cargo lambda

From the repository root, in one terminal: the tools (`make venv` installs moto and
cargo-lambda into `.venv`), moto on port 5000 with the five topics, and the function with the
configuration of "Under another configuration" (no token, no upstream, defaults):

    make venv
    export PATH="$PWD/.venv/bin:$PATH"
    moto_server -H 127.0.0.1 -p 5000 > /tmp/moto.log 2>&1 &
    python3 - <<'EOF'
    import time, boto3
    sns = boto3.client("sns", endpoint_url="http://127.0.0.1:5000", region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    for attempt in range(50):  # until moto answers
        try:
            sns.list_topics()
            break
        except Exception:
            time.sleep(0.2)
    for category in ["invalid_group", "frequency_limit", "content_filter", "muted_sender",
                     "unclassified"]:
        print(sns.create_topic(Name="im-exception-" + category)["TopicArn"])
    EOF
    cargo lambda watch --ignore-changes \\
      --env-var IM_SDK_APP_ID=1400000000 \\
      --env-var TOPIC_ARN_INVALID_GROUP=arn:aws:sns:us-east-1:123456789012:im-exception-invalid_group \\
      --env-var TOPIC_ARN_FREQUENCY_LIMIT=arn:aws:sns:us-east-1:123456789012:im-exception-frequency_limit \\
      --env-var TOPIC_ARN_CONTENT_FILTER=arn:aws:sns:us-east-1:123456789012:im-exception-content_filter \\
      --env-var TOPIC_ARN_MUTED_SENDER=arn:aws:sns:us-east-1:123456789012:im-exception-muted_sender \\
      --env-var TOPIC_ARN_UNCLASSIFIED=arn:aws:sns:us-east-1:123456789012:im-exception-unclassified \\
      --env-var AWS_ENDPOINT_URL=http://127.0.0.1:5000 --env-var AWS_REGION=us-east-1 \\
      --env-var AWS_ACCESS_KEY_ID=test --env-var AWS_SECRET_ACCESS_KEY=test

In another, from the repository root:

    export PATH="$PWD/.venv/bin:$PATH"
    cargo lambda invoke im-exception-webhook --data-file events/frequency_limit.json

The output is the API Gateway response: `statusCode` 200 and the acknowledgement as `body`.
The first invocation builds the function (debug) and may take minutes. The function name
argument matters: without it cargo lambda starts a second instance of the function, named `_`.
Leave `IM_CALLBACK_TOKEN` out: with it, every event fails the skew check (its `RequestTime` is
fixed). Stop with Ctrl-C, then `kill %1` for moto.

To run every event end to end, with moto, SQS queues on the topics, the local upstream and the
checks above: `make run`.
"""


def main() -> None:
    EVENTS.mkdir(exist_ok=True)
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names)
    # Rows with a condition come last: make run applies the conditions in the table's order.
    conditions = [c.condition is not None for c in CASES]
    assert conditions == sorted(conditions)
    for stale in EVENTS.glob("*.json"):
        if stale.stem not in names:
            stale.unlink()
    for index, case in enumerate(CASES, start=1):
        path = EVENTS / f"{case.name}.json"
        path.write_text(json.dumps(api_gateway_event(index, case), indent=2,
                                   ensure_ascii=False) + "\n", encoding="utf-8")
    (EVENTS / "README.md").write_text(readme(), encoding="utf-8")
    print(f"wrote {len(CASES)} events and README.md to {EVENTS.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
