"""The Python tools of scripts/ and bench/: the shared harness, the events and their table, the
checks of `make run`, and `make smoke` against a stack on moto (in process)."""

import filecmp
import hashlib
import json
import re
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import harness  # noqa: E402
import make_events  # noqa: E402
import local  # noqa: E402
import smoke  # noqa: E402


def test_sign_is_chats():
    # Chat's documented example.
    assert harness.sign("xxxxyyyy", "1669872112") == \
        "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"


def test_events_are_up_to_date_and_each_has_a_row(tmp_path):
    make_events.main(tmp_path)
    names = sorted(p.name for p in (ROOT / "events").glob("*.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert filecmp.cmpfiles(ROOT / "events", tmp_path, names, shallow=False)[0] == names, \
        "events/ differs from what scripts/make_events.py writes: run it"
    calls = local.load_calls()
    assert {c.case for c in calls} == {p[:-5] for p in names if p.endswith(".json")}
    assert {c.config for c in calls} == set(local.CONFIGS)
    # SNS failing: queued with a retry queue, the last resort without one.
    outcomes = {(c.case, c.config): c.expected for c in calls}
    assert outcomes[("publish_sns_down", "A")] == (200, 0, "`retry queue`")
    assert outcomes[("publish_sns_down", "C")] == (503, 5030, "`publish_failed` record")
    event = json.loads((ROOT / "events" / "text_with_u_fffe.json").read_text(encoding="utf-8"))
    assert "\ufffe" in event["body"]


def test_make_runs_checks_accept_the_contract_and_catch_a_difference():
    topics = type("Topics", (), {"arns": {"frequency_limit": "arn:t"}})()
    # Numbers in decimal, numeric strings too (" 9 " is 9); strings as sent ("007" stays).
    body = ('{"GroupId":"g\ufffe","From_Account":"007","Random":7,"EventTime":" 9 ",'
            '"ErrorCode":"10023"}')
    call = local.Call("c", "A", "", (200, 0, ""), {}, body.encode(),
                      "SdkAppid=1&OptPlatform=Web&ClientIP=1.2.3.4")
    key = call.dedup_key()
    assert key == hashlib.sha256("1|g\ufffe|007|7|9|10023".encode()).hexdigest()
    envelope = {"category": "frequency_limit", "errorCode": 10023, "sdkAppId": "1",
                "clientIp": "1.2.3.4", "optPlatform": "Web", "dedupKey": key,
                "receivedAt": "2026-12-03T00:00:00.000Z"}
    message = json.dumps(envelope)[:-1] + ',"callback":' + body.replace("\ufffe", "\\ufffe") + "}"
    attributes = {name: {"Type": "String", "Value": envelope[name]}
                  for name in ("category", "sdkAppId", "optPlatform", "dedupKey")}
    attributes["errorCode"] = {"Type": "Number", "Value": "10023"}
    doc = {"TopicArn": "arn:t", "Message": message, "MessageAttributes": attributes}
    assert call.check_published(harness.Published.parse("frequency_limit", doc), topics) == []
    raw = doc | {"Message": message.replace("\\ufffe", "\ufffe")}  # as SNS would refuse it
    assert any("U+FFFE" in p for p in call.check_published(
        harness.Published.parse("frequency_limit", raw), topics))
    attributes["errorCode"]["Type"] = "String"  # the schema's business
    assert call.check_published(harness.Published.parse("frequency_limit", doc), topics)


def test_env_file_values_are_quoted_as_cargo_lambdas_parser_reads_them():
    # The tokens of env-file-reader, the parser behind `cargo lambda watch --env-file`: a bare
    # value is [^\s='`"#]+, a single-quoted one '[^']*'. A URL's query has `=`; a token, `#`.
    bare, quoted = r"""[^\s='`"#]+""", r"'([^']*)'"
    for value in ["https://b.example/cb?key=k", "tok#en"]:
        line = local.env_file_line("NAME", value)
        parsed = re.fullmatch(f"(?:{bare})=(?:({bare})|{quoted})\n", line)
        assert parsed and value in parsed.groups(), line
    with pytest.raises(RuntimeError):
        local.env_file_line("NAME", "it's")


def test_upstream_answers_by_the_rules_and_records(monkeypatch):
    monkeypatch.setattr(harness, "SLOW_S", 0.1)
    upstream = harness.Upstream("t")
    try:
        blocked = json.dumps({"MsgBody": [{"MsgType": "TIMTextElem",
                                           "MsgContent": {"Text": "加微信 now"}}]}).encode()
        query = f"CallbackCommand={harness.BEFORE_SEND}&RequestTime=5&Sign={harness.sign('t', '5')}"
        answer = harness.http(f"{upstream.url}?{query}", blocked)
        assert answer == (200, harness.UPSTREAM_TYPE, harness.UPSTREAM_BLOCKED)
        slow = harness.http(f"{upstream.url}?{query}&LocalUpstream=slow", b"{}")
        assert slow[::2] == (200, harness.UPSTREAM_ACK)
        with pytest.raises(OSError):
            harness.http(f"{upstream.url}?LocalUpstream=drop", b"{}")
        first, slow, dropped = upstream.since(0)
        assert (first.query, first.body, first.sign_ok) == (query, blocked, True)
        assert first.action == "answered"
        assert (slow.action, dropped.action, dropped.sign_ok) == ("late", "closed", False)
    finally:
        upstream.stop()


def test_runtime_api_hands_events_to_a_bootstrap(tmp_path):
    bootstrap = tmp_path / "bootstrap"
    bootstrap.write_text(
        "import json, os, urllib.request as u\n"
        "base = f\"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation\"\n"
        "while True:\n"
        "    with u.urlopen(base + '/next') as r:\n"
        "        rid, event = r.headers['Lambda-Runtime-Aws-Request-Id'], json.load(r)\n"
        "    answer = json.dumps({'echo': event}).encode()\n"
        "    u.urlopen(u.Request(f'{base}/{rid}/response', answer))\n")
    api = harness.RuntimeApi()
    proc = api.launch([sys.executable, bootstrap], {})
    try:
        for n in range(2):
            api.invoke(f"r{n}", {"n": n})
            assert api.answer(timeout=20)[1] == {"echo": {"n": n}}
    finally:
        harness.stop(proc)
        api.stop()
    assert proc.returncode is not None


def test_moto_topics_read_back_what_was_published():
    moto = harness.Moto()
    try:
        topics = harness.Topics(moto.url)
        attribute = {"errorCode": {"DataType": "Number", "StringValue": "1"}}
        topics.sns.publish(TopicArn=topics.arns["muted_sender"], Message='{"a":1}', Subject="s",
                           MessageAttributes=attribute)
        [published] = topics.drain()
        assert (published.source, published.message, published.attributes) == \
            ("muted_sender", '{"a":1}', {"errorCode": ("Number", "1")})
        assert topics.drain() == []
    finally:
        moto.stop()
    assert moto.proc.returncode is not None


class Chat(BaseHTTPRequestHandler):
    """A deployed webhook as smoke.py sees it: checks the Sign, answers the acknowledgement."""
    token, answer, seen = "smoke-token", harness.ACK, []

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        query = dict(parse_qsl(urlsplit(self.path).query))
        callback = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Chat.seen.append((query, callback))
        good = query.get("Sign") == harness.sign(Chat.token, query.get("RequestTime", ""))
        body = Chat.answer if good else b'{"ActionStatus":"FAIL","ErrorCode":4014}'
        self.send_response(200 if good else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def deployed(monkeypatch):
    """A stack on moto (in process) whose CallbackUrl is a local Chat-like server."""
    from moto import mock_aws

    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x",
                        "AWS_SECRET_ACCESS_KEY": "x", "IM_CALLBACK_TOKEN": "",
                        "IM_SDK_APP_ID": ""}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Chat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Chat.seen, Chat.answer = [], harness.ACK
    with mock_aws():
        import boto3

        chat_url = f"http://127.0.0.1:{server.server_port}/"

        def create(name: str, secret: str = "", url: str = "", domain: str = "") -> None:
            template = {
                "Parameters": {"SdkAppIds": {"Type": "String"},
                               "CallbackTokenSecretArn": {"Type": "String", "Default": ""},
                               "CustomDomainName": {"Type": "String", "Default": ""}},
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"CallbackUrl": {"Value": url or chat_url},
                            "DashboardUrl": {"Value": "https://dashboard.example"}}}
            given = {"SdkAppIds": "1400000000,14000001", "CallbackTokenSecretArn": secret,
                     "CustomDomainName": domain}
            boto3.client("cloudformation").create_stack(
                StackName=name, TemplateBody=json.dumps(template),
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()])

        yield create, boto3
    server.shutdown()
    server.server_close()


def test_smoke_with_the_token_from_the_stacks_secret(deployed, capsys):
    create, boto3 = deployed
    arn = boto3.client("secretsmanager").create_secret(
        Name="token", SecretString='{"current": "smoke-token", "previous": "old"}')["ARN"]
    create("with-secret", arn)
    assert smoke.main(["with-secret"]) == 0
    [(query, callback)] = Chat.seen
    assert query["SdkAppid"] == "1400000000" and query["CallbackCommand"] == harness.EXCEPTION
    assert callback["GroupId"].startswith("im-exception-smoke-")
    assert "https://dashboard.example" in capsys.readouterr().out


def test_smoke_with_the_token_from_the_environment_and_a_wrong_answer(deployed, monkeypatch):
    create, _ = deployed
    create("plain")
    assert smoke.main(["plain"]) == 2  # no token anywhere
    monkeypatch.setenv("IM_CALLBACK_TOKEN", "smoke-token")
    assert smoke.main(["plain"]) == 0
    Chat.answer = b'{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}'  # not the function's
    assert smoke.main(["plain"]) == 1
    monkeypatch.setenv("IM_CALLBACK_TOKEN", "wrong")
    assert smoke.main(["plain"]) == 1


def test_smoke_says_why_a_stack_with_mutual_tls_cannot_pass(deployed, tmp_path, monkeypatch,
                                                             capsys):
    create, _ = deployed
    monkeypatch.setenv("IM_CALLBACK_TOKEN", "smoke-token")
    create("with-domain", domain="chat-webhook.example.com")
    assert smoke.main(["with-domain"]) == 2 and not Chat.seen
    assert "client certificate (mutual TLS)" in capsys.readouterr().out
    # A domain that asks for a client certificate during the handshake, trusted by this client.
    crt, key, bundle = harness.test_ca(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(crt, key)
    tls.load_verify_locations(bundle)
    tls.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), Chat)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        create("mutual-tls", url=f"https://127.0.0.1:{server.server_port}/callback")
        assert smoke.main(["mutual-tls"]) == 1
        assert "refused the TLS handshake" in capsys.readouterr().out
    finally:
        server.shutdown()
        server.server_close()
