#!/usr/bin/env python3
"""`make smoke STACK=name`: one signed Group.CallbackSendMsgException callback to a deployed
stack, as Chat sends it, and its acknowledgement checked. The URL is the stack's CallbackUrl;
the token the value of its CallbackTokenSecretArn (the token, or JSON with "current"), else
IM_CALLBACK_TOKEN (any value for a stack without a token); the SdkAppid IM_SDK_APP_ID, else
the stack's first SdkAppIds. AWS credentials and region are this shell's. The GroupId is a
marker, im-exception-smoke-<unix time>, which subscribers leave out with the filter policy
{"groupId": [{"anything-but": {"prefix": "im-exception-smoke-"}}]}.
"""

import argparse
import json
import os
import sys
import time

import boto3

from harness import ACK, chat_call, http

MARKER = "im-exception-smoke-"


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
    started = time.monotonic()
    try:
        status, _, answer = http(url + ("&" if "?" in url else "?") + query, body,
                                 headers={"Content-Type": "application/json"}, timeout=10)
    except OSError as e:
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
          f"  the log: aws logs tail {found.get('LogGroupName', '<log group>')} --since 10m "
          f"--filter-pattern '\"{group_id}\"'\n"
          f"Subscribers leave smoke tests out with the filter policy "
          f'{{"groupId": [{{"anything-but": {{"prefix": "{MARKER}"}}}}]}}')
    return 0


if __name__ == "__main__":
    sys.exit(main())
