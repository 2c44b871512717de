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
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"

SDK_APP_ID = "1400000000"
EXCEPTION = "Group.CallbackSendMsgException"
AFTER_SEND = "Group.CallbackAfterSendMsg"
# The token scripts/local_run.py configures; the signature cases are signed with it.
LOCAL_RUN_TOKEN = "local-run-token"
MAX_BODY_BYTES = 262_144

# 2026-11-25T20:00:00Z; each case is one second after the previous one.
BASE_TIME_S = 1_795_636_800
API_ID = "a1b2c3d4e5"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
# Chat's callback server as API Gateway sees it (ClientIP in the query is the app user's IP).
CHAT_SERVER_IP = "198.51.100.23"


@dataclass
class Case:
    name: str
    summary: str
    expected_status: int
    expected_topic: str | None  # category whose topic receives it, None for nothing published
    body: str | None
    method: str = "POST"
    command: str | None = EXCEPTION  # CallbackCommand in the query; None leaves it out
    sdk_app_id: str | None = SDK_APP_ID
    opt_platform: str = "RESTAPI"
    extra_query: list[tuple[str, str]] = field(default_factory=list)
    base64: bool = False
    needs_token: bool = False  # only refused when IM_CALLBACK_TOKEN is configured


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
    event_time_ms = (BASE_TIME_S + index) * 1000 + 123
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
        "EventTime": str(event_time_ms) if event_time_as_string else event_time_ms,
    }


def compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# The exception callbacks the category cases (and a few refusals) are built from.
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
    et = (BASE_TIME_S + index) * 1000 + 123
    out["EventTime"] = str(et) if isinstance(base["EventTime"], str) else et
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def oversized_body() -> str:
    """A valid callback just over 270 KB, its CloudCustomData padded: refused for size alone."""
    cb = with_fields(FREQUENCY_LIMIT, 8)
    target = 270_000
    cb["CloudCustomData"] = ""
    pad = target - len(compact(cb).encode())
    cb["CloudCustomData"] = ("pad-" + "0123456789abcdef" * (pad // 16 + 1))[:pad]
    body = compact(cb)
    assert len(body.encode()) == target > MAX_BODY_BYTES
    return body


def sign(token: str, request_time: str) -> str:
    return hashlib.sha256((token + request_time).encode()).hexdigest()


def signature_query(index: int, *, token: str, skew_s: int = 0) -> list[tuple[str, str]]:
    request_time = str(BASE_TIME_S + index + skew_s)
    return [("Sign", sign(token, request_time)), ("RequestTime", request_time)]


# The number given to with_fields() / signature_query() is the case's position in CASES (from 1),
# so a callback's EventTime and RequestTime fall in the same second as its event's requestContext.
CASES = [
    # One per category (the local run configures a topic for every category).
    Case("invalid_group", "ErrorCode 10004, Public group", 200, "invalid_group",
         compact(INVALID_GROUP), opt_platform="RESTAPI"),
    Case("frequency_limit", "ErrorCode 10023, AVChatRoom, EventTime as a string", 200,
         "frequency_limit", compact(FREQUENCY_LIMIT), opt_platform="Android"),
    Case("content_filter", "ErrorCode 80001, Work group, non-ASCII text", 200, "content_filter",
         compact(CONTENT_FILTER), opt_platform="iOS"),
    Case("muted_sender", "ErrorCode \"10017\" (a numeric string), Meeting group", 200,
         "muted_sender", compact(MUTED_SENDER), opt_platform="Web"),
    Case("unclassified", "ErrorCode 12345, Community group", 200, "unclassified",
         compact(UNCLASSIFIED), opt_platform="RESTAPI"),
    # Another command switched on in the console: acknowledged, not published.
    Case("other_command", "CallbackCommand=Group.CallbackAfterSendMsg", 200, None,
         compact({
             "CallbackCommand": AFTER_SEND, "GroupId": "@TGS#2J4SZEAEL", "Type": "Public",
             "From_Account": "jared", "Operator_Account": "jared", "Random": 2_046_331_190,
             "MsgSeq": 183, "MsgTime": BASE_TIME_S + 6, "OnlineOnlyFlag": 0,
             "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi all"}}],
             "CloudCustomData": "", "EventTime": (BASE_TIME_S + 6) * 1000 + 123,
         }), command=AFTER_SEND, opt_platform="Android"),
    # Refusals, in the order the function checks them.
    Case("method_not_allowed", "GET instead of POST", 405, None, None, method="GET",
         opt_platform="Web"),
    Case("body_too_large", "270,000-byte body (limit 262,144), padded CloudCustomData", 413, None,
         oversized_body(), opt_platform="RESTAPI"),
    Case("sdkappid_missing", "no SdkAppid in the query", 403, None,
         compact(with_fields(INVALID_GROUP, 9)), sdk_app_id=None),
    Case("sdkappid_not_accepted", "SdkAppid=1400000001", 403, None,
         compact(with_fields(INVALID_GROUP, 10)), sdk_app_id="1400000001"),
    Case("sign_missing", "no Sign / RequestTime (token configured)", 401, None,
         compact(with_fields(FREQUENCY_LIMIT, 11)), opt_platform="iOS", needs_token=True),
    Case("sign_wrong", "Sign made with another token", 401, None,
         compact(with_fields(FREQUENCY_LIMIT, 12)), opt_platform="Android", needs_token=True,
         extra_query=signature_query(12, token="not-the-token")),
    Case("request_time_skewed", "right Sign, RequestTime 10 minutes old", 401, None,
         compact(with_fields(FREQUENCY_LIMIT, 13)), opt_platform="Web", needs_token=True,
         extra_query=signature_query(13, token=LOCAL_RUN_TOKEN, skew_s=-600)),
    Case("body_not_json", "Chat's documented sample, // comments and a missing comma", 400, None,
         CHAT_DOC_SAMPLE),
    Case("body_not_object", "a JSON array holding the callback", 400, None,
         compact([with_fields(INVALID_GROUP, 15)])),
    Case("error_code_missing", "no ErrorCode field", 400, None,
         compact(with_fields(CONTENT_FILTER, 16, ErrorCode=None)), opt_platform="iOS"),
    Case("error_code_wrong_type", "ErrorCode \"10023 frequency limit\"", 400, None,
         compact(with_fields(FREQUENCY_LIMIT, 17, ErrorCode="10023 frequency limit")),
         opt_platform="Android"),
    Case("command_mismatch", "query says SendMsgException, body says AfterSendMsg", 400, None,
         compact(with_fields(MUTED_SENDER, 18, CallbackCommand=AFTER_SEND)), opt_platform="Web"),
    # API Gateway may hand the body over base64-encoded.
    Case("base64_body", "content_filter callback, isBase64Encoded true", 200, "content_filter",
         compact(with_fields(CONTENT_FILTER, 19)), opt_platform="iOS", base64=True),
]


def query_pairs(case: Case) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    if case.sdk_app_id is not None:
        pairs.append(("SdkAppid", case.sdk_app_id))
    if case.command is not None:
        pairs.append(("CallbackCommand", case.command))
    pairs += [("contenttype", "json"), ("ClientIP", "203.0.113.5"),
              ("OptPlatform", case.opt_platform)]
    return pairs + case.extra_query


def api_gateway_event(index: int, case: Case) -> dict:
    """An HTTP API payload-2.0 event as API Gateway would hand the call to the function."""
    pairs = query_pairs(case)
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
        "rawQueryString": urlencode(pairs),
        "headers": headers,
        "queryStringParameters": dict(pairs),
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


def readme() -> str:
    rows = []
    for case in CASES:
        topic = f"`im-exception-{case.expected_topic}`" if case.expected_topic else "—"
        note = " ¹" if case.needs_token else ""
        rows.append(f"| `{case.name}` | {case.summary}{note} | {case.expected_status} | {topic} |")
    table = "\n".join(rows)
    return f"""# events/

API Gateway HTTP API (payload format 2.0) events, one per case, each shaped like a call from
Tencent Cloud Chat: `POST /callback` with Chat's query string
(`SdkAppid=1400000000&CallbackCommand=Group.CallbackSendMsgException&contenttype=json&ClientIP=203.0.113.5&OptPlatform=...`)
and a `Group.CallbackSendMsgException` body. Generated by `python3 scripts/make_events.py`
(deterministic): edit the script, not the files.

`scripts/local_run.py` (`make run`) POSTs every event to the function and checks the outcome
against the table below: keep the table's layout (`| \\`case\\` | ... | status | topic |`).

Expected outcome with the configuration of `make run`: `IM_SDK_APP_ID=1400000000`,
`IM_CALLBACK_TOKEN={LOCAL_RUN_TOKEN}` and a topic for every category, including
`TOPIC_ARN_UNCLASSIFIED` (without it `unclassified` is still answered 200 but only logged).

| case | what it is | expected status | expected topic |
| --- | --- | --- | --- |
{table}

¹ Refused only when the function is configured with `IM_CALLBACK_TOKEN={LOCAL_RUN_TOKEN}`.
The other events carry no `Sign`/`RequestTime` (Chat's query string with webhook
authentication switched off); `make run` signs each of them afresh, since a fixed
`RequestTime` would be outside the allowed skew. `sign_wrong` carries a `Sign` made with
another token; `make run` sends it with a fresh `RequestTime` (keeping the wrong `Sign`) so
that it is refused for the signature, not for its age. `request_time_skewed` carries a `Sign`
that is right for its `RequestTime`, ten minutes before the event's own time.

Notes:

- `EventTime` is a string in the `frequency_limit` family of events, as in Chat's own sample;
  `ErrorCode` is the numeric string `"10017"` in `muted_sender`.
- Every callback has its own `Random` and `EventTime`, so each has its own `dedupKey`.
- `method_not_allowed` has `routeKey` `ANY /callback`: a GET reaches the function only through a
  catch-all route.
- `base64_body` is a `content_filter` callback with `isBase64Encoded: true`.

## Invoking one with cargo lambda

In one terminal, start the function with its configuration (leave out `IM_CALLBACK_TOKEN` to
use the events as they are; the three signature cases then pass the signature check):

    cargo lambda watch --ignore-changes \\
      --env-var IM_SDK_APP_ID=1400000000 \\
      --env-var TOPIC_ARN_INVALID_GROUP=arn:aws:sns:us-east-1:123456789012:im-exception-invalid_group \\
      --env-var TOPIC_ARN_FREQUENCY_LIMIT=arn:aws:sns:us-east-1:123456789012:im-exception-frequency_limit \\
      --env-var TOPIC_ARN_CONTENT_FILTER=arn:aws:sns:us-east-1:123456789012:im-exception-content_filter \\
      --env-var TOPIC_ARN_MUTED_SENDER=arn:aws:sns:us-east-1:123456789012:im-exception-muted_sender \\
      --env-var AWS_ENDPOINT_URL=http://127.0.0.1:5000 --env-var AWS_REGION=us-east-1 \\
      --env-var AWS_ACCESS_KEY_ID=test --env-var AWS_SECRET_ACCESS_KEY=test

(with a moto server on port 5000 holding those topics, or real topics and credentials). In
another:

    cargo lambda invoke im-exception-webhook --data-file events/frequency_limit.json

The output is the API Gateway response (`statusCode`, `body`). The function name argument
matters: without it cargo lambda starts a second instance of the function, named `_`.

To run every event end to end with moto, SQS queues on the topics and the checks above:
`make run`.
"""


def main() -> None:
    EVENTS.mkdir(exist_ok=True)
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names)
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
