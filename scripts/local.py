#!/usr/bin/env python3
"""The webhook on this machine, nothing in AWS: moto as SNS and SQS, the recording upstream (the
app's existing callback backend) and the function under `cargo lambda watch`. With the venv's
Python (the Makefile does it); logs, details and published messages go to .local-run/.

  run    every event of events/ sent as Chat sends it and checked against events/README.md
  serve  the same pieces up until Ctrl-C, a signed curl printed, what is published written down
  sign   a fresh signed curl for the running serve
"""

import argparse
import base64
import contextlib
import functools
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote_plus

import harness
from harness import ACK, ROOT, Published

WORK = ROOT / ".local-run"
FUNCTION = "im-exception-webhook"  # cargo lambda serves it under /lambda-url/<name>/
TOKEN = "local-run-token"
# The configurations of events/README.md, over the common one (None: the variable unset).
CONFIGS = {"A": {}, "B": {"FORWARD_EXCEPTIONS": "true"}, "C": {"RETRY_QUEUE_URL": None}}
# Variables of the caller's shell that cargo lambda would pass on to the function (a profile, a
# real endpoint, a token): the run depends on nothing but what is set here.
LEAKS = re.compile(r"AWS_|IM_|TOPIC_ARN_|UPSTREAM_|(ERROR_CODE_OVERRIDES|PUBLISH_TIMEOUT_MS"
                   r"|MAX_BODY_BYTES|RETRY_QUEUE_URL|FORWARD_EXCEPTIONS)$")


def env_file_line(name: str, value: str) -> str:
    """NAME='value', as cargo lambda's --env-file parser (the env-file-reader crate) reads it:
    a bare value ends at a blank, `#`, `=` or a quote; a single-quoted one holds anything but
    `'`, and `\\n`, which it turns into a line break."""
    if "'" in value or "\\n" in value:
        raise RuntimeError(f"{name}: cargo lambda's --env-file cannot hold {value!r}")
    return f"{name}='{value}'\n"


class Watch:
    """`cargo lambda watch` serving the function with `env` on a free port. The variables go in
    an --env-file: --env-var would split their values on commas."""

    def __init__(self, name: str, env: dict):
        self.port, env_file = harness.free_port(), WORK / f"function-{name}.env"
        env_file.write_text("".join(env_file_line(k, v) for k, v in env.items()))
        clean = {k: v for k, v in os.environ.items() if not LEAKS.match(k)}
        # cargo-lambda, and the zig it builds with, from the venv this Python belongs to.
        clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
        self.log = WORK / f"watch-{name}.log"
        self.url = f"http://127.0.0.1:{self.port}/lambda-url/{FUNCTION}/"
        # --ignore-changes: an edit under src/ would otherwise rebuild and restart it mid-run.
        self.proc = harness.start(["cargo", "lambda", "watch", "--ignore-changes",
                                   "--invoke-address", "127.0.0.1", "--invoke-port", self.port,
                                   "--env-file", env_file], self.log, clean)

    def wait(self) -> None:
        """Until the function answers a GET (405, without touching AWS). The first request is
        what starts it, after a build if `cargo build` has not left it fresh."""
        harness.wait_for_port(self.port, self.proc, "cargo lambda watch")
        status, _, body = harness.http(self.url, method="GET", timeout=900)
        if b'"ActionStatus"' not in body:
            raise RuntimeError(f"the function did not start ({status} {body[:200]!r}); "
                               f"see {self.log}")

    def records(self) -> list[dict]:
        """The publish_failed records in the function's log, one JSON line each."""
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return [json.loads(line) for line in lines
                if line.startswith("{") and '"event":"publish_failed"' in line]


class Local(contextlib.ExitStack):
    """Moto twice (SNS with the topics; SQS for the retry queue, so that SNS can fail alone),
    the upstream and a `cargo lambda watch` per configuration, stopped in reverse order however
    the run ends. SIGTERM and SIGHUP (make being stopped) end it as Ctrl-C does; Ctrl-C works
    even where the shell started us with SIGINT ignored, and a second one cannot cut the
    clean-up short."""

    def __enter__(self):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda signum, _: sys.exit(128 + signum))
        return super().__enter__()

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        say("stopping cargo lambda watch, the upstream and moto")
        return super().__exit__(*exc)

    def start(self, configs: dict) -> None:
        # The build in the open: cargo lambda would build it silently on the first request.
        say(f"building {FUNCTION} (cargo build, debug; the first build takes a few minutes)")
        subprocess.run(["cargo", "build", "--bin", FUNCTION], cwd=ROOT, check=True)
        say("starting moto for SNS and for the retry queue (SQS), and the upstream")
        self.moto, moto_sqs = harness.Moto(WORK / "moto.log"), harness.Moto(WORK / "moto-sqs.log")
        self.callback(self.moto.stop)
        self.callback(moto_sqs.stop)
        self.upstream = harness.Upstream(TOKEN)
        self.callback(self.upstream.stop)
        self.topics, self.sqs = harness.Topics(self.moto.url), harness.aws("sqs", moto_sqs.url)
        self.retry_queue = self.sqs.create_queue(QueueName="im-exception-retry")["QueueUrl"]
        common = {"IM_SDK_APP_ID": "1400000000", "IM_CALLBACK_TOKEN": TOKEN, **self.topics.env(),
                  "UPSTREAM_CALLBACK_URL": self.upstream.url, "RETRY_QUEUE_URL": self.retry_queue,
                  "AWS_ENDPOINT_URL_SNS": self.moto.url, "AWS_ENDPOINT_URL_SQS": moto_sqs.url,
                  "AWS_REGION": harness.REGION, "AWS_ACCESS_KEY_ID": "test",
                  "AWS_SECRET_ACCESS_KEY": "test", "AWS_LAMBDA_LOG_FORMAT": "JSON"}
        say("starting cargo lambda watch: the token, the topics, the upstream, the retry queue")
        self.watches = {}
        for name, config in configs.items():
            changes = ", ".join(f"{k}={v}" if v else f"no {k}" for k, v in config.items())
            say(f"  {name}: {changes or 'just that'}")
            self.watches[name] = Watch(name, {k: v for k, v in (common | config).items() if v})
            self.callback(harness.stop, self.watches[name].proc)
        for watch in self.watches.values():
            watch.wait()

    def drain(self, sns_up: bool = True) -> list[Published]:
        """What was published since the last call: on the topics, then to the retry queue."""
        queued = harness.drain(self.sqs, self.retry_queue)
        return (self.topics.drain() if sns_up else []) + \
            [Published.parse("retry queue", publish) for publish in queued]


# --- make run ---------------------------------------------------------------------------------

@dataclass
class Call:
    """A row of the table in events/README.md: one event sent to one configuration, what it
    must get (status, ErrorCode, outcome, as the table writes them), and what it got."""
    case: str
    config: str
    condition: str  # "", "SNS stopped" or "`im-exception-<category>` deleted"
    expected: tuple
    event: dict = field(default_factory=dict)
    body: bytes | None = None
    query: str = ""
    status: int = 0
    code: object = None  # the answer's ErrorCode
    answer: bytes = b""
    answer_type: str | None = None
    ms: float = 0.0
    published: list = field(default_factory=list)
    forwarded: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def send(self, watch: Watch, upstream: harness.Upstream) -> None:
        """The event as Chat's HTTP request: its method, query string and (decoded) body."""
        event, before = self.event, len(upstream.since(0))
        if event.get("body") is not None:
            self.body = event["body"].encode()
            self.body = base64.b64decode(self.body) if event["isBase64Encoded"] else self.body
        self.query = fresh_query(event, int(time.time()))
        headers = {k: v for k, v in event["headers"].items() if k in ("content-type", "accept")}
        started = time.perf_counter()
        self.status, self.answer_type, self.answer = harness.http(
            f"{watch.url}?{self.query}", self.body, event["requestContext"]["http"]["method"],
            headers)
        self.ms = (time.perf_counter() - started) * 1000
        with contextlib.suppress(ValueError, AttributeError):
            self.code = json.loads(self.answer).get("ErrorCode")
        self.forwarded = upstream.since(before)  # the function answers once its forward ended

    def outcome(self) -> str:
        """Where it went, in the table's notation."""
        parts = [f"`im-exception-{p.source}`" for p in self.published
                 if p.source in harness.CATEGORIES]
        if self.forwarded:
            count = len(self.forwarded)
            parts.append(f"`upstream` ×{count}" if count > 1 else "`upstream`")
        parts += ["`retry queue`" for p in self.published if p.source == "retry queue"]
        parts += ["`publish_failed` record" for p in self.published if p.source == "record"]
        return " + ".join(parts) or "—"

    def dedup_key(self) -> str | None:
        """The contract's dedupKey, computed here on its own; None for a body that is not a
        JSON object."""
        try:
            callback = json.loads(self.body or b"")
            names = ("GroupId", "From_Account", "Random", "EventTime", "ErrorCode")
            app_id = {k.lower(): v for k, v in parse_qsl(self.query)}.get("sdkappid")
            values = [(None, app_id)] + [(name, callback.get(name)) for name in names]
        except (ValueError, AttributeError):
            return None

        def text(name, value) -> str:
            # The three numbers in decimal, whether sent as numbers or as numeric strings (" 42 "
            # is 42); GroupId and From_Account as sent.
            if name in names[2:] and isinstance(value, str) and value.strip().isdigit():
                return str(int(value))
            return "" if value is None else str(value)

        return hashlib.sha256("|".join(text(*v) for v in values).encode()).hexdigest()

    def check(self, topics: harness.Topics) -> None:
        if (self.status, self.code, self.outcome()) != self.expected:
            self.problems.append(f"got {self.status}, {self.code}, {self.outcome()}")
        for p in self.published:
            self.problems += [f"{p.source}: {w}" for w in self.check_published(p, topics)]
        sent = ("/callback", self.query, self.body or b"",
                self.event["headers"].get("content-type"))
        for f in self.forwarded:
            if (f.path, f.query, f.body, f.content_type) != sent or not f.sign_ok:
                self.problems.append(f"forwarded otherwise than sent, or unsigned: {f.query[:50]}")
        answered = [(f.answer, harness.UPSTREAM_TYPE) for f in self.forwarded
                    if f.action == "answered"]
        if self.forwarded and not self.published and self.status < 500:  # the upstream's answer
            if answered[-1:] != [(self.answer, self.answer_type)]:
                self.problems.append(f"not the upstream's answer unchanged: {self.answer[:60]!r}")
        elif self.status == 200 and self.answer != ACK:
            self.problems.append(f"200 without Chat's exact acknowledgement: {self.answer[:60]!r}")

    def check_published(self, p: Published, topics: harness.Topics) -> list[str]:
        """What the contract says of every message, whether published, queued or recorded: the
        schemas of docs/schema/ and the values sent."""
        envelope, sent = json.loads(p.message), self.body.decode()
        documents = {"envelope": envelope, "attributes": p.doc.get("MessageAttributes")} \
            if p.source in harness.CATEGORIES else {"envelope": envelope, "queued-publish": p.doc}
        wrong = [f"{name}: {error.message[:80]}" for name, document in documents.items()
                 for error in schema(name).iter_errors(document)]
        category, query = envelope.get("category"), {k.lower(): v for k, v in parse_qsl(self.query)}
        if topics.arns.get(category) != p.topic_arn or p.source not in (category, "retry queue",
                                                                          "record"):
            wrong.append(f"category {category}, to {p.topic_arn}")
        attribute = {name: value for name, (_, value) in p.attributes.items()}
        for name, value in [("category", category), ("errorCode", envelope.get("errorCode")),
                            ("sdkAppId", query.get("sdkappid")), ("dedupKey", self.dedup_key()),
                            ("optPlatform", query.get("optplatform"))]:
            if envelope.get(name) != value or attribute.get(name) != str(value):
                wrong.append(f"{name} {envelope.get(name)}, attribute {attribute.get(name)}")
        if envelope.get("clientIp") != query.get("clientip"):
            wrong.append(f"clientIp {envelope.get('clientIp')}, sent {query.get('clientip')}")
        # The callback exactly as received, but what SNS and SQS refuse, written as its escape.
        if sent.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff") not in p.message:
            wrong.append("the callback is not in the message exactly as sent")
        if re.search("[\ufffe\uffff]", p.message + "".join(attribute.values())):
            wrong.append("a raw U+FFFE or U+FFFF, which SNS and SQS refuse")
        return wrong


@functools.cache
def schema(name: str):
    """A validator of docs/schema/<name>.schema.json (jsonschema comes with moto[server])."""
    from jsonschema import Draft202012Validator

    path = ROOT / "docs" / "schema" / f"{name}.schema.json"
    return Draft202012Validator(json.loads(path.read_text(encoding="utf-8")))


def load_calls() -> list[Call]:
    calls = []
    for line in (ROOT / "events" / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            case, _, config, status, code, outcome = (cell.strip() for cell in
                                                      line.strip(" |").split(" | "))
            config, _, condition = (part.strip() for part in config.partition(","))
            calls.append(Call(case.strip("`"), config, condition,
                              (int(status), int(code), outcome)))
    return calls


def fresh_query(event: dict, now: int) -> str:
    """The event's query string, with every Unix-seconds RequestTime moved by as much as the
    event's time is from now and every Sign that was right for the old time made again for the
    new one; the rest byte for byte: a wrong Sign stays wrong, a skewed time as far off."""
    raw = event["rawQueryString"]
    pieces = [piece.partition("=") for piece in raw.split("&")] if raw else []
    times = {unquote_plus(v) for k, _, v in pieces if k.lower() == "requesttime"}
    old = times.pop() if len(times) == 1 else ""
    if not old.isdigit():
        return raw
    new = str(int(old) + now - event["requestContext"]["timeEpoch"] // 1000)
    fresh = {"requesttime": {old: new},
             "sign": {harness.sign(TOKEN, old): harness.sign(TOKEN, new)}}
    return "&".join(f"{k}={fresh.get(k.lower(), {}).get(v, v)}" for k, _, v in pieces)


def run() -> int:
    started, calls = time.monotonic(), load_calls()
    events = {p.stem: json.loads(p.read_text(encoding="utf-8"))
              for p in sorted((ROOT / "events").glob("*.json"))}
    missing = sorted({call.case for call in calls} ^ set(events))
    if missing:
        say(f"ERROR: events without a row in events/README.md, or rows without an event: {missing}")
        return 1
    with Local() as local:
        local.start(CONFIGS)
        ready_s, sns_up = time.monotonic() - started, True
        say(f"POSTing {len(calls)} events the way Chat calls, checked against events/README.md")
        for call in calls:
            deleted = re.fullmatch(r"`im-exception-([a-z_]+)` deleted", call.condition)
            if deleted and local.topics.arns[deleted[1]] in str(local.topics.sns.list_topics()):
                say(f"  deleting the topic of {deleted[1]}")
                local.topics.sns.delete_topic(TopicArn=local.topics.arns[deleted[1]])
            if call.condition == "SNS stopped" and sns_up:
                say("  stopping the moto that holds the topics: SNS unreachable from here on")
                local.moto.stop()
                sns_up = False
            call.event = events[call.case]
            call.send(local.watches[call.config], local.upstream)
            call.published += local.drain(sns_up)
        # cargo lambda copies the function's output to its log a little after the answer.
        deadline = time.monotonic() + 5
        records = sum("`publish_failed`" in call.expected[2] for call in calls)
        while sum(len(w.records()) for w in local.watches.values()) < records \
                and time.monotonic() < deadline:
            time.sleep(0.2)
    say(f"\n   {'event':<25}cfg status  code      ms  {'went to':<36}answer")
    with open(WORK / "run-details.txt", "w", encoding="utf-8") as details:
        for call in calls:
            key = call.dedup_key()  # a publish_failed record is its call's by dedupKey
            call.published += [Published.parse("record", r["publish"])
                               for r in local.watches[call.config].records()
                               if key and r.get("dedupKey") == key]
            call.check(local.topics)
            went = call.outcome().replace("`", "").replace("im-exception-", "")
            if call.forwarded and call.forwarded[-1].action != "answered":
                went += f" ({call.forwarded[-1].action})"
            whose = "ack" if call.answer == ACK else "upstream's"  # the checks make sure of it
            whose = "FAIL" if b'"FAIL"' in call.answer else whose
            say(f"{'!! ' if call.problems else '   '}{call.case:<25}{call.config:<4}"
                f"{call.status:>6}{call.code!s:>6}{call.ms:>8.0f}  {went[:35]:<36}{whose}")
            for problem in call.problems:
                say(f"     !! {problem}"[:100])
            details.write(f"== {call.case} ({call.config}): {call.status} {call.answer_type}\n"
                          f"query:  {call.query}\nanswer: {call.answer.decode(errors='replace')}\n")
            details.writelines([f"upstream: {f.action}; it answered {f.answer.decode() or '-'}\n"
                                for f in call.forwarded])
            details.writelines([harness.to_json(p.record()) for p in call.published])
            details.writelines([f"!! {problem}\n" for problem in call.problems] + ["\n"])
    bad = [call for call in calls if call.problems]
    if bad:
        say(f"\nFAILED: {len(bad)} of {len(calls)} events differ from events/README.md; details "
            "in .local-run/run-details.txt, the function's logs in .local-run/watch-*.log")
        return 1
    say(f"\nOK: all {len(calls)} events as expected: {sum(len(c.published) for c in calls)} "
        f"messages published, queued or recorded, {sum(len(c.forwarded) for c in calls)} to the "
        f"upstream\n(ready after {ready_s:.0f} s, total {time.monotonic() - started:.0f} s; "
        "each message and forward in .local-run/run-details.txt)")
    return 0


# --- make serve and make sign -------------------------------------------------------------

def curl(url: str) -> str:
    query, body = harness.chat_call(TOKEN)
    return (f"curl -sS {shlex.quote(f'{url}?{query}')} -H 'Content-Type: application/json' "
            f"--data-binary {shlex.quote(body.decode())}; echo")


def sign() -> int:
    try:
        print(curl(json.loads((WORK / "serve.json").read_text())["url"]))
        return 0
    except (OSError, ValueError, KeyError):
        print("`make serve` is not running (no .local-run/serve.json)", file=sys.stderr)
        return 1


def serve() -> int:
    published = WORK / "published"
    published.mkdir(exist_ok=True)
    for old in published.glob("*.json"):
        old.unlink()
    with Local() as local:
        local.start({"serve": {}})
        watch = local.watches["serve"]
        (WORK / "serve.json").write_text(json.dumps({"url": watch.url}))
        local.callback((WORK / "serve.json").unlink, missing_ok=True)
        say(f"\nThe function: {watch.url}\n(IM_CALLBACK_TOKEN={TOKEN}, "
            f"IM_SDK_APP_ID=1400000000, the upstream at {local.upstream.url}; its log: "
            f".local-run/watch-serve.log)\n\n"
            f"{curl(watch.url)}\n\nA Sign is good for 60 s: `make sign` prints a fresh curl. "
            "Every message published lands in .local-run/published/. Ctrl-C stops everything.\n")
        count = 0
        while watch.proc.poll() is None:
            for p in local.drain():  # polled: SNS delivers to the queues and tells nobody
                count += 1
                path = published / f"{count:04d}-{p.source.replace(' ', '-')}.json"
                path.write_text(harness.to_json(p.record()), encoding="utf-8")
                envelope = json.loads(p.message)
                say(f"{p.source}: error {envelope['errorCode']} in group "
                    f"{envelope['callback'].get('GroupId')} -> {path.relative_to(ROOT)}")
            time.sleep(0.5)
        say(f"cargo lambda watch exited; see {watch.log}")
        return 1


def say(text: str = "") -> None:
    print(text, flush=True)  # at once, also into a pipe (CI, `| tee`)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "serve", "sign"])
    command = parser.parse_args().command
    WORK.mkdir(exist_ok=True)
    try:
        return {"run": run, "serve": serve, "sign": sign}[command]()
    except KeyboardInterrupt:
        return 0 if command == "serve" else 130
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        say(f"ERROR: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
