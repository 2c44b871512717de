"""The local stand-ins that `make run`, `make serve`, `make smoke`, the benchmark and
tests/test_tools.py share, one of each: a moto server (SNS, SQS, Secrets Manager), topics with
SQS queues subscribed to read back what was published, the recording upstream (the app's
existing callback backend), a local Lambda Runtime API, and Chat's Sign, calls and events."""

from __future__ import annotations

import hashlib
import json
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
CATEGORIES = ["invalid_group", "frequency_limit", "content_filter", "muted_sender", "unclassified"]
EXCEPTION, BEFORE_SEND = "Group.CallbackSendMsgException", "Group.CallbackBeforeSendMsg"
ACK = b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'
# What the recording upstream answers (events/README.md). Its acknowledgement has its fields in
# another order than the function's own, so that an answer shows whose it is.
UPSTREAM_ACK = b'{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}'
UPSTREAM_BLOCKED = b'{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"blocked by moderation"}'
UPSTREAM_TYPE = "application/json; charset=utf-8"
BLOCKED_WORDS = ("red-packet", "加微信")
SLOW_S = 3.0  # beyond the function's UPSTREAM_TIMEOUT_MS (1,500 by default)
GATEWAY_HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
CHAT_SERVER_IP = "198.51.100.23"  # Chat's server as API Gateway sees it (ClientIP: the user's)


def sign(token: str, request_time: str) -> str:
    """Chat's Sign: lowercase hex SHA-256 of token + RequestTime (a concatenation, not HMAC)."""
    return hashlib.sha256((token + request_time).encode()).hexdigest()


def chat_call(token: str | None, app_id: str = "1400000000", command: str = EXCEPTION,
              group_id: str = "@TGS#2J4SZEAEL", text: str = "hello") -> tuple[str, bytes]:
    """(query, body) of a call as Chat would make it now, signed if there is a token; Random
    and EventTime from the clock, so that each call has its own dedupKey."""
    now = time.time()
    query = [("SdkAppid", app_id), ("CallbackCommand", command), ("contenttype", "json"),
             ("ClientIP", "203.0.113.5"), ("OptPlatform", "RESTAPI")]
    if token is not None:
        query += [("RequestTime", str(int(now))), ("Sign", sign(token, str(int(now))))]
    body = {"CallbackCommand": command, "GroupId": group_id, "Type": "Public",
            "From_Account": "jared", "Operator_Account": "jared",
            "Random": int(now * 1e6) % 4_000_000_000, "OnlineOnlyFlag": 0,
            "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}],
            "EventTime": int(now * 1000)}
    if command == EXCEPTION:
        body |= {"ErrorCode": 10023, "ErrorInfo": "the message frequency exceeded the limit"}
    return urlencode(query), json.dumps(body, separators=(",", ":")).encode()


def gateway_event(query: str, body: str | None, at: int, seed: str, method: str = "POST",
                  base64: bool = False) -> dict:
    """The call as API Gateway (HTTP API, payload 2.0) hands it over, arrived at Unix time `at`,
    its request id derived from `seed`."""
    params: dict[str, str] = {}  # API Gateway joins a repeated name's values with commas
    for key, value in parse_qsl(query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    headers = {"accept": "*/*", "host": GATEWAY_HOST, "x-forwarded-for": CHAT_SERVER_IP}
    if body is not None:
        headers |= {"content-length": str(len(body.encode())), "content-type": "application/json"}
    # Only a catch-all route lets a GET reach the function; POST /callback would not.
    route = "POST /callback" if method == "POST" else "ANY /callback"
    event = {"version": "2.0", "routeKey": route, "rawPath": "/callback", "rawQueryString": query,
             "headers": headers, "queryStringParameters": params, "isBase64Encoded": base64,
             "requestContext": {
                 "accountId": "123456789012", "apiId": GATEWAY_HOST.split(".")[0],
                 "domainName": GATEWAY_HOST, "routeKey": route, "stage": "$default",
                 "requestId": uuid.uuid5(uuid.NAMESPACE_URL, seed).hex[:16].upper() + "=",
                 "http": {"method": method, "path": "/callback", "protocol": "HTTP/1.1",
                          "sourceIp": CHAT_SERVER_IP, "userAgent": ""}, "timeEpoch": at * 1000}}
    if body is not None:
        event["body"] = b64encode(body.encode()).decode() if base64 else body
    return event


def http(url: str, body: bytes | None = None, method: str = "POST", headers: dict | None = None,
         timeout: float = 30) -> tuple[int, str | None, bytes]:
    """(status, Content-Type, body); an HTTP error status is an answer like any other."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def to_json(value) -> str:
    """Indented JSON for a person; a raw U+FFFE or U+FFFF written as its JSON escape, as the
    function writes it: the same value, in a file that survives any editor."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff") + "\n"


def free_port() -> int:
    """A loopback port nothing listens on now, the kernel's pick: parallel runs differ."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws(service: str, endpoint: str, verify: str | None = None):
    """A boto3 client for moto; nothing from ~/.aws or the caller's environment."""
    import boto3  # comes with moto; imported here, so that `make sign` needs none of it

    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, verify=verify,
                        aws_access_key_id="test", aws_secret_access_key="test")


# --- processes and moto -----------------------------------------------------------------------

def start(argv: list, log: Path | None = None, env: dict | None = None,
          **popen) -> subprocess.Popen:
    """A child in a session of its own: Ctrl-C in the terminal reaches only the Python process,
    which then stops its children in order instead of leaving them half-stopped."""
    with open(log or "/dev/null", "wb") as out:
        return subprocess.Popen([str(a) for a in argv], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **popen)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s. cargo lambda watch stops the function it started (in a
    session of its own) on SIGTERM."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            pass


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}) before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


class Moto:
    """moto_server (the venv's, else the one on PATH) on a free loopback port, over HTTPS when
    given (certificate, key). It binds its port once it has imported its services: an open
    port means it answers."""

    def __init__(self, log: Path | None = None, tls: tuple[Path, Path] | None = None):
        beside = Path(sys.executable).parent / "moto_server"
        binary = beside if beside.exists() else shutil.which("moto_server")
        if not binary:
            raise RuntimeError("moto_server not found: run `make venv` (or `make run`)")
        port = free_port()
        self.proc = start([binary, "-H", "127.0.0.1", "-p", port,
                           *(["-c", tls[0], "-k", tls[1]] if tls else [])], log)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        wait_for_port(port, self.proc, "moto_server")

    def stop(self) -> None:
        stop(self.proc)


def test_ca(workdir: Path) -> tuple[Path, Path, Path]:
    """(certificate, key, bundle): a certificate for 127.0.0.1 from a throwaway CA, and the
    system's roots plus that CA, for SSL_CERT_FILE and boto3's verify=."""
    ca_key, ca, key, csr, crt = (workdir / n for n in ("ca.key", "ca.pem", "key", "csr", "crt"))
    (workdir / "san").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for argv in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                  "-subj", "/CN=local test CA", "-keyout", ca_key, "-out", ca],
                 ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                  "-keyout", key, "-out", csr],
                 ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                  "-days", "2", "-extfile", workdir / "san", "-out", crt]):
        subprocess.run(["openssl", *argv], check=True, capture_output=True)
    system = Path(ssl.get_default_verify_paths().openssl_cafile or "/nonexistent")
    bundle = workdir / "bundle.pem"
    bundle.write_text((system.read_text() if system.is_file() else "") + "\n" + ca.read_text())
    return crt, key, bundle


# --- topics and queues ------------------------------------------------------------------------

@dataclass
class Published:
    """A message as SNS was (or would have been) asked to publish it, read back from a queue on a
    topic, from the retry queue or from a publish_failed record; attributes {name: (type,
    value)}."""
    source: str  # a category (its topic's queue), "retry queue" or "record"
    topic_arn: str
    message: str
    subject: str | None
    attributes: dict
    doc: dict  # as read: an SNS notification, or the input of Publish

    @classmethod
    def parse(cls, source: str, doc: dict) -> Published:
        # An SNS notification spells them {"Type", "Value"}; Publish's input {"DataType", ...}.
        attributes = {name: (a.get("Type") or a["DataType"], a.get("Value") or a["StringValue"])
                      for name, a in (doc.get("MessageAttributes") or {}).items()}
        return cls(source, doc.get("TopicArn"), doc.get("Message"), doc.get("Subject"), attributes,
                   doc)

    def record(self) -> dict:
        """For a person to read: the envelope parsed."""
        return {"source": self.source, "topicArn": self.topic_arn, "subject": self.subject,
                "attributes": {name: value for name, (_, value) in self.attributes.items()},
                "message": json.loads(self.message)}


def drain(sqs, queue_url: str) -> list[dict]:
    """Every message in the queue, parsed and deleted. moto delivers from SNS to SQS while it
    handles the Publish, so whatever was published before the call is there: no waiting."""
    found = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                          WaitTimeSeconds=0).get("Messages", []):
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return found


class Topics:
    """A topic per category, each with a queue subscribed (not raw delivery: each message arrives
    as the SNS notification, with its MessageAttributes)."""

    def __init__(self, endpoint: str, prefix: str = "im-exception-", verify: str | None = None):
        self.sns, self.sqs = aws("sns", endpoint, verify), aws("sqs", endpoint, verify)
        self.arns, self.queues = {}, {}
        for category in CATEGORIES:
            self.arns[category] = self.sns.create_topic(Name=prefix + category)["TopicArn"]
            url = self.sqs.create_queue(QueueName=f"{prefix}{category}-inbox")["QueueUrl"]
            self.queues[category] = url
            arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            self.sns.subscribe(TopicArn=self.arns[category], Protocol="sqs",
                               Endpoint=arn["Attributes"]["QueueArn"])

    def env(self) -> dict:
        return {f"TOPIC_ARN_{category.upper()}": arn for category, arn in self.arns.items()}

    def drain(self) -> list[Published]:
        return [Published.parse(category, notification) for category, url in self.queues.items()
                for notification in drain(self.sqs, url)]


# --- servers in this process: the recording upstream and the Lambda Runtime API ---------------

def serve_http(handler, owner, tls: tuple[Path, Path] | None = None) -> ThreadingHTTPServer:
    """`handler` on a free loopback port, in daemon threads; it finds `owner` as server.owner."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads, server.owner = True, owner
    server.handle_error = lambda *_: None  # a peer that hangs up is no news here
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the function's connection pool expects

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in ({"Content-Type": "application/json"} | (headers or {})).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Forwarded:
    """One request the upstream received, and what it did with it."""
    path: str
    query: str  # exactly as received
    body: bytes
    content_type: str | None
    sign_ok: bool  # the backend's own check of Sign, with the token it shares with Chat
    action: str = ""  # answered | closed | late (answered after the caller had gone)
    answer: bytes = b""


class Upstream:
    """The app's existing callback backend, over HTTPS when given (certificate, key): it records
    every request and answers as events/README.md says."""

    def __init__(self, token: str, tls: tuple[Path, Path] | None = None):
        self.token, self.requests, self.lock = token, [], threading.Lock()
        self.server = serve_http(_UpstreamHandler, self, tls)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.server_port}/callback"

    def since(self, start: int) -> list[Forwarded]:
        with self.lock:
            return self.requests[start:]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def blocked(query: list, body: bytes) -> bool:
    """A before-send callback with a blocked word in a text element."""
    try:
        callback = json.loads(body)
        texts = [element["MsgContent"]["Text"] for element in callback.get("MsgBody") or []
                 if element.get("MsgType") == "TIMTextElem"]
        command = dict(query).get("CallbackCommand") or callback.get("CallbackCommand")
    except (ValueError, AttributeError, KeyError, TypeError):
        return False
    return command == BEFORE_SEND and any(w in text for text in texts for w in BLOCKED_WORDS)


class _UpstreamHandler(Handler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        upstream = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        pairs = parse_qsl(query, keep_blank_values=True)
        times = [v for k, v in pairs if k.lower() == "requesttime"]
        signs = [v for k, v in pairs if k.lower() == "sign"]
        signed = len(times) == len(signs) == 1 and signs[0] == sign(upstream.token, times[0])
        request = Forwarded(path, query, body, self.headers.get("Content-Type"), signed)
        with upstream.lock:
            upstream.requests.append(request)
        switch = dict(pairs).get("LocalUpstream")
        if switch == "drop":
            request.action, self.close_connection = "closed", True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        time.sleep(SLOW_S if switch == "slow" else 0)
        request.answer = UPSTREAM_BLOCKED if blocked(pairs, body) else UPSTREAM_ACK
        try:
            self.reply(200, request.answer, {"Content-Type": UPSTREAM_TYPE})
            # After SLOW_S the caller has gone, though its socket may still take the bytes.
            request.action = "late" if switch == "slow" else "answered"
        except OSError:
            request.action, self.close_connection = "late", True


class RuntimeApi:
    """Hands events to a bootstrap started with AWS_LAMBDA_RUNTIME_API=`address`, as Lambda does,
    and collects what it posts back."""

    def __init__(self):
        self.events, self.answers, self.stopping = queue.Queue(), queue.Queue(), threading.Event()
        self.server = serve_http(_RuntimeHandler, self)
        self.address = f"127.0.0.1:{self.server.server_port}"

    def launch(self, argv: list, env: dict, **popen) -> subprocess.Popen:
        """A bootstrap started as Lambda starts one: `env`, and what Lambda sets for a 128 MB
        function with the JSON log format under this API."""
        return start(argv, env=env | {
            "AWS_LAMBDA_RUNTIME_API": self.address, "AWS_LAMBDA_FUNCTION_NAME": "local",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_FORMAT": "JSON"}, **popen)

    def invoke(self, request_id: str, event: dict) -> None:
        self.events.put((request_id, json.dumps(event).encode()))

    def answer(self, timeout: float = 60) -> tuple[float, dict]:
        """(time.perf_counter() when it arrived, the response); no answer or an error post
        raises."""
        try:
            at, path, body = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"no answer within {timeout:.0f} s: try it by hand") from None
        if not path.endswith("/response"):
            raise RuntimeError(f"the function posted {path}: {body[:300]!r}")
        return at, json.loads(body)

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class _RuntimeHandler(Handler):
    def do_GET(self) -> None:  # noqa: N802
        api = self.server.owner
        while self.path.endswith("/runtime/invocation/next") and not api.stopping.is_set():
            try:
                request_id, event = api.events.get(timeout=0.2)
            except queue.Empty:
                continue
            return self.reply(200, event, {
                "Lambda-Runtime-Aws-Request-Id": request_id,
                "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 3000),
                "Lambda-Runtime-Invoked-Function-Arn":
                    "arn:aws:lambda:us-east-1:123456789012:function:local",
                "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000"})
        self.reply(404, b"{}")

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        at = time.perf_counter()
        self.reply(202, b"{}")  # first: once it has the answer, the caller may kill the function
        self.server.owner.answers.put((at, self.path, body))
