#!/usr/bin/env python3
"""The local run (`make run`): the whole webhook on this machine, nothing in AWS.

1. a moto server on a free loopback port stands in for SNS and SQS;
2. one topic per category, each with an SQS queue subscribed, to read back what was published;
3. a local upstream (stdlib http.server on a free loopback port, in this process) plays the
   app's existing callback backend: it records every request, rejects a before-send callback
   with a blocked word, acknowledges the rest, and misbehaves when the query asks it to;
4. the function runs under `cargo lambda watch`, once per configuration the events need
   (A and B in events/README.md), forwarding to that upstream;
5. every event in events/ is POSTed to its function the way Chat would call it, in the order
   of the expectations table in events/README.md; before the rows that need SNS to fail, the
   queues are drained, then a topic is deleted or moto is stopped, as the table says;
6. a table shows, per event, the answer Chat got, where the callback went (topic, upstream,
   publish_failed record) and what the upstream answered, checked against that table;
7. everything started here is stopped again, also on Ctrl-C or an error.

Needs python3 with boto3, and moto_server / cargo-lambda on PATH (the Makefile puts .venv/bin
there). Logs go to .local-run/ (git-ignored): watch-A.log, watch-B.log (cargo and each
function's JSON log lines), moto.log and upstream.log. Exit status: 0 when everything matched,
1 otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote_plus

import boto3

ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = ROOT / "events"
WORK_DIR = ROOT / ".local-run"

FUNCTION = "im-exception-webhook"  # the binary; cargo lambda serves it under /lambda-url/<name>/
SDK_APP_ID = "1400000000"
TOKEN = "local-run-token"
REGION = "us-east-1"
CATEGORIES = ["invalid_group", "frequency_limit", "content_filter", "muted_sender", "unclassified"]
TOPIC_PREFIX = "im-exception-"
EXCEPTION_COMMAND = "Group.CallbackSendMsgException"
# The message attributes of docs/contract.md, in its order (for the table).
ATTRIBUTE_ORDER = ["category", "errorCode", "groupId", "groupType", "fromAccount",
                   "operatorAccount", "sdkAppId", "optPlatform", "dedupKey"]
ACKNOWLEDGEMENT = '{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'

# The configurations of events/README.md: what each adds to the common one.
CONFIGS = {
    "A": {},
    "B": {"FORWARD_EXCEPTIONS": "true", "MAX_BODY_BYTES": "262144"},
}

# The local upstream (events/README.md describes it).
UPSTREAM_PATH = "/callback"
UPSTREAM_SWITCH = "LocalUpstream"  # drop | slow
UPSTREAM_SLOW_S = 3.0  # beyond the function's UPSTREAM_TIMEOUT_MS (1,500 by default)
BEFORE_SEND = "Group.CallbackBeforeSendMsg"
BLOCKED_WORDS = ["red-packet", "加微信"]
UPSTREAM_BLOCKED = b'{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"blocked by moderation"}'
UPSTREAM_ACK = b'{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}'
UPSTREAM_CONTENT_TYPE = "application/json; charset=utf-8"

# The function's own variables. Any of them in the caller's shell, or any AWS_* variable (a
# profile, a real endpoint), would leak into the function through cargo lambda, which passes
# its own environment on; the run must depend on nothing but what is set here. The list is
# docs/configuration.md's table, and these in case it cannot be read.
KNOWN_FUNCTION_VARIABLES = {
    "IM_SDK_APP_ID", "IM_CALLBACK_TOKEN", "IM_CALLBACK_TOKEN_PREVIOUS", "IM_SIGN_MAX_SKEW_SECS",
    "TOPIC_ARN_INVALID_GROUP", "TOPIC_ARN_FREQUENCY_LIMIT", "TOPIC_ARN_CONTENT_FILTER",
    "TOPIC_ARN_MUTED_SENDER", "TOPIC_ARN_UNCLASSIFIED", "ERROR_CODE_OVERRIDES",
    "PUBLISH_TIMEOUT_MS", "MAX_BODY_BYTES", "UPSTREAM_CALLBACK_URL", "UPSTREAM_TIMEOUT_MS",
    "FORWARD_EXCEPTIONS",
}

# The first `cargo lambda watch` invocation compiles the function (debug profile); a cold
# target/ takes minutes.
BUILD_TIMEOUT_S = 600
PROGRESS_EVERY_S = 15
REQUEST_TIMEOUT_S = 30
# How long a publish_failed record may take to reach the log after the answer.
RECORD_WAIT_S = 5


def say(message: str) -> None:
    print(message, flush=True)


# --- processes ------------------------------------------------------------------------------

class Children:
    """The processes this script started, each the leader of a process group of its own: a
    Ctrl-C in the terminal then reaches only this script, which stops them in order, and
    stopping one stops what it started. cargo lambda starts the function (`cargo run`, which
    execs the binary) in a session of its own, so a group kill alone would miss it: see
    stop_process_tree."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], log: Path, env: dict | None = None):
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.started.append((name, proc))
        return proc

    def stop(self, name: str) -> None:
        for entry in [e for e in self.started if e[0] == name]:
            stop_process_tree(entry[1])
            self.started.remove(entry)

    def stop_all(self) -> None:
        for name, proc in reversed(self.started):
            stop_process_tree(proc)
        self.started.clear()


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc, including those in other process groups."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces; the ppid follows it.
        fields = text[text.rfind(")") + 2:].split()
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        found += children
        frontier += children
    return found


def stop_process_tree(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group (and to any descendant that left it), then SIGKILL to
    whatever is still there after a grace period."""
    pgid = proc.pid
    stragglers = descendants(proc.pid) if Path("/proc").is_dir() else []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        send_signal(pgid, stragglers, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and group_alive(pgid, stragglers):
            time.sleep(0.1)
            proc.poll()  # reaps the leader: a zombie leader keeps the group "alive"
        if not group_alive(pgid, stragglers):
            break
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def send_signal(pgid: int, pids: list[int], sig: int) -> None:
    for kill, target in [(os.killpg, pgid)] + [(os.kill, pid) for pid in pids]:
        try:
            kill(target, sig)
        except (ProcessLookupError, PermissionError):
            pass


def group_alive(pgid: int, pids: list[int]) -> bool:
    def exists(kill) -> bool:
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def running(pid: int) -> bool:  # a zombie still "exists" until its parent reaps it
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    group = exists(lambda: os.killpg(pgid, 0))
    return group or any(running(p) for p in pids)


def free_port() -> int:
    """A port nothing listens on now; the kernel picks it, so parallel runs do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 1) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()][-lines:]


def sign(request_time: str) -> str:
    """Chat's Sign: lowercase hex SHA-256 over Token + RequestTime."""
    return hashlib.sha256((TOKEN + request_time).encode()).hexdigest()


# --- step 1: moto --------------------------------------------------------------------------

def start_moto(children: Children) -> str:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = children.start("moto", ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                          WORK_DIR / "moto.log")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited ({proc.returncode}): "
                               f"{' | '.join(tail(WORK_DIR / 'moto.log', 5))}")
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
            return url
        except urllib.error.HTTPError:
            return url  # it answered, which is all we need
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer on {url} within 30 s")


# --- step 2: topics and queues -------------------------------------------------------------

def aws_client(service: str, moto_url: str):
    # Explicit endpoint, region and dummy keys: nothing comes from ~/.aws or the environment.
    return boto3.client(service, endpoint_url=moto_url, region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test")


def create_topics_and_queues(moto_url: str) -> dict[str, dict[str, str]]:
    """One topic per category, with an SQS queue subscribed (not raw delivery, so that each
    message arrives as an SNS notification carrying its MessageAttributes)."""
    sns, sqs = aws_client("sns", moto_url), aws_client("sqs", moto_url)
    wiring = {}
    for category in CATEGORIES:
        topic_arn = sns.create_topic(Name=TOPIC_PREFIX + category)["TopicArn"]
        queue_url = sqs.create_queue(QueueName=f"{TOPIC_PREFIX}{category}-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        wiring[category] = {"topic_arn": topic_arn, "queue_url": queue_url}
    return wiring


# --- step 3: the local upstream ------------------------------------------------------------

@dataclass
class UpstreamRequest:
    """One request the upstream received, and what it did with it."""
    path: str
    query: str  # exactly as received
    body: bytes
    content_type: str | None
    sign_ok: bool  # Sign right for RequestTime under the token: the backend's own check
    action: str = ""  # answered | closed | late (answered after the caller had gone)
    status: int | None = None
    answer: bytes | None = None


class Upstream:
    """The app's existing callback backend, on a free loopback port, in a thread here."""

    def __init__(self, log: Path) -> None:
        self.requests: list[UpstreamRequest] = []
        self.lock = threading.Lock()
        self.log = open(log, "a", encoding="utf-8")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), UpstreamHandler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.server.upstream = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{UPSTREAM_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.log.close()

    def add(self, request: UpstreamRequest) -> None:
        with self.lock:
            self.requests.append(request)

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def since(self, start: int) -> list[UpstreamRequest]:
        with self.lock:
            return self.requests[start:]

    def write_log(self, line: str) -> None:
        with self.lock:
            if not self.log.closed:
                self.log.write(line + "\n")
                self.log.flush()


def upstream_command(query: str, body: bytes) -> str | None:
    """The command as a backend reads it: the query's, else the body's."""
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() == "callbackcommand" and value:
            return value
    try:
        command = json.loads(body).get("CallbackCommand")
    except (ValueError, AttributeError):
        return None
    return command if isinstance(command, str) else None


def blocked(body: bytes) -> bool:
    try:
        elements = json.loads(body).get("MsgBody") or []
    except (ValueError, AttributeError):
        return False
    texts = [e.get("MsgContent", {}).get("Text", "") for e in elements
             if isinstance(e, dict) and e.get("MsgType") == "TIMTextElem"]
    return any(word in str(text) for text in texts for word in BLOCKED_WORDS)


class UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the function's connection pool expects

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.read_body()
        path, _, query = self.path.partition("?")
        params = parse_qsl(query, keep_blank_values=True)
        times = [v for k, v in params if k.lower() == "requesttime"]
        signs = [v for k, v in params if k.lower() == "sign"]
        request = UpstreamRequest(
            path=path, query=query, body=body, content_type=self.headers.get("Content-Type"),
            sign_ok=len(times) == 1 and len(signs) == 1 and signs[0].lower() == sign(times[0]))
        self.server.upstream.add(request)
        switch = next((v for k, v in params if k == UPSTREAM_SWITCH), None)
        if switch == "drop":
            request.action = "closed"
            self.server.upstream.write_log(f"{self.log_date_time_string()} \"{self.requestline}\""
                                           " closed without an answer")
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if switch == "slow":
            time.sleep(UPSTREAM_SLOW_S)
        command = upstream_command(query, body)
        answer = UPSTREAM_BLOCKED if command == BEFORE_SEND and blocked(body) else UPSTREAM_ACK
        request.status, request.answer = 200, answer
        try:
            self.send_response(200)
            self.send_header("Content-Type", UPSTREAM_CONTENT_TYPE)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            self.wfile.flush()
            request.action = "answered"
        except OSError:
            request.action = "late"
            self.close_connection = True
        if switch == "slow" and request.action == "answered":
            request.action = "late"  # the function gave up before; its socket took the bytes

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's naming)
        self.server.upstream.write_log(f"{self.log_date_time_string()} {format % args}")


# --- step 4: the function under cargo lambda watch -----------------------------------------

def function_variables() -> set[str]:
    names = set(KNOWN_FUNCTION_VARIABLES)
    try:
        text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    except OSError:
        return names
    return names | set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|", text, re.MULTILINE))


def function_environment(config: str, moto_url: str, wiring: dict,
                         upstream_url: str) -> dict[str, str]:
    env = {
        "IM_SDK_APP_ID": SDK_APP_ID,
        "IM_CALLBACK_TOKEN": TOKEN,
        "UPSTREAM_CALLBACK_URL": upstream_url,
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
    }
    for category in CATEGORIES:
        env[f"TOPIC_ARN_{category.upper()}"] = wiring[category]["topic_arn"]
    return env | CONFIGS[config]


@dataclass
class Function:
    config: str
    proc: subprocess.Popen
    url: str
    log: Path


def start_function(children: Children, config: str, env: dict[str, str]) -> Function:
    """Starts `cargo lambda watch`; the function itself is built and started by the first
    request. Its configuration goes in an --env-file: --env-var would also work, but its
    comma-separated form splits values, and a file is easy to inspect afterwards."""
    port = free_port()
    env_file = WORK_DIR / f"function-{config}.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    log = WORK_DIR / f"watch-{config}.log"
    argv = ["cargo", "lambda", "watch",
            "--invoke-address", "127.0.0.1", "--invoke-port", str(port),
            "--env-file", str(env_file),
            # Without it, any edit under src/ (or events/) rebuilds and restarts the
            # function in the middle of the run.
            "--ignore-changes"]
    own = function_variables()
    parent_env = {k: v for k, v in os.environ.items()
                  if not (k.startswith("AWS_") or k in own)}
    proc = children.start(f"cargo lambda watch ({config})", argv, log, env=parent_env)
    return Function(config, proc, f"http://127.0.0.1:{port}/lambda-url/{FUNCTION}/", log)


def probe(function_url: str) -> tuple[int, str]:
    """A GET: the function answers 405 without touching SNS, which proves it is running.
    The first request is also what makes cargo lambda build and start the function."""
    request = urllib.request.Request(function_url, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=BUILD_TIMEOUT_S) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_until_functions_answer(functions: list[Function]) -> dict[str, float]:
    """Waits for each function's first answer, printing build progress, up to BUILD_TIMEOUT_S.
    All are probed at once, so that one build (the first `cargo run` takes cargo's lock, the
    others wait for it and find the binary fresh) serves them all. The probes run in daemon
    threads so that this loop stays responsive to Ctrl-C and notices cargo lambda dying.
    Returns the seconds each took."""
    started = time.monotonic()
    next_progress = started + PROGRESS_EVERY_S
    attempts: dict[str, dict | None] = {f.config: None for f in functions}
    ready: dict[str, float] = {}
    while len(ready) < len(functions):
        elapsed = time.monotonic() - started
        waiting = [f for f in functions if f.config not in ready]
        if elapsed > BUILD_TIMEOUT_S:
            raise RuntimeError(f"function {waiting[0].config} did not answer within "
                               f"{BUILD_TIMEOUT_S} s; see {waiting[0].log.relative_to(ROOT)}")
        for function in waiting:
            log, attempt = function.log, attempts[function.config]
            if function.proc.poll() is not None:
                raise RuntimeError(f"cargo lambda watch ({function.config}) exited "
                                   f"({function.proc.returncode}): " + " | ".join(tail(log, 10)))
            if attempt is None:
                attempts[function.config] = attempt = {}
                threading.Thread(target=run_probe, args=(function.url, attempt),
                                 daemon=True).start()
            if "error" in attempt:
                # cargo lambda may refuse a connection for a moment after starting.
                attempts[function.config] = None
            elif "response" in attempt:
                status, body = attempt["response"]
                if '"ActionStatus"' not in body:
                    # cargo lambda's own error (a build failure, the function exiting at start).
                    raise RuntimeError(f"function {function.config} did not start: HTTP "
                                       f"{status} {body[:300]} | {' | '.join(tail(log, 10))}")
                ready[function.config] = elapsed
                say(f"   {function.config} answered after {elapsed:.1f} s")
        if time.monotonic() >= next_progress:
            last = tail(waiting[0].log, 1)
            say(f"    ... {elapsed:4.0f} s  {last[0][:100] if last else '(no output yet)'}")
            next_progress += PROGRESS_EVERY_S
        time.sleep(0.2)
    return ready


def builds(log: Path) -> int:
    """How many times cargo compiled the function for this instance."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    return len(re.findall(r"Compiling im-exception-webhook ", text))


def run_probe(function_url: str, result: dict) -> None:
    try:
        result["response"] = probe(function_url)  # one assignment: seen whole or not at all
    except OSError as e:
        result["error"] = e


# --- step 5: the calls ---------------------------------------------------------------------

@dataclass
class Expectation:
    status: int
    error_code: int
    config: str
    condition: tuple[str, str] | None  # ("delete_topic", category) or ("stop_sns", "")
    categories: list[str]
    upstream: int
    publish_failed: bool


def parse_condition(text: str) -> tuple[str, str]:
    if text == "SNS stopped":
        return ("stop_sns", "")
    if m := re.fullmatch(rf"`{TOPIC_PREFIX}([a-z_]+)` deleted", text):
        return ("delete_topic", m.group(1))
    raise RuntimeError(f"events/README.md: unknown condition {text!r}")


def load_expectations() -> dict[str, Expectation]:  # in the table's order
    """The table in events/README.md:
    | `case` | what it is | config[, condition] | status | ErrorCode | outcome |"""
    expected = {}
    for line in (EVENTS_DIR / "README.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6:
            raise RuntimeError(f"events/README.md: a row without 6 cells: {line[:80]}")
        name, _, config_cell, status, error_code, outcome = cells
        config, _, condition = (part.strip() for part in config_cell.partition(","))
        if config not in CONFIGS:
            raise RuntimeError(f"events/README.md: {name}: unknown configuration {config!r}")
        upstream = re.search(r"`upstream`(?:\s*×(\d+))?", outcome)
        expected[name.strip("`")] = Expectation(
            status=int(status), error_code=int(error_code), config=config,
            condition=parse_condition(condition) if condition else None,
            categories=re.findall(rf"`{TOPIC_PREFIX}([a-z_]+)`", outcome),
            upstream=int(upstream.group(1) or 1) if upstream else 0,
            publish_failed="`publish_failed`" in outcome)
    return expected


@dataclass
class Call:
    name: str
    event: dict
    body: bytes | None = None
    query: str = ""
    content_type: str | None = None
    expected: Expectation | None = None
    status: int = 0
    answer_bytes: bytes = b""
    answer_type: str | None = None
    answer: dict | str = ""
    millis: float = 0.0
    deliveries: list[dict] = field(default_factory=list)
    forwarded: list[UpstreamRequest] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)  # publish_failed records
    problems: list[str] = field(default_factory=list)

    @property
    def config(self) -> str:
        return self.expected.config if self.expected else "A"


def load_events() -> list[Call]:
    calls = []
    for path in sorted(EVENTS_DIR.glob("*.json")):
        event = json.loads(path.read_text(encoding="utf-8"))
        body = event.get("body")
        if body is not None:
            body = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
        content_type = next((v for k, v in event.get("headers", {}).items()
                             if k.lower() == "content-type"), None)
        calls.append(Call(path.stem, event, body, content_type=content_type))
    return calls


def in_table_order(calls: list[Call], expected: dict[str, Expectation]) -> list[Call]:
    """The README's order (the rows that need SNS to fail come last); events the README does
    not list come last of all, and are sent to A."""
    rank = {name: i for i, name in enumerate(expected)}
    for call in calls:
        call.expected = expected.get(call.name)
    return sorted(calls, key=lambda c: (rank.get(c.name, len(rank)), c.name))


def fresh_query(call: Call, now: int) -> str:
    """The query string to send: the event's own, with every Unix-seconds RequestTime moved by
    as much as the event's time is from now, and every Sign that was right for the old
    RequestTime made again for the new one. Everything else goes byte for byte: a wrong Sign
    stays wrong, a malformed RequestTime stays malformed, a skewed one stays as far off."""
    raw = call.event.get("rawQueryString", "")
    pieces = raw.split("&") if raw else []
    decoded = [(unquote_plus(k), unquote_plus(v))
               for k, _, v in (piece.partition("=") for piece in pieces)]
    times = {v for k, v in decoded if k.lower() == "requesttime"}
    if len(times) != 1:
        return raw
    old = times.pop()
    if not old.isdigit():
        return raw
    event_s = call.event.get("requestContext", {}).get("timeEpoch", 0) // 1000
    new = str(int(old) + now - event_s)
    out = []
    for piece, (key, value) in zip(pieces, decoded):
        name = piece.partition("=")[0]
        if key.lower() == "requesttime":
            piece = f"{name}={new}"
        elif key.lower() == "sign" and value.lower() == sign(old):
            piece = f"{name}={sign(new)}"
        out.append(piece)
    return "&".join(out)


def post_event(function: Function, call: Call) -> None:
    """Sends one event as an HTTP request: its method, query string and (decoded) body."""
    call.query = fresh_query(call, int(time.time()))
    method = call.event.get("requestContext", {}).get("http", {}).get("method", "POST")
    headers = {k: v for k, v in call.event.get("headers", {}).items()
               if k.lower() in ("content-type", "accept")}
    url = f"{function.url}?{call.query}" if call.query else function.url
    request = urllib.request.Request(url, data=call.body, headers=headers, method=method)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            call.status, call.answer_bytes = response.status, response.read()
            call.answer_type = response.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        call.status, call.answer_bytes = e.code, e.read()
        call.answer_type = e.headers.get("Content-Type")
    call.millis = (time.perf_counter() - started) * 1000
    text = call.answer_bytes.decode(errors="replace")
    try:
        call.answer = json.loads(text)
    except ValueError:
        call.answer = text


# --- step 6: what came of it -----------------------------------------------------------------

def drain_queues(moto_url: str, wiring: dict) -> list[dict]:
    """Every message in every queue (deleted as read), as {category, notification}.
    moto delivers to SQS while handling the Publish, so all are there by now: no waiting."""
    sqs = aws_client("sqs", moto_url)
    deliveries = []
    for category in CATEGORIES:
        queue_url = wiring[category]["queue_url"]
        while True:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                break
            for message in messages:
                deliveries.append({"category": category,
                                   "notification": json.loads(message["Body"])})
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return deliveries


def expected_dedup_key(call: Call) -> str | None:
    """The dedupKey of docs/contract.md for the callback in this event, computed independently here so
    that it both finds the event a message came from and checks the function's."""
    try:
        cb = json.loads(call.body or b"")
    except ValueError:
        return None
    if not isinstance(cb, dict):
        return None
    query = dict((k.lower(), v) for k, v in parse_qsl(call.query))

    def text(value) -> str:
        if value is None:
            return ""
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return str(int(value))  # a numeric string counts as its number
        return str(value)

    parts = [query.get("sdkappid", ""), cb.get("GroupId") or "", cb.get("From_Account") or "",
             text(cb.get("Random")), text(cb.get("EventTime")), text(cb.get("ErrorCode"))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def calls_by_dedup_key(calls: list[Call]) -> dict[str, Call]:
    by_key: dict[str, Call] = {}
    for call in calls:
        key = expected_dedup_key(call)
        if key:
            by_key.setdefault(key, call)
    return by_key


def attach_deliveries(calls: list[Call], deliveries: list[dict]) -> list[str]:
    """Gives each delivered message to the event it came from (by dedupKey), checking the
    envelope and attributes on the way; returns messages no event explains."""
    by_key = calls_by_dedup_key(calls)
    orphans = []
    for delivery in deliveries:
        note = delivery["notification"]
        attributes = {k: v for k, v in note.get("MessageAttributes", {}).items()}
        delivery["attributes"] = attributes
        try:
            envelope = json.loads(note.get("Message", ""))
        except ValueError:
            envelope = {}
        key = attributes.get("dedupKey", {}).get("Value") or envelope.get("dedupKey")
        call = by_key.get(key)
        if call is None:
            orphans.append(f"{delivery['category']}: a message no event explains "
                           f"(dedupKey {str(key)[:16]}...)")
            continue
        call.deliveries.append(delivery)
        check_delivery(call, delivery, envelope)
    return orphans


def check_delivery(call: Call, delivery: dict, envelope: dict) -> None:
    attributes = {k: v.get("Value") for k, v in delivery["attributes"].items()}
    types = {k: v.get("Type") for k, v in delivery["attributes"].items()}
    query = dict((k.lower(), v) for k, v in parse_qsl(call.query))
    wrong = []
    if envelope.get("category") != delivery["category"] or \
            attributes.get("category") != delivery["category"]:
        wrong.append(f"category {envelope.get('category')}/{attributes.get('category')} "
                     f"on the {delivery['category']} topic")
    if not isinstance(envelope.get("errorCode"), int) or \
            str(envelope.get("errorCode")) != attributes.get("errorCode") or \
            types.get("errorCode") != "Number":
        wrong.append(f"errorCode {envelope.get('errorCode')!r} / attribute "
                     f"{types.get('errorCode')} {attributes.get('errorCode')}")
    if envelope.get("callback") != json.loads(call.body):
        wrong.append("envelope.callback differs from the body sent")
    for name, want in [("sdkAppId", query.get("sdkappid")),
                       ("optPlatform", query.get("optplatform"))]:
        if attributes.get(name) != want or envelope.get(name) != want:
            wrong.append(f"{name} {envelope.get(name)}/{attributes.get(name)}, sent {want}")
    if envelope.get("clientIp") != query.get("clientip"):
        wrong.append(f"clientIp {envelope.get('clientIp')}, sent {query.get('clientip')}")
    if attributes.get("dedupKey") != expected_dedup_key(call):
        wrong.append("dedupKey differs from the formula of docs/contract.md")
    call.problems += [f"published message: {w}" for w in wrong]


def publish_failed_records(log: Path) -> list[dict]:
    records = []
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return records
    for line in lines:
        if '"event":"publish_failed"' not in line:
            continue
        try:
            records.append(json.loads(line[line.index("{"):]))
        except ValueError:
            continue
    return records


def attach_records(calls: list[Call], functions: dict[str, Function], wiring: dict) -> list[str]:
    """Gives each publish_failed record in the functions' logs to its event (by dedupKey) and
    checks it keeps the callback; returns records no event explains."""
    by_key = calls_by_dedup_key(calls)
    orphans = []
    for config, function in functions.items():
        for record in publish_failed_records(function.log):
            call = by_key.get(record.get("dedupKey"))
            if call is None or call.config != config:
                orphans.append(f"{config}: a publish_failed record no event explains "
                               f"(dedupKey {str(record.get('dedupKey'))[:16]}...)")
                continue
            call.records.append(record)
            envelope = record.get("envelope")
            if isinstance(envelope, str):
                envelope = json.loads(envelope)
            category = record.get("category")
            want_arn = wiring.get(category, {}).get("topic_arn")
            if record.get("topicArn") != want_arn:
                call.problems.append(f"publish_failed record: topicArn {record.get('topicArn')}"
                                     f", expected {want_arn}")
            if not isinstance(envelope, dict) or \
                    envelope.get("callback") != json.loads(call.body):
                call.problems.append("publish_failed record: the envelope does not hold the "
                                     "callback sent")
    return orphans


def check_forwarded(call: Call) -> None:
    """Each request the upstream received for this event is the event's query string and body
    as sent, its Sign still good for the backend's own check."""
    for request in call.forwarded:
        if request.path != UPSTREAM_PATH:
            call.problems.append(f"forwarded to path {request.path}, expected {UPSTREAM_PATH}")
        if request.query != call.query:
            call.problems.append(f"forwarded query differs: {request.query[:120]!r}, "
                                 f"sent {call.query[:120]!r}")
        if request.body != (call.body or b""):
            call.problems.append(f"forwarded body differs ({len(request.body)} bytes, sent "
                                 f"{len(call.body or b'')})")
        if request.content_type != call.content_type:
            call.problems.append(f"forwarded Content-Type {request.content_type!r}, sent "
                                 f"{call.content_type!r}")
        if not request.sign_ok:
            call.problems.append("forwarded Sign does not verify for the upstream")


def passes_on(want: Expectation) -> bool:
    """Chat gets the upstream's answer: another command, forwarded and answered."""
    return want.upstream > 0 and not want.categories and want.status < 500


def compare_with_expectations(calls: list[Call], expected: dict[str, Expectation]) -> list[str]:
    problems = []
    for call in calls:
        want = call.expected
        if want is None:
            call.problems.append("no row in events/README.md")
            continue
        if call.status != want.status:
            call.problems.append(f"status {call.status}, expected {want.status}")
        code = call.answer.get("ErrorCode") if isinstance(call.answer, dict) else None
        if code != want.error_code:
            call.problems.append(f"ErrorCode {code!r}, expected {want.error_code}")
        got = [d["category"] for d in call.deliveries]
        if got != want.categories:
            call.problems.append(f"published to {got or 'no topic'}, "
                                 f"expected {want.categories or 'none'}")
        if len(call.forwarded) != want.upstream:
            call.problems.append(f"the upstream received {len(call.forwarded)} requests, "
                                 f"expected {want.upstream}")
        check_forwarded(call)
        if bool(call.records) != want.publish_failed or len(call.records) > 1:
            call.problems.append(f"{len(call.records)} publish_failed records, expected "
                                 f"{int(want.publish_failed)}")
        answered = [r for r in call.forwarded if r.action == "answered"]
        if passes_on(want):
            if not answered:
                call.problems.append("the upstream gave no answer to pass on")
            elif (call.status, call.answer_bytes, call.answer_type) != \
                    (answered[-1].status, answered[-1].answer, UPSTREAM_CONTENT_TYPE):
                call.problems.append(f"Chat did not get the upstream's answer unchanged: "
                                     f"{call.status} {call.answer_type} {call.answer_bytes!r}")
        elif call.status == 200 and call.answer_bytes != ACKNOWLEDGEMENT.encode():
            call.problems.append(f"200 without Chat's exact acknowledgement: "
                                 f"{call.answer_bytes[:80]!r}")
    for name in expected:
        if not (EVENTS_DIR / f"{name}.json").is_file():
            problems.append(f"{name}: in events/README.md but there is no events/{name}.json")
    return problems


# --- the table -------------------------------------------------------------------------------

def where_it_went(call: Call) -> str:
    parts = [f"topic {d['category']}" for d in call.deliveries]
    if call.forwarded:
        actions = [r.action for r in call.forwarded]
        count = f" ×{len(actions)}" if len(actions) > 1 else ""
        how = {"answered": "", "closed": ", closed unanswered",
               "late": ", too slow"}.get(actions[-1], f", {actions[-1]}")
        if set(actions) == {"closed"} or len(set(actions)) == 1:
            parts.append(f"upstream{count}{how}")
        else:
            parts.append(f"upstream{count} ({', '.join(actions)})")
    if call.records:
        parts.append("publish_failed record")
    return " + ".join(parts) or "-"


def answer_text(call: Call) -> str:
    text = call.answer_bytes.decode(errors="replace")
    if call.expected and passes_on(call.expected):
        return f"{text}  (the upstream's)"
    if text == ACKNOWLEDGEMENT:
        passed = [r for r in call.forwarded if r.action == "answered"]
        suffix = (f"; the upstream's {passed[-1].answer.decode()} not passed on"
                  if passed else "")
        return f"OK (the function's acknowledgement{suffix})"
    if isinstance(call.answer, dict):
        return f"{call.answer.get('ActionStatus')} {call.answer.get('ErrorCode')}: " \
               f"{call.answer.get('ErrorInfo', '')}"
    return f"(not JSON) {text[:60]}"


def print_table(calls: list[Call]) -> None:
    """One row per event: its answer, where it went, and under it anything that differs."""
    width_name = max(len(c.name) for c in calls)
    width_where = max(len(where_it_went(c)) for c in calls)
    header = (f"{'event':<{width_name}}  cfg  status  ErrorCode  {'ms':>6}  "
              f"{'where it went':<{width_where}}  answer as Chat got it")
    say(header)
    say("-" * min(len(header) + 60, 200))
    for call in calls:
        code = call.answer.get("ErrorCode", "?") if isinstance(call.answer, dict) else "?"
        mark = "   <-- MISMATCH" if call.problems else ""
        say(f"{call.name:<{width_name}}  {call.config:<3}  {call.status:>6}  {code!s:>9}  "
            f"{call.millis:6.1f}  {where_it_went(call):<{width_where}}  "
            f"{answer_text(call)[:150]}{mark}")
        for record in call.records:
            say(f"{'':<{width_name}}     publish_failed record: topicArn {record.get('topicArn')}"
                f", error: {str(record.get('error'))[:110]}")
        for problem in call.problems:
            say(f"{'':<{width_name}}     !! {problem}")


def print_deliveries(calls: list[Call]) -> None:
    """The message attributes each delivered message had (for subscription filter policies)."""
    for call in calls:
        for delivery in call.deliveries:
            received = delivery["attributes"]
            order = [n for n in ATTRIBUTE_ORDER if n in received] + \
                sorted(n for n in received if n not in ATTRIBUTE_ORDER)
            attrs = []
            for name in order:
                shown = received[name].get("Value", "")
                if name == "dedupKey":
                    shown = shown[:12] + "..."
                suffix = "(N)" if received[name].get("Type") == "Number" else ""
                attrs.append(f"{name}{suffix}={shown}")
            say(f"  {call.name}: {' '.join(attrs)}")


# --- main ----------------------------------------------------------------------------------

def main() -> int:
    started = time.monotonic()
    WORK_DIR.mkdir(exist_ok=True)
    for old in [*WORK_DIR.glob("watch*.log"), *WORK_DIR.glob("function*.env"),
                WORK_DIR / "upstream.log"]:
        old.unlink(missing_ok=True)
    try:
        expected = load_expectations()
    except RuntimeError as e:
        say(f"ERROR: {e}")
        return 1
    calls = in_table_order(load_events(), expected)
    if not calls:
        say("no events in events/")
        return 1
    configs = sorted({c.config for c in calls})
    children = Children()
    upstream: Upstream | None = None

    # Turn SIGTERM / SIGHUP (e.g. make being stopped) into an exception, so the `finally`
    # below stops the servers just as it does on Ctrl-C (KeyboardInterrupt).
    def leave(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGHUP, leave)

    try:
        say("1. starting moto (local SNS and SQS)")
        moto_url = start_moto(children)
        say(f"   moto at {moto_url}")

        say("2. creating a topic and a subscribed SQS queue per category")
        wiring = create_topics_and_queues(moto_url)
        for category in CATEGORIES:
            say(f"   {wiring[category]['topic_arn']}")

        say("3. starting the local upstream (the app's existing callback backend)")
        upstream = Upstream(WORK_DIR / "upstream.log")
        upstream.start()
        say(f"   upstream at {upstream.url}  (log: .local-run/upstream.log)")

        say(f"4. starting the function under cargo lambda watch, configuration "
            f"{' and '.join(configs)} (the first build can take minutes)")
        functions = {}
        for config in configs:
            env = function_environment(config, moto_url, wiring, upstream.url)
            functions[config] = start_function(children, config, env)
            extra = " ".join(f"{k}={v}" for k, v in CONFIGS[config].items()) or "defaults"
            say(f"   {config} ({extra}): {functions[config].url}  "
                f"(log: {functions[config].log.relative_to(ROOT)})")
        wait_until_functions_answer(list(functions.values()))
        build_s = time.monotonic() - started
        if sum(1 for f in functions.values() if builds(f.log)) > 1:
            say("   !! the function was compiled more than once: src/ changed while it was "
                "built, so the configurations may run different code")

        say(f"5. POSTing {len(calls)} events the way Chat calls (signed with the local token)")
        deliveries: list[dict] | None = None
        sns = aws_client("sns", moto_url)
        for call in calls:
            condition = call.expected.condition if call.expected else None
            if condition and deliveries is None:
                say("   draining the queues before SNS is made to fail")
                deliveries = drain_queues(moto_url, wiring)
            if condition == ("stop_sns", "") and any(n == "moto" for n, _ in children.started):
                say("   stopping moto: SNS is unreachable from here on")
                children.stop("moto")
            elif condition and condition[0] == "delete_topic":
                arn = wiring[condition[1]]["topic_arn"]
                if arn in {t["TopicArn"] for t in sns.list_topics()["Topics"]}:
                    say(f"   deleting {arn}")
                    sns.delete_topic(TopicArn=arn)
            before = upstream.count()
            post_event(functions[call.config], call)
            call.forwarded = upstream.since(before)
        if deliveries is None:
            deliveries = drain_queues(moto_url, wiring)

        say("6. reading back what was published, forwarded and logged")
        if any(c.expected and c.expected.publish_failed for c in calls):
            time.sleep(0.5)  # the log lines of the last calls
            deadline = time.monotonic() + RECORD_WAIT_S
            while time.monotonic() < deadline and sum(
                    len(publish_failed_records(f.log)) for f in functions.values()) < sum(
                    1 for c in calls if c.expected and c.expected.publish_failed):
                time.sleep(0.2)
        orphans = attach_deliveries(calls, deliveries)
        orphans += attach_records(calls, functions, wiring)
        problems = orphans + compare_with_expectations(calls, expected)

        say("")
        print_table(calls)
        say("")
        say("Message attributes of the published messages:")
        print_deliveries(calls)
        say("")
        bad = [c for c in calls if c.problems]
        for problem in problems:
            say(f"!! {problem}")
        elapsed = time.monotonic() - started
        forwarded = sum(len(c.forwarded) for c in calls)
        if bad or problems:
            say(f"FAILED: {len(bad)} of {len(calls)} events differ from events/README.md "
                f"({len(deliveries)} messages published, {forwarded} requests to the "
                f"upstream; {elapsed:.1f} s). Function logs: .local-run/watch-*.log")
            for function in functions.values():
                for line in tail(function.log, 400):
                    if '"level":"ERROR"' in line and '"publish_failed"' not in line:
                        say(f"   log {function.config}: {line[:300]}")
            return 1
        say(f"OK: all {len(calls)} events as expected: {len(deliveries)} messages published, "
            f"{forwarded} requests to the upstream, each as sent "
            f"(build/start {build_s:.1f} s, total {elapsed:.1f} s)")
        return 0
    except (RuntimeError, OSError) as e:
        say(f"ERROR: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        say("7. stopping cargo lambda watch, the upstream and moto")
        # Ctrl-C twice must not leave the servers running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        children.stop_all()
        if upstream is not None:
            upstream.stop()


if __name__ == "__main__":
    sys.exit(main())
