#!/usr/bin/env python3
"""Cold and warm cost of the webhook, measured the way Lambda runs it (docs/performance.md).

Each binary is started as Lambda starts it, under the local Runtime API of scripts/harness.py,
and handed one of Chat's callbacks. Cold: the process's CPU (user + sys, wait4) and the wall
time from exec to its first answer, the median of --runs, the cases interleaved so that drift
in the machine's load hits each alike; again held to --lambda-share of a CPU in a cgroup v1 cpu
controller (1/14: a 128 MB Lambda), the wall time Chat waits. Warm: CPU per invocation
(/proc/PID/task/*/schedstat) and the peak RSS (VmHWM). HTTPS goes through a test CA that
SSL_CERT_FILE adds, so that the function pays for a real TLS set-up.
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import harness  # noqa: E402  (scripts/ is not a package)

TOKEN = "bench-token"
RELEASE = harness.ROOT / "target" / "release"


def chat_event(n: int, command: str = harness.EXCEPTION) -> dict:
    query, body = harness.chat_call(TOKEN, command=command)
    return harness.gateway_event(query, body.decode(), int(time.time()), f"bench/{n}")


def redrive_event(n: int, topic_arn: str) -> dict:
    """An SQS event holding one message of the retry queue: a queued publish (the input of `aws
    sns publish --cli-input-json`), as the webhook queues it."""
    envelope = {"category": "frequency_limit", "errorCode": 10023, "sdkAppId": "1400000000",
                "dedupKey": f"{n:064x}", "callback": json.loads(harness.chat_call(TOKEN)[1])}
    publish = {"TopicArn": topic_arn, "Message": json.dumps(envelope), "MessageAttributes": {
        "category": {"DataType": "String", "StringValue": "frequency_limit"},
        "errorCode": {"DataType": "Number", "StringValue": "10023"}}}
    return {"Records": [{"messageId": f"m-{n}", "body": json.dumps(publish),
                         "eventSource": "aws:sqs", "awsRegion": "us-east-1"}]}


def answered(api: harness.RuntimeApi) -> float:
    """When the answer came: a 200 from the webhook, or a redrive batch without failures."""
    at, response = api.answer()
    if response.get("statusCode") != 200 and response.get("batchItemFailures") != []:
        raise RuntimeError(f"the function answered {response}")
    return at


def cold(binary: str, env: dict, event: dict, cgroup: Path | None = None) -> tuple:
    """One cold start to its first answer: (CPU ms, wall ms); the process is then killed."""
    api = harness.RuntimeApi()
    api.invoke("cold", event)
    # Joins the cgroup between fork and exec, so that the whole function runs at the share.
    join = (lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid()))) if cgroup else None
    started = time.perf_counter()
    process = api.launch([binary], env, preexec_fn=join)
    try:
        at = answered(api)
    finally:
        process.kill()
        api.stop()
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = -9  # reaped here, for wait4's figures: Popen must not wait again
    return (usage.ru_utime + usage.ru_stime) * 1000, (at - started) * 1000


def warm(binary: str, env: dict, invocations: int, event_of) -> tuple:
    """(CPU µs per invocation after the first, peak RSS MB). VmHWM rather than wait4's
    ru_maxrss, which would count the Python image the child was forked from too."""
    api = harness.RuntimeApi()
    process = api.launch([binary], env)
    tasks = Path(f"/proc/{process.pid}/task")

    def cpu_ns() -> int:  # the run time of its threads so far, from the scheduler's accounting
        return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks.iterdir())

    try:
        api.invoke("warm-0", event_of(0))
        answered(api)
        first = cpu_ns()
        for n in range(1, invocations + 1):
            api.invoke(f"warm-{n}", event_of(n))
            answered(api)
        per_invocation_ns = (cpu_ns() - first) / invocations
        status = Path(f"/proc/{process.pid}/status").read_text().splitlines()
        peak_kb = int(next(line for line in status if line.startswith("VmHWM:")).split()[1])
    finally:
        process.kill()
        process.wait()
        api.stop()
    return per_invocation_ns / 1000, peak_kb / 1024


def lambda_share(share: float) -> Path | None:
    """A cgroup v1 cpu controller held to `share` of one CPU; None where it cannot be made."""
    cgroup = Path("/sys/fs/cgroup/cpu/im-exception-bench")
    try:
        cgroup.mkdir(exist_ok=True)
        (cgroup / "cpu.cfs_period_us").write_text("100000")
        (cgroup / "cpu.cfs_quota_us").write_text(str(max(1000, int(100_000 * share))))
        return cgroup
    except OSError as e:
        print(f"(no cold starts at a share of the CPU: {e})", file=sys.stderr)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="cold starts per case (median)")
    parser.add_argument("--warm", type=int, default=1000, help="invocations in the warm run")
    parser.add_argument("--lambda-share", type=float, default=1 / 14,
                        help="the CPU share of a second series of cold starts (0: none)")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=BINARY",
                        help="another build of the webhook beside it, SNS over HTTP and HTTPS")
    args = parser.parse_args()
    webhook, redrive = RELEASE / "im-exception-webhook", RELEASE / "im-exception-redrive"
    hello, also = RELEASE / "examples" / "bench-hello", [a.split("=", 1) for a in args.also]
    for binary in [webhook, redrive, hello] + [binary for _, binary in also]:
        if not Path(binary).exists():
            sys.exit(f"missing {binary}: run `make bench`")

    with contextlib.ExitStack() as started, tempfile.TemporaryDirectory() as workdir:
        cgroup = lambda_share(args.lambda_share) if args.lambda_share > 0 else None
        if cgroup:
            started.callback(cgroup.rmdir)
        crt, key, bundle = harness.test_ca(Path(workdir))
        http, https = harness.Moto(), harness.Moto(tls=(crt, key))
        upstream = harness.Upstream(TOKEN, tls=(crt, key))
        for server in (http, https, upstream):
            started.callback(server.stop)
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "SSL_CERT_FILE": str(bundle)}
        env = {}
        for moto in (http, https):  # the retry queue costs nothing until SNS fails
            topics = harness.Topics(moto.url, "bench-", verify=str(bundle))
            queue = topics.sqs.create_queue(QueueName="bench-retry")["QueueUrl"]
            env[moto] = base | topics.env() | {
                "AWS_ENDPOINT_URL": moto.url, "RETRY_QUEUE_URL": queue,
                "IM_SDK_APP_ID": "1400000000", "IM_CALLBACK_TOKEN": TOKEN}
        secret = harness.aws("secretsmanager", https.url, str(bundle)).create_secret(
            Name="bench-token", SecretString=TOKEN)["ARN"]
        from_secret = {k: v for k, v in env[https].items() if k != "IM_CALLBACK_TOKEN"} | {
            "IM_CALLBACK_TOKEN_SECRET": secret, "AWS_ENDPOINT_URL_SECRETS_MANAGER": https.url}
        topic = env[https]["TOPIC_ARN_FREQUENCY_LIMIT"]
        cases = [  # (name, binary, environment, the event of invocation n)
            ("hello-world lambda_http, no SNS", hello, base, chat_event),
            ("webhook, publish, SNS over HTTP", webhook, env[http], chat_event),
            ("webhook, publish, SNS over HTTPS", webhook, env[https], chat_event),
            ("webhook, publish, SNS over HTTPS, token from Secrets Manager", webhook,
             from_secret, chat_event),
            ("webhook, forward over HTTPS", webhook,
             env[https] | {"UPSTREAM_CALLBACK_URL": upstream.url},
             lambda n: chat_event(n, harness.BEFORE_SEND)),
            ("redrive, one SQS record, SNS over HTTPS", redrive,
             base | {"AWS_ENDPOINT_URL": https.url}, lambda n: redrive_event(n, topic)),
        ] + [(f"{label}, publish, SNS over {scheme}", binary, env[moto], chat_event)
             for label, binary in also for scheme, moto in (("HTTP", http), ("HTTPS", https))]

        for _, binary, environment, event_of in cases:  # once each: every binary in page cache
            cold(binary, environment, event_of(0))
        figures, shared = {}, {}
        for run in range(1, args.runs + 1):
            for name, binary, environment, event_of in cases:
                figures.setdefault(name, []).append(cold(binary, environment, event_of(run)))
                if cgroup:
                    at_share = cold(binary, environment, event_of(run), cgroup)
                    shared.setdefault(name, []).append(at_share[1])

        median = statistics.median
        print(f"Cold start, median of {args.runs} (CPU = user+sys of the function process, exec "
              f"to first answer):\n\n| function | CPU ms | wall ms |"
              + (f" wall ms at {args.lambda_share:.3f} CPU |" if cgroup else "")
              + " CPU vs hello-world |\n| --- | --- | --- |" + (" --- |" if cgroup else "")
              + " --- |")
        hello_cpu = median(cpu for cpu, _ in figures[cases[0][0]])
        for name, *_ in cases:
            cpu, wall = median(c for c, _ in figures[name]), median(w for _, w in figures[name])
            at_share = f" {median(shared[name]):.0f} |" if cgroup else ""
            print(f"| {name} | {cpu:.1f} | {wall:.1f} |{at_share} {cpu / hello_cpu:.2f}x |")
        print(f"\nWarm, {args.warm} invocations in one process:\n\n"
              "| function | CPU per invocation µs | peak RSS MB |\n| --- | --- | --- |")
        for name, binary, environment, event_of in cases:
            cpu, rss = warm(binary, environment, args.warm, event_of)
            print(f"| {name} | {cpu:.0f} | {rss:.1f} |")


if __name__ == "__main__":
    main()
