"""template.yaml against the code it deploys: no drift allowed on either side.

Run by `make test` (after cfn-lint and `sam validate --lint`):

    .venv/bin/python -m pytest tests/

- The function's environment variables are exactly `config::VARIABLES` of src/config.rs, read
  from the Rust source, and the parameter defaults are the code's defaults.
- Every parameter, alarm and output the deployment issue asks for is there.
- The function may publish to the category topics and to nothing else, checked both on the
  template and on what the SAM translator makes of it (the IAM role CloudFormation would create).
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
CONFIG_RS = ROOT / "src" / "config.rs"
CARGO_TOML = ROOT / "Cargo.toml"

# Category wire name -> the template's topic resource. The wire names are DESIGN.md's.
TOPICS = {
    "invalid_group": "InvalidGroupTopic",
    "frequency_limit": "FrequencyLimitTopic",
    "content_filter": "ContentFilterTopic",
    "muted_sender": "MutedSenderTopic",
    "unclassified": "UnclassifiedTopic",
}
OPTIONAL_TOPIC = "UnclassifiedTopic"
UNCLASSIFIED_CONDITION = "CreateUnclassified"


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
def function(resources) -> dict:
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}
    assert len(functions) == 1, f"expected one function, found {sorted(functions)}"
    return next(iter(functions.values()))


def _rust_str_consts(source: str) -> dict[str, str]:
    return dict(re.findall(r'pub const ([A-Z0-9_]+): &str = "([^"]*)";', source))


def _rust_array(source: str, name: str) -> list[str]:
    m = re.search(
        rf"pub const {name}: \[&str; (\d+)\] = \[(.*?)\];", source, flags=re.DOTALL
    )
    assert m, f"const {name}: [&str; N] not found in {CONFIG_RS}"
    items = [i.strip() for i in re.sub(r"//[^\n]*", "", m.group(2)).split(",") if i.strip()]
    assert len(items) == int(m.group(1)), f"{name}: declared {m.group(1)} items, read {items}"
    return items


@pytest.fixture(scope="session")
def rust_config() -> dict:
    source = CONFIG_RS.read_text()
    consts = _rust_str_consts(source)

    def value(item: str) -> str:
        if item.startswith('"'):
            return item.strip('"')
        assert item in consts, f"{item} is not a string constant of {CONFIG_RS}"
        return consts[item]

    numbers = dict(
        (k, int(v.replace("_", "")))
        for k, v in re.findall(r"pub const (DEFAULT_[A-Z_]+): \w+ = ([0-9_]+);", source)
    )
    return {
        "variables": [value(i) for i in _rust_array(source, "VARIABLES")],
        "topic_variables": [value(i) for i in _rust_array(source, "TOPIC_VARIABLES")],
        "defaults": numbers,
    }


# ------------------------------------------------------------------------------ (a) variables


def test_rust_source_was_read(rust_config):
    assert len(rust_config["variables"]) >= 10
    assert "IM_SDK_APP_ID" in rust_config["variables"]
    assert set(rust_config["topic_variables"]) <= set(rust_config["variables"])


def test_environment_variables_are_exactly_those_the_code_reads(function, rust_config):
    in_template = list(function["Properties"]["Environment"]["Variables"])
    assert len(in_template) == len(set(in_template))
    missing = sorted(set(rust_config["variables"]) - set(in_template))
    unknown = sorted(set(in_template) - set(rust_config["variables"]))
    assert not missing and not unknown, (
        f"template.yaml and src/config.rs VARIABLES disagree: "
        f"not set by the template {missing}, not read by the code {unknown}"
    )


def test_each_variable_is_wired_to_its_parameter_or_topic(function, rust_config):
    env = function["Properties"]["Environment"]["Variables"]
    for variable, topic in zip(rust_config["topic_variables"], TOPICS.values()):
        if topic == OPTIONAL_TOPIC:
            # Empty when the topic is not created; the function treats empty as unset.
            assert env[variable] == {"Fn::If": [UNCLASSIFIED_CONDITION, {"Ref": topic}, ""]}
        else:
            assert env[variable] == {"Ref": topic}, variable
    assert env["IM_SDK_APP_ID"] == {"Ref": "SdkAppIds"}
    assert env["IM_CALLBACK_TOKEN"] == {"Ref": "CallbackToken"}
    assert env["IM_SIGN_MAX_SKEW_SECS"] == {"Ref": "SignMaxSkewSecs"}
    assert env["ERROR_CODE_OVERRIDES"] == {"Ref": "ErrorCodeOverrides"}
    assert env["PUBLISH_TIMEOUT_MS"] == {"Ref": "PublishTimeoutMs"}
    assert env["MAX_BODY_BYTES"] == {"Ref": "MaxBodyBytes"}


def test_parameter_defaults_are_the_codes_defaults(template, rust_config):
    params, defaults = template["Parameters"], rust_config["defaults"]
    assert int(params["SignMaxSkewSecs"]["Default"]) == defaults["DEFAULT_MAX_SKEW_SECS"]
    assert int(params["PublishTimeoutMs"]["Default"]) == defaults["DEFAULT_PUBLISH_TIMEOUT_MS"]
    assert int(params["MaxBodyBytes"]["Default"]) == defaults["DEFAULT_MAX_BODY_BYTES"]


# ------------------------------------------------------------------------------ (b) what the issue lists


def test_parameters(template):
    params = template["Parameters"]
    for name in [
        "SdkAppIds",
        "CallbackToken",
        "TopicKind",
        "CreateUnclassifiedTopic",
        "ErrorCodeOverrides",
        "LogRetentionDays",
        "AlarmEmail",
        "SignMaxSkewSecs",
        "PublishTimeoutMs",
        "MaxBodyBytes",
    ]:
        assert name in params, f"parameter {name} is missing"
    token = params["CallbackToken"]
    assert str(token["NoEcho"]).lower() == "true"
    assert token["Default"] == "", "an empty token (authentication off) must be the default"
    assert "Default" not in params["SdkAppIds"], "the SDKAppID has no sensible default"
    assert sorted(params["TopicKind"]["AllowedValues"]) == ["fifo", "standard"]
    assert sorted(params["CreateUnclassifiedTopic"]["AllowedValues"]) == ["false", "true"]
    assert params["ErrorCodeOverrides"]["Default"] == ""
    assert params["AlarmEmail"]["Default"] == ""
    assert "Default" in params["LogRetentionDays"]


def test_function(function, template):
    props = function["Properties"]
    assert props["Runtime"] == "provided.al2023"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "bootstrap"
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}
    assert 128 <= props["MemorySize"] <= 256
    # The function must outlive its own publish timeout, or the publish_failed record (the
    # only copy of the exception) is never written.
    max_publish_ms = int(template["Parameters"]["PublishTimeoutMs"]["MaxValue"])
    assert props["Timeout"] * 1000 >= max_publish_ms + 1000
    assert max_publish_ms <= 2000, "Chat waits 2 s; a longer publish is never heard"

    meta = function["Metadata"]
    assert meta["BuildMethod"] == "rust-cargolambda"
    binaries = [b["name"] for b in tomllib.loads(CARGO_TOML.read_text()).get("bin", [])]
    assert meta["BuildProperties"]["Binary"] in binaries, f"no [[bin]] of that name: {binaries}"
    assert meta["BuildProperties"]["Binary"] == "im-exception-webhook"


def test_http_api_route(function, resources):
    events = function["Properties"]["Events"]
    http = [e for e in events.values() if e["Type"] == "HttpApi"]
    assert len(http) == 1
    route = http[0]["Properties"]
    assert (route["Method"], route["Path"]) == ("POST", "/callback")
    api = route["ApiId"]["Ref"]
    assert resources[api]["Type"] == "AWS::Serverless::HttpApi"


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


def test_log_group_has_retention(resources):
    group = resources["FunctionLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def _alarms(resources) -> dict:
    return {k: v for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"}


def _single_metric_alarm(resources, namespace, metric):
    found = [
        a
        for a in _alarms(resources).values()
        if a["Properties"].get("Namespace") == namespace
        and a["Properties"].get("MetricName") == metric
    ]
    assert len(found) == 1, f"expected one alarm on {namespace} {metric}, found {len(found)}"
    return found[0]["Properties"]


def test_alarms(resources, function):
    fn_name = next(k for k, v in resources.items() if v is function)
    for metric in ["Errors", "Throttles"]:
        alarm = _single_metric_alarm(resources, "AWS/Lambda", metric)
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": fn_name}}]

    api = _single_metric_alarm(resources, "AWS/ApiGateway", "5xx")
    assert api["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}]

    filters = [v for v in resources.values() if v["Type"] == "AWS::Logs::MetricFilter"]
    publish_failed = [
        f for f in filters if f["Properties"]["FilterPattern"] == '{ $.event = "publish_failed" }'
    ]
    assert len(publish_failed) == 1, "a metric filter on the publish_failed records is missing"
    f = publish_failed[0]["Properties"]
    assert f["LogGroupName"] == {"Ref": "FunctionLogGroup"}
    transform = f["MetricTransformations"][0]
    alarm = _single_metric_alarm(resources, transform["MetricNamespace"], transform["MetricName"])
    assert alarm["Statistic"] == "Sum" and float(alarm["Threshold"]) == 1

    # Every alarm notifies the alarm topic, when it fires and when it clears.
    for name, a in _alarms(resources).items():
        assert a["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert a["Properties"]["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert a["Properties"]["TreatMissingData"] == "notBreaching", name


def test_rejected_alarm_uses_the_functions_emf_metric(resources):
    alarm = resources["RejectedCallbacksAlarm"]["Properties"]
    stats = [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]
    assert {(m["Namespace"], m["MetricName"]) for m in stats} == {("ImExceptionWebhook", "Rejected")}
    reasons = {m["Dimensions"][0]["Value"] for m in stats}
    # The reasons are those of Rejection::reason() in src/rejection.rs.
    rejection = (ROOT / "src" / "rejection.rs").read_text()
    for reason in reasons:
        assert f'"{reason}"' in rejection, f"no rejection reason {reason!r} in src/rejection.rs"


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


def test_outputs(template):
    outputs = template["Outputs"]
    url = outputs["CallbackUrl"]["Value"]
    assert url == {
        "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/callback"
    }
    for category, topic in TOPICS.items():
        out = outputs[f"{topic}Arn"]
        assert out["Value"] == {"Ref": topic}
        assert out.get("Condition") == (UNCLASSIFIED_CONDITION if topic == OPTIONAL_TOPIC else None)
    assert outputs["AlarmTopicArn"]["Value"] == {"Ref": "AlarmTopic"}


# ------------------------------------------------------------------------------ (c) publish rights


def test_policies_name_exactly_the_category_topics(function):
    policies = function["Properties"]["Policies"]
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
    for key in ["Role", "PermissionsBoundary"]:
        assert key not in function["Properties"], key


def test_translated_role_publishes_to_the_topics_and_nothing_else(template, monkeypatch):
    """What CloudFormation would create: translate the template with SAM's own translator."""
    from samtranslator.translator.transform import transform

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    class NoManagedPolicyLookups:
        def load(self):
            raise AssertionError("the translation needed an IAM lookup")

    sam = copy.deepcopy(template)
    for res in sam["Resources"].values():
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = "s3://bucket/bootstrap.zip"  # as after `sam package`
    out = transform(sam, {"SdkAppIds": "1400000000"}, NoManagedPolicyLookups())

    iam = {k: v for k, v in out["Resources"].items() if v["Type"].startswith("AWS::IAM::")}
    assert [v["Type"] for v in iam.values()] == ["AWS::IAM::Role"], sorted(iam)
    role = next(iter(iam.values()))["Properties"]
    assert role["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ]

    resources_seen, unconditional = [], []
    for policy in role["Policies"]:
        guard = None
        if "Fn::If" in policy:
            guard, policy, otherwise = policy["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
        for stmt in policy["PolicyDocument"]["Statement"]:
            assert stmt["Effect"] == "Allow"
            assert stmt["Action"] == ["sns:Publish"], stmt["Action"]
            arn, values = stmt["Resource"]["Fn::Sub"]
            assert arn == "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:${topicName}"
            topic = values["topicName"]["Fn::GetAtt"][0]
            resources_seen.append(topic)
            if guard is None:
                unconditional.append(topic)
            else:
                assert (guard, topic) == (UNCLASSIFIED_CONDITION, OPTIONAL_TOPIC)
    assert sorted(resources_seen) == sorted(TOPICS.values())
    assert sorted(unconditional) == sorted(t for t in TOPICS.values() if t != OPTIONAL_TOPIC)

    # Nothing else in the stack grants anything to anyone but API Gateway invoking the function.
    perms = [v for v in out["Resources"].values() if v["Type"] == "AWS::Lambda::Permission"]
    assert [p["Properties"]["Principal"] for p in perms] == ["apigateway.amazonaws.com"]
    assert not [v for v in out["Resources"].values() if v["Type"] == "AWS::SNS::TopicPolicy"]
