"""template.yaml against its contract: no drift allowed on either side.

Run by `make check-template` (after cfn-lint and `sam validate --lint`):

    .venv/bin/python -m pytest tests/

- The webhook's environment variables are exactly the variables of docs/configuration.md's
  table, and each parameter feeding a variable with a default there has that default.
- The redrive function gets the five topic variables only.
- Both functions may publish to the category topics and to nothing else (plus, for the
  redrive, its dead-letter queue), checked both on the template and on what the SAM translator
  makes of it (the IAM roles CloudFormation would create).
- Secure by default (the Rules assertion), flood limits, both endpoints (evaluated: the
  template is resolved for each Endpoint and every reference must still resolve), retained
  logs, the redrive path (subscription filter, retries, dead-letter queue), alarms, the
  dashboard (its body must be JSON once substituted), cross-account subscriptions.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import tomllib
from pathlib import Path

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
CONFIGURATION_MD = ROOT / "docs" / "configuration.md"
CARGO_TOML = ROOT / "Cargo.toml"

# Category wire name -> the template's topic resource. The wire names are those of docs/contract.md.
TOPICS = {
    "invalid_group": "InvalidGroupTopic",
    "frequency_limit": "FrequencyLimitTopic",
    "content_filter": "ContentFilterTopic",
    "muted_sender": "MutedSenderTopic",
    "unclassified": "UnclassifiedTopic",
}
OPTIONAL_TOPIC = "UnclassifiedTopic"
UNCLASSIFIED_CONDITION = "CreateUnclassified"
# The Reason values of the function's EMF metric Rejected.
REJECTION_REASONS = {
    "method_not_allowed",
    "body_too_large",
    "sdk_app_id",
    "signature",
    "request_time_skew",
    "callback_command",
    "bad_body",
    "message_too_large",
}
NAMESPACE = "ImExceptionWebhook"
PUBLISH_FAILED_PATTERN = '{ $.event = "publish_failed" }'
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
# Chat caps group messages at 40 per second per group.
CHAT_GROUP_MESSAGES_PER_SECOND = 40
SNS_MAX_MESSAGE_BYTES = 262_144
REQUIRED_PARAMETERS = {"SdkAppIds": "1400000000"}


# ------------------------------------------------------------------------------ loading


def _plain(node):
    """cfn-lint's decoded nodes as plain dicts, lists and strings."""
    return json.loads(json.dumps(node))


@pytest.fixture(scope="session")
def template() -> dict:
    decoded, problems = decode(str(TEMPLATE))
    assert not problems, [str(p) for p in problems]
    assert decoded is not None
    return _plain(decoded)


@pytest.fixture(scope="session")
def resources(template) -> dict:
    return template["Resources"]


@pytest.fixture(scope="session")
def params(template) -> dict:
    return template["Parameters"]


@pytest.fixture(scope="session")
def functions(resources) -> dict:
    found = {k: v for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}
    assert sorted(found) == ["RedriveFunction", "WebhookFunction"], sorted(found)
    return found


@pytest.fixture(scope="session")
def webhook(functions) -> dict:
    return functions["WebhookFunction"]


@pytest.fixture(scope="session")
def redrive(functions) -> dict:
    return functions["RedriveFunction"]


# ------------------------------------------------------------------------------ docs/configuration.md


def parse_configuration_table(text: str) -> dict[str, dict]:
    """The table `| variable | required | default | meaning |`: variable -> required, default
    (None for `-`)."""
    rows, in_table = {}, False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if cells[:3] == ["variable", "required", "default"]:
            in_table = True
            continue
        if not in_table:
            continue
        if not cells:
            break
        if set("".join(cells)) <= set("-: "):
            continue  # the separator row
        variable, required, default = cells[:3]
        name = re.fullmatch(r"`([A-Z0-9_]+)`", variable)
        assert name, f"variable cell not a `NAME`: {variable!r}"
        assert required in ("yes", "no"), f"{variable}: required is {required!r}"
        if default == "-":
            value = None
        else:
            m = re.fullmatch(r"`([^`]*)`", default)
            assert m, f"{variable}: default is neither `-` nor in backticks: {default!r}"
            value = m.group(1)
        assert name.group(1) not in rows, f"{variable} twice in the table"
        rows[name.group(1)] = {"required": required == "yes", "default": value}
    return rows


@pytest.fixture(scope="session")
def config_table() -> dict[str, dict]:
    return parse_configuration_table(CONFIGURATION_MD.read_text())


# ------------------------------------------------------------------------------ a small evaluator
# Conditions, Fn::If and AWS::NoValue resolved for given parameter values: what CloudFormation
# would deploy, so references can be checked in every configuration.

NO_VALUE = object()
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "im-exception",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/im-exception/x",
}


def parameter_values(template: dict, **overrides) -> dict[str, str]:
    values = {}
    for name, p in template["Parameters"].items():
        if name in overrides:
            values[name] = str(overrides[name])
        elif name in REQUIRED_PARAMETERS and "Default" not in p:
            values[name] = REQUIRED_PARAMETERS[name]
        else:
            assert "Default" in p, f"parameter {name} has no default and no test value"
            values[name] = str(p["Default"])
    unknown = set(overrides) - set(template["Parameters"])
    assert not unknown, f"no such parameters: {unknown}"
    return values


def _value(node, values: dict[str, str]):
    if isinstance(node, dict) and list(node) == ["Ref"]:
        return values[node["Ref"]] if node["Ref"] in values else PSEUDO[node["Ref"]]
    assert not isinstance(node, (dict, list)), f"cannot evaluate {node}"
    return str(node).lower() if isinstance(node, bool) else str(node)


def evaluate(expr, template: dict, values: dict[str, str]) -> bool:
    (fn, args), = expr.items()
    if fn == "Fn::Equals":
        return _value(args[0], values) == _value(args[1], values)
    if fn == "Fn::Not":
        return not evaluate(args[0], template, values)
    if fn == "Fn::And":
        return all(evaluate(a, template, values) for a in args)
    if fn == "Fn::Or":
        return any(evaluate(a, template, values) for a in args)
    if fn == "Condition":
        return evaluate(template["Conditions"][args], template, values)
    raise AssertionError(f"unsupported condition function {fn}")


def conditions(template: dict, values: dict[str, str]) -> dict[str, bool]:
    return {name: evaluate(expr, template, values) for name, expr in template["Conditions"].items()}


def resolve(node, conds: dict[str, bool]):
    if isinstance(node, dict):
        if list(node) == ["Fn::If"]:
            name, then, otherwise = node["Fn::If"]
            return resolve(then if conds[name] else otherwise, conds)
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        out = {}
        for k, v in node.items():
            r = resolve(v, conds)
            if r is not NO_VALUE:
                out[k] = r
        return out
    if isinstance(node, list):
        return [r for r in (resolve(v, conds) for v in node) if r is not NO_VALUE]
    return node


def deployed(template: dict, **overrides) -> dict:
    """Resources and Outputs as CloudFormation would create them with these parameters."""
    values = parameter_values(template, **overrides)
    conds = conditions(template, values)
    out = {"values": values, "conditions": conds}
    for section in ["Resources", "Outputs"]:
        out[section] = {
            name: {k: resolve(v, conds) for k, v in body.items() if k != "Condition"}
            for name, body in template[section].items()
            if "Condition" not in body or conds[body["Condition"]]
        }
    return out


def sub_names(text: str) -> set[str]:
    return {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}


def references(node) -> set[str]:
    """Every resource, parameter or pseudo parameter a node refers to."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref":
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text, local = (value, {}) if isinstance(value, str) else value
                found |= sub_names(text) - set(local)
                found |= references(local)
            else:
                found |= references(value)
    elif isinstance(node, list):
        for value in node:
            found |= references(value)
    return found


def substitute(node, dummy) -> str:
    """An Fn::Sub (either form) with every name replaced: dummy(name) for a reference, the
    substituted value for a variable of its map."""
    if isinstance(node, str):
        return node
    (fn, args), = node.items()
    if fn == "Ref":
        return dummy(args)
    if fn == "Fn::GetAtt":
        return dummy(".".join(args) if isinstance(args, list) else args)
    assert fn == "Fn::Sub", f"cannot substitute {node}"
    text, local = (args, {}) if isinstance(args, str) else args
    local = {k: substitute(v, dummy) for k, v in local.items()}
    return re.sub(
        r"\$\{([^!}][^}]*)\}",
        lambda m: local[m.group(1)] if m.group(1) in local else dummy(m.group(1)),
        text,
    )


ENDPOINTS = ["HttpApi", "FunctionUrl"]


# ------------------------------------------------------------------------------ (a) variables, from the docs


def test_configuration_table_was_read(config_table):
    assert len(config_table) >= 15
    assert config_table["IM_SDK_APP_ID"] == {"required": True, "default": None}
    assert config_table["MAX_BODY_BYTES"]["default"] == "65536"
    assert {f"TOPIC_ARN_{c.upper()}" for c in TOPICS} <= set(config_table)


def test_configuration_table_parser_refuses_what_it_cannot_read():
    header = "| variable | required | default | meaning |\n| --- | --- | --- | --- |\n"
    assert parse_configuration_table(header + "| `A_B` | no | `1` | x |\n") == {
        "A_B": {"required": False, "default": "1"}
    }
    for bad in ["| A_B | no | - | x |", "| `A_B` | maybe | - | x |", "| `A_B` | no | 1 | x |"]:
        with pytest.raises(AssertionError):
            parse_configuration_table(header + bad + "\n")


def test_webhook_variables_are_exactly_the_documented_ones(webhook, config_table):
    in_template = list(webhook["Properties"]["Environment"]["Variables"])
    assert len(in_template) == len(set(in_template))
    missing = sorted(set(config_table) - set(in_template))
    unknown = sorted(set(in_template) - set(config_table))
    assert not missing and not unknown, (
        f"template.yaml and docs/configuration.md disagree: "
        f"not set by the template {missing}, not in the table {unknown}"
    )


def test_each_variable_is_wired_to_its_parameter_or_topic(webhook, params, config_table):
    env = webhook["Properties"]["Environment"]["Variables"]
    for category, topic in TOPICS.items():
        variable = f"TOPIC_ARN_{category.upper()}"
        if topic == OPTIONAL_TOPIC:
            assert not config_table[variable]["required"]
            # Empty when the topic is not created; the function treats empty as unset.
            assert env[variable] == {"Fn::If": [UNCLASSIFIED_CONDITION, {"Ref": topic}, ""]}
        else:
            assert config_table[variable]["required"], variable
            assert env[variable] == {"Ref": topic}, variable
    for variable, row in config_table.items():
        if variable.startswith("TOPIC_ARN_"):
            continue
        assert list(env[variable]) == ["Ref"], f"{variable} is not a parameter: {env[variable]}"
        param = params[env[variable]["Ref"]]
        if row["required"]:
            assert "Default" not in param, f"{variable} is required: its parameter has no default"
        elif row["default"] is None:
            # No default in the code: the parameter passes "", which counts as unset.
            assert param.get("Default") == "", f"{variable}: parameter default must be empty"
        else:
            assert str(param.get("Default")).lower() == row["default"].lower(), (
                f"{variable}: parameter {env[variable]['Ref']} defaults to "
                f"{param.get('Default')!r}, docs/configuration.md to {row['default']!r}"
            )


def test_new_variables_have_the_parameters_asked_for(webhook, params):
    env = webhook["Properties"]["Environment"]["Variables"]
    assert env["IM_CALLBACK_TOKEN_PREVIOUS"] == {"Ref": "CallbackTokenPrevious"}
    assert env["UPSTREAM_CALLBACK_URL"] == {"Ref": "UpstreamCallbackUrl"}
    assert env["UPSTREAM_TIMEOUT_MS"] == {"Ref": "UpstreamTimeoutMs"}
    assert env["FORWARD_EXCEPTIONS"] == {"Ref": "ForwardExceptions"}
    assert str(params["CallbackTokenPrevious"]["NoEcho"]).lower() == "true"
    assert int(params["UpstreamTimeoutMs"]["MaxValue"]) == 1999, "Chat waits 2 s"
    assert sorted(params["ForwardExceptions"]["AllowedValues"]) == ["false", "true"]
    # SNS refuses larger messages anyway: a bigger body limit is pointless.
    assert int(params["MaxBodyBytes"]["MaxValue"]) <= SNS_MAX_MESSAGE_BYTES


@pytest.mark.parametrize(
    "value, ok",
    [
        ("", True),
        ("https://backend.example.com/im/callback", True),
        ("http://10.0.0.1:8080/cb?x=1", True),
        ("ftp://backend.example.com", False),
        ("backend.example.com/cb", False),
        ("https://", False),
        ("https://a b", False),
    ],
)
def test_upstream_url_pattern(params, value, ok):
    assert bool(re.fullmatch(params["UpstreamCallbackUrl"]["AllowedPattern"], value)) == ok


def test_redrive_variables_are_the_five_topics(redrive, webhook, config_table):
    env = redrive["Properties"]["Environment"]["Variables"]
    topics = sorted(v for v in config_table if v.startswith("TOPIC_ARN_"))
    assert len(topics) == 5
    assert sorted(env) == topics
    webhook_env = webhook["Properties"]["Environment"]["Variables"]
    for variable in topics:
        assert env[variable] == webhook_env[variable], f"{variable}: not the webhook's topic"


# ------------------------------------------------------------------------------ (b) parameters


def test_parameters(params):
    for name in [
        "SdkAppIds",
        "CallbackToken",
        "CallbackTokenPrevious",
        "AllowUnsignedCallbacks",
        "TopicKind",
        "CreateUnclassifiedTopic",
        "ErrorCodeOverrides",
        "LogRetentionDays",
        "AlarmEmail",
        "SignMaxSkewSecs",
        "PublishTimeoutMs",
        "MaxBodyBytes",
        "UpstreamCallbackUrl",
        "UpstreamTimeoutMs",
        "ForwardExceptions",
        "Endpoint",
        "ApiThrottlingRateLimit",
        "ApiThrottlingBurstLimit",
        "ReservedConcurrency",
        "RejectedCallbacksAlarmThreshold",
        "SubscriberAccounts",
    ]:
        assert name in params, f"parameter {name} is missing"
    token = params["CallbackToken"]
    assert str(token["NoEcho"]).lower() == "true"
    assert "Default" not in params["SdkAppIds"], "the SDKAppID has no sensible default"
    assert sorted(params["TopicKind"]["AllowedValues"]) == ["fifo", "standard"]
    assert sorted(params["CreateUnclassifiedTopic"]["AllowedValues"]) == ["false", "true"]
    assert params["AlarmEmail"]["Default"] == ""
    assert "Default" in params["LogRetentionDays"]


def test_every_parameter_is_in_exactly_one_group(template, params):
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [p for g in groups for p in g["Parameters"]]
    assert len(grouped) == len(set(grouped)), "a parameter is in two groups"
    assert sorted(grouped) == sorted(params), (
        f"ungrouped {sorted(set(params) - set(grouped))}, unknown {sorted(set(grouped) - set(params))}"
    )


# ------------------------------------------------------------------------------ (c) secure by default


def _rule_allows(template, **overrides) -> bool:
    """Whether CloudFormation's Rules let a deployment with these parameters through."""
    values = parameter_values(template, **overrides)
    for rule in template["Rules"].values():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], template, values):
            continue
        if not all(evaluate(a["Assert"], template, values) for a in rule["Assertions"]):
            return False
    return True


def test_an_unsigned_deployment_must_be_asked_for(template, params):
    assert params["CallbackToken"]["Default"] == ""
    assert params["AllowUnsignedCallbacks"]["Default"] == "false"
    assert sorted(params["AllowUnsignedCallbacks"]["AllowedValues"]) == ["false", "true"]
    assert not _rule_allows(template), "the defaults (no token) must be refused"
    assert not _rule_allows(template, CallbackToken="", AllowUnsignedCallbacks="false")
    assert _rule_allows(template, CallbackToken="", AllowUnsignedCallbacks="true")
    assert _rule_allows(template, CallbackToken="s3cr3t")
    assert _rule_allows(template, CallbackToken="s3cr3t", AllowUnsignedCallbacks="true")
    descriptions = " ".join(
        a["AssertDescription"] for r in template["Rules"].values() for a in r["Assertions"]
    )
    for words in ["CallbackToken", "AllowUnsignedCallbacks", "Chat console"]:
        assert words in descriptions, f"the assertion does not say what to do ({words})"


def test_a_previous_token_needs_a_current_one(template):
    # The function would refuse to start (IM_CALLBACK_TOKEN_PREVIOUS without IM_CALLBACK_TOKEN).
    assert not _rule_allows(template, CallbackToken="", CallbackTokenPrevious="old",
                            AllowUnsignedCallbacks="true")
    assert _rule_allows(template, CallbackToken="new", CallbackTokenPrevious="old")


# ------------------------------------------------------------------------------ (d) functions


def _binaries() -> set[str]:
    declared = {b["name"] for b in tomllib.loads(CARGO_TOML.read_text()).get("bin", [])}
    # Cargo also builds src/bin/*.rs without a [[bin]] entry (autobins).
    return declared | {p.stem for p in (ROOT / "src" / "bin").glob("*.rs")}


def _check_function_basics(fn: dict, binary: str):
    props = fn["Properties"]
    assert props["Runtime"] == "provided.al2023"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "bootstrap"
    assert props["CodeUri"] == "."
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    meta = fn["Metadata"]
    assert meta["BuildMethod"] == "rust-cargolambda"
    assert meta["BuildProperties"] == {"Binary": binary}
    for key in ["Role", "PermissionsBoundary", "Layers", "VpcConfig"]:
        assert key not in props, key


def test_webhook_function(webhook, params):
    _check_function_basics(webhook, "im-exception-webhook")
    assert "im-exception-webhook" in _binaries()
    props = webhook["Properties"]
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}
    assert 128 <= props["MemorySize"] <= 256
    # The function must outlive its publish and its forward, or the publish_failed record
    # (the only copy of the exception) is never written.
    max_publish_ms = int(params["PublishTimeoutMs"]["MaxValue"])
    max_forward_ms = int(params["UpstreamTimeoutMs"]["MaxValue"])
    assert props["Timeout"] * 1000 >= max_publish_ms + max_forward_ms + 1000
    assert max_publish_ms <= 2000, "Chat waits 2 s; a longer publish is never heard"
    assert "Events" not in props, "the endpoint resources are conditional, not SAM events"


def test_redrive_function(redrive, params):
    _check_function_basics(redrive, "im-exception-redrive")
    props = redrive["Properties"]
    assert props["MemorySize"] == 128
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "RedriveLogGroup"}
    # Several publishes bounded by 10 s each must fit in one invocation.
    assert 30 <= props["Timeout"] <= 900
    assert "Events" not in props, "the subscription filter and its permission are explicit"


def test_redrive_binary_is_in_the_crate():
    if "im-exception-redrive" not in _binaries():
        pytest.skip("src/bin/im-exception-redrive.rs is not written yet: sam build will fail")
    assert "im-exception-redrive" in _binaries()


def test_redrive_retries_then_dead_letter_queue(redrive, resources):
    config = redrive["Properties"]["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2
    # It must outlast the two retries (about one and three minutes after the first failure)
    # and stay within Lambda's bounds.
    assert 600 <= config["MaximumEventAgeInSeconds"] <= 21600
    assert config["DestinationConfig"] == {
        "OnFailure": {"Type": "SQS", "Destination": {"Fn::GetAtt": ["RedriveDeadLetterQueue", "Arn"]}}
    }
    queue = resources["RedriveDeadLetterQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert int(queue["Properties"]["MessageRetentionPeriod"]) == 1209600
    assert "KmsMasterKeyId" not in queue["Properties"]


def test_redrive_subscription_filter(resources):
    filters = {k: v for k, v in resources.items() if v["Type"] == "AWS::Logs::SubscriptionFilter"}
    assert list(filters) == ["RedriveSubscriptionFilter"], sorted(filters)
    f = filters["RedriveSubscriptionFilter"]
    props = f["Properties"]
    assert props["FilterPattern"] == PUBLISH_FAILED_PATTERN
    assert props["LogGroupName"] == {"Ref": "FunctionLogGroup"}
    assert props["DestinationArn"] == {"Fn::GetAtt": ["RedriveFunction", "Arn"]}
    assert "RoleArn" not in props, "a Lambda destination is authorised by its permission"
    depends = f.get("DependsOn")
    assert "RedriveInvokePermission" in ([depends] if isinstance(depends, str) else depends)

    perm = resources["RedriveInvokePermission"]
    assert perm["Type"] == "AWS::Lambda::Permission"
    assert perm["Properties"] == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": {"Ref": "RedriveFunction"},
        "Principal": "logs.amazonaws.com",
        "SourceArn": {"Fn::GetAtt": ["FunctionLogGroup", "Arn"]},
        "SourceAccount": {"Ref": "AWS::AccountId"},
    }


def test_reserved_concurrency(template, webhook, params):
    prop = webhook["Properties"]["ReservedConcurrentExecutions"]
    assert prop == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert params["ReservedConcurrency"]["Default"] == ""
    pattern = params["ReservedConcurrency"]["AllowedPattern"]
    for value, reserved in [("", False), ("0", False), ("1", True), ("50", True)]:
        assert re.fullmatch(pattern, value), value
        conds = conditions(template, parameter_values(template, ReservedConcurrency=value))
        assert conds["HasReservedConcurrency"] is reserved, value
    for bad in ["-1", "01", "x", " 5"]:
        assert not re.fullmatch(pattern, bad), bad


# ------------------------------------------------------------------------------ (e) endpoints


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_callback_url_either_way(template, endpoint):
    d = deployed(template, Endpoint=endpoint)
    res, url = d["Resources"], d["Outputs"]["CallbackUrl"]["Value"]
    types = {v["Type"] for v in res.values()}
    api_types = {t for t in types if t.startswith("AWS::ApiGatewayV2::")}
    invokers = sorted(
        (v["Properties"]["Principal"], v["Properties"]["Action"])
        for v in res.values()
        if v["Type"] == "AWS::Lambda::Permission"
        and v["Properties"]["FunctionName"] == {"Ref": "WebhookFunction"}
    )
    if endpoint == "HttpApi":
        assert url == {
            "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/callback"
        }
        assert api_types == {
            "AWS::ApiGatewayV2::Api",
            "AWS::ApiGatewayV2::Integration",
            "AWS::ApiGatewayV2::Route",
            "AWS::ApiGatewayV2::Stage",
        }
        assert "AWS::Lambda::Url" not in types
        assert invokers == [("apigateway.amazonaws.com", "lambda:InvokeFunction")]
        assert "Api5xxAlarm" in res
    else:
        assert url == {"Fn::GetAtt": ["WebhookFunctionUrl", "FunctionUrl"]}
        assert not api_types, f"an HTTP API without Endpoint HttpApi: {api_types}"
        assert res["WebhookFunctionUrl"]["Properties"] == {
            "AuthType": "NONE",
            "TargetFunctionArn": {"Fn::GetAtt": ["WebhookFunction", "Arn"]},
        }
        assert invokers == [("*", "lambda:InvokeFunction"), ("*", "lambda:InvokeFunctionUrl")]
        by_action = {
            v["Properties"]["Action"]: v["Properties"]
            for v in res.values()
            if v["Type"] == "AWS::Lambda::Permission" and v["Properties"]["Principal"] == "*"
        }
        assert by_action["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
        # The public InvokeFunction right holds only for calls through the URL.
        assert by_action["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True
        assert "Api5xxAlarm" not in res


def test_http_api(resources, params):
    api = resources["HttpApi"]["Properties"]
    assert api["ProtocolType"] == "HTTP"
    integration = resources["HttpApiIntegration"]["Properties"]
    assert integration["ApiId"] == {"Ref": "HttpApi"}
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["WebhookFunction", "Arn"]}
    assert integration["PayloadFormatVersion"] == "2.0"
    route = resources["HttpApiCallbackRoute"]["Properties"]
    assert route["RouteKey"] == "POST /callback"
    assert route["Target"] == {"Fn::Sub": "integrations/${HttpApiIntegration}"}
    stage = resources["HttpApiStage"]["Properties"]
    assert stage["StageName"] == "$default" and stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
    }
    perm = resources["HttpApiInvokePermission"]["Properties"]
    assert perm["SourceArn"]["Fn::Sub"].endswith(":${HttpApi}/*/POST/callback")
    for name in ["HttpApi", "HttpApiIntegration", "HttpApiCallbackRoute", "HttpApiStage", "HttpApiInvokePermission"]:
        assert resources[name]["Condition"] == "UseHttpApi", name


def test_throttling_defaults_sit_far_above_chats_rate(params):
    rate = float(params["ApiThrottlingRateLimit"]["Default"])
    burst = int(params["ApiThrottlingBurstLimit"]["Default"])
    # A throttled callback is lost (Chat does not resend): far above one group failing every
    # message at Chat's maximum rate.
    assert rate >= 5 * CHAT_GROUP_MESSAGES_PER_SECOND
    assert burst >= rate
    assert float(params["ApiThrottlingRateLimit"]["MaxValue"]) <= 10000  # API Gateway's account limit


SCENARIOS = [
    dict(zip(["Endpoint", "CreateUnclassifiedTopic", "SubscriberAccounts", "UpstreamCallbackUrl", "AlarmEmail", "ReservedConcurrency"], combo))
    for combo in itertools.product(
        ENDPOINTS, ["true", "false"], ["", "111111111111,222222222222"], ["", "https://b.example/cb"], [""], ["", "5"]
    )
]


@pytest.mark.parametrize("overrides", SCENARIOS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_reference_resolves(template, overrides):
    """In each configuration, nothing refers to a resource its conditions left out."""
    d = deployed(template, **overrides)
    known = set(d["Resources"]) | set(d["values"]) | set(PSEUDO)
    for section in ["Resources", "Outputs"]:
        for name, body in d[section].items():
            missing = references(body) - known
            depends = body.get("DependsOn", [])
            missing |= set([depends] if isinstance(depends, str) else depends) - set(d["Resources"])
            assert not missing, f"{section}.{name} refers to {sorted(missing)}, not created"


# ------------------------------------------------------------------------------ (f) topics and subscribers


def test_topics(resources):
    for category, name in TOPICS.items():
        topic = resources[name]
        assert topic["Type"] == "AWS::SNS::Topic", name
        props = topic["Properties"]
        assert props["KmsMasterKeyId"] == "alias/aws/sns", name
        fifo, standard = props["TopicName"]["Fn::If"][1:]
        assert props["TopicName"]["Fn::If"][0] == "UseFifoTopics"
        assert fifo["Fn::Sub"].endswith(f"{category}.fifo"), name
        assert standard["Fn::Sub"].endswith(category), name
        assert props["FifoTopic"] == {"Fn::If": ["UseFifoTopics", True, {"Ref": "AWS::NoValue"}]}
        # The function sets MessageDeduplicationId itself.
        assert props["ContentBasedDeduplication"] == {
            "Fn::If": ["UseFifoTopics", False, {"Ref": "AWS::NoValue"}]
        }
        assert topic.get("Condition") == (UNCLASSIFIED_CONDITION if name == OPTIONAL_TOPIC else None)


def _category_topic_list() -> list:
    return [
        {"Ref": t} if t != OPTIONAL_TOPIC else {"Fn::If": [UNCLASSIFIED_CONDITION, {"Ref": t}, {"Ref": "AWS::NoValue"}]}
        for t in TOPICS.values()
    ]


def test_subscriber_accounts_may_only_subscribe(template, resources, params):
    pattern = params["SubscriberAccounts"]["AllowedPattern"]
    assert params["SubscriberAccounts"]["Default"] == ""
    for ok in ["", "123456789012", "123456789012,210987654321"]:
        assert re.fullmatch(pattern, ok), ok
    for bad in ["12345678901", "123456789012, 210987654321", "123456789012,", "abc", "*"]:
        assert not re.fullmatch(pattern, bad), bad

    policies = {k: v for k, v in resources.items() if v["Type"] == "AWS::SNS::TopicPolicy"}
    assert list(policies) == ["CategoryTopicsSubscribePolicy"], sorted(policies)
    policy = policies["CategoryTopicsSubscribePolicy"]
    assert policy["Condition"] == "HasSubscriberAccounts"
    props = policy["Properties"]
    assert props["Topics"] == _category_topic_list()
    statements = props["PolicyDocument"]["Statement"]
    assert len(statements) == 1, statements
    stmt = statements[0]
    assert stmt["Effect"] == "Allow"
    assert stmt["Action"] in ("sns:Subscribe", ["sns:Subscribe"]), stmt["Action"]
    assert stmt["Principal"] == {"AWS": {"Fn::Split": [",", {"Ref": "SubscriberAccounts"}]}}
    assert stmt["Resource"] == _category_topic_list()
    assert not {"NotAction", "NotPrincipal", "NotResource"} & set(stmt)

    for value, created in [("", False), ("123456789012", True)]:
        conds = conditions(template, parameter_values(template, SubscriberAccounts=value))
        assert conds["HasSubscriberAccounts"] is created


# ------------------------------------------------------------------------------ (g) logs


def test_log_groups_and_dead_letter_queue_are_retained(resources):
    for name in ["FunctionLogGroup", "RedriveLogGroup"]:
        group = resources[name]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    for name in ["FunctionLogGroup", "RedriveLogGroup", "RedriveDeadLetterQueue"]:
        assert resources[name].get("DeletionPolicy") == "Retain", name
        assert resources[name].get("UpdateReplacePolicy") == "Retain", name


def test_publish_failed_metric_filter(resources):
    filters = [v for v in resources.values() if v["Type"] == "AWS::Logs::MetricFilter"]
    publish_failed = [f for f in filters if f["Properties"]["FilterPattern"] == PUBLISH_FAILED_PATTERN]
    assert len(publish_failed) == 1, "a metric filter on the publish_failed records is missing"
    f = publish_failed[0]["Properties"]
    assert f["LogGroupName"] == {"Ref": "FunctionLogGroup"}
    transform = f["MetricTransformations"][0]
    alarm = _single_metric_alarm(resources, transform["MetricNamespace"], transform["MetricName"])
    assert alarm["Statistic"] == "Sum" and float(alarm["Threshold"]) == 1


# ------------------------------------------------------------------------------ (h) alarms


def _alarms(resources) -> dict:
    return {k: v for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"}


def _single_metric_alarm(resources, namespace, metric, dimension_value=None):
    found = [
        a
        for a in _alarms(resources).values()
        if a["Properties"].get("Namespace") == namespace
        and a["Properties"].get("MetricName") == metric
        and (dimension_value is None or a["Properties"]["Dimensions"][0]["Value"] == dimension_value)
    ]
    assert len(found) == 1, f"expected one alarm on {namespace} {metric}, found {len(found)}"
    return found[0]["Properties"]


def test_every_alarm_notifies_and_treats_missing_data(resources):
    alarms = _alarms(resources)
    assert sorted(alarms) == sorted(
        [
            "FunctionErrorsAlarm",
            "FunctionThrottlesAlarm",
            "Api5xxAlarm",
            "PublishFailedAlarm",
            "RejectedCallbacksAlarm",
            "ForwardFailuresAlarm",
            "RedriveErrorsAlarm",
            "RedriveDeliveryFailuresAlarm",
            "RedriveDeadLetterQueueAlarm",
        ]
    )
    for name, a in alarms.items():
        props = a["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert props["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert props.get("TreatMissingData") in {"breaching", "notBreaching", "ignore", "missing"}, name
        assert props["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), name


def test_webhook_alarms(resources):
    for metric in ["Errors", "Throttles"]:
        alarm = _single_metric_alarm(resources, "AWS/Lambda", metric, {"Ref": "WebhookFunction"})
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "WebhookFunction"}}]
        assert float(alarm["Threshold"]) == 1
    api = _single_metric_alarm(resources, "AWS/ApiGateway", "5xx")
    assert api["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}]
    assert resources["Api5xxAlarm"]["Condition"] == "UseHttpApi"


def test_rejected_alarm_is_a_rate_over_every_reason(resources, params):
    alarm = resources["RejectedCallbacksAlarm"]["Properties"]
    stats = [m for m in alarm["Metrics"] if "MetricStat" in m]
    metrics = [m["MetricStat"]["Metric"] for m in stats]
    assert {(m["Namespace"], m["MetricName"]) for m in metrics} == {(NAMESPACE, "Rejected")}
    assert all(m["Dimensions"][0]["Name"] == "Reason" for m in metrics)
    reasons = [m["Dimensions"][0]["Value"] for m in metrics]
    assert sorted(reasons) == sorted(REJECTION_REASONS)
    assert all(m["MetricStat"]["Period"] == 300 and m["MetricStat"]["Stat"] == "Sum" for m in stats)
    returned = [m for m in alarm["Metrics"] if m.get("ReturnData", True)]
    assert len(returned) == 1 and returned[0]["Expression"].startswith("SUM(METRICS(")
    assert all(s["Id"].startswith("r") for s in stats)
    assert alarm["Threshold"] == {"Ref": "RejectedCallbacksAlarmThreshold"}
    assert int(params["RejectedCallbacksAlarmThreshold"]["Default"]) > 1, "not on one request"


def test_forward_failures_alarm_only_with_an_upstream(template, resources):
    alarm = resources["ForwardFailuresAlarm"]
    assert alarm["Condition"] == "HasUpstream"
    props = alarm["Properties"]
    assert (props["Namespace"], props["MetricName"]) == (NAMESPACE, "ForwardFailures")
    assert "Dimensions" not in props
    for value, created in [("", False), ("https://b.example/cb", True)]:
        assert ("ForwardFailuresAlarm" in deployed(template, UpstreamCallbackUrl=value)["Resources"]) is created


def test_redrive_alarms(resources):
    errors = _single_metric_alarm(resources, "AWS/Lambda", "Errors", {"Ref": "RedriveFunction"})
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "RedriveFunction"}}]
    dlq = _single_metric_alarm(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["RedriveDeadLetterQueue", "QueueName"]}}
    ]
    assert dlq["Statistic"] == "Maximum"
    assert float(dlq["Threshold"]) == 0 and dlq["ComparisonOperator"] == "GreaterThanThreshold"
    # A quiet queue stops reporting with its messages still in it: it must not clear then.
    assert dlq["TreatMissingData"] in ("ignore", "breaching")


def test_alarm_topic_and_email(resources, template):
    topic = resources["AlarmTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    # CloudWatch cannot publish to a topic under the AWS-managed key alias/aws/sns.
    assert "KmsMasterKeyId" not in topic["Properties"]
    sub = resources["AlarmEmailSubscription"]
    assert sub["Condition"] == "HasAlarmEmail"
    assert sub["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    assert template["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }


# ------------------------------------------------------------------------------ (i) dashboard


def _dashboard(template, endpoint: str) -> dict:
    body = deployed(template, Endpoint=endpoint)["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    text = substitute(body, lambda name: PSEUDO.get(name) or f"dummy-{name.replace('.', '-')}")
    assert "${" not in text
    return json.loads(text)


def _metric_lines(widget: dict) -> list[tuple]:
    """(namespace, metric, dimensions, options) per metric line; expressions as ("expr", text)."""
    out = []
    for line in widget["properties"]["metrics"]:
        options = line[-1] if isinstance(line[-1], dict) else {}
        if "expression" in options:
            out.append(("expr", options["expression"]))
            continue
        fields = line[:-1] if options else line
        ns, metric, dims = fields[0], fields[1], fields[2:]
        assert len(dims) % 2 == 0, line
        out.append((ns, metric, dict(zip(dims[::2], dims[1::2])), options))
    return out


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_dashboard(template, resources, endpoint):
    dashboard = resources["Dashboard"]
    assert dashboard["Type"] == "AWS::CloudWatch::Dashboard"
    assert "Fn::Sub" in dashboard["Properties"]["DashboardBody"]
    body = _dashboard(template, endpoint)
    widgets = body["widgets"]
    assert all(w["type"] == "metric" and w["properties"]["region"] == "us-east-1" for w in widgets)
    lines = [line for w in widgets for line in _metric_lines(w)]
    metrics = [line for line in lines if line[0] != "expr"]

    def having(ns, metric, dim=None):
        return {
            (tuple(d.items()) if d else ()) for n, m, d, _ in metrics if (n, m) == (ns, metric)
            if dim is None or dim in d
        }

    assert having(NAMESPACE, "Exceptions", "Category") == {(("Category", c),) for c in TOPICS}
    assert having(NAMESPACE, "Rejected", "Reason") == {(("Reason", r),) for r in REJECTION_REASONS}
    for metric in ["PublishFailures", "ForwardFailures", "Redriven", "RedriveFailures"]:
        assert having(NAMESPACE, metric) == {()}, metric
    searches = [line[1] for line in lines if line[0] == "expr"]
    assert any(
        s.startswith("SEARCH(") and f"{{{NAMESPACE},Command}}" in s and 'MetricName="Forwarded"' in s
        for s in searches
    ), searches
    durations = [(d, o.get("stat")) for n, m, d, o in metrics if (n, m) == ("AWS/Lambda", "Duration")]
    assert sorted(s for _, s in durations) == ["p50", "p99"]
    assert all(d == {"FunctionName": "dummy-WebhookFunction"} for d, _ in durations)
    if endpoint == "HttpApi":
        assert having("AWS/ApiGateway", "4xx") == having("AWS/ApiGateway", "5xx") == {
            (("ApiId", "dummy-HttpApi"),)
        }
    else:
        assert not having("AWS/ApiGateway", "4xx") and not having("AWS/ApiGateway", "5xx")
        assert having("AWS/Lambda", "Url5xxCount") == {(("FunctionName", "dummy-WebhookFunction"),)}


def test_dashboard_substitution_catches_broken_json():
    with pytest.raises(json.JSONDecodeError):
        json.loads(substitute({"Fn::Sub": '{"a": ${X}}'}, lambda name: "not json"))


# ------------------------------------------------------------------------------ (j) outputs


def test_outputs(template):
    outputs = template["Outputs"]
    for category, topic in TOPICS.items():
        out = outputs[f"{topic}Arn"]
        assert out["Value"] == {"Ref": topic}
        assert out.get("Condition") == (UNCLASSIFIED_CONDITION if topic == OPTIONAL_TOPIC else None)
    assert outputs["AlarmTopicArn"]["Value"] == {"Ref": "AlarmTopic"}
    assert outputs["FunctionName"]["Value"] == {"Ref": "WebhookFunction"}
    assert outputs["LogGroupName"]["Value"] == {"Ref": "FunctionLogGroup"}
    assert outputs["RedriveFunctionName"]["Value"] == {"Ref": "RedriveFunction"}
    assert outputs["RedriveDeadLetterQueueUrl"]["Value"] == {"Ref": "RedriveDeadLetterQueue"}
    assert outputs["DashboardUrl"]["Value"] == {
        "Fn::Sub": "https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home"
        "?region=${AWS::Region}#dashboards:name=${Dashboard}"
    }
    assert "Condition" not in outputs["CallbackUrl"]


# ------------------------------------------------------------------------------ (k) publish rights


@pytest.mark.parametrize("name", ["WebhookFunction", "RedriveFunction"])
def test_policies_name_exactly_the_category_topics(functions, name):
    policies = functions[name]["Properties"]["Policies"]
    named, conditional = [], []
    for policy in policies:
        if "Fn::If" in policy:
            condition, then, otherwise = policy["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
            assert list(then) == ["SNSPublishMessagePolicy"], then
            conditional.append((condition, then["SNSPublishMessagePolicy"]["TopicName"]))
            continue
        assert list(policy) == ["SNSPublishMessagePolicy"], f"unexpected policy {policy}"
        named.append(policy["SNSPublishMessagePolicy"]["TopicName"])
    required = [t for t in TOPICS.values() if t != OPTIONAL_TOPIC]
    assert all(list(n) == ["Fn::GetAtt"] and n["Fn::GetAtt"][1] == "TopicName" for n in named), named
    assert sorted(n["Fn::GetAtt"][0] for n in named) == sorted(required)
    assert conditional == [
        (UNCLASSIFIED_CONDITION, {"Fn::GetAtt": [OPTIONAL_TOPIC, "TopicName"]})
    ]


@pytest.fixture(scope="session")
def translated(template) -> dict:
    """What CloudFormation would create: the template through SAM's own translator."""
    import os

    from samtranslator.translator.transform import transform

    class NoManagedPolicyLookups:
        def load(self):
            raise AssertionError("the translation needed an IAM lookup")

    sam = copy.deepcopy(template)
    for res in sam["Resources"].values():
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = "s3://bucket/bootstrap.zip"  # as after `sam package`
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    try:
        return transform(sam, dict(REQUIRED_PARAMETERS), NoManagedPolicyLookups())
    finally:
        if previous is None:
            del os.environ["AWS_DEFAULT_REGION"]
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def _role_of(translated: dict, function: str) -> dict:
    fn = translated["Resources"][function]
    assert fn["Type"] == "AWS::Lambda::Function"
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    return translated["Resources"][role]["Properties"]


def _statements(role: dict):
    for policy in role["Policies"]:
        guard = None
        if "Fn::If" in policy:
            guard, policy, otherwise = policy["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
        for stmt in policy["PolicyDocument"]["Statement"]:
            yield guard, stmt


def _check_sns_statement(guard, stmt, seen: list, unconditional: list):
    assert stmt["Effect"] == "Allow"
    assert stmt["Action"] == ["sns:Publish"], stmt["Action"]
    arn, values = stmt["Resource"]["Fn::Sub"]
    assert arn == "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:${topicName}"
    topic = values["topicName"]["Fn::GetAtt"][0]
    seen.append(topic)
    if guard is None:
        unconditional.append(topic)
    else:
        assert (guard, topic) == (UNCLASSIFIED_CONDITION, OPTIONAL_TOPIC)


def test_translated_roles_publish_to_the_topics_and_nothing_else(translated):
    iam = {k: v for k, v in translated["Resources"].items() if v["Type"].startswith("AWS::IAM::")}
    assert [v["Type"] for v in iam.values()] == ["AWS::IAM::Role"] * 2, sorted(iam)
    for function in ["WebhookFunction", "RedriveFunction"]:
        role = _role_of(translated, function)
        assert role["ManagedPolicyArns"] == [BASIC_EXECUTION], function
        seen, unconditional, queues = [], [], []
        for guard, stmt in _statements(role):
            if stmt["Action"] == "sqs:SendMessage":
                assert function == "RedriveFunction" and guard is None
                assert stmt["Effect"] == "Allow"
                queues.append(stmt["Resource"])
                continue
            _check_sns_statement(guard, stmt, seen, unconditional)
        assert sorted(seen) == sorted(TOPICS.values()), function
        assert sorted(unconditional) == sorted(t for t in TOPICS.values() if t != OPTIONAL_TOPIC)
        expected_queues = [{"Fn::GetAtt": ["RedriveDeadLetterQueue", "Arn"]}] if function == "RedriveFunction" else []
        assert queues == expected_queues, function


def test_translated_stack_grants_nothing_else(translated):
    res = translated["Resources"]
    perms = sorted(
        (
            v.get("Condition", ""),
            v["Properties"]["Principal"],
            v["Properties"]["Action"],
            v["Properties"]["FunctionName"]["Ref"],
        )
        for v in res.values()
        if v["Type"] == "AWS::Lambda::Permission"
    )
    assert perms == [
        ("", "logs.amazonaws.com", "lambda:InvokeFunction", "RedriveFunction"),
        ("UseFunctionUrl", "*", "lambda:InvokeFunction", "WebhookFunction"),
        ("UseFunctionUrl", "*", "lambda:InvokeFunctionUrl", "WebhookFunction"),
        ("UseHttpApi", "apigateway.amazonaws.com", "lambda:InvokeFunction", "WebhookFunction"),
    ]
    policies = [k for k, v in res.items() if v["Type"] in ("AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy")]
    assert policies == ["CategoryTopicsSubscribePolicy"]
    invoke = {k: v for k, v in res.items() if v["Type"] == "AWS::Lambda::EventInvokeConfig"}
    assert len(invoke) == 1
    props = next(iter(invoke.values()))["Properties"]
    assert props["FunctionName"] == {"Ref": "RedriveFunction"}
    assert props["MaximumRetryAttempts"] == 2
    assert "Rules" in translated, "the translation dropped the Rules"
