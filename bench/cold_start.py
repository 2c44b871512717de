#!/usr/bin/env python3
"""Cold and warm cost of the webhook, measured the way Lambda runs it.

A small Lambda Runtime API on loopback starts each release binary exactly as Lambda does
(exec with AWS_LAMBDA_RUNTIME_API set), hands it one Chat callback, and takes:

- cold: the process's CPU time (user + sys, from the kernel's accounting of the finished
  process, wait4) and the wall time from exec to its first answer; the median of --runs starts;
- warm: CPU per invocation over --warm invocations in one process (from the kernel's per-thread
  run time, /proc/PID/task/*/schedstat), and the peak RSS (VmHWM).

Side by side, in the same run: bench-hello (the smallest lambda_http function, answering the
acknowledgement and nothing else), the webhook publishing to a moto server once over HTTP
and once over HTTPS (moto behind a test CA, added to a copy of the system bundle that
SSL_CERT_FILE points at, so the function pays for a real TLS setup), and the webhook
forwarding a before-send callback to a local upstream callback backend over HTTPS (the same
test CA; the upstream answers Chat's acknowledgement).

With --lambda-share (default 1/14, what Lambda gives a 128 MB function), each cold start is
also run with the process in a cgroup v1 cpu controller limited to that share of one CPU
(cpu.cfs_quota_us / cpu.cfs_period_us), and its wall time to the first answer reported: what
Chat waits on a cold start. Needs a writable /sys/fs/cgroup/cpu; skipped otherwise.

Usage (from the repository root, after `cargo build --release --bin im-exception-webhook
--example bench-hello`; `make bench` does both):  python bench/cold_start.py [--runs 7]
"""

import argparse
import hashlib
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
APP_ID = "1400000000"
CATEGORIES = ["invalid_group", "frequency_limit", "content_filter", "muted_sender", "unclassified"]
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the local SNS: moto over HTTP and over HTTPS with a test CA ---------------------------

def make_test_ca(workdir):
    """A CA, a server certificate for 127.0.0.1/localhost, and a bundle: system roots + CA."""
    ca_key, ca_crt = workdir / "ca.key", workdir / "ca.crt"
    key, csr, crt = workdir / "server.key", workdir / "server.csr", workdir / "server.crt"
    ext = workdir / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *args: subprocess.run(args, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=im-exception-webhook bench CA", "-keyout", ca_key, "-out", ca_crt)
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", key, "-out", csr)
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
        "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", crt)
    bundle = workdir / "bundle.pem"
    system = Path(SYSTEM_BUNDLE).read_text() if Path(SYSTEM_BUNDLE).exists() else ""
    bundle.write_text(system + "\n" + ca_crt.read_text())
    return key, crt, bundle


def start_moto(moto, port, cert=None, key=None):
    args = [moto, "-H", "127.0.0.1", "-p", str(port)]
    if cert:
        args += ["-c", str(cert), "-k", str(key)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def create_topics(endpoint, bundle):
    import boto3  # from .venv, with moto

    sns = boto3.client("sns", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test", verify=str(bundle))
    deadline = time.time() + 30
    while True:
        try:
            return {c: sns.create_topic(Name=f"bench-{c}")["TopicArn"] for c in CATEGORIES}
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


class Upstream:
    """The app's existing callback backend over HTTPS: answers every POST with Chat's
    acknowledgement, as a before-send webhook letting a message through does."""

    def __init__(self, crt, key):
        import ssl

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(crt, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/im/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


# --- the Lambda Runtime API ---------------------------------------------------------------

class RuntimeApi:
    """Serves queued events at /invocation/next and collects the answers."""

    def __init__(self):
        self.events = queue.Queue()
        self.answers = queue.Queue()
        self.stopping = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.reply(404, b"{}")
                while not api.stopping.is_set():
                    try:
                        request_id, event = api.events.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    return self.reply(200, event, {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 3000),
                        "Lambda-Runtime-Invoked-Function-Arn":
                            "arn:aws:lambda:us-east-1:123456789012:function:bench",
                        "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                    })

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.perf_counter()
                self.reply(202, b"{}")  # before the answer is reported: the caller kills the process
                api.answers.put((at, self.path, body))

            def reply(self, status, body, headers=None):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a killed function drops its connection; that is how every run ends

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, request_id, event):
        self.events.put((request_id, json.dumps(event).encode()))

    def answer(self, timeout=60):
        at, path, body = self.answers.get(timeout=timeout)
        if not path.endswith("/response"):
            raise RuntimeError(f"the function posted {path}: {body[:300]!r}")
        return at, json.loads(body)

    def close(self):
        self.stopping.set()
        self.server.shutdown()


def chat_event(n, command="Group.CallbackSendMsgException"):
    """A signed call of `command` (by default Group.CallbackSendMsgException), as API Gateway
    (HTTP API) delivers it; another command carries a before-send body."""
    now = str(int(time.time()))
    sign = hashlib.sha256((TOKEN + now).encode()).hexdigest()
    query = (f"SdkAppid={APP_ID}&CallbackCommand={command}&contenttype=json"
             f"&ClientIP=203.0.113.5&OptPlatform=RESTAPI&RequestTime={now}&Sign={sign}")
    body = json.dumps({
        "CallbackCommand": "Group.CallbackSendMsgException", "GroupId": "@TGS#2J4SZEAEL",
        "Type": "Public", "From_Account": "jared", "Operator_Account": "admin", "Random": n,
        "OnlineOnlyFlag": 1, "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}],
        "ErrorCode": 10023, "ErrorInfo": "send message too frequently",
        "EventTime": str(1670574414123 + n),
    } if command == "Group.CallbackSendMsgException" else {
        "CallbackCommand": command, "GroupId": "@TGS#2J4SZEAEL", "Type": "Public",
        "From_Account": "jared", "Random": n, "OnlineOnlyFlag": 0,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}],
        "EventTime": str(1670574414123 + n),
    })
    return {
        "version": "2.0", "routeKey": "POST /callback", "rawPath": "/callback",
        "rawQueryString": query, "headers": {"content-type": "application/json"},
        "requestContext": {"accountId": "123456789012", "apiId": "bench", "stage": "$default",
                           "requestId": f"r{n}", "timeEpoch": int(time.time() * 1000),
                           "http": {"method": "POST", "path": "/callback", "protocol": "HTTP/1.1",
                                    "sourceIp": "203.0.113.5", "userAgent": "Chat"}},
        "body": body, "isBase64Encoded": False,
    }


BEFORE_SEND = "Group.CallbackBeforeSendMsg"


def exception_event(n):
    return chat_event(n)


def before_send_event(n):
    return chat_event(n, BEFORE_SEND)


def redrive_event(n):
    """A CloudWatch Logs subscription event holding one publish_failed record, as the redrive
    function receives it: base64 of gzip of the batch."""
    import base64
    import gzip

    callback = {"CallbackCommand": "Group.CallbackSendMsgException", "GroupId": "@TGS#2J4SZEAEL",
                "From_Account": "jared", "Random": n, "ErrorCode": 10023,
                "EventTime": str(1670574414123 + n)}
    key = hashlib.sha256(f"{APP_ID}|@TGS#2J4SZEAEL|jared|{n}|{1670574414123 + n}|10023"
                         .encode()).hexdigest()
    envelope = {"category": "frequency_limit", "errorCode": 10023, "sdkAppId": APP_ID,
                "receivedAt": "2026-12-01T18:00:00.000Z", "dedupKey": key, "callback": callback}
    record = {"timestamp": "2026-12-01T18:00:00.700Z", "level": "ERROR",
              "event": "publish_failed", "category": "frequency_limit", "errorCode": 10023,
              "topicArn": "-", "dedupKey": key, "envelope": envelope}
    batch = {"messageType": "DATA_MESSAGE", "owner": "123456789012",
             "logGroup": "/aws/lambda/bench-webhook", "logStream": "2026/12/01/[$LATEST]0",
             "subscriptionFilters": ["publish_failed"],
             "logEvents": [{"id": str(n), "timestamp": 0, "message": json.dumps(record)}]}
    data = base64.b64encode(gzip.compress(json.dumps(batch).encode())).decode()
    return {"awslogs": {"data": data}}


def answered_ok(response):
    """An API Gateway answer 200, or the redrive's summary of one record republished."""
    return response.get("statusCode") == 200 or response.get("redriven") == 1


def lambda_env(endpoint, topics, bundle, upstream=None):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "IM_SDK_APP_ID": APP_ID, "IM_CALLBACK_TOKEN": TOKEN,
    }
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
        env["SSL_CERT_FILE"] = str(bundle)
        for category, arn in topics.items():
            env[f"TOPIC_ARN_{category.upper()}"] = arn
    if upstream:
        env["UPSTREAM_CALLBACK_URL"] = upstream
    return env


# --- a share of one CPU, as Lambda gives a small function ---------------------------------

CGROUP = Path("/sys/fs/cgroup/cpu/im-exception-bench")


def lambda_share_cgroup(share):
    """A cgroup v1 cpu controller limited to `share` of one CPU, or None if not writable."""
    try:
        CGROUP.mkdir(exist_ok=True)
        period = 100_000
        (CGROUP / "cpu.cfs_period_us").write_text(str(period))
        (CGROUP / "cpu.cfs_quota_us").write_text(str(max(1000, int(period * share))))
        return CGROUP
    except OSError as e:
        print(f"(no CPU share: {e})", file=sys.stderr)
        return None


# --- measurements -------------------------------------------------------------------------

def cold_start(binary, env, n, event, cgroup=None):
    api, process, started = None, None, None
    # Joins the cgroup between fork and exec, so the whole function runs at the share.
    join = (lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid()))) if cgroup else None
    try:
        api = RuntimeApi()
        api.invoke(f"cold-{n}", event(n))
        env = dict(env, AWS_LAMBDA_RUNTIME_API=api.address)
        started = time.perf_counter()
        process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, preexec_fn=join)
        answered, response = api.answer()
    finally:
        if process:
            process.kill()
        api.close()
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = -9
    if not answered_ok(response):
        raise RuntimeError(f"{binary} answered {response}")
    return (usage.ru_utime + usage.ru_stime) * 1000, (answered - started) * 1000


def cpu_seconds(pid):
    """Run time of every thread of `pid` so far, in seconds, from the scheduler's accounting."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9


def peak_rss_kb(pid):
    """VmHWM: the peak resident set since exec. (wait4's ru_maxrss would also count the Python
    image the child was forked from, before exec replaced it.)"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def warm(binary, env, invocations, event):
    api = RuntimeApi()
    process = subprocess.Popen([binary], env=dict(env, AWS_LAMBDA_RUNTIME_API=api.address),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        api.invoke("warm-0", event(0))
        api.answer()
        after_first = cpu_seconds(process.pid)
        for n in range(1, invocations + 1):
            api.invoke(f"warm-{n}", event(n))
            _, response = api.answer()
            if not answered_ok(response):
                raise RuntimeError(f"warm invocation {n} answered {response}")
        per_invocation = (cpu_seconds(process.pid) - after_first) / invocations
        peak_rss_mb = peak_rss_kb(process.pid) / 1024
    finally:
        process.kill()
        api.close()
    os.wait4(process.pid, 0)
    process.returncode = -9
    return per_invocation * 1e6, peak_rss_mb


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="cold starts per case (median)")
    parser.add_argument("--warm", type=int, default=1000, help="invocations in the warm run")
    parser.add_argument("--function", default=str(ROOT / "target/release/im-exception-webhook"))
    parser.add_argument("--hello", default=str(ROOT / "target/release/examples/bench-hello"))
    parser.add_argument("--redrive", default=str(ROOT / "target/release/im-exception-redrive"))
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=BINARY",
                        help="another build of the function to start beside it, over HTTP "
                             "(e.g. to compare release profiles)")
    parser.add_argument("--moto", default=shutil.which("moto_server")
                        or str(ROOT / ".venv/bin/moto_server"))
    parser.add_argument("--lambda-share", type=float, default=1 / 14,
                        help="CPU share for the extra cold starts (0 to skip)")
    args = parser.parse_args()
    for binary in (args.function, args.hello, args.redrive, args.moto):
        if not Path(binary).exists():
            sys.exit(f"missing {binary}: run `make bench`")

    workdir = Path(tempfile.mkdtemp(prefix="im-bench-"))
    servers, upstream = [], None
    cgroup = lambda_share_cgroup(args.lambda_share) if args.lambda_share > 0 else None
    try:
        key, crt, bundle = make_test_ca(workdir)
        http_port, https_port = free_port(), free_port()
        servers.append(start_moto(args.moto, http_port))
        servers.append(start_moto(args.moto, https_port, crt, key))
        http, https = f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}"
        topics = {http: create_topics(http, bundle), https: create_topics(https, bundle)}
        upstream = Upstream(crt, key)

        # (name, binary, environment, event of invocation n)
        cases = [
            ("hello-world lambda_http, no SNS", args.hello, lambda_env(None, {}, bundle),
             exception_event),
            ("im-exception-webhook, SNS over HTTP", args.function,
             lambda_env(http, topics[http], bundle), exception_event),
            ("im-exception-webhook, SNS over HTTPS", args.function,
             lambda_env(https, topics[https], bundle), exception_event),
            ("im-exception-webhook, forward over HTTPS", args.function,
             lambda_env(https, topics[https], bundle, upstream.url), before_send_event),
            ("im-exception-redrive, one record, SNS over HTTPS", args.redrive,
             lambda_env(https, topics[https], bundle), redrive_event),
        ]
        for label, binary in (a.split("=", 1) for a in args.also):
            cases.append((f"{label}, SNS over HTTP", binary,
                          lambda_env(http, topics[http], bundle), exception_event))
        # One warm-up start each, so the binaries are in the page cache for every case alike.
        for _, binary, env, event in cases:
            cold_start(binary, env, 0, event)
        results, shared = {}, {}
        for run in range(args.runs):  # interleaved, so drift in machine load hits every case
            for name, binary, env, event in cases:
                results.setdefault(name, []).append(cold_start(binary, env, run + 1, event))
                if cgroup:
                    _, wall = cold_start(binary, env, run + 1, event, cgroup)
                    shared.setdefault(name, []).append(wall)

        print(f"Cold start, median of {args.runs} (CPU = user+sys of the function process, "
              "exec to first answer):\n")
        share = f" | wall ms at {args.lambda_share:.3f} CPU" if cgroup else ""
        print(f"| function | CPU ms | wall ms{share} | CPU vs hello-world |")
        print("| --- | --- | --- |" + (" --- |" if cgroup else "") + " --- |")
        hello_cpu = statistics.median(c for c, _ in results[cases[0][0]])
        for name, _, _, _ in cases:
            cpu = statistics.median(c for c, _ in results[name])
            wall = statistics.median(w for _, w in results[name])
            at_share = f" | {statistics.median(shared[name]):.0f}" if cgroup else ""
            print(f"| {name} | {cpu:.1f} | {wall:.1f}{at_share} | {cpu / hello_cpu:.2f}x |")

        print(f"\nWarm, {args.warm} invocations in one process:\n")
        print("| function | CPU per invocation µs | peak RSS MB |")
        print("| --- | --- | --- |")
        for name, binary, env, event in cases:
            cpu, rss = warm(binary, env, args.warm, event)
            print(f"| {name} | {cpu:.0f} | {rss:.1f} |")
    finally:
        if upstream:
            upstream.close()
        for server in servers:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        if cgroup:
            try:
                cgroup.rmdir()
            except OSError:
                pass


if __name__ == "__main__":
    main()
