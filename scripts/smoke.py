#!/usr/bin/env python3
"""`make smoke STACK=name`: one signed Group.CallbackSendMsgException callback to a deployed
stack, as Chat sends it, and its acknowledgement checked. The URL is the stack's CallbackUrl;
the token the value of its CallbackTokenSecretArn (the token, or JSON with "current"), else
IM_CALLBACK_TOKEN (any value for a stack without a token); the SdkAppid IM_SDK_APP_ID, else
the stack's first SdkAppIds. AWS credentials and region are this shell's. The GroupId is a
marker, im-exception-smoke-<unix time>, which subscribers leave out with the filter policy
{"groupId": [{"anything-but": {"prefix": "im-exception-smoke-"}}]}. A stack with mutual TLS
(CustomDomainName) takes only calls that carry Chat's client certificate: none from here.
"""

import argparse
import json
import os
import socket
import ssl
import sys
import time
from http.client import HTTPException
from urllib.parse import urlsplit

import boto3

from harness import ACK, chat_call, http

MARKER = "im-exception-smoke-"
NO_CLIENT_CERTIFICATE = ("the smoke call cannot pass: its domain requires Chat's client "
                         "certificate (mutual TLS), and this machine has none. Check the stack "
                         "after Chat's next callback instead: its dashboard and its log group.")


def wants_a_client_certificate(url: str) -> bool:
    """Whether the server of `url` ends the TLS handshake for want of a client certificate (TLS
    1.3's certificate_required alert, TLS 1.2's handshake_failure). Asked again without sending a
    request, and read: after a request, the alert can be lost to a write on a closed socket."""
    where = urlsplit(url)
    context = ssl.create_default_context()
    try:
        with socket.create_connection((where.hostname, where.port or 443), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=where.hostname) as tls:
            tls.recv(1)
    except ssl.SSLError as e:
        alerts = ("CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE", "BAD_CERTIFICATE")
        return any(alert in str(e).upper() for alert in alerts)
    except OSError:
        pass
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split(".")[0])
    parser.add_argument("stack", help="the CloudFormation stack's name")
    parser.add_argument("--region", help="the stack's region, if not this shell's")
    args = parser.parse_args(argv)
    session = boto3.session.Session(region_name=args.region)
    stack = session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
    # Its parameters and outputs by key (an output wins over a parameter of the same name).
    found = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    found |= {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    url = found.get("CallbackUrl")
    if found.get("CustomDomainName"):
        print(f"stack {args.stack}: {url}: {NO_CLIENT_CERTIFICATE}")
        return 2
    app_id = os.environ.get("IM_SDK_APP_ID") or found.get("SdkAppIds", "").split(",")[0].strip()
    token = os.environ.get("IM_CALLBACK_TOKEN") or None
    if found.get("CallbackTokenSecretArn"):
        secrets = session.client("secretsmanager")
        token = secrets.get_secret_value(SecretId=found["CallbackTokenSecretArn"])["SecretString"]
        if token.lstrip().startswith("{"):
            token = json.loads(token)["current"]
    if not (url and app_id and token):
        print(f"stack {args.stack}: a CallbackUrl output and SdkAppIds are needed (or "
              "IM_SDK_APP_ID), and the token: the stack has no CallbackTokenSecretArn, so set "
              "IM_CALLBACK_TOKEN to the one in the Chat console")
        return 2

    group_id = f"{MARKER}{int(time.time())}"
    query, body = chat_call(token.strip(), app_id, group_id=group_id, text="smoke test, ignore")
    print(f"POST {url} (SdkAppid {app_id}, GroupId {group_id}, ErrorCode 10023)")
    started, started_at = time.monotonic(), time.time()
    try:
        status, _, answer = http(url + ("&" if "?" in url else "?") + query, body,
                                 headers={"Content-Type": "application/json"}, timeout=10)
    except (OSError, HTTPException) as e:
        if url.startswith("https://") and wants_a_client_certificate(url):
            print(f"FAILED: {urlsplit(url).hostname} refused the TLS handshake: "
                  f"{NO_CLIENT_CERTIFICATE}")
        else:
            print(f"FAILED: no answer from {url}: {e}")
        return 1
    millis = (time.monotonic() - started) * 1000
    print(f"answer after {millis:.0f} ms (Chat waits 2,000; the first may be a cold start): "
          f"{status} {answer.decode(errors='replace')[:300]}")
    if (status, answer.strip()) != (200, ACK):
        print("FAILED: not Chat's acknowledgement. A 401 means the token or this machine's clock "
              "differs from the stack's; the function's log says which check refused it.")
        return 1
    print(f"OK: the stack acknowledged it. Next, look at:\n"
          f"  the dashboard: {found.get('DashboardUrl', '(no DashboardUrl output)')}\n"
          f"  the topic {found.get('FrequencyLimitTopicArn', 'of frequency_limit')}: a message "
          f"with the groupId {group_id}\n"
          f"  the log: aws logs filter-log-events --log-group-name "
          f"{found.get('LogGroupName', '<log group>')} --start-time {int(started_at * 1000)} "
          f"--filter-pattern '\"{group_id}\"' (or the stack's saved Logs Insights queries)\n"
          f"Subscribers leave smoke tests out with the filter policy "
          f'{{"groupId": [{{"anything-but": {{"prefix": "{MARKER}"}}}}]}}')
    return 0


if __name__ == "__main__":
    sys.exit(main())
