//! Lambda events as API Gateway (HTTP API payload 2.0 and REST API payload 1.0) and Lambda
//! function URLs deliver them, for a call the way Tencent Cloud Chat makes it.

use im_exception_webhook::domain::EXCEPTION_COMMAND;
use serde_json::{Map, Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// One HTTP call to the webhook.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// Query parameters in order, as sent (names and values are URL-safe here).
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub base64: bool,
    /// When API Gateway received it, in epoch milliseconds (`timeEpoch`): now, unless set.
    pub arrived_ms: Option<u64>,
}

impl Call {
    /// Chat's POST of `Group.CallbackSendMsgException` with `body`, unsigned.
    pub fn chat(body: impl Into<String>) -> Call {
        Call::command(EXCEPTION_COMMAND, body)
    }

    /// Chat's POST of callback command `command` with `body`, unsigned.
    pub fn command(command: &str, body: impl Into<String>) -> Call {
        let query = [
            ("SdkAppid", super::SDK_APP_ID),
            ("CallbackCommand", command),
            ("contenttype", "json"),
            ("ClientIP", super::CLIENT_IP),
            ("OptPlatform", "RESTAPI"),
        ];
        Call {
            method: "POST".into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(body.into()),
            base64: false,
            arrived_ms: None,
        }
    }

    /// Received by API Gateway `ago` before the event is built.
    pub fn arrived_ago(mut self, ago: std::time::Duration) -> Call {
        self.arrived_ms = Some(now_millis() - ago.as_millis() as u64);
        self
    }

    pub fn method(mut self, method: &str) -> Call {
        self.method = method.into();
        self
    }

    /// Adds a query parameter.
    pub fn param(mut self, name: &str, value: &str) -> Call {
        self.query.push((name.into(), value.into()));
        self
    }

    /// Gives query parameter `name` the value `value`, where it stands (added if it is not
    /// there).
    pub fn set_param(mut self, name: &str, value: &str) -> Call {
        match self.query.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value.into(),
            None => self.query.push((name.into(), value.into())),
        }
        self
    }

    /// Removes every query parameter named `name` (exact case).
    pub fn without_param(mut self, name: &str) -> Call {
        self.query.retain(|(k, _)| k != name);
        self
    }

    /// Adds `Sign` and `RequestTime` as Chat computes them for `token` at `request_time`.
    pub fn signed_at(self, token: &str, request_time: u64) -> Call {
        let time = request_time.to_string();
        let sign = hex::encode(im_exception_webhook::domain::auth::sign(token, &time));
        self.param("Sign", &sign).param("RequestTime", &time)
    }

    /// Signed with the current time.
    pub fn signed(self, token: &str) -> Call {
        self.signed_at(token, now_secs())
    }

    /// Replaces the `content-type` header; `None` sends none.
    pub fn content_type(mut self, content_type: Option<&str>) -> Call {
        self.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        if let Some(ct) = content_type {
            self.headers.push(("content-type".into(), ct.into()));
        }
        self
    }

    /// Sends the body base64-encoded, as API Gateway does for binary media types.
    pub fn base64_body(mut self) -> Call {
        self.body = self.body.map(aws_smithy_types::base64::encode);
        self.base64 = true;
        self
    }

    /// Sends `bytes` as the body, base64-encoded as API Gateway does for binary media types:
    /// any bytes at all, UTF-8 or not.
    pub fn binary_body(mut self, bytes: &[u8]) -> Call {
        self.body = Some(aws_smithy_types::base64::encode(bytes));
        self.base64 = true;
        self
    }

    pub fn raw_query_string(&self) -> String {
        self.query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn headers_json(&self, host: &str) -> Map<String, Value> {
        let mut headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        headers.insert("host".into(), host.into());
        headers.insert("user-agent".into(), "TencentCloudChat".into());
        headers.insert("x-forwarded-for".into(), super::CLIENT_IP.into());
        headers.insert("x-forwarded-proto".into(), "https".into());
        if let Some(body) = &self.body {
            headers.insert("content-length".into(), body.len().to_string().into());
        }
        headers
    }

    /// API Gateway HTTP API, payload format 2.0 (the default integration).
    pub fn http_api(&self) -> Value {
        let host = "abcdef1234.execute-api.us-east-1.amazonaws.com";
        self.payload_v2(host, "POST /callback", "$default", "abcdef1234")
    }

    /// A Lambda function URL event (payload 2.0 shape, `$default` route, lambda-url host).
    pub fn function_url(&self) -> Value {
        let host = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws";
        self.payload_v2(
            host,
            "$default",
            "$default",
            "abcdefghijklmnopqrstuvwxyz012345",
        )
    }

    fn payload_v2(&self, host: &str, route_key: &str, stage: &str, api_id: &str) -> Value {
        json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": "/callback",
            "rawQueryString": self.raw_query_string(),
            "queryStringParameters": self.single_value_query(),
            "headers": self.headers_json(host),
            "requestContext": {
                "accountId": "123456789012",
                "apiId": api_id,
                "domainName": host,
                "domainPrefix": host.split('.').next(),
                "http": {
                    "method": self.method,
                    "path": "/callback",
                    "protocol": "HTTP/1.1",
                    "sourceIp": super::CLIENT_IP,
                    "userAgent": "TencentCloudChat"
                },
                "requestId": "JKJaXmPLvHcESHA=",
                "routeKey": route_key,
                "stage": stage,
                "time": "25/Nov/2026:20:00:00 +0000",
                "timeEpoch": self.arrived_ms.unwrap_or_else(now_millis)
            },
            "body": self.body,
            "isBase64Encoded": self.base64
        })
    }

    /// API Gateway REST API proxy integration, payload format 1.0.
    pub fn rest_api(&self) -> Value {
        let host = "abcdef1234.execute-api.us-east-1.amazonaws.com";
        let headers = self.headers_json(host);
        let multi_headers: Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.clone(), json!([v])))
            .collect();
        let mut multi_query: Map<String, Value> = Map::new();
        for (k, v) in &self.query {
            multi_query
                .entry(k.clone())
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("array")
                .push(v.as_str().into());
        }
        json!({
            "resource": "/callback",
            "path": "/callback",
            "httpMethod": self.method,
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": self.single_value_query(),
            "multiValueQueryStringParameters": multi_query,
            "pathParameters": null,
            "stageVariables": null,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abcdef1234",
                "resourceId": "a1b2c3",
                "resourcePath": "/callback",
                "httpMethod": self.method,
                "path": "/prod/callback",
                "protocol": "HTTP/1.1",
                "stage": "prod",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "requestTimeEpoch": self.arrived_ms.unwrap_or_else(now_millis),
                "identity": {"sourceIp": super::CLIENT_IP, "userAgent": "TencentCloudChat"},
                "domainName": host
            },
            "body": self.body,
            "isBase64Encoded": self.base64
        })
    }

    /// Single-valued parameters, as API Gateway adds them (the last value of a repeated name).
    fn single_value_query(&self) -> Value {
        if self.query.is_empty() {
            return Value::Null;
        }
        let map: Map<String, Value> = self
            .query
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        Value::Object(map)
    }
}

pub fn now_secs() -> u64 {
    now_millis() / 1000
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}
