"""The deployment files against their contract: template.yaml, samconfig.toml, and
docs/deployer-policy.json. cfn-lint and `sam validate --lint` run beside this (`make
check-template`) and check properties and references under conditions (W1001); these tests check
what a linter cannot know: the environment against docs/configuration.md, least privilege (on the
template and after SAM's translator), the Rules against parameter sets, endpoints and mutual TLS,
retention, recovery, alarms, the dashboard, the saved queries (the lines they select:
tests/queries.rs), the deployer's policy, samconfig's environments, and the binaries against
Cargo.toml."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
DEPLOYER_POLICY = ROOT / "docs" / "deployer-policy.json"

# Category wire name -> its topic resource (docs/contract.md's categories).
TOPICS = {
    "invalid_group": "InvalidGroupTopic",
    "frequency_limit": "FrequencyLimitTopic",
    "content_filter": "ContentFilterTopic",
    "muted_sender": "MutedSenderTopic",
    "unclassified": "UnclassifiedTopic",
}
OPTIONAL_TOPIC, UNCLASSIFIED = "UnclassifiedTopic", "CreateUnclassified"
REQUIRED_TOPICS = [t for t in TOPICS.values() if t != OPTIONAL_TOPIC]
NAMESPACE = "ImExceptionWebhook"
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
REQUIRED_PARAMETERS = {"SdkAppIds": "1400000000"}
ENDPOINTS = ["HttpApi", "FunctionUrl"]
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:im/token-AbCdEf"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
MTLS = {
    "CustomDomainName": "chat-webhook.example.com",
    "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc-123",
    "TruststoreUri": "s3://example-truststore/tencent-ca.pem",
}

@pytest.fixture(scope="session")
def template() -> dict:
    decoded, problems = decode(str(TEMPLATE))
    assert not problems and decoded is not None, [str(p) for p in problems]
    return json.loads(json.dumps(decoded))  # cfn-lint's nodes as plain dicts and lists


@pytest.fixture(scope="session")
def resources(template) -> dict:
    return template["Resources"]


@pytest.fixture(scope="session")
def params(template) -> dict:
    return template["Parameters"]


@pytest.fixture(scope="session")
def functions(resources) -> dict:
    found = of_type(resources, "AWS::Serverless::Function")
    assert sorted(found) == ["RedriveFunction", "WebhookFunction"], sorted(found)
    return found


def of_type(resources: dict, type_: str) -> dict:
    return {k: v for k, v in resources.items() if v["Type"] == type_}


def listed(value) -> list:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------------------ a small evaluator
# Rules, Conditions, Fn::If and AWS::NoValue resolved for given parameter values: what
# CloudFormation would accept and create.

PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "im-exception",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
NO_VALUE = object()


def parameter_values(template: dict, **overrides) -> dict[str, str]:
    unknown = set(overrides) - set(template["Parameters"])
    assert not unknown, f"no such parameters: {unknown}"
    values = {}
    for name, p in template["Parameters"].items():
        if name in overrides:
            values[name] = str(overrides[name])
        elif "Default" in p:
            values[name] = str(p["Default"])
        else:
            assert name in REQUIRED_PARAMETERS, f"parameter {name} has no default and no test value"
            values[name] = REQUIRED_PARAMETERS[name]
    return values


def evaluate(expr, template: dict, values: dict[str, str]) -> bool:
    ((fn, args),) = expr.items()
    if fn == "Fn::Equals":
        a, b = (values[x["Ref"]] if isinstance(x, dict) else str(x) for x in args)
        return a == b
    if fn == "Fn::Not":
        return not evaluate(args[0], template, values)
    if fn in ("Fn::And", "Fn::Or"):
        results = [evaluate(a, template, values) for a in args]
        return all(results) if fn == "Fn::And" else any(results)
    assert fn == "Condition", f"unsupported condition function {fn}"
    return evaluate(template["Conditions"][args], template, values)


def conditions(template: dict, **overrides) -> dict[str, bool]:
    values = parameter_values(template, **overrides)
    return {name: evaluate(e, template, values) for name, e in template["Conditions"].items()}


def refusals(template: dict, **overrides) -> set[str]:
    """The Rules that refuse a deployment with these parameters."""
    values = parameter_values(template, **overrides)
    return {
        name
        for name, rule in template["Rules"].items()
        if evaluate(rule.get("RuleCondition", {"Fn::Equals": ["", ""]}), template, values)
        and not all(evaluate(a["Assert"], template, values) for a in rule["Assertions"])
    }


def resolve(node, conds: dict[str, bool]):
    if isinstance(node, dict):
        if list(node) == ["Fn::If"]:
            name, then, otherwise = node["Fn::If"]
            return resolve(then if conds[name] else otherwise, conds)
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        pairs = ((k, resolve(v, conds)) for k, v in node.items())
        return {k: v for k, v in pairs if v is not NO_VALUE}
    if isinstance(node, list):
        return [r for r in (resolve(v, conds) for v in node) if r is not NO_VALUE]
    return node


def deployed(template: dict, **overrides) -> dict:
    """Resources and Outputs as CloudFormation would create them with these parameters."""
    conds = conditions(template, **overrides)
    return {
        section: {
            name: {k: resolve(v, conds) for k, v in body.items() if k != "Condition"}
            for name, body in template[section].items()
            if conds.get(body.get("Condition"), True)
        }
        for section in ["Resources", "Outputs"]
    }


def substitute(node) -> str:
    """An Fn::Sub (either form), Ref or GetAtt with each reference replaced by a dummy value."""
    if isinstance(node, str):
        return node
    ((fn, args),) = node.items()
    if fn != "Fn::Sub":
        name = args if fn == "Ref" else ".".join(args)
        return PSEUDO.get(name) or f"dummy-{name.replace('.', '-')}"
    text, local = (args, {}) if isinstance(args, str) else args
    local = {k: substitute(v) for k, v in local.items()}
    return re.sub(
        r"\$\{([^!}][^}]*)\}",
        lambda m: local.get(m.group(1)) or substitute({"Ref": m.group(1)}),
        text,
    )


# ------------------------------------------------------------------------------ environment and parameters


def parse_configuration_table(text: str) -> dict[str, dict]:
    """docs/configuration.md's `| variable | required | default | meaning |`: variable ->
    required, default (None for `-`)."""
    rows, in_table = {}, False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if cells[:3] == ["variable", "required", "default"]:
            in_table = True
        elif in_table and not cells:
            break
        elif in_table and not set("".join(cells)) <= set("-: "):
            variable, required, default = cells[:3]
            name = re.fullmatch(r"`([A-Z0-9_]+)`", variable)
            value = re.fullmatch(r"`([^`]*)`", default)
            assert name and required in ("yes", "no") and (value or default == "-"), line
            assert name.group(1) not in rows, f"{variable} twice in the table"
            rows[name.group(1)] = {"required": required == "yes", "default": value and value.group(1)}
    return rows


@pytest.fixture(scope="session")
def config_table() -> dict[str, dict]:
    table = parse_configuration_table((ROOT / "docs" / "configuration.md").read_text())
    assert table["IM_SDK_APP_ID"] == {"required": True, "default": None}
    assert table["MAX_BODY_BYTES"] == {"required": False, "default": "65536"}
    return table


def test_webhook_variables_are_the_documented_ones_with_their_defaults(functions, params, config_table):
    env = functions["WebhookFunction"]["Properties"]["Environment"]["Variables"]
    missing, unknown = sorted(set(config_table) - set(env)), sorted(set(env) - set(config_table))
    assert not missing and not unknown, f"not set by the template {missing}, not in the table {unknown}"
    fed_by_resources = {f"TOPIC_ARN_{c.upper()}": t for c, t in TOPICS.items()}
    fed_by_resources["RETRY_QUEUE_URL"] = "RetryQueue"
    for variable, resource in fed_by_resources.items():
        if resource == OPTIONAL_TOPIC:  # empty without the topic: the function reads it as unset
            assert env[variable] == {"Fn::If": [UNCLASSIFIED, {"Ref": resource}, ""]}
        else:
            assert env[variable] == {"Ref": resource}, variable
        assert config_table[variable]["required"] == (resource in REQUIRED_TOPICS), variable
    for variable, row in config_table.items():
        if variable in fed_by_resources:
            continue
        assert list(env[variable]) == ["Ref"], f"{variable} is not a parameter: {env[variable]}"
        param = params[env[variable]["Ref"]]
        if row["required"]:
            assert "Default" not in param, variable
        else:  # no default in the code: "", which the function reads as unset
            assert str(param["Default"]).lower() == (row["default"] or "").lower(), variable


def test_parameter_ranges_are_the_contracts(template, params):
    def bounds(name):
        return int(params[name]["MinValue"]), int(params[name]["MaxValue"])

    assert bounds("PublishTimeoutMs") == (100, 1900), "from arrival, within Chat's 2 s"
    assert bounds("MaxBodyBytes") == (1024, 65536)
    assert bounds("UpstreamTimeoutMs") == (100, 1999), "Chat waits 2 s"
    for name in ["CallbackToken", "CallbackTokenPrevious"]:
        assert str(params[name]["NoEcho"]).lower() == "true", name
    assert sorted(params["TopicKind"]["AllowedValues"]) == ["fifo", "standard"]
    assert all(re.fullmatch(params[name]["AllowedPattern"], value) for name, value in MTLS.items())
    # A throttled callback is lost (Chat does not resend): far above one group failing every
    # message at Chat's cap of 40 messages per second per group.
    rate = int(params["ApiThrottlingRateLimit"]["Default"])
    assert rate >= 5 * 40 and int(params["ApiThrottlingBurstLimit"]["Default"]) >= rate
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [p for g in groups for p in g["Parameters"]]
    assert sorted(grouped) == sorted(params), "each parameter in exactly one group"


@pytest.mark.parametrize(
    "name, value, ok",
    [
        ("UpstreamCallbackUrl", "https://backend.example.com/im/callback?k=1", True),
        ("UpstreamCallbackUrl", "http://backend.example.com/cb", False),  # a Sign in clear text
        ("CallbackTokenSecretArn", SECRET_ARN, True),
        ("CallbackTokenSecretArn", SECRET_ARN[:-7], False),  # IAM matches the full ARN only
        ("CallbackTokenSecretKmsKeyArn", KEY_ARN, True),
        ("CallbackTokenSecretKmsKeyArn", "arn:aws:kms:us-east-1:123456789012:alias/x", False),
        ("TruststoreUri", "https://bucket.s3.amazonaws.com/ca.pem", False),  # API Gateway reads s3://
        ("ReservedConcurrency", "01", False),
        ("SubscriberAccounts", "123456789012, 210987654321", False),
    ],
)
def test_parameter_patterns(params, name, value, ok):
    # (That each default matches its pattern, cfn-lint checks: E2015.)
    assert bool(re.fullmatch(params[name]["AllowedPattern"], value)) == ok


# ------------------------------------------------------------------------------ rules
# Per rule: parameter sets it lets through, sets it alone refuses, and words its description
# must say.
SIGNED = {"CallbackToken": "s3cr3t"}
SECRET = {"CallbackTokenSecretArn": SECRET_ARN}
PREVIOUS = {"CallbackTokenPrevious": "old"}
RULES = {
    "CallbackTokenRequired": (
        [SIGNED, SECRET, {"AllowUnsignedCallbacks": "true"}],
        [{}, {"AllowUnsignedCallbacks": "false"}],
        ["CallbackTokenSecretArn", "AllowUnsignedCallbacks", "Chat console"],
    ),
    "TokenOrSecretNotBoth": (
        [SECRET | {"CallbackTokenSecretKmsKeyArn": KEY_ARN}],
        [SIGNED | SECRET, SIGNED | SECRET | PREVIOUS],
        ["refuse to start", "readable in the function's configuration"],
    ),
    "PreviousTokenNeedsCurrent": (
        [SIGNED | PREVIOUS],
        [PREVIOUS | {"AllowUnsignedCallbacks": "true"}, PREVIOUS | SECRET],
        ["CallbackToken is empty"],
    ),
    "SecretKmsKeyNeedsSecret": (
        [SECRET | {"CallbackTokenSecretKmsKeyArn": KEY_ARN}],
        [SIGNED | {"CallbackTokenSecretKmsKeyArn": KEY_ARN}],
        ["without CallbackTokenSecretArn"],
    ),
    "MutualTlsNeedsHttpApi": (
        [SIGNED | MTLS, SIGNED | MTLS | {"TruststoreVersion": "3HL4kqtJlcpXroDTDmJ"}],
        [SIGNED | MTLS | {"Endpoint": "FunctionUrl"}],
        ["function URL cannot do mutual TLS", "Endpoint HttpApi"],
    ),
    "MutualTlsComplete": (
        [SIGNED | MTLS],
        [SIGNED | {k: v for k, v in MTLS.items() if k != left_out} for left_out in MTLS]
        + [SIGNED | {"TruststoreVersion": "v1"}],
        ["CustomDomainName, CertificateArn and TruststoreUri together"],
    ),
}


def test_every_rule_is_tested(template):
    assert sorted(template["Rules"]) == sorted(RULES)
    assert all(len(r["Assertions"]) == 1 for r in template["Rules"].values())


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule(template, rule):
    allowed, refused, words = RULES[rule]
    for overrides in allowed:
        assert refusals(template, **overrides) == set(), overrides
    for overrides in refused:
        assert refusals(template, **overrides) == {rule}, overrides
    description = template["Rules"][rule]["Assertions"][0]["AssertDescription"]
    assert all(w in description for w in words), f"{rule} does not say why: {words}"


# ------------------------------------------------------------------------------ functions


@pytest.mark.parametrize(
    "name, binary", [("WebhookFunction", "im-exception-webhook"), ("RedriveFunction", "im-exception-redrive")]
)
def test_function_basics(functions, name, binary):
    fn, props = functions[name], functions[name]["Properties"]
    assert (props["Runtime"], props["Architectures"]) == ("provided.al2023", ["arm64"])
    assert (props["Handler"], props["CodeUri"], props["MemorySize"]) == ("bootstrap", ".", 128)
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    assert fn["Metadata"] == {"BuildMethod": "rust-cargolambda", "BuildProperties": {"Binary": binary}}
    bins = {b["name"] for b in tomllib.loads((ROOT / "Cargo.toml").read_text()).get("bin", [])}
    assert binary in bins, f"{binary} is not a [[bin]] of Cargo.toml: sam build would fail"
    # Endpoints and the SQS mapping are explicit resources; no async-invoke destinations.
    for key in ["Role", "PermissionsBoundary", "Layers", "VpcConfig", "Events", "EventInvokeConfig"]:
        assert key not in props, key


def test_webhook_outlives_its_publish_and_forward(functions, params):
    props = functions["WebhookFunction"]["Properties"]
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}
    assert props["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    # The publish ends within PUBLISH_TIMEOUT_MS of arrival and the exception's forward runs
    # beside it; a forwarded command may first refresh the token secret (at most 500 ms). A
    # Lambda timeout must never cut the publish_failed record: a second of margin.
    publish, forward = int(params["PublishTimeoutMs"]["MaxValue"]), int(params["UpstreamTimeoutMs"]["MaxValue"])
    assert max(publish, 500 + forward) + 1000 <= props["Timeout"] * 1000 <= 10_000


# ------------------------------------------------------------------------------ least privilege

SNS_ARN = "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:${topicName}"
VIA_SECRETS_MANAGER = {"StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}}
PUBLISH = {(None, ("sns:Publish",), f"topic:{t}", None) for t in REQUIRED_TOPICS}
PUBLISH.add((UNCLASSIFIED, ("sns:Publish",), f"topic:{OPTIONAL_TOPIC}", None))
SQS_POLL = ("sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage")
GRANTS = {
    "WebhookFunction": PUBLISH | {
        (None, ("sqs:SendMessage",), "arn:RetryQueue", None),
        ("HasTokenSecret", ("secretsmanager:GetSecretValue",), "ref:CallbackTokenSecretArn", None),
        ("HasTokenSecretKmsKey", ("kms:Decrypt",), "ref:CallbackTokenSecretKmsKeyArn", json.dumps(VIA_SECRETS_MANAGER)),
    },
    "RedriveFunction": PUBLISH | {(None, SQS_POLL, "arn:RetryQueue", None)},
}  # fmt: skip


@pytest.fixture(scope="session")
def translated(template) -> dict:
    """What CloudFormation would create: the template through SAM's own translator."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicyLookups:
        def load(self):
            raise AssertionError("the translation needed an IAM lookup")

    sam = copy.deepcopy(template)
    for res in of_type(sam["Resources"], "AWS::Serverless::Function").values():
        res["Properties"]["CodeUri"] = "s3://bucket/bootstrap.zip"  # as after `sam package`
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return transform(sam, dict(REQUIRED_PARAMETERS), NoManagedPolicyLookups())


def _resource(node) -> str:
    if "Fn::GetAtt" in node and node["Fn::GetAtt"][1] == "Arn":
        return f"arn:{node['Fn::GetAtt'][0]}"
    if "Ref" in node:
        return f"ref:{node['Ref']}"
    text, local = node["Fn::Sub"]  # SAM's policy templates
    if text == SNS_ARN:
        assert local["topicName"]["Fn::GetAtt"][1] == "TopicName"
        return f"topic:{local['topicName']['Fn::GetAtt'][0]}"
    assert text == "${secretArn}", node
    return f"ref:{local['secretArn']['Ref']}"


def grants(translated: dict, function: str) -> list[tuple]:
    """(condition, actions, resource, statement condition) of each statement of its role."""
    fn = translated["Resources"][function]
    role = translated["Resources"][fn["Properties"]["Role"]["Fn::GetAtt"][0]]["Properties"]
    assert role["ManagedPolicyArns"] == [BASIC_EXECUTION], function
    found = []
    for policy in role["Policies"]:
        guard = None
        if "Fn::If" in policy:
            guard, policy, otherwise = policy["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
        for s in policy["PolicyDocument"]["Statement"]:
            assert s["Effect"] == "Allow" and not {"NotAction", "NotResource"} & set(s), s
            condition = json.dumps(s["Condition"]) if "Condition" in s else None
            found.append((guard, tuple(sorted(listed(s["Action"]))), _resource(s["Resource"]), condition))
    return found


@pytest.mark.parametrize("function", sorted(GRANTS))
def test_least_privilege(functions, translated, function):
    # On the template: SAM's narrow policy templates or inline statements, nothing managed.
    for policy in functions[function]["Properties"]["Policies"]:
        for branch in policy["Fn::If"][1:2] if "Fn::If" in policy else [policy]:
            assert list(branch)[0] in {"SNSPublishMessagePolicy", "AWSSecretsManagerGetSecretValuePolicy", "Statement"}
    # After the translator: exactly these grants, each once.
    found = grants(translated, function)
    assert len(found) == len(set(found)) and set(found) == GRANTS[function], set(found) ^ GRANTS[function]


def test_secret_rights_only_when_set(template):
    assert not conditions(template)["HasTokenSecret"]
    assert conditions(template, **SECRET)["HasTokenSecret"]
    assert not conditions(template, **SECRET)["HasTokenSecretKmsKey"]
    assert conditions(template, **SECRET, CallbackTokenSecretKmsKeyArn=KEY_ARN)["HasTokenSecretKmsKey"]


def test_translated_stack_grants_nothing_else(translated):
    res = translated["Resources"]
    assert [v["Type"] for v in res.values() if v["Type"].startswith("AWS::IAM::")] == ["AWS::IAM::Role"] * 2
    perms = of_type(res, "AWS::Lambda::Permission").values()
    assert sorted((p.get("Condition"), p["Properties"]["Principal"]) for p in perms) == [
        ("UseFunctionUrl", "*"), ("UseFunctionUrl", "*"), ("UseHttpApi", "apigateway.amazonaws.com")
    ]  # fmt: skip
    assert all(p["Properties"]["FunctionName"] == {"Ref": "WebhookFunction"} for p in perms)
    policies = [k for k, v in res.items() if v["Type"] in ("AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy")]
    assert policies == ["CategoryTopicsSubscribePolicy"]
    # Recovery is the retry queue: no log subscription, async destination or metric filter.
    for gone in ["AWS::Logs::SubscriptionFilter", "AWS::Lambda::EventInvokeConfig", "AWS::Logs::MetricFilter"]:
        assert not of_type(res, gone), gone
    assert "Rules" in translated, "the translation dropped the Rules"


# ------------------------------------------------------------------------------ endpoints and mutual TLS


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_callback_url_either_way(template, endpoint):
    d = deployed(template, Endpoint=endpoint)
    res, url = d["Resources"], d["Outputs"]["CallbackUrl"]["Value"]
    apis = {v["Type"].rsplit(":", 1)[1] for v in res.values() if v["Type"].startswith("AWS::ApiGatewayV2::")}
    perms = {v["Properties"]["Action"]: v["Properties"] for v in of_type(res, "AWS::Lambda::Permission").values()}
    if endpoint == "HttpApi":
        assert url == {"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/callback"}
        assert apis == {"Api", "Integration", "Route", "Stage"} and "WebhookFunctionUrl" not in res
        assert res["HttpApi"]["Properties"]["DisableExecuteApiEndpoint"] is False
        integration = res["HttpApiIntegration"]["Properties"]
        assert (integration["IntegrationType"], integration["PayloadFormatVersion"]) == ("AWS_PROXY", "2.0")
        assert res["HttpApiStage"]["Properties"]["DefaultRouteSettings"] == {
            "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
            "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
        }
        assert [p["Principal"] for p in perms.values()] == ["apigateway.amazonaws.com"]
        assert perms["lambda:InvokeFunction"]["SourceArn"]["Fn::Sub"].endswith(":${HttpApi}/*/POST/callback")
    else:
        assert url == {"Fn::GetAtt": ["WebhookFunctionUrl", "FunctionUrl"]} and not apis
        assert res["WebhookFunctionUrl"]["Properties"]["AuthType"] == "NONE"
        assert perms["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
        assert perms["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True  # only through the URL
    assert ("Api5xxAlarm" in res) is (endpoint == "HttpApi")
    assert not {"CustomDomainTarget", "CustomDomainHostedZoneId"} & set(d["Outputs"])


@pytest.mark.parametrize("version", ["", "3HL4kqtJlcpXroDTDmJ"])
def test_mutual_tls_domain_only_when_set(template, version):
    d = deployed(template, **MTLS, TruststoreVersion=version)
    res = d["Resources"]
    domain = res["CustomDomain"]["Properties"]
    assert domain["DomainName"] == {"Ref": "CustomDomainName"}
    assert domain["DomainNameConfigurations"] == [
        {"CertificateArn": {"Ref": "CertificateArn"}, "EndpointType": "REGIONAL", "SecurityPolicy": "TLS_1_2"}
    ]
    tls = {"TruststoreUri": {"Ref": "TruststoreUri"}}
    if version:
        tls["TruststoreVersion"] = {"Ref": "TruststoreVersion"}
    assert domain["MutualTlsAuthentication"] == tls
    assert res["CustomDomainApiMapping"]["Properties"] == {
        "DomainName": {"Ref": "CustomDomain"}, "ApiId": {"Ref": "HttpApi"}, "Stage": {"Ref": "HttpApiStage"}
    }  # fmt: skip
    # No way around the client certificate: the execute-api endpoint is off.
    assert res["HttpApi"]["Properties"]["DisableExecuteApiEndpoint"] is True
    assert res["HttpApiCallbackRoute"]["Properties"]["RouteKey"] == "POST /callback"
    outputs = {k: v["Value"] for k, v in d["Outputs"].items()}
    assert outputs["CallbackUrl"] == {"Fn::Sub": "https://${CustomDomain}/callback"}
    assert outputs["CustomDomainTarget"] == {"Fn::GetAtt": ["CustomDomain", "RegionalDomainName"]}
    assert outputs["CustomDomainHostedZoneId"] == {"Fn::GetAtt": ["CustomDomain", "RegionalHostedZoneId"]}
    without = deployed(template, Endpoint="HttpApi")["Resources"]
    assert not {"CustomDomain", "CustomDomainApiMapping"} & set(without)


# ------------------------------------------------------------------------------ topics, retention, recovery


def test_topics_and_subscribers(resources):
    for category, name in TOPICS.items():
        props = resources[name]["Properties"]
        assert props["KmsMasterKeyId"] == "alias/aws/sns", name
        condition, fifo, standard = props["TopicName"]["Fn::If"]
        assert condition == "UseFifoTopics" and fifo["Fn::Sub"].endswith(f"-{category}.fifo")
        assert standard["Fn::Sub"].endswith(f"-{category}")
        # The function sets MessageDeduplicationId itself.
        assert props["ContentBasedDeduplication"] == {"Fn::If": ["UseFifoTopics", False, {"Ref": "AWS::NoValue"}]}
        assert resources[name].get("Condition") == (UNCLASSIFIED if name == OPTIONAL_TOPIC else None)
    policy = resources["CategoryTopicsSubscribePolicy"]
    assert policy["Condition"] == "HasSubscriberAccounts"
    topics = [{"Ref": t} for t in REQUIRED_TOPICS]
    topics.append({"Fn::If": [UNCLASSIFIED, {"Ref": OPTIONAL_TOPIC}, {"Ref": "AWS::NoValue"}]})
    assert policy["Properties"]["Topics"] == topics
    (s,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (s["Effect"], s["Action"], s["Resource"]) == ("Allow", "sns:Subscribe", topics)
    assert s["Principal"] == {"AWS": {"Fn::Split": [",", {"Ref": "SubscriberAccounts"}]}}


def test_what_holds_exceptions_is_retained_except_on_create(resources):
    retained = {k for k, v in resources.items() if "DeletionPolicy" in v or "UpdateReplacePolicy" in v}
    assert retained == {"FunctionLogGroup", "RedriveLogGroup", "RetryQueue", "RetryDeadLetterQueue"}
    for name in retained:
        # A first deploy that rolls back deletes what it created, so the next try finds the
        # fixed names free; plain Retain would leave them taken.
        assert resources[name]["DeletionPolicy"] == "RetainExceptOnCreate", name
        assert resources[name]["UpdateReplacePolicy"] == "Retain", name
    for name in ["FunctionLogGroup", "RedriveLogGroup"]:
        assert resources[name]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_retry_queue_dead_letter_queue_and_mapping(resources, functions, params):
    queue, dlq = resources["RetryQueue"]["Properties"], resources["RetryDeadLetterQueue"]["Properties"]
    for props in (queue, dlq):
        assert props["SqsManagedSseEnabled"] is True and "KmsMasterKeyId" not in props
        assert int(props["MessageRetentionPeriod"]) == 14 * 24 * 3600
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["RetryDeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "RetryMaxReceiveCount"},
    }
    assert dlq["RedriveAllowPolicy"]["redrivePermission"] == "byQueue"
    (source,) = dlq["RedriveAllowPolicy"]["sourceQueueArns"]
    assert substitute(source) == "arn:aws:sqs:us-east-1:123456789012:" + substitute(queue["QueueName"])
    redrive = functions["RedriveFunction"]["Properties"]
    assert "Environment" not in redrive, "each queued publish carries its own TopicArn"
    assert redrive["Timeout"] >= 20, "a batch takes up to 10 s (PUBLISH_DEADLINE) with SNS down"
    assert int(queue["VisibilityTimeout"]) >= 6 * redrive["Timeout"], "Lambda's rule for SQS sources"
    # How long SNS may fail before the dead-letter queue calls a person: about an hour.
    count = params["RetryMaxReceiveCount"]
    assert 1800 <= int(count["Default"]) * int(queue["VisibilityTimeout"]) <= 7200
    assert 1 <= int(count["MinValue"]) and int(count["MaxValue"]) <= 1000  # SQS's bounds
    (mapping,) = of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["RetryQueue", "Arn"]}
    assert props["FunctionName"] == {"Ref": "RedriveFunction"}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 2 <= props["ScalingConfig"]["MaximumConcurrency"] <= 1000 and 1 <= props["BatchSize"] <= 10


# ------------------------------------------------------------------------------ alarms


def _metric(props) -> tuple:
    """namespace, metric, dimensions, statistic, threshold, comparison of a one-metric alarm."""
    threshold = props["Threshold"] if isinstance(props["Threshold"], dict) else float(props["Threshold"])
    fields = ["Namespace", "MetricName", "Dimensions", "Statistic"]
    return (*(props.get(f) for f in fields), threshold, props["ComparisonOperator"])


def test_alarms(template, resources):
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    assert sorted(alarms) == sorted([
        "ExceptionsAtRiskAlarm", "FunctionThrottlesAlarm", "Api5xxAlarm", "QueuedAlarm",
        "RejectedCallbacksAlarm", "ForwardFailuresAlarm", "RedriveErrorsAlarm", "RetryDeadLetterQueueAlarm",
        "RetryQueueStuckAlarm",
    ])  # fmt: skip
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == props["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert props["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), name
        # Every metric here exists only while something happens, except a quiet queue's, which
        # stops reporting with its messages still in it: that alarm keeps its state.
        expected = "ignore" if name == "RetryDeadLetterQueueAlarm" else "notBreaching"
        assert props["TreatMissingData"] == expected, name
    a = {k: v["Properties"] for k, v in alarms.items()}
    by_function = lambda ref: [{"Name": "FunctionName", "Value": {"Ref": ref}}]  # noqa: E731
    assert _metric(a["QueuedAlarm"]) == (NAMESPACE, "Queued", None, "Sum", 0, "GreaterThanThreshold")
    assert _metric(a["RejectedCallbacksAlarm"]) == (
        NAMESPACE, "Rejected", None, "Sum", {"Ref": "RejectedCallbacksAlarmThreshold"}, "GreaterThanOrEqualToThreshold"
    ), "one metric over every reason (the dimension set []), at a rate"  # fmt: skip
    assert _metric(a["ForwardFailuresAlarm"])[:3] == (NAMESPACE, "ForwardFailures", None)
    assert _metric(a["RedriveErrorsAlarm"])[:3] == ("AWS/Lambda", "Errors", by_function("RedriveFunction"))
    assert _metric(a["FunctionThrottlesAlarm"])[:3] == ("AWS/Lambda", "Throttles", by_function("WebhookFunction"))
    dlq = [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["RetryDeadLetterQueue", "QueueName"]}}]
    assert _metric(a["RetryDeadLetterQueueAlarm"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", dlq, "Maximum", 0, "GreaterThanThreshold"
    )  # fmt: skip
    # Function errors and publish_failed records together, at the first of either.
    at_risk = a["ExceptionsAtRiskAlarm"]
    stats = {m["Id"]: m["MetricStat"]["Metric"] for m in at_risk["Metrics"] if "MetricStat" in m}
    assert sorted((m["Namespace"], m["MetricName"], m.get("Dimensions")) for m in stats.values()) == [
        ("AWS/Lambda", "Errors", by_function("WebhookFunction")), (NAMESPACE, "PublishFailures", None)
    ]  # fmt: skip
    (expression,) = [m["Expression"] for m in at_risk["Metrics"] if m.get("ReturnData", True)]
    assert all(f"FILL({i}, 0)" in expression for i in stats) and float(at_risk["Threshold"]) == 1
    # A retry queue nothing drains: its oldest message older than twice the redrive's give-up time.
    stuck = a["RetryQueueStuckAlarm"]
    (age,) = [m["MetricStat"]["Metric"] for m in stuck["Metrics"] if "MetricStat" in m]
    assert (age["MetricName"], age["Dimensions"][0]["Value"]) == (
        "ApproximateAgeOfOldestMessage", {"Fn::GetAtt": ["RetryQueue", "QueueName"]}
    )  # fmt: skip
    (per_receive,) = [m["Expression"] for m in stuck["Metrics"] if m.get("ReturnData", True)]
    visibility = resources["RetryQueue"]["Properties"]["VisibilityTimeout"]
    assert "${RetryMaxReceiveCount}" in per_receive["Fn::Sub"] and stuck["Threshold"] == 2 * visibility
    assert alarms["ForwardFailuresAlarm"]["Condition"] == "HasUpstream"  # Api5xxAlarm's: test_callback_url_either_way
    assert "ForwardFailuresAlarm" in deployed(template, UpstreamCallbackUrl="https://b.example/cb")["Resources"]
    # CloudWatch cannot publish to a topic under the AWS-managed key alias/aws/sns.
    assert "KmsMasterKeyId" not in resources["AlarmTopic"]["Properties"]


# ------------------------------------------------------------------------------ saved queries and dashboard


def query_by(query: str) -> list[str]:
    stats = [s for s in query.split("|") if s.strip().startswith("stats ")]
    return [f.strip() for f in stats[0].split(" by ", 1)[1].split(",")] if stats else []


# The questions people ask -> what the saved query's `stats ... by` groups by (none for a
# listing). Which of the function's lines each query selects, and that every field it names is
# on them, tests/queries.rs checks on the real lines of the webhook's binary.
GROUPED_BY = {
    "ExceptionsByGroupQuery": ["groupId", "category"],
    "ExceptionsBySenderQuery": ["fromAccount"],
    "ExceptionsByErrorCodeQuery": ["errorCode", "category"],
    "RejectedCallbacksQuery": ["reason", "sourceIp"],
    "LastResortRecordsQuery": [],
    "ForwardFailuresQuery": [],
    "QueuedPublishesQuery": [],
}


@pytest.mark.parametrize("name", sorted(GROUPED_BY))
def test_saved_query(resources, name):
    props = resources[name]["Properties"]
    assert props["LogGroupNames"] == [{"Ref": "FunctionLogGroup"}]
    assert props["Name"]["Fn::Sub"].startswith("${AWS::StackName}/")
    assert query_by(props["QueryString"]) == GROUPED_BY[name]


def _metric_lines(widget: dict) -> list[tuple]:
    """(namespace, metric, dimensions, options) per metric line; expressions as ("expr", text)."""
    out = []
    for line in widget["properties"]["metrics"]:
        options = line[-1] if isinstance(line[-1], dict) else {}
        if "expression" in options:
            out.append(("expr", options["expression"], {}, options))
            continue
        ns, metric, *dims = line[:-1] if options else line
        out.append((ns, metric, dict(zip(dims[::2], dims[1::2])), options))
    return out


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_dashboard(template, endpoint):
    text = substitute(deployed(template, Endpoint=endpoint)["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    assert "${" not in text
    widgets = json.loads(text)["widgets"]
    assert all(w["properties"]["region"] == "us-east-1" for w in widgets)
    (table,) = [w["properties"] for w in widgets if w["type"] == "log"]
    # The groups with most exceptions: the saved query that answers it, on the function's log
    # group, its first 20 rows.
    saved = template["Resources"]["ExceptionsByGroupQuery"]["Properties"]["QueryString"]
    source, *stages, limit = [stage.strip() for stage in table["query"].split("|")]
    assert stages == [stage.strip() for stage in saved.split("|")][:-1], table["query"]
    assert (source, limit, table["view"]) == ("SOURCE 'dummy-FunctionLogGroup'", "limit 20", "table")
    lines = [line for w in widgets if w["type"] == "metric" for line in _metric_lines(w)]
    plain = {(ns, m, tuple(d.items())) for ns, m, d, _ in lines if ns != "expr"}
    assert {d for ns, m, d in plain if (ns, m) == (NAMESPACE, "Exceptions")} == {(("Category", c),) for c in TOPICS}
    for metric in ["Queued", "PublishFailures", "Redriven", "RedriveFailures", "Forwarded", "ForwardFailures"]:
        assert (NAMESPACE, metric, ()) in plain, metric
    searches = [m for ns, m, _, _ in lines if ns == "expr"]
    for dimension, metric in [("Reason", "Rejected"), ("Command", "Forwarded")]:
        assert any(f"{{{NAMESPACE},{dimension}}}" in s and f'MetricName="{metric}"' in s for s in searches), metric
    webhook = {"FunctionName": "dummy-WebhookFunction"}
    durations = [o["stat"] for ns, m, d, o in lines if (ns, m, d) == ("AWS/Lambda", "Duration", webhook)]
    assert sorted(durations) == ["p50", "p99"]
    queues = {dict(d)["QueueName"] for ns, m, d in plain if ns == "AWS/SQS"}
    assert queues == {"dummy-RetryQueue-QueueName", "dummy-RetryDeadLetterQueue-QueueName"}
    api = {m for ns, m, d in plain if ns == "AWS/ApiGateway"}
    url = {m for ns, m, d in plain if m.startswith("Url")}
    if endpoint == "HttpApi":
        assert (api, url) == ({"4xx", "5xx"}, set())
    else:
        assert (api, url) == (set(), {"Url4xxCount", "Url5xxCount"})


def test_outputs(template):
    outputs = {k: (v["Value"], v.get("Condition")) for k, v in template["Outputs"].items()}
    for topic in TOPICS.values():
        assert outputs[f"{topic}Arn"] == ({"Ref": topic}, UNCLASSIFIED if topic == OPTIONAL_TOPIC else None)
    refs = {"AlarmTopicArn": "AlarmTopic", "FunctionName": "WebhookFunction", "LogGroupName": "FunctionLogGroup",
            "RedriveFunctionName": "RedriveFunction", "RedriveLogGroupName": "RedriveLogGroup",
            "RetryQueueUrl": "RetryQueue", "RetryDeadLetterQueueUrl": "RetryDeadLetterQueue"}  # fmt: skip
    assert all(outputs[name] == ({"Ref": ref}, None) for name, ref in refs.items())
    assert outputs["RetryDeadLetterQueueArn"][0] == {"Fn::GetAtt": ["RetryDeadLetterQueue", "Arn"]}
    assert outputs["DashboardUrl"][0]["Fn::Sub"].endswith("#dashboards:name=${Dashboard}")
    # CallbackUrl's and the custom domain's, per configuration: the endpoint and mutual TLS tests.


# ------------------------------------------------------------------------------ the deployer's policy
# CloudFormation's own list of what each resource type's handlers call (cfn-lint ships it),
# less the features this template does not use: a VPC, EFS, customer KMS keys on functions,
# mappings or log groups, code signing, layers, Managed Instances, versions, log deliveries, data
# protection and index policies, permission boundaries, role updates SAM never makes.
NOT_USED = [
    "ec2:*", "elasticfilesystem:*", "s3files:*", "kms:*", "firehose:*", "s3:REST.*",
    "lambda:*CodeSigningConfig", "lambda:GetLayerVersion", "lambda:PutRuntimeManagementConfig",
    "lambda:PutFunctionRecursionConfig", "lambda:PutFunctionScalingConfig", "lambda:PassCapacityProvider",
    "lambda:AssociateRuntimeAlias", "lambda:PublishVersion", "logs:CreateLogDelivery",
    "logs:*DataProtectionPolicy", "logs:*IndexPolicy", "logs:*ResourcePolicy", "logs:PutBearerTokenAuthentication",
    "logs:*KmsKey", "logs:PutLogGroupDeletionProtection", "sns:PutDataProtectionPolicy",
    "iam:UpdateRole*", "iam:UpdateAssumeRolePolicy", "iam:*RolePermissionsBoundary",
]  # fmt: skip
# What `sam deploy` calls itself: change sets, events, the artifact upload, on_failure DELETE.
SAM_CLI_CALLS = [
    "cloudformation:CreateChangeSet", "cloudformation:DescribeChangeSet", "cloudformation:ExecuteChangeSet",
    "cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents", "cloudformation:DeleteStack",
    "cloudformation:GetTemplateSummary", "s3:PutObject", "s3:GetObject",
]  # fmt: skip
# Actions without resource-level permissions: only they may name Resource "*".
RESOURCE_STAR = {
    "cloudformation:ValidateTemplate", "cloudformation:GetTemplateSummary", "logs:DescribeLogGroups",
    "logs:DescribeIndexPolicies", "logs:DescribeResourcePolicies", "logs:PutQueryDefinition",
    "logs:DeleteQueryDefinition", "logs:DescribeQueryDefinitions", "lambda:CreateEventSourceMapping",
    "lambda:UpdateEventSourceMapping", "lambda:DeleteEventSourceMapping", "lambda:GetEventSourceMapping",
    "lambda:ListEventSourceMappings",
}  # fmt: skip
SCOPES = ["im-exception", "aws-sam-cli-managed-default", "arn:aws:apigateway:", "TRUSTSTORE-BUCKET", ":transform/"]


@pytest.fixture(scope="session")
def deployer() -> dict:
    return json.loads(DEPLOYER_POLICY.read_text())


def allows(policy: dict, action: str) -> bool:
    patterns = [p.lower() for s in policy["Statement"] if s["Effect"] == "Allow" for p in listed(s["Action"])]
    return any(fnmatch.fnmatchcase(action.lower(), p) for p in patterns)


def test_deployer_policy_is_well_formed_and_narrow(deployer):
    assert set(deployer) == {"Version", "Statement"} and deployer["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in deployer["Statement"]]
    assert len(sids) == len(set(sids)) and all(re.fullmatch(r"[A-Za-z0-9]+", s) for s in sids)
    for s in deployer["Statement"]:
        assert set(s) <= {"Sid", "Effect", "Action", "Resource", "Condition"} and s["Effect"] == "Allow", s
        for action in listed(s["Action"]):
            # Wildcards only for reading (lambda:Get*), never a whole service or all writes.
            assert re.fullmatch(r"[a-z0-9-]+:([A-Z][A-Za-z]+|Get\*|List\*)", action), action
        for resource in listed(s["Resource"]):
            if resource == "*":
                assert set(listed(s["Action"])) <= RESOURCE_STAR, s["Sid"]
            else:
                assert resource.startswith("arn:aws:") and any(x in resource for x in SCOPES), resource
    by_action = {a: s for s in deployer["Statement"] for a in listed(s["Action"])}
    assert by_action["iam:PassRole"]["Condition"] == {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}
    assert BASIC_EXECUTION in json.dumps(by_action["iam:AttachRolePolicy"]["Condition"])
    assert "lambda:FunctionArn" in json.dumps(by_action["lambda:CreateEventSourceMapping"]["Condition"])


def test_deployer_policy_covers_every_resource_type_created(deployer, translated):
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    types = {v["Type"] for v in translated["Resources"].values()}
    assert {"AWS::ApiGatewayV2::DomainName", "AWS::Logs::QueryDefinition", "AWS::SQS::Queue"} <= types
    missing = {f"sam deploy: {a}" for a in SAM_CLI_CALLS if not allows(deployer, a)}
    for type_ in sorted(types):
        handlers = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", type_).schema["handlers"]
        for operation in ["create", "read", "update", "delete"]:
            for action in handlers.get(operation, {}).get("permissions", []):
                unused = any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in NOT_USED)
                if not unused and not allows(deployer, action):
                    missing.add(f"{type_} {operation}: {action}")
    assert not missing, sorted(missing)


# ------------------------------------------------------------------------------ samconfig.toml


@pytest.fixture(scope="session")
def samconfig() -> dict:
    return tomllib.loads((ROOT / "samconfig.toml").read_text())


def test_samconfig_environments(samconfig):
    assert samconfig["version"] == 0.1 and {"default", "staging", "production"} <= set(samconfig)
    assert samconfig["default"]["build"]["parameters"] == {"cached": False, "parallel": False}
    names = [samconfig[env]["global"]["parameters"]["stack_name"] for env in ["default", "staging", "production"]]
    # Distinct, and within docs/deployer-policy.json's scope (stacks named im-exception*).
    assert len(set(names)) == 3 and all(n.startswith("im-exception") for n in names), names


@pytest.mark.parametrize("env", ["staging", "production"])
def test_pipeline_environments_deploy_without_a_prompt(template, samconfig, env):
    deploy = samconfig[env]["deploy"]["parameters"]
    assert deploy["confirm_changeset"] is False and deploy["fail_on_empty_changeset"] is False
    assert deploy["resolve_s3"] is True and "CAPABILITY_IAM" in listed(deploy["capabilities"])
    assert deploy["on_failure"] == "DELETE", "a failed first deploy leaves no stack to block the next"
    value = deploy["parameter_overrides"]  # SAM takes a list of KEY=VALUE, or one string of them
    overrides = dict(p.split("=", 1) for p in (value if isinstance(value, list) else shlex.split(value)))
    params = template["Parameters"]
    for name, given in overrides.items():
        assert str(params[name].get("NoEcho", "")).lower() != "true", f"{name} would sit in a file"
        assert re.fullmatch(params[name].get("AllowedPattern", ".*"), given), (name, given)
        assert given in map(str, params[name].get("AllowedValues", [given])), (name, given)
    # Every parameter without a default is given, and the Rules let it through, signed.
    assert {n for n, p in params.items() if "Default" not in p} <= set(overrides)
    assert refusals(template, **overrides) == set() and "AllowUnsignedCallbacks" not in overrides
