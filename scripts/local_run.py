#!/usr/bin/env python3
"""The local run (`make run`): the whole webhook on this machine, nothing in AWS.

1. a moto server on a free loopback port stands in for SNS and SQS;
2. one topic per category, each with an SQS queue subscribed, to read back what was published;
3. the function runs under `cargo lambda watch`, configured for those topics;
4. every event in events/ is POSTed to the function URL the way Chat would call it;
5. the queues are drained and a table shows, per event, the answer and what was published,
   checked against the expectations table in events/README.md;
6. everything started here is stopped again, also on Ctrl-C or an error.

Needs python3 with boto3, and moto_server / cargo-lambda on PATH (the Makefile puts .venv/bin
there). Logs go to .local-run/ (git-ignored): watch.log (cargo and the function's JSON log
lines) and moto.log. Exit status: 0 when everything matched, 1 otherwise.
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
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

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
# DESIGN.md's message attributes, in its order (for the table).
ATTRIBUTE_ORDER = ["category", "errorCode", "groupId", "groupType", "fromAccount",
                   "operatorAccount", "sdkAppId", "optPlatform", "dedupKey"]
ACKNOWLEDGEMENT = '{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'

# Events that test the signature itself: not re-signed (see sign_query).
SIGNATURE_CASES = {"sign_missing", "sign_wrong", "request_time_skewed"}

# The function's own variables (src/config.rs). Any of them in the caller's shell, or any AWS_*
# variable (a profile, a real endpoint), would leak into the function through cargo lambda,
# which passes its own environment on; the run must depend on nothing but what is set here.
FUNCTION_VARIABLES = {
    "IM_SDK_APP_ID", "IM_CALLBACK_TOKEN", "IM_SIGN_MAX_SKEW_SECS", "TOPIC_ARN_INVALID_GROUP",
    "TOPIC_ARN_FREQUENCY_LIMIT", "TOPIC_ARN_CONTENT_FILTER", "TOPIC_ARN_MUTED_SENDER",
    "TOPIC_ARN_UNCLASSIFIED", "ERROR_CODE_OVERRIDES", "PUBLISH_TIMEOUT_MS", "MAX_BODY_BYTES",
}

# The first `cargo lambda watch` invocation compiles the function (debug profile); a cold
# target/ takes minutes.
BUILD_TIMEOUT_S = 600
PROGRESS_EVERY_S = 15
REQUEST_TIMEOUT_S = 30


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


# --- step 3: the function under cargo lambda watch -----------------------------------------

def function_environment(moto_url: str, wiring: dict) -> dict[str, str]:
    env = {
        "IM_SDK_APP_ID": SDK_APP_ID,
        "IM_CALLBACK_TOKEN": TOKEN,
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
    }
    for category in CATEGORIES:
        env[f"TOPIC_ARN_{category.upper()}"] = wiring[category]["topic_arn"]
    return env


def start_function(children: Children, moto_url: str, wiring: dict) -> tuple[subprocess.Popen, str]:
    """Starts `cargo lambda watch`; the function itself is built and started by the first
    request. Its configuration goes in an --env-file: --env-var would also work, but its
    comma-separated form splits values, and a file is easy to inspect afterwards."""
    port = free_port()
    env_file = WORK_DIR / "function.env"
    env_file.write_text("".join(f"{k}={v}\n"
                                for k, v in function_environment(moto_url, wiring).items()))
    argv = ["cargo", "lambda", "watch",
            "--invoke-address", "127.0.0.1", "--invoke-port", str(port),
            "--env-file", str(env_file),
            # Without it, any edit under src/ (or events/) rebuilds and restarts the
            # function in the middle of the run.
            "--ignore-changes"]
    parent_env = {k: v for k, v in os.environ.items()
                  if not (k.startswith("AWS_") or k in FUNCTION_VARIABLES)}
    proc = children.start("cargo lambda watch", argv, WORK_DIR / "watch.log", env=parent_env)
    return proc, f"http://127.0.0.1:{port}/lambda-url/{FUNCTION}/"


def probe(function_url: str) -> tuple[int, str]:
    """A GET: the function answers 405 without touching SNS, which proves it is running.
    The first request is also what makes cargo lambda build and start the function."""
    request = urllib.request.Request(function_url, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=BUILD_TIMEOUT_S) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_until_function_answers(proc: subprocess.Popen, function_url: str) -> float:
    """Waits for the function's first answer, printing build progress, up to BUILD_TIMEOUT_S.
    The probe runs in a daemon thread so that this loop stays responsive to Ctrl-C and
    notices cargo lambda dying."""
    started = time.monotonic()
    log = WORK_DIR / "watch.log"
    next_progress = started + PROGRESS_EVERY_S
    attempt: dict | None = None
    while True:
        elapsed = time.monotonic() - started
        if elapsed > BUILD_TIMEOUT_S:
            raise RuntimeError(f"the function did not answer within {BUILD_TIMEOUT_S} s; "
                               f"see {log.relative_to(ROOT)}")
        if proc.poll() is not None:
            raise RuntimeError(f"cargo lambda watch exited ({proc.returncode}): "
                               + " | ".join(tail(log, 10)))
        if attempt is None:
            attempt = {}
            threading.Thread(target=run_probe, args=(function_url, attempt), daemon=True).start()
        if "error" in attempt:
            # cargo lambda may refuse a connection for a moment after starting.
            attempt = None
            time.sleep(0.5)
            continue
        if "response" in attempt:
            status, body = attempt["response"]
            if '"ActionStatus"' in body:
                return elapsed
            # cargo lambda's own error (a build failure, the function exiting at start).
            raise RuntimeError(f"the function did not start: HTTP {status} {body[:300]}"
                               f" | {' | '.join(tail(log, 10))}")
        if time.monotonic() >= next_progress:
            last = tail(log, 1)
            say(f"    ... {elapsed:4.0f} s  {last[0][:100] if last else '(no output yet)'}")
            next_progress += PROGRESS_EVERY_S
        time.sleep(0.2)


def run_probe(function_url: str, result: dict) -> None:
    try:
        result["response"] = probe(function_url)  # one assignment: seen whole or not at all
    except OSError as e:
        result["error"] = e


# --- step 4: the calls ---------------------------------------------------------------------

@dataclass
class Expectation:
    status: int
    category: str | None


def load_expectations() -> dict[str, Expectation]:  # in the table's order
    """The table in events/README.md: | `case` | what it is | status | `im-exception-<cat>` or — |"""
    row = re.compile(r"^\|\s*`([^`]+)`\s*\|.*\|\s*(\d{3})\s*\|\s*([^|]*?)\s*\|\s*$")
    expected = {}
    for line in (EVENTS_DIR / "README.md").read_text(encoding="utf-8").splitlines():
        if m := row.match(line):
            topic = m.group(3).strip("` ")
            category = topic[len(TOPIC_PREFIX):] if topic.startswith(TOPIC_PREFIX) else None
            expected[m.group(1)] = Expectation(int(m.group(2)), category)
    return expected


@dataclass
class Call:
    name: str
    event: dict
    body: bytes | None = None
    query: str = ""
    status: int = 0
    answer: dict | str = ""
    millis: float = 0.0
    deliveries: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def load_events() -> list[Call]:
    calls = []
    for path in sorted(EVENTS_DIR.glob("*.json")):
        event = json.loads(path.read_text(encoding="utf-8"))
        body = event.get("body")
        if body is not None:
            body = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
        calls.append(Call(path.stem, event, body))
    return calls


def in_table_order(calls: list[Call], expected: dict[str, Expectation]) -> list[Call]:
    """The README's order (categories, then refusals as the function checks them); events
    the README does not list come last."""
    rank = {name: i for i, name in enumerate(expected)}
    return sorted(calls, key=lambda c: (rank.get(c.name, len(rank)), c.name))


def sign(request_time: str) -> str:
    """Chat's Sign: lowercase hex SHA-256 over Token + RequestTime."""
    return hashlib.sha256((TOKEN + request_time).encode()).hexdigest()


def sign_query(call: Call) -> str:
    """The query string to send: the event's own, signed now the way Chat signs each call.

    The events carry no Sign (a fixed RequestTime would be outside the allowed skew), except
    the signature cases, which test exactly that and are sent as they are, with one
    exception: sign_wrong gets a fresh RequestTime for its wrong Sign, otherwise it would be
    refused for its age before its Sign is ever compared."""
    raw = call.event.get("rawQueryString", "")
    if call.name in ("sign_missing", "request_time_skewed"):
        return raw
    pairs = parse_qsl(raw, keep_blank_values=True)
    now = str(int(time.time()))
    keep = [(k, v) for k, v in pairs if k.lower() not in ("sign", "requesttime")]
    if call.name == "sign_wrong":
        wrong_sign = next(v for k, v in pairs if k.lower() == "sign")
        return urlencode(keep + [("Sign", wrong_sign), ("RequestTime", now)])
    return urlencode(keep + [("Sign", sign(now)), ("RequestTime", now)])


def post_event(function_url: str, call: Call) -> None:
    """Sends one event as an HTTP request: its method, query string and (decoded) body."""
    call.query = sign_query(call)
    method = call.event.get("requestContext", {}).get("http", {}).get("method", "POST")
    headers = {k: v for k, v in call.event.get("headers", {}).items()
               if k.lower() in ("content-type", "accept")}
    request = urllib.request.Request(f"{function_url}?{call.query}", data=call.body,
                                     headers=headers, method=method)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            call.status, text = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        call.status, text = e.code, e.read().decode(errors="replace")
    call.millis = (time.perf_counter() - started) * 1000
    try:
        call.answer = json.loads(text)
    except ValueError:
        call.answer = text
    if call.status == 200 and text != ACKNOWLEDGEMENT:
        call.problems.append(f"200 without Chat's exact acknowledgement: {text[:80]}")


# --- step 5: what was published --------------------------------------------------------------

def drain_queues(moto_url: str, wiring: dict) -> list[dict]:
    """Every message in every queue (deleted as read), as {category, notification}.
    moto delivers to SQS while handling the Publish, so all are there by now."""
    sqs = aws_client("sqs", moto_url)
    deliveries = []
    for category in CATEGORIES:
        queue_url = wiring[category]["queue_url"]
        while True:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", [])
            if not messages:
                break
            for message in messages:
                deliveries.append({"category": category,
                                   "notification": json.loads(message["Body"])})
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return deliveries


def expected_dedup_key(call: Call) -> str | None:
    """DESIGN.md's dedupKey for the callback in this event, computed independently here so
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


def attach_deliveries(calls: list[Call], deliveries: list[dict]) -> list[str]:
    """Gives each delivered message to the event it came from (by dedupKey), checking the
    envelope and attributes on the way; returns messages no event explains."""
    by_key = {}
    for call in calls:
        key = expected_dedup_key(call)
        if key:
            by_key.setdefault(key, call)
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
        wrong.append("dedupKey differs from DESIGN.md's formula")
    call.problems += [f"published message: {w}" for w in wrong]


def compare_with_expectations(calls: list[Call], expected: dict[str, Expectation]) -> list[str]:
    problems = []
    for call in calls:
        want = expected.get(call.name)
        if want is None:
            call.problems.append("no row in events/README.md")
            continue
        if call.status != want.status:
            call.problems.append(f"status {call.status}, expected {want.status}")
        got = [d["category"] for d in call.deliveries]
        if got != ([want.category] if want.category else []):
            call.problems.append(f"published to {got or 'no topic'}, "
                                 f"expected {want.category or 'none'}")
    for name in sorted(set(expected) - {c.name for c in calls}):
        problems.append(f"{name}: in events/README.md but there is no events/{name}.json")
    return problems


def answer_text(call: Call) -> str:
    if isinstance(call.answer, dict):
        status = call.answer.get("ActionStatus", "?")
        if status == "OK":
            return "OK"
        return f"{status} {call.answer.get('ErrorCode')}: {call.answer.get('ErrorInfo', '')}"
    return f"(not JSON) {call.answer[:60]}"


def print_table(calls: list[Call]) -> None:
    """One row per event, and under it the message attributes each delivered message had."""
    width_name = max(len(c.name) for c in calls) + len(".json")
    header = (f"{'event file':<{width_name}}  status  {'ms':>6}  {'topic (category)':<16}  "
              "answer: ActionStatus [ErrorCode: ErrorInfo]")
    say(header)
    say("-" * len(header))
    for call in calls:
        topic = ",".join(d["category"] for d in call.deliveries) or "-"
        mark = "" if not call.problems else "   <-- MISMATCH"
        say(f"{call.name + '.json':<{width_name}}  {call.status:>6}  {call.millis:6.1f}  "
            f"{topic:<16}  {answer_text(call)[:140]}{mark}")
        for delivery in call.deliveries:
            attrs = []
            received = delivery["attributes"]
            order = [n for n in ATTRIBUTE_ORDER if n in received] + \
                sorted(n for n in received if n not in ATTRIBUTE_ORDER)
            for name, value in ((n, received[n]) for n in order):
                shown = value.get("Value", "")
                if name == "dedupKey":
                    shown = shown[:12] + "..."
                suffix = "(N)" if value.get("Type") == "Number" else ""
                attrs.append(f"{name}{suffix}={shown}")
            say(f"{'':<{width_name}}    attributes: {' '.join(attrs)}")
        for problem in call.problems:
            say(f"{'':<{width_name}}    !! {problem}")


# --- main ----------------------------------------------------------------------------------

def main() -> int:
    started = time.monotonic()
    WORK_DIR.mkdir(exist_ok=True)
    expected = load_expectations()
    calls = in_table_order(load_events(), expected)
    if not calls:
        say("no events in events/")
        return 1
    children = Children()

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

        say("3. starting the function under cargo lambda watch (the first build can take minutes)")
        proc, function_url = start_function(children, moto_url, wiring)
        say(f"   function URL {function_url}  (log: {(WORK_DIR / 'watch.log').relative_to(ROOT)})")
        ready_after = wait_until_function_answers(proc, function_url)
        say(f"   the function answered after {ready_after:.1f} s")

        say(f"4. POSTing {len(calls)} events the way Chat calls (signed with the local token)")
        for call in calls:
            post_event(function_url, call)

        say("5. draining the queues")
        deliveries = drain_queues(moto_url, wiring)
        orphans = attach_deliveries(calls, deliveries)
        problems = orphans + compare_with_expectations(calls, expected)

        say("")
        print_table(calls)
        say("")
        bad = [c for c in calls if c.problems]
        for problem in problems:
            say(f"!! {problem}")
        elapsed = time.monotonic() - started
        if bad or problems:
            say(f"FAILED: {len(bad)} of {len(calls)} events differ from events/README.md "
                f"({len(deliveries)} messages published; {elapsed:.1f} s). "
                f"Function log: {(WORK_DIR / 'watch.log').relative_to(ROOT)}")
            # The function's own error lines (a publish_failed record, say) explain most.
            for line in tail(WORK_DIR / "watch.log", 400):
                if '"level":"ERROR"' in line:
                    say(f"   log: {line[:300]}")
            return 1
        say(f"OK: all {len(calls)} events as expected, {len(deliveries)} messages published "
            f"(build/start {ready_after:.1f} s, total {elapsed:.1f} s)")
        return 0
    except (RuntimeError, OSError) as e:
        say(f"ERROR: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        say("6. stopping cargo lambda watch and moto")
        # Ctrl-C twice must not leave the servers running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        children.stop_all()


if __name__ == "__main__":
    sys.exit(main())
