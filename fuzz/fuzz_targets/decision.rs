//! The pure decision alone (`decision::decide`): no Lambda runtime, no tokio, no `lambda_http`
//! conversion, no logging. Structured input: a method; query pairs whose names are often Chat's
//! own in any case, repeated or empty, and whose values are often good or bad app ids, commands,
//! RequestTimes in and out of the skew and Signs made with the current, the previous or another
//! token; Chat's own signed parameters, perhaps; a body that is often an exception callback with
//! mutated fields, sometimes another command's, sometimes any JSON or any bytes, sometimes padded
//! to just under or over the body limit, the `publish_failed` record limit or SNS's limit; and one
//! of 72 fixed configurations (token: none, one, one with a previous one, one with a 1-second
//! skew; upstream: none, one, one with FORWARD_EXCEPTIONS; MAX_BODY_BYTES 512, the default or
//! 400,000; an unclassified topic or not), built once.
//!
//! Beyond "no panic", each run checks:
//!
//! - the early checks in their order, against a model written here: a non-POST is 405 whatever
//!   else; then a body over the limit is 413/4130; then the SdkAppid (403), then, with a token,
//!   Sign and RequestTime (401), each exactly the refusal the model expects; and a call the
//!   model lets through is never refused by one of those checks;
//! - with a token, nothing is forwarded, acknowledged or published unless the Sign is over the
//!   sent RequestTime with a configured token;
//! - a query command other than the exception's is forwarded when an upstream is configured and
//!   acknowledged when not, with that command; a command read from the body is the body's;
//! - every refusal is a status of the table of docs/contract.md with ErrorCode / 10 == status, an ErrorInfo
//!   of bounded length that quotes no more than 100 characters of any caller string, and never
//!   the token, the previous token or the expected Sign;
//! - an exception: its envelope is JSON with the documented fields and ends with the body's JSON
//!   text, trimmed, verbatim; its category is the configured classification of the body's
//!   ErrorCode, its topic the configured one, `forward` the configured FORWARD_EXCEPTIONS; its
//!   `publish_failed` record bound and (with a topic) its SNS size are within 262,144 bytes; and
//!   `republish::message_from_envelope` of its envelope gives back exactly the message;
//! - a callback built well-formed here is never refused as a bad body;
//! - at the body limit, the record limit and the SNS limit (bodies padded to limit - 2 ..=
//!   limit + 2), the answer is exactly the one the limit calls for, and a refusal names the size.
//!
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decision -- -runs=5000000`; `FUZZ_STATS=1` prints
//! the outcome counts every 1,000,000 runs and at exit.

#![no_main]

use im_exception_webhook::EXCEPTION_COMMAND;
use im_exception_webhook::auth::sign;
use im_exception_webhook::config::Config;
use im_exception_webhook::decision::{Decision, WebhookRequest, decide};
use im_exception_webhook::envelope::Message;
use im_exception_webhook::publish::{SNS_MESSAGE_LIMIT, sns_size};
use im_exception_webhook::query::Query;
use im_exception_webhook::record::{RECORD_LIMIT, Record};
use im_exception_webhook::rejection::Rejection;
use im_exception_webhook::republish::message_from_envelope;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NOW_SECS: u64 = 1_764_000_000;
/// `now` as the envelope writes it.
const RECEIVED_AT: &str = "2025-11-24T16:00:00.123Z";
const TOKEN: &str = "fuzz-Token-current-0123456789";
const PREVIOUS: &str = "fuzz-Token-previous-9876543210";
const STRANGER: &str = "fuzz-token-nobody-configured";
const UPSTREAM_URL: &str = "https://backend.example/im?key=upstream-secret";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(NOW_SECS * 1000 + 123)
}

// ----------------------------------------------------------------------------------------
// Configurations.
// ----------------------------------------------------------------------------------------

#[derive(Arbitrary, Debug, Clone, Copy)]
struct ConfigChoice {
    /// none, current token, current and previous, current with a 1-second skew.
    auth: u8,
    /// none, upstream, upstream with FORWARD_EXCEPTIONS.
    upstream: u8,
    /// MAX_BODY_BYTES 512, the default (65,536), 400,000.
    limit: u8,
    unclassified_topic: bool,
}

const LIMITS: [Option<&str>; 3] = [Some("512"), None, Some("400000")];

impl ConfigChoice {
    fn index(self) -> usize {
        let auth = usize::from(self.auth % 4);
        let upstream = usize::from(self.upstream % 3);
        let limit = usize::from(self.limit % 3);
        ((auth * 3 + upstream) * 3 + limit) * 2 + usize::from(self.unclassified_topic)
    }
}

fn configs() -> &'static [Config] {
    static CONFIGS: OnceLock<Vec<Config>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let mut all = Vec::new();
        for auth in 0..4u8 {
            for upstream in 0..3u8 {
                for limit in 0..3u8 {
                    for unclassified_topic in [false, true] {
                        let choice = ConfigChoice {
                            auth,
                            upstream,
                            limit,
                            unclassified_topic,
                        };
                        assert_eq!(choice.index(), all.len());
                        all.push(build_config(choice));
                    }
                }
            }
        }
        all
    })
}

fn build_config(c: ConfigChoice) -> Config {
    let topic = |n: &str| Some(format!("arn:aws:sns:us-east-1:123456789012:{n}"));
    let config = Config::from_lookup(|name| match name {
        "IM_SDK_APP_ID" => Some("1400000000, 1400000001".into()),
        "IM_CALLBACK_TOKEN" if c.auth > 0 => Some(TOKEN.into()),
        "IM_CALLBACK_TOKEN_PREVIOUS" if c.auth == 2 => Some(PREVIOUS.into()),
        "IM_SIGN_MAX_SKEW_SECS" if c.auth == 3 => Some("1".into()),
        "MAX_BODY_BYTES" => LIMITS[usize::from(c.limit)].map(str::to_owned),
        "UPSTREAM_CALLBACK_URL" if c.upstream > 0 => Some(UPSTREAM_URL.into()),
        "FORWARD_EXCEPTIONS" if c.upstream == 2 => Some("true".into()),
        "TOPIC_ARN_INVALID_GROUP" => topic("ig"),
        "TOPIC_ARN_FREQUENCY_LIMIT" => topic("fl"),
        "TOPIC_ARN_CONTENT_FILTER" => topic("cf.fifo"),
        "TOPIC_ARN_MUTED_SENDER" => topic("ms"),
        "TOPIC_ARN_UNCLASSIFIED" if c.unclassified_topic => topic("un"),
        "ERROR_CODE_OVERRIDES" => {
            Some("80005=content_filter,10004=unclassified,-1=muted_sender".into())
        }
        _ => None,
    })
    .expect("a fuzz configuration");
    // The configuration is what this target believes it is.
    let tokens: &[&str] = match c.auth {
        0 => &[],
        2 => &[TOKEN, PREVIOUS],
        _ => &[TOKEN],
    };
    assert_eq!(config.tokens, tokens);
    assert_eq!(config.max_skew_secs, if c.auth == 3 { 1 } else { 60 });
    assert_eq!(config.upstream.is_some(), c.upstream > 0);
    config
}

// ----------------------------------------------------------------------------------------
// The query string.
// ----------------------------------------------------------------------------------------

const NAMES: [&str; 7] = [
    "SdkAppid",
    "Sign",
    "RequestTime",
    "CallbackCommand",
    "ClientIP",
    "OptPlatform",
    "contenttype",
];
const APPS: [&str; 7] = [
    "1400000000",
    "1400000001",
    "1400000009",
    " 1400000000",
    "01400000000",
    "1400000000,1400000001",
    "1400000000\0",
];
const COMMANDS: [&str; 8] = [
    EXCEPTION_COMMAND,
    "Group.CallbackBeforeSendMsg",
    "Group.CallbackAfterSendMsg",
    "State.StateChange",
    "C2C.CallbackBeforeSendMsg",
    "group.callbacksendmsgexception",
    "Group.CallbackSendMsgException ",
    "",
];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum OtherMethod<'a> {
    Get,
    Put,
    Head,
    /// Not "POST": methods are case-sensitive.
    LowerPost,
    Any(&'a str),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Name<'a> {
    /// One of Chat's names, with each letter's case from the mask (0: as Chat writes it).
    Known(u8, u64),
    Any(&'a str),
    Empty,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Signer {
    Current,
    Previous,
    Stranger,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum SignShape {
    Lower,
    Upper,
    /// One hex digit changed.
    Flip(u8),
    /// One digit short.
    Short,
    /// One digit more.
    Long,
    /// Not hex at all, 64 characters long.
    NotHex,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct SignSpec {
    signer: Signer,
    /// Over the RequestTime `offset` seconds from now, written in `form`.
    offset: i8,
    form: u8,
    shape: SignShape,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Val<'a> {
    App(u8),
    Command(u8),
    Time(i8, u8),
    Sign(SignSpec),
    Any(&'a str),
    /// A long value, to see what a refusal quotes of it.
    Long(u16, u8),
    Empty,
}

/// Chat's own parameters, signed as told.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Chat<'a> {
    app: u8,
    /// None: no CallbackCommand in the query (the body's is read).
    command: Option<u8>,
    sign: SignSpec,
    client_ip: Option<&'a str>,
    opt_platform: Option<&'a str>,
    case_mask: u64,
}

fn in_case(name: &str, mask: u64) -> String {
    if mask & 1 == 0 {
        return name.to_owned();
    }
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if (mask >> ((i + 1) % 64)) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// A RequestTime `offset` seconds from now, in one of the forms a caller may write.
fn time_text(offset: i8, form: u8) -> String {
    let t = NOW_SECS.saturating_add_signed(i64::from(offset));
    match form % 12 {
        // Mostly the canonical form.
        0..=5 => t.to_string(),
        6 => format!("+{t}"),
        7 => format!("0{t}"),
        8 => format!(" {t}"),
        9 => format!("{t}.0"),
        10 => "18446744073709551616".into(),
        _ => "9999999999999999999".into(),
    }
}

fn sign_text(spec: SignSpec) -> String {
    let token = match spec.signer {
        Signer::Current => TOKEN,
        Signer::Previous => PREVIOUS,
        Signer::Stranger => STRANGER,
    };
    let hex = hex::encode(sign(token, &time_text(spec.offset, spec.form)));
    match spec.shape {
        SignShape::Lower => hex,
        SignShape::Upper => hex.to_ascii_uppercase(),
        SignShape::Flip(at) => {
            let at = usize::from(at) % hex.len();
            let mut bytes = hex.into_bytes();
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            String::from_utf8(bytes).unwrap()
        }
        SignShape::Short => hex[1..].to_owned(),
        SignShape::Long => format!("{hex}0"),
        SignShape::NotHex => "zz".repeat(32),
    }
}

const LONG_CHARS: [char; 7] = ['a', 'é', '群', '😀', '"', '\n', '\u{1}'];

/// Up to 400 characters: enough to see what a refusal quotes of it. (Sizes near the limits
/// come from `Pad`; long fields everywhere would only slow every run down.)
fn long_text(len: u16, kind: u8) -> String {
    let c = LONG_CHARS[usize::from(kind) % LONG_CHARS.len()];
    std::iter::repeat_n(c, usize::from(len % 400)).collect()
}

impl Name<'_> {
    fn render(self) -> String {
        match self {
            Name::Known(i, mask) => in_case(NAMES[usize::from(i) % NAMES.len()], mask),
            Name::Any(s) => s.to_owned(),
            Name::Empty => String::new(),
        }
    }
}

impl Val<'_> {
    fn render(self) -> String {
        match self {
            Val::App(i) => APPS[usize::from(i) % APPS.len()].to_owned(),
            Val::Command(i) => COMMANDS[usize::from(i) % COMMANDS.len()].to_owned(),
            Val::Time(offset, form) => time_text(offset, form),
            Val::Sign(spec) => sign_text(spec),
            Val::Any(s) => s.to_owned(),
            Val::Long(len, kind) => long_text(len, kind),
            Val::Empty => String::new(),
        }
    }
}

impl Chat<'_> {
    fn pairs(&self) -> Vec<(String, String)> {
        let name = |n: &str| in_case(n, self.case_mask);
        let mut pairs = vec![(name("SdkAppid"), APPS[usize::from(self.app) % 3].to_owned())];
        if let Some(i) = self.command {
            let command = COMMANDS[usize::from(i) % COMMANDS.len()];
            pairs.push((name("CallbackCommand"), command.to_owned()));
        }
        pairs.push((name("contenttype"), "json".into()));
        pairs.push((name("Sign"), sign_text(self.sign)));
        pairs.push((
            name("RequestTime"),
            time_text(self.sign.offset, self.sign.form),
        ));
        if let Some(ip) = self.client_ip {
            pairs.push((name("ClientIP"), ip.to_owned()));
        }
        if let Some(platform) = self.opt_platform {
            pairs.push((name("OptPlatform"), platform.to_owned()));
        }
        pairs
    }
}

// ----------------------------------------------------------------------------------------
// The body.
// ----------------------------------------------------------------------------------------

/// A JSON value, a few levels deep.
#[derive(Arbitrary, Debug)]
enum Json<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    /// Number text serde_json may or may not take (`1e400`, `-0`, `00`, ...).
    NumText(u8),
    /// Arrays nested this deep (serde_json stops at 128).
    Deep(u8),
    Array(Vec<Json<'a>>),
    Object(Vec<(&'a str, Json<'a>)>),
}

const NUM_TEXTS: [&str; 10] = [
    "1e400",
    "-0",
    "1.0",
    "10023.0",
    "1e2",
    "-9223372036854775809",
    "9223372036854775808",
    "00",
    "NaN",
    "18446744073709551616",
];

impl Json<'_> {
    /// The JSON text, and whether it is surely valid JSON.
    fn render(&self, depth: u8, out: &mut String) -> bool {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => out.push_str(&n.to_string()),
            Json::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => out.push_str(&n.to_string()),
                None => out.push_str("null"),
            },
            Json::Str(s) => push_string(out, s),
            Json::NumText(i) => {
                out.push_str(NUM_TEXTS[usize::from(*i) % NUM_TEXTS.len()]);
                return false;
            }
            Json::Deep(n) => {
                let n = usize::from(*n).max(1);
                out.push_str(&"[".repeat(n));
                out.push_str(&"]".repeat(n));
                return n + usize::from(depth) < 100;
            }
            _ if depth > 4 => out.push_str("null"),
            Json::Array(items) => {
                let mut valid = true;
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    valid &= item.render(depth + 1, out);
                }
                out.push(']');
                return valid;
            }
            Json::Object(fields) => {
                let mut valid = true;
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_string(out, k);
                    out.push(':');
                    valid &= v.render(depth + 1, out);
                }
                out.push('}');
                return valid;
            }
        }
        true
    }
}

fn push_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

#[derive(Arbitrary, Debug)]
enum BodyCommand<'a> {
    Exception,
    Other(u8),
    Absent,
    Empty,
    Null,
    Number(i64),
    Any(&'a str),
}

/// An integer field as Chat may send it, or not.
#[derive(Arbitrary, Debug)]
enum IntField<'a> {
    Int(i64),
    Str(i64),
    /// A numeric string with blanks around.
    Padded(i64),
    Empty,
    Null,
    Float(f64),
    Bool(bool),
    Text(&'a str),
    NumText(u8),
}

const CODES: [i64; 14] = [
    10004,
    10007,
    10023,
    10006,
    80001,
    80005,
    10016,
    10017,
    20012,
    12345,
    0,
    -1,
    i64::MIN,
    i64::MAX,
];

#[derive(Arbitrary, Debug)]
enum Code<'a> {
    Known(u8),
    KnownStr(u8),
    Field(IntField<'a>),
    Absent,
}

#[derive(Arbitrary, Debug)]
enum StrField<'a> {
    Str(&'a str),
    Long(u16, u8),
    Empty,
    Null,
    Number(i64),
    Array,
}

#[derive(Arbitrary, Debug)]
enum MsgBody<'a> {
    Elements(Vec<Json<'a>>),
    Text(&'a str),
    Object,
    Null,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Pad {
    None,
    /// Trailing blanks up to MAX_BODY_BYTES + delta (delta in -2..=2).
    Body(i8),
    /// A `Pad` string field sized for a `publish_failed` record bound of 262,144 + delta.
    Record(i8),
    /// A `Pad` string field sized for an SNS message of 262,144 + delta.
    Sns(i8),
}

#[derive(Arbitrary, Debug)]
struct CallbackInput<'a> {
    command: BodyCommand<'a>,
    error_code: Code<'a>,
    group_id: Option<StrField<'a>>,
    group_type: Option<StrField<'a>>,
    from_account: Option<StrField<'a>>,
    operator_account: Option<StrField<'a>>,
    random: Option<IntField<'a>>,
    online_only_flag: Option<IntField<'a>>,
    event_time: Option<IntField<'a>>,
    error_info: Option<StrField<'a>>,
    msg_body: Option<MsgBody<'a>>,
    cloud_custom_data: Option<StrField<'a>>,
    extra: Vec<(&'a str, Json<'a>)>,
    /// Repeats one field.
    duplicate: Option<u8>,
    /// Rotates the fields.
    order: u8,
    pretty: bool,
    /// JSON blanks before and after, from the bits.
    surround: u8,
    /// Bytes spliced in somewhere.
    splice: Option<(u16, &'a [u8])>,
    pad: Pad,
}

#[derive(Arbitrary, Debug)]
enum BodyInput<'a> {
    Callback(CallbackInput<'a>),
    Json(Json<'a>),
    Bytes(&'a [u8]),
}

const DOCUMENTED: [&str; 12] = [
    "CallbackCommand",
    "GroupId",
    "Type",
    "From_Account",
    "Operator_Account",
    "Random",
    "OnlineOnlyFlag",
    "ErrorCode",
    "ErrorInfo",
    "EventTime",
    "MsgBody",
    "CloudCustomData",
];

impl IntField<'_> {
    /// JSON text, and whether the function must take it as an integer (or absent).
    fn render(&self, long_strings: &mut Vec<String>) -> (String, bool) {
        match self {
            IntField::Int(n) => (n.to_string(), true),
            IntField::Str(n) => (format!("\"{n}\""), true),
            IntField::Padded(n) => (format!("\" {n}  \""), true),
            IntField::Empty => ("\"\"".into(), true),
            IntField::Null => ("null".into(), true),
            IntField::Float(f) => (
                serde_json::Number::from_f64(*f).map_or("1.5".into(), |n| {
                    let text = n.to_string();
                    if text.contains(['.', 'e', 'E']) {
                        text
                    } else {
                        format!("{text}.0")
                    }
                }),
                false,
            ),
            IntField::Bool(b) => (b.to_string(), false),
            IntField::Text(s) => {
                let mut out = String::new();
                push_string(&mut out, s);
                if s.chars().count() > 100 {
                    long_strings.push((*s).to_owned());
                }
                (out, false)
            }
            IntField::NumText(i) => (NUM_TEXTS[usize::from(*i) % NUM_TEXTS.len()].into(), false),
        }
    }
}

impl StrField<'_> {
    fn render(&self, long_strings: &mut Vec<String>) -> (String, bool) {
        let mut out = String::new();
        let valid = match self {
            StrField::Str(s) => {
                push_string(&mut out, s);
                if s.chars().count() > 100 {
                    long_strings.push((*s).to_owned());
                }
                true
            }
            StrField::Long(len, kind) => {
                let text = long_text(*len, *kind);
                push_string(&mut out, &text);
                long_strings.push(text);
                true
            }
            StrField::Empty => {
                out.push_str("\"\"");
                true
            }
            StrField::Null => {
                out.push_str("null");
                true
            }
            StrField::Number(n) => {
                out.push_str(&n.to_string());
                false
            }
            StrField::Array => {
                out.push_str("[\"x\"]");
                false
            }
        };
        (out, valid)
    }
}

/// The CallbackCommand a body was built with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BuiltCommand {
    /// Absent, empty or null.
    Nothing,
    Exception,
    Other(String),
}

/// A rendered body.
struct Rendered {
    bytes: Vec<u8>,
    /// Surely a valid callback: JSON, every documented field of its documented type, once,
    /// and an ErrorCode. The function must read it as such, never refuse it as a bad body.
    well_formed: bool,
    command: BuiltCommand,
    /// Strings of more than 100 characters put in the body.
    long_strings: Vec<String>,
}

impl CallbackInput<'_> {
    /// The body, with a `Pad` field of `pad` characters last when padding for a size limit.
    fn render(&self, pad: Option<usize>) -> Rendered {
        let mut long_strings = Vec::new();
        let mut valid = true;
        let mut fields: Vec<(String, String)> = Vec::new();
        let built = |command: &str| match command {
            "" => BuiltCommand::Nothing,
            EXCEPTION_COMMAND => BuiltCommand::Exception,
            other => BuiltCommand::Other(other.to_owned()),
        };
        let command = match &self.command {
            BodyCommand::Exception => {
                fields.push(("CallbackCommand".into(), format!("\"{EXCEPTION_COMMAND}\"")));
                BuiltCommand::Exception
            }
            BodyCommand::Other(i) => {
                let command = COMMANDS[usize::from(*i) % COMMANDS.len()];
                fields.push(("CallbackCommand".into(), format!("\"{command}\"")));
                built(command)
            }
            BodyCommand::Absent => BuiltCommand::Nothing,
            BodyCommand::Empty => {
                fields.push(("CallbackCommand".into(), "\"\"".into()));
                BuiltCommand::Nothing
            }
            BodyCommand::Null => {
                fields.push(("CallbackCommand".into(), "null".into()));
                BuiltCommand::Nothing
            }
            BodyCommand::Number(n) => {
                valid = false;
                fields.push(("CallbackCommand".into(), n.to_string()));
                BuiltCommand::Nothing
            }
            BodyCommand::Any(s) => {
                let mut text = String::new();
                push_string(&mut text, s);
                if s.chars().count() > 100 {
                    long_strings.push((*s).to_owned());
                }
                fields.push(("CallbackCommand".into(), text));
                built(s)
            }
        };
        match &self.error_code {
            Code::Known(i) => {
                let code = CODES[usize::from(*i) % CODES.len()];
                fields.push(("ErrorCode".into(), code.to_string()));
            }
            Code::KnownStr(i) => {
                let code = CODES[usize::from(*i) % CODES.len()];
                fields.push(("ErrorCode".into(), format!("\"{code}\"")));
            }
            Code::Field(field) => {
                let (text, ok) = field.render(&mut long_strings);
                // An empty or null ErrorCode is a missing one.
                valid &= ok && !matches!(field, IntField::Empty | IntField::Null);
                fields.push(("ErrorCode".into(), text));
            }
            Code::Absent => valid = false,
        }
        let strings = [
            ("GroupId", &self.group_id),
            ("Type", &self.group_type),
            ("From_Account", &self.from_account),
            ("Operator_Account", &self.operator_account),
            ("ErrorInfo", &self.error_info),
            ("CloudCustomData", &self.cloud_custom_data),
        ];
        for (name, field) in strings {
            if let Some(field) = field {
                let (text, ok) = field.render(&mut long_strings);
                valid &= ok;
                fields.push((name.into(), text));
            }
        }
        let ints = [
            ("Random", &self.random),
            ("OnlineOnlyFlag", &self.online_only_flag),
            ("EventTime", &self.event_time),
        ];
        for (name, field) in ints {
            if let Some(field) = field {
                let (text, ok) = field.render(&mut long_strings);
                valid &= ok;
                fields.push((name.into(), text));
            }
        }
        match &self.msg_body {
            None => {}
            Some(MsgBody::Elements(items)) => {
                let mut text = String::from("[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    valid &= item.render(1, &mut text);
                }
                text.push(']');
                fields.push(("MsgBody".into(), text));
            }
            Some(MsgBody::Text(s)) => {
                valid = false;
                let mut text = String::new();
                push_string(&mut text, s);
                fields.push(("MsgBody".into(), text));
            }
            Some(MsgBody::Object) => {
                valid = false;
                fields.push(("MsgBody".into(), "{\"MsgType\":\"TIMTextElem\"}".into()));
            }
            Some(MsgBody::Null) => fields.push(("MsgBody".into(), "null".into())),
        }
        for (name, value) in &self.extra {
            let mut text = String::new();
            valid &= value.render(1, &mut text);
            // A second copy of a documented field is refused, not guessed; so is a second Pad.
            valid &= !DOCUMENTED.contains(name) && *name != "Pad";
            fields.push(((*name).to_owned(), text));
        }
        if let Some(which) = self.duplicate
            && !fields.is_empty()
        {
            let (name, value) = fields[usize::from(which) % fields.len()].clone();
            valid &= !DOCUMENTED.contains(&name.as_str());
            fields.push((name, value));
        }
        if !fields.is_empty() {
            let len = fields.len();
            fields.rotate_left(usize::from(self.order) % len);
        }
        if let Some(n) = pad {
            fields.push(("Pad".into(), format!("\"{}\"", "p".repeat(n))));
        }

        let (open, separator, colon, close) = if self.pretty {
            ("{\n  ", ",\n  ", ": ", "\n}")
        } else {
            ("{", ",", ":", "}")
        };
        let mut text = String::with_capacity(256 + pad.unwrap_or(0));
        let blanks = [" ", "\t", "\n", "\r\n"];
        if self.surround & 1 != 0 {
            text.push_str(blanks[usize::from((self.surround >> 1) & 3)]);
        }
        text.push_str(open);
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                text.push_str(separator);
            }
            push_string(&mut text, name);
            text.push_str(colon);
            text.push_str(value);
        }
        text.push_str(close);
        if self.surround & 8 != 0 {
            text.push_str(blanks[usize::from((self.surround >> 4) & 3)]);
        }
        let mut bytes = text.into_bytes();
        if let Some((at, insert)) = self.splice {
            let at = usize::from(at) % (bytes.len() + 1);
            bytes.splice(at..at, insert.iter().copied());
            valid = false;
        }
        Rendered {
            bytes,
            well_formed: valid,
            command,
            long_strings,
        }
    }
}

impl BodyInput<'_> {
    fn render(&self) -> Rendered {
        match self {
            BodyInput::Callback(callback) => {
                callback.render(matches!(callback.pad, Pad::Record(_) | Pad::Sns(_)).then_some(0))
            }
            BodyInput::Json(json) => {
                let mut text = String::new();
                json.render(0, &mut text);
                Rendered {
                    bytes: text.into_bytes(),
                    well_formed: false,
                    command: BuiltCommand::Nothing,
                    long_strings: Vec::new(),
                }
            }
            BodyInput::Bytes(bytes) => Rendered {
                bytes: bytes.to_vec(),
                well_formed: false,
                command: BuiltCommand::Nothing,
                long_strings: Vec::new(),
            },
        }
    }
}

// ----------------------------------------------------------------------------------------
// The model of the early checks.
// ----------------------------------------------------------------------------------------

/// What the query says of a parameter: every value of the name, in any ASCII case, must be the
/// same; an empty value is a missing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P<'a> {
    Missing,
    One(&'a str),
    Conflicting,
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> P<'a> {
    let mut values = pairs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str());
    let Some(first) = values.next() else {
        return P::Missing;
    };
    if !values.all(|v| v == first) {
        P::Conflicting
    } else if first.is_empty() {
        P::Missing
    } else {
        P::One(first)
    }
}

/// The refusal the early checks owe this request, in their documented order, or None.
fn early(
    method: &str,
    body: &[u8],
    pairs: &[(String, String)],
    config: &Config,
) -> Option<Rejection> {
    if method != "POST" {
        return Some(Rejection::MethodNotAllowed);
    }
    if body.len() > config.max_body_bytes {
        return Some(Rejection::BodyTooLarge {
            limit: config.max_body_bytes,
        });
    }
    match param(pairs, "SdkAppid") {
        P::Missing => return Some(Rejection::AppIdMissing),
        P::Conflicting => return Some(Rejection::AppIdConflicting),
        P::One(app) if !config.app_ids.iter().any(|a| a == app) => {
            return Some(Rejection::AppIdNotAccepted);
        }
        P::One(_) => {}
    }
    if config.tokens.is_empty() {
        return None;
    }
    let given = match param(pairs, "Sign") {
        P::Missing => return Some(Rejection::SignMissing),
        P::Conflicting => return Some(Rejection::SignConflicting),
        P::One(s) => s,
    };
    let time = match param(pairs, "RequestTime") {
        P::Missing => return Some(Rejection::RequestTimeMissing),
        P::Conflicting => return Some(Rejection::SignConflicting),
        P::One(t) => t,
    };
    if time.len() > 19 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Rejection::RequestTimeMalformed);
    }
    let sent: u64 = time.parse().expect("at most 19 digits");
    if sent.abs_diff(NOW_SECS) > config.max_skew_secs {
        return Some(Rejection::RequestTimeOutsideSkew {
            max_skew_secs: config.max_skew_secs,
        });
    }
    if !signed_by_a_token(given, time, config) {
        return Some(Rejection::SignMismatch);
    }
    None
}

fn signed_by_a_token(given: &str, time: &str, config: &Config) -> bool {
    given.len() == 64
        && config
            .tokens
            .iter()
            .any(|t| given.eq_ignore_ascii_case(&hex::encode(sign(t, time))))
}

fn is_early(r: &Rejection) -> bool {
    matches!(
        r.reason(),
        "method_not_allowed" | "body_too_large" | "sdk_app_id" | "signature" | "request_time_skew"
    )
}

// ----------------------------------------------------------------------------------------
// Outcome counts.
// ----------------------------------------------------------------------------------------

/// What a run came to, for the counts `FUZZ_STATS` prints.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    MethodNotAllowed,
    BodyTooLarge,
    MessageTooLarge,
    AppIdMissing,
    AppIdNotAccepted,
    AppIdConflicting,
    SignMissing,
    RequestTimeMissing,
    RequestTimeMalformed,
    RequestTimeOutsideSkew,
    SignMismatch,
    SignConflicting,
    CommandMissing,
    CommandConflicting,
    CommandMismatch,
    BadBody,
    Acknowledge,
    Forward,
    ExceptionToTopic,
    ExceptionToTopicForwarded,
    ExceptionNoTopic,
    ExceptionNoTopicForwarded,
    AcceptedWithPreviousToken,
    BodyLimitUnder,
    BodyLimitOver,
    RecordLimitAccepted,
    RecordLimitRefused,
    SnsLimitAccepted,
    SnsLimitRefused,
    LimitRefusedEarlier,
}

const LABELS: [&str; 30] = [
    "405/4050 method not allowed",
    "413/4130 body too large",
    "413/4131 message too large",
    "403/4030 SdkAppid missing",
    "403/4031 SdkAppid not accepted",
    "403/4032 SdkAppid conflicting",
    "401/4010 Sign missing",
    "401/4011 RequestTime missing",
    "401/4012 RequestTime malformed",
    "401/4013 RequestTime outside the skew",
    "401/4014 Sign mismatch",
    "401/4015 Sign or RequestTime conflicting",
    "400/4000 command missing",
    "400/4001 command conflicting",
    "400/4002 command mismatch",
    "400/4003 bad body",
    "Acknowledge",
    "Forward",
    "Exception to a topic",
    "Exception to a topic, forwarded too",
    "Exception without a topic",
    "Exception without a topic, forwarded too",
    "(of those accepted: signed with the previous token)",
    "(boundary: body padded to the limit or under it)",
    "(boundary: body padded over the limit)",
    "(boundary: record bound padded to the limit or under, accepted)",
    "(boundary: record bound padded over the limit, refused)",
    "(boundary: SNS size padded to the limit or under, accepted)",
    "(boundary: SNS size padded over the limit, refused)",
    "(boundary: padded to a size limit, refused by an earlier check)",
];

static COUNTS: [AtomicU64; LABELS.len()] = [const { AtomicU64::new(0) }; LABELS.len()];
static RUNS: AtomicU64 = AtomicU64::new(0);
static MAX_INFO_CHARS: AtomicUsize = AtomicUsize::new(0);
static MAX_RECORD: AtomicUsize = AtomicUsize::new(0);
static MAX_SNS: AtomicUsize = AtomicUsize::new(0);

fn outcome(result: &Result<Decision<'_>, Rejection>) -> Outcome {
    use Rejection::*;
    match result {
        Err(r) => match r {
            MethodNotAllowed => Outcome::MethodNotAllowed,
            BodyTooLarge { .. } => Outcome::BodyTooLarge,
            MessageTooLarge { .. } => Outcome::MessageTooLarge,
            AppIdMissing => Outcome::AppIdMissing,
            AppIdNotAccepted => Outcome::AppIdNotAccepted,
            AppIdConflicting => Outcome::AppIdConflicting,
            SignMissing => Outcome::SignMissing,
            RequestTimeMissing => Outcome::RequestTimeMissing,
            RequestTimeMalformed => Outcome::RequestTimeMalformed,
            RequestTimeOutsideSkew { .. } => Outcome::RequestTimeOutsideSkew,
            SignMismatch => Outcome::SignMismatch,
            SignConflicting => Outcome::SignConflicting,
            CommandMissing => Outcome::CommandMissing,
            CommandConflicting => Outcome::CommandConflicting,
            CommandMismatch { .. } => Outcome::CommandMismatch,
            BadBody(_) => Outcome::BadBody,
            PublishFailed | UpstreamFailed | UpstreamTimedOut { .. } => {
                panic!("the decision made an I/O refusal: {r:?}")
            }
        },
        Ok(Decision::Acknowledge { .. }) => Outcome::Acknowledge,
        Ok(Decision::Forward { .. }) => Outcome::Forward,
        Ok(Decision::Exception { topic, forward, .. }) => match (topic.is_some(), forward) {
            (true, false) => Outcome::ExceptionToTopic,
            (true, true) => Outcome::ExceptionToTopicForwarded,
            (false, false) => Outcome::ExceptionNoTopic,
            (false, true) => Outcome::ExceptionNoTopicForwarded,
        },
    }
}

fn count(outcome: Outcome) {
    if stats_on() {
        COUNTS[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }
}

fn stats_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var_os("FUZZ_STATS").is_some();
        if on {
            unsafe extern "C" {
                fn atexit(callback: extern "C" fn()) -> i32;
            }
            extern "C" fn at_exit() {
                print_stats("at exit");
            }
            // SAFETY: registers a plain function with the C runtime, once.
            unsafe { atexit(at_exit) };
        }
        on
    })
}

fn print_stats(when: &str) {
    let runs = RUNS.load(Ordering::Relaxed);
    let mut text = format!("fuzz stats {when}: {runs} runs\n");
    for (label, n) in LABELS.iter().zip(&COUNTS) {
        let n = n.load(Ordering::Relaxed);
        if n > 0 {
            text.push_str(&format!("  {n:>10}  {label}\n"));
        }
    }
    text.push_str(&format!(
        "  longest ErrorInfo {} chars; largest accepted record bound {} B, SNS message {} B\n",
        MAX_INFO_CHARS.load(Ordering::Relaxed),
        MAX_RECORD.load(Ordering::Relaxed),
        MAX_SNS.load(Ordering::Relaxed),
    ));
    eprint!("{text}");
}

// ----------------------------------------------------------------------------------------
// The target.
// ----------------------------------------------------------------------------------------

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    config: ConfigChoice,
    /// None: POST.
    method: Option<OtherMethod<'a>>,
    chat: Option<Chat<'a>>,
    rotate: u8,
    body: BodyInput<'a>,
    query: Vec<(Name<'a>, Val<'a>)>,
}

/// The envelope as the function writes it: these fields and no other.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    category: Cow<'a, str>,
    error_code: i64,
    #[serde(borrow)]
    sdk_app_id: Cow<'a, str>,
    #[serde(borrow, default)]
    client_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    opt_platform: Option<Cow<'a, str>>,
    #[serde(borrow)]
    received_at: Cow<'a, str>,
    #[serde(borrow)]
    dedup_key: Cow<'a, str>,
    #[serde(borrow)]
    callback: &'a RawValue,
}

/// What a caller sent, to tell a quoted input from a leaked secret.
struct Sent<'a> {
    pairs: &'a [(String, String)],
    body: &'a [u8],
}

impl Sent<'_> {
    /// Whether `text` is in the body, or in a query name or value other than a Sign's, as sent
    /// or as JSON or `{:?}` escapes it: an escape can spell a secret the caller sent in pieces
    /// (`"\u{f}uzz-Token"` in a ClientIP is `"\u000fuzz-Token"` in the envelope).
    fn holds_outside_sign(&self, text: &str) -> bool {
        let spelled = |v: &str| {
            v.contains(text)
                || serde_json::to_string(v).is_ok_and(|j| j.contains(text))
                || format!("{v:?}").contains(text)
        };
        contains(self.body, text.as_bytes())
            || self
                .pairs
                .iter()
                .any(|(k, v)| spelled(k) || (!k.eq_ignore_ascii_case("Sign") && spelled(v)))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fn check_refusal(r: &Rejection, sent: &Sent<'_>, config: &Config, long_strings: &[String]) {
    let answer = r.answer();
    assert!(
        [400, 401, 403, 405, 413].contains(&answer.status),
        "{r:?}: status {}",
        answer.status
    );
    assert_eq!(answer.error_code / 10, u32::from(answer.status), "{r:?}");
    let info = &answer.error_info;
    assert!(!info.is_empty());
    // The fixed texts are under 80 characters; at most two quotes of caller input, of at most
    // 103 characters each, each character at most 10 once escaped by `{:?}`.
    let chars = info.chars().count();
    let bound = match r {
        Rejection::CommandMismatch { .. } => 80 + 2 * 103 * 10,
        _ => 80 + 2 * 103,
    };
    assert!(chars <= bound, "{chars} characters: {info:?}");
    MAX_INFO_CHARS.fetch_max(chars, Ordering::Relaxed);
    // No more than 100 characters of anything the caller sent.
    let long_values = sent
        .pairs
        .iter()
        .flat_map(|(k, v)| [k, v])
        .chain(long_strings.iter());
    for text in long_values {
        if let Some((cut, _)) = text.char_indices().nth(101) {
            assert!(
                !info.contains(&text[..cut]),
                "{info:?} quotes 101 characters"
            );
        }
    }
    // Never a secret: the tokens, or the Sign the sent RequestTime calls for.
    let mut secrets: Vec<String> = vec![TOKEN.into(), PREVIOUS.into(), UPSTREAM_URL.into()];
    if let P::One(time) = param(sent.pairs, "RequestTime") {
        for token in &config.tokens {
            let expected = hex::encode(sign(token, time));
            secrets.push(expected.to_ascii_uppercase());
            secrets.push(expected);
        }
    }
    for secret in &secrets {
        assert!(
            !info.contains(secret.as_str()) || sent.holds_outside_sign(secret),
            "{info:?} holds a secret"
        );
    }
    // A refusal over the Sign does not repeat the Sign sent.
    if matches!(r.reason(), "signature" | "request_time_skew")
        && let P::One(given) = param(sent.pairs, "Sign")
        && given.len() >= 8
    {
        assert!(!info.contains(given), "{info:?} repeats the Sign");
    }
}

/// The body's CallbackCommand as serde_json's Value reads it: Some(None) when absent, empty
/// or null; None when the body is not a JSON object Value takes.
fn body_command(body: Option<&Value>) -> Option<Option<String>> {
    let object = body?.as_object()?;
    Some(match object.get("CallbackCommand") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

/// The body's ErrorCode, read as the documentation says (a number or a numeric string).
fn body_error_code(body: Option<&Value>) -> Option<i64> {
    match body?.get("ErrorCode")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn check_exception(
    message: &Message,
    topic: Option<&im_exception_webhook::config::Topic>,
    forward: bool,
    body: &[u8],
    body_value: Option<&Value>,
    pairs: &[(String, String)],
    config: &Config,
) {
    let text = std::str::from_utf8(body).expect("an accepted body is UTF-8");
    let trimmed = text.trim_matches([' ', '\t', '\n', '\r']);
    // The envelope ends with the body's JSON text verbatim.
    assert!(message.body.starts_with("{\"category\":\""));
    let tail = message
        .body
        .strip_suffix('}')
        .and_then(|b| b.strip_suffix(trimmed))
        .and_then(|b| b.strip_suffix(",\"callback\":"));
    assert!(tail.is_some(), "the envelope does not end with the body");
    let envelope: Envelope<'_> =
        serde_json::from_str(&message.body).expect("the envelope is the documented JSON");
    assert_eq!(envelope.callback.get(), trimmed);
    assert_eq!(envelope.category, message.category.as_str());
    assert_eq!(envelope.error_code, message.error_code);
    assert_eq!(envelope.received_at, RECEIVED_AT);
    assert_eq!(envelope.dedup_key, message.dedup_key);
    assert!(
        message.dedup_key.len() == 64
            && message
                .dedup_key
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    );
    let P::One(app) = param(pairs, "SdkAppid") else {
        panic!("an exception without one SdkAppid")
    };
    assert_eq!(envelope.sdk_app_id, app);
    assert_eq!(message.sdk_app_id, app);
    let informational = |name| match param(pairs, name) {
        P::One(v) => Some(v),
        _ => None,
    };
    assert_eq!(envelope.client_ip.as_deref(), informational("ClientIP"));
    assert_eq!(
        envelope.opt_platform.as_deref(),
        informational("OptPlatform")
    );
    if let Some(code) = body_error_code(body_value) {
        assert_eq!(message.error_code, code);
    }
    // The configured classification, topic and forwarding.
    assert_eq!(
        message.category,
        config.classifier.classify(message.error_code)
    );
    assert_eq!(topic, config.topic(message.category));
    if let Some(t) = topic {
        assert!(std::ptr::eq(t, config.topic(message.category).unwrap()));
    }
    let forward_exceptions = config
        .upstream
        .as_ref()
        .is_some_and(|u| u.forward_exceptions);
    assert_eq!(forward, forward_exceptions);
    // Within the limits.
    let record = Record::largest(message, topic.map(|t| t.arn.as_str()), now());
    assert!(record <= RECORD_LIMIT, "record bound {record}");
    MAX_RECORD.fetch_max(record, Ordering::Relaxed);
    if topic.is_some() {
        let sns = sns_size(message);
        assert!(sns <= SNS_MESSAGE_LIMIT, "SNS message {sns}");
        MAX_SNS.fetch_max(sns, Ordering::Relaxed);
    }
    // Republishing derives exactly this message.
    assert_eq!(message_from_envelope(&message.body).as_ref(), Ok(message));
}

/// A body padded to a limit, and what the limit calls for.
enum Boundary {
    /// Blanks up to MAX_BODY_BYTES + delta: 413/4130 exactly when over.
    Body,
    /// The record bound (`record`) or the SNS size (`!record`) padded to 262,144 + delta: the
    /// answer computed from the unpadded twin's sizes.
    Size {
        expected: Result<(), Rejection>,
        outcome: Outcome,
    },
}

/// One input in 8, by a hash of the whole input: the inputs padded to a large size reach rare
/// coverage, so the scheduler favours them and their mutants; without this most of the time
/// would go to scanning 262 KB bodies. A mutant is sampled again only by chance.
fn sampled(input: &Input<'_>) -> bool {
    let hash = format!("{input:?}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    hash % 8 == 0
}

fn run(input: &Input<'_>) {
    RUNS.fetch_add(1, Ordering::Relaxed);
    let config = &configs()[input.config.index()];
    let method = match input.method {
        None => "POST",
        Some(OtherMethod::Get) => "GET",
        Some(OtherMethod::Put) => "PUT",
        Some(OtherMethod::Head) => "HEAD",
        Some(OtherMethod::LowerPost) => "post",
        Some(OtherMethod::Any(m)) => m,
    };
    let mut pairs: Vec<(String, String)> = input.chat.map(|c| c.pairs()).unwrap_or_default();
    pairs.extend(input.query.iter().map(|(k, v)| (k.render(), v.render())));
    if !pairs.is_empty() {
        let len = pairs.len();
        pairs.rotate_left(usize::from(input.rotate) % len);
    }
    let decide_on = |body: &[u8]| {
        let request = WebhookRequest {
            method,
            query: Query::new(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            body,
        };
        decide(&request, config, now())
    };

    let mut rendered = input.body.render();
    let mut boundary = None;
    if let BodyInput::Callback(callback) = &input.body {
        match callback.pad {
            Pad::None => {}
            // Padding costs time in proportion to the body: every byte of it goes through loops
            // instrumented for coverage. So the body limit is padded to in the 512-byte
            // configuration always and in the 65,536-byte one for one input in 8; the 262,144-byte
            // limits only where a body that large is let through (400,000), for one input in 8.
            Pad::Body(delta)
                if config.max_body_bytes <= 512
                    || (config.max_body_bytes <= 65_536 && sampled(input)) =>
            {
                let target = config
                    .max_body_bytes
                    .saturating_add_signed(isize::from(delta % 3));
                if rendered.bytes.len() < target {
                    rendered.bytes.resize(target, b' ');
                    boundary = Some(Boundary::Body);
                }
            }
            Pad::Body(_) => {}
            Pad::Record(_) | Pad::Sns(_) if config.max_body_bytes < 300_000 || !sampled(input) => {}
            Pad::Record(delta) | Pad::Sns(delta) => {
                // The unpadded twin, with an empty Pad field: padding it by n characters makes
                // its record bound and its SNS size exactly n bytes larger.
                if let Ok(Decision::Exception { message, topic, .. }) = decide_on(&rendered.bytes)
                    && callback.splice.is_none()
                {
                    let record = Record::largest(&message, topic.map(|t| t.arn.as_str()), now());
                    let sns = sns_size(&message);
                    let is_record = matches!(callback.pad, Pad::Record(_));
                    let (limit, from) = if is_record {
                        (RECORD_LIMIT, record)
                    } else {
                        (SNS_MESSAGE_LIMIT, sns)
                    };
                    let n = limit
                        .saturating_add_signed(isize::from(delta % 3))
                        .saturating_sub(from);
                    if n > 0 {
                        rendered = callback.render(Some(n));
                        let too_large =
                            |bytes, limit| Err(Rejection::MessageTooLarge { bytes, limit });
                        let (expected, outcome) =
                            if let Some(r) = early(method, &rendered.bytes, &pairs, config) {
                                (Err(r), Outcome::LimitRefusedEarlier)
                            } else if record + n > RECORD_LIMIT {
                                (
                                    too_large(record + n, RECORD_LIMIT),
                                    Outcome::RecordLimitRefused,
                                )
                            } else if topic.is_some() && sns + n > SNS_MESSAGE_LIMIT {
                                (
                                    too_large(sns + n, SNS_MESSAGE_LIMIT),
                                    Outcome::SnsLimitRefused,
                                )
                            } else if is_record {
                                (Ok(()), Outcome::RecordLimitAccepted)
                            } else {
                                (Ok(()), Outcome::SnsLimitAccepted)
                            };
                        boundary = Some(Boundary::Size { expected, outcome });
                    }
                }
            }
        }
    }
    let body = &rendered.bytes;
    let result = decide_on(body);
    count(outcome(&result));
    let sent = Sent {
        pairs: &pairs,
        body,
    };

    // The early checks, in their order.
    let expected_early = early(method, body, &pairs, config);
    match (&expected_early, &result) {
        (Some(expected), Err(got)) => assert_eq!(got, expected),
        (Some(expected), Ok(_)) => panic!("accepted; the model expects {expected:?}"),
        (None, Err(got)) => assert!(!is_early(got), "{got:?}; the model expects none"),
        (None, Ok(_)) => {}
    }
    // Nothing goes anywhere without a good Sign, when a token is configured.
    if result.is_ok() && !config.tokens.is_empty() {
        let (P::One(given), P::One(time)) = (param(&pairs, "Sign"), param(&pairs, "RequestTime"))
        else {
            panic!("accepted without one Sign and one RequestTime")
        };
        assert!(
            signed_by_a_token(given, time, config),
            "a forged Sign was accepted"
        );
        if !given.eq_ignore_ascii_case(&hex::encode(sign(TOKEN, time))) {
            count(Outcome::AcceptedWithPreviousToken);
        }
    }

    // The command.
    let query_command = param(&pairs, "CallbackCommand");
    let body_value: Option<Value> = serde_json::from_slice(body).ok();
    let from_body = body_command(body_value.as_ref());
    if expected_early.is_none() {
        match query_command {
            P::Conflicting => {
                assert_eq!(result.as_ref().err(), Some(&Rejection::CommandConflicting));
            }
            P::One(c) if c != EXCEPTION_COMMAND => match &result {
                Ok(Decision::Forward { command }) => {
                    assert!(config.upstream.is_some());
                    assert_eq!(command, c);
                }
                Ok(Decision::Acknowledge { command }) => {
                    assert!(config.upstream.is_none());
                    assert_eq!(command, c);
                }
                other => panic!("{other:?} for the query command {c:?}"),
            },
            _ => {}
        }
    }
    match &result {
        Ok(Decision::Forward { command } | Decision::Acknowledge { command }) => {
            assert!(!command.is_empty() && command != EXCEPTION_COMMAND);
            assert_eq!(
                config.upstream.is_some(),
                matches!(result, Ok(Decision::Forward { .. })),
                "Forward exactly when an upstream is configured"
            );
            if query_command == P::Missing
                && let Some(in_body) = &from_body
            {
                assert_eq!(in_body.as_deref(), Some(command.as_str()));
            }
        }
        Ok(Decision::Exception {
            message,
            topic,
            forward,
        }) => {
            match query_command {
                P::One(c) => assert_eq!(c, EXCEPTION_COMMAND),
                P::Missing => {
                    if let Some(in_body) = &from_body {
                        assert_eq!(in_body.as_deref(), Some(EXCEPTION_COMMAND));
                    }
                }
                P::Conflicting => panic!("an exception with conflicting commands"),
            }
            if let Some(in_body) = &from_body {
                assert!(in_body.as_ref().is_none_or(|c| c == EXCEPTION_COMMAND));
            }
            check_exception(
                message,
                *topic,
                *forward,
                body,
                body_value.as_ref(),
                &pairs,
                config,
            );
            for secret in [TOKEN, PREVIOUS] {
                assert!(!message.body.contains(secret) || sent.holds_outside_sign(secret));
            }
        }
        Err(r) => {
            check_refusal(r, &sent, config, &rendered.long_strings);
            match r {
                Rejection::CommandMissing => {
                    assert_eq!(query_command, P::Missing);
                    if let Some(in_body) = &from_body {
                        assert_eq!(in_body, &None);
                    }
                }
                Rejection::CommandMismatch {
                    query,
                    body: in_body,
                } => {
                    assert_eq!(query_command, P::One(EXCEPTION_COMMAND));
                    assert_eq!(query, EXCEPTION_COMMAND);
                    assert!(!in_body.is_empty() && in_body != query);
                    if let Some(from_body) = &from_body {
                        assert_eq!(from_body.as_ref(), Some(in_body));
                    }
                }
                Rejection::MessageTooLarge { bytes, limit } => {
                    assert_eq!(*limit, 262_144);
                    assert!(bytes > limit);
                }
                _ => {}
            }
        }
    }

    // A callback built well-formed here is read as one: its command decides, and an exception
    // is accepted unless it is too large to keep.
    if rendered.well_formed && expected_early.is_none() {
        let got = result.as_ref();
        match (query_command, &rendered.command) {
            (P::One(EXCEPTION_COMMAND), BuiltCommand::Nothing | BuiltCommand::Exception)
            | (P::Missing, BuiltCommand::Exception) => assert!(
                matches!(
                    got,
                    Ok(Decision::Exception { .. }) | Err(Rejection::MessageTooLarge { .. })
                ),
                "a well-formed exception was refused: {got:?}"
            ),
            (P::Missing, BuiltCommand::Nothing) => {
                assert_eq!(got.err(), Some(&Rejection::CommandMissing));
            }
            (P::Missing, BuiltCommand::Other(c)) => match got {
                Ok(Decision::Forward { command } | Decision::Acknowledge { command }) => {
                    assert_eq!(command, c);
                }
                other => panic!("{other:?} for the body command {c:?}"),
            },
            (P::One(EXCEPTION_COMMAND), BuiltCommand::Other(c)) => assert_eq!(
                got.err(),
                Some(&Rejection::CommandMismatch {
                    query: EXCEPTION_COMMAND.into(),
                    body: c.clone(),
                })
            ),
            _ => {}
        }
    }

    // At a limit, exactly the answer the limit calls for.
    match boundary {
        None => {}
        Some(Boundary::Body) => {
            let over = body.len() > config.max_body_bytes;
            if method == "POST" {
                assert_eq!(
                    over,
                    matches!(result, Err(Rejection::BodyTooLarge { .. })),
                    "{} bytes: {result:?}",
                    body.len()
                );
            }
            count(if over {
                Outcome::BodyLimitOver
            } else {
                Outcome::BodyLimitUnder
            });
        }
        Some(Boundary::Size { expected, outcome }) => {
            match (&expected, &result) {
                (Ok(()), Ok(Decision::Exception { .. })) => {}
                (Ok(()), other) => panic!("padded to a limit: {other:?}, expected an exception"),
                (Err(expected), got) => assert_eq!(got.as_ref().err(), Some(expected)),
            }
            count(outcome);
        }
    }

    if stats_on() && RUNS.load(Ordering::Relaxed).is_multiple_of(1_000_000) {
        print_stats("so far");
    }
}

fuzz_target!(|input: Input<'_>| run(&input));
