#!/usr/bin/env python3
"""Writes events/*.json: one API Gateway HTTP API (payload 2.0) event per case, each shaped like
a call from Tencent Cloud Chat. What each must get is the table in events/README.md, written by
hand, which `make run` checks (and tests/test_tools.py checks that each event has a row there).
Deterministic: fixed times, ids derived from the case's name, so re-running it changes nothing
unless this file changed. From anywhere:  python3 scripts/make_events.py
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote_plus, urlencode

from harness import BEFORE_SEND, EXCEPTION, ROOT, gateway_event, sign, to_json

TOKEN = "local-run-token"  # the token `make run` configures
AFTER_SEND, NEW_MEMBER = "Group.CallbackAfterSendMsg", "Group.CallbackAfterNewMemberJoin"
BASE_TIME_S = 1_795_636_800  # 2026-11-25T20:00:00Z; case i happens i seconds later


def exception(code, info: str, group: str, kind: str, sender: str, text: str, **more) -> dict:
    """A Group.CallbackSendMsgException body, its fields in the order of Chat's document."""
    return {"CallbackCommand": EXCEPTION, "GroupId": group, "Type": kind, "From_Account": sender,
            "Operator_Account": more.pop("operator", sender), "Random": 0, "OnlineOnlyFlag": 0,
            "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}],
            "CloudCustomData": "", "ErrorCode": code, "ErrorInfo": info, "EventTime": 0} | more


INVALID_GROUP = exception(10004, "group id invalid or group does not exist", "@TGS#2J4SZEAEL",
                          "Public", "jared", "see you all at 8", operator="administrator")
# Chat's own sample sends EventTime as a string although its table says Integer.
FREQUENCY_LIMIT = exception(10023, "the message frequency exceeded the limit", "@TGS#aC5SZEAEF",
                            "AVChatRoom", "viewer_2041", "666666", OnlineOnlyFlag=1,
                            CloudCustomData='{"liveRoom":"rm-88","gift":false}', EventTime="")
CONTENT_FILTER = exception(80001, "the text contains sensitive words and was filtered",
                           "@TGS#1NVTZEAE4", "Work", "sales_lily", "加我微信领红包 red-packet-888")
MUTED_SENDER = exception("10017", "the sender is muted in this group", "@TGS#3FWNZEAEH",
                         "Meeting", "guest_77", "can everyone hear me?")
UNCLASSIFIED = exception(12345, "an error code this webhook has no category for",
                         "@TGS#_@TGS#cQVLVHIM62CJ", "Community", "mod_ana",
                         "weekly digest is out", operator="administrator")

# Other commands' bodies, as in Chat's document.
BEFORE_SEND_BODY = {"CallbackCommand": BEFORE_SEND, "GroupId": "@TGS#2J4SZEAEL", "Type": "Public",
                    "From_Account": "jared", "Operator_Account": "jared", "Random": 0,
                    "OnlineOnlyFlag": 0, "MsgBody": [], "EventTime": 0}
NEW_MEMBER_BODY = {"CallbackCommand": NEW_MEMBER, "GroupId": "@TGS#2J4SZEAEL", "Type": "Public",
                   "JoinType": "Apply", "Operator_Account": "leckie",
                   "NewMemberList": [{"Member_Account": "jared"}], "EventTime": 0}


def text(words: str) -> dict:
    return {"MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": words}}]}


# Chat's document shows its sample body with // comments and a missing comma: not JSON.
CHAT_DOC_SAMPLE = """{
    "CallbackCommand": "Group.CallbackSendMsgException", // Callback command
    "GroupId": "@TGS#2J4SZEAEL",
    "Type": "Public", // Group type
    "From_Account": "jared", // Sender
    "Operator_Account": "admin", // Request initiator
    "Random": 123456789, // Random number
    "OnlineOnlyFlag": 0,
    "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "red packet"}}],
    "CloudCustomData": "your cloud custom data",
    "ErrorCode": 10016
    "ErrorInfo": "Message is rejected by the before-send webhook",
    "EventTime": "1670574414123" // Event trigger timestamp in milliseconds
}"""


def variant(base: dict, i: int, **changes) -> str:
    """`base` for case i: its own Random and EventTime (so each case has its own dedupKey), the
    changes made (None removes a field), as compact JSON."""
    event_time = (BASE_TIME_S + i) * 1000 + 123
    out = dict(base, Random=100_000_000 + i * 7_919,
               EventTime=str(event_time) if isinstance(base["EventTime"], str) else event_time)
    for key, value in changes.items():
        if value is None:
            del out[key]
        else:
            out[key] = value
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def oversized(i: int) -> str:
    """A valid callback of exactly 70,000 bytes, its CloudCustomData padded."""
    padding = 70_000 - len(variant(FREQUENCY_LIMIT, i, CloudCustomData="").encode())
    return variant(FREQUENCY_LIMIT, i, CloudCustomData=("0123456789abcdef" * 4400)[:padding])


def signature(token: str = TOKEN, skew_s: int = 0, request_time: str | None = None):
    """Sign and RequestTime for case i; by default what Chat sends at the case's time."""
    def pairs(i: int) -> list:
        at = request_time or str(BASE_TIME_S + i + skew_s)
        return [("Sign", sign(token, at)), ("RequestTime", at)]
    return pairs


def case(body, method="POST", base64=False, signature=signature(), add=(), **query) -> dict:
    """body: a base callback varied for the case, (base, changes), a function of the case's
    index, the body itself, or None. query: parameters changed (None leaves one out); add:
    parameters added after the Sign; signature: a function of the case's index."""
    return {"body": body, "method": method, "base64": base64, "signature": signature,
            "add": list(add), "query": query}


DROP, SLOW = [("LocalUpstream", "drop")], [("LocalUpstream", "slow")]
# In the order of the table in events/README.md, which `make run` follows.
CASES = {
    "invalid_group": case(INVALID_GROUP),
    "frequency_limit": case(FREQUENCY_LIMIT, OptPlatform="Android"),
    "content_filter": case(CONTENT_FILTER, OptPlatform="iOS"),
    "muted_sender": case(MUTED_SENDER, OptPlatform="Web"),
    "unclassified": case(UNCLASSIFIED),
    "base64_body": case(CONTENT_FILTER, base64=True, OptPlatform="iOS"),
    "text_with_u_fffe": case((CONTENT_FILTER, text("wx:\ufffered-packet")), OptPlatform="Android"),
    "before_send_blocked": case((BEFORE_SEND_BODY, text("免费领红包 加微信 red-packet")),
                                CallbackCommand=BEFORE_SEND, OptPlatform="Android"),
    "after_send": case((BEFORE_SEND_BODY, {"CallbackCommand": AFTER_SEND, "MsgSeq": 183,
                                           **text("hi all")}),
                       CallbackCommand=AFTER_SEND, ClientIP="2001:db8::5"),
    "command_in_body_only": case(NEW_MEMBER_BODY, CallbackCommand=None, OptPlatform="Web"),
    "upstream_closed": case((BEFORE_SEND_BODY, text("is anyone there?")), add=DROP,
                            CallbackCommand=BEFORE_SEND),
    "upstream_slow": case((BEFORE_SEND_BODY, text("hello?")), add=SLOW,
                          CallbackCommand=BEFORE_SEND),
    # Refusals, in the order the function checks them.
    "method_not_allowed": case(None, method="GET"),
    "body_too_large": case(oversized),
    "sdkappid_missing": case(INVALID_GROUP, SdkAppid=None),
    "sdkappid_not_accepted": case(INVALID_GROUP, SdkAppid="1400000001"),
    "sdkappid_conflicting": case(INVALID_GROUP, add=[("sdkappid", "1400000001")]),
    "sign_missing": case(FREQUENCY_LIMIT, signature=lambda i: signature()(i)[1:]),
    "request_time_missing": case(FREQUENCY_LIMIT, signature=lambda i: signature()(i)[:1]),
    "request_time_malformed": case(FREQUENCY_LIMIT,
                                   signature=signature(request_time="2026-11-25T20:00:19Z")),
    "request_time_skewed": case(FREQUENCY_LIMIT, signature=signature(skew_s=-600)),
    "sign_wrong": case(FREQUENCY_LIMIT, signature=signature("not-the-token")),
    "sign_conflicting": case(FREQUENCY_LIMIT, signature=lambda i: signature()(i)
                             + signature("not-the-token")(i)[:1]),
    "command_missing": case((MUTED_SENDER, {"CallbackCommand": None}), CallbackCommand=None),
    "command_conflicting": case(MUTED_SENDER, add=[("CallbackCommand", BEFORE_SEND)]),
    "command_mismatch": case((MUTED_SENDER, {"CallbackCommand": AFTER_SEND})),
    "body_not_json": case(CHAT_DOC_SAMPLE),
    "body_not_object": case(lambda i: f"[{variant(INVALID_GROUP, i)}]"),
    "error_code_missing": case((CONTENT_FILTER, {"ErrorCode": None})),
    "error_code_wrong_type": case((FREQUENCY_LIMIT, {"ErrorCode": "10023 frequency limit"})),
    "exception_forwarded": case(FREQUENCY_LIMIT, OptPlatform="Android"),
    "exception_forward_failed": case(MUTED_SENDER, add=DROP),
    "publish_refused": case(INVALID_GROUP),
    "publish_sns_down": case(CONTENT_FILTER, OptPlatform="iOS"),
}


def event(i: int, name: str) -> dict:
    """Case i as API Gateway hands Chat's call to the function."""
    spec, body = CASES[name], CASES[name]["body"]
    if isinstance(body, tuple):
        body = variant(body[0], i, **body[1])
    elif isinstance(body, dict):
        body = variant(body, i)
    elif callable(body):
        body = body(i)
    query = {"SdkAppid": "1400000000", "CallbackCommand": EXCEPTION, "contenttype": "json",
             "ClientIP": "203.0.113.5", "OptPlatform": "RESTAPI"} | spec["query"]
    pairs = [(k, v) for k, v in query.items() if v is not None]
    pairs += spec["signature"](i) + spec["add"]
    return gateway_event(urlencode(pairs, quote_via=quote_plus), body, BASE_TIME_S + i,
                         f"im-exception-webhook/{name}", spec["method"], spec["base64"])


def main(out: Path = ROOT / "events") -> None:
    for stale in out.glob("*.json"):
        if stale.stem not in CASES:
            stale.unlink()
    for i, name in enumerate(CASES, start=1):
        (out / f"{name}.json").write_text(to_json(event(i, name)), encoding="utf-8")
    print(f"wrote {len(CASES)} events to {out}")


if __name__ == "__main__":
    main()
