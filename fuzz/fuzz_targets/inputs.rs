//! What both targets send: Chat's query parameters (names in any case, repeated or empty; good
//! and bad app ids and commands; RequestTimes in and out of the skew in the forms a caller may
//! write; Signs by the current, the previous or another token, mangled or not) and bodies (a
//! callback with mutated fields, raw U+FFFE and U+FFFF in its strings among them, any JSON, or
//! any bytes).

use im_exception_webhook::domain::EXCEPTION_COMMAND;
use im_exception_webhook::domain::auth::sign;
use libfuzzer_sys::arbitrary::{self, Arbitrary};

pub const TOKEN: &str = "fuzz-Token-current-0123456789";
pub const PREVIOUS: &str = "fuzz-Token-previous-9876543210";
const STRANGER: &str = "fuzz-token-nobody-configured";
/// The accepted SdkAppids, as `IM_SDK_APP_ID`.
pub const APP_IDS: &str = "1400000000, 1400000001";

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
pub const COMMANDS: [&str; 8] = [
    EXCEPTION_COMMAND,
    "Group.CallbackBeforeSendMsg",
    "Group.CallbackAfterSendMsg",
    "State.StateChange",
    "C2C.CallbackBeforeSendMsg",
    "group.callbacksendmsgexception",
    "Group.CallbackSendMsgException ",
    "",
];
pub const DOCUMENTED: [&str; 12] = [
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
/// Number text serde_json may or may not take.
const NUM_TEXTS: [&str; 8] = [
    "1e400",
    "-0",
    "10023.0",
    "1e2",
    "-9223372036854775809",
    "00",
    "NaN",
    "18446744073709551616",
];
/// Characters for long values: escaped in JSON, beyond the BMP, refused by SNS.
const LONG_CHARS: [char; 8] = ['a', 'é', '群', '😀', '"', '\n', '\u{1}', '\u{FFFE}'];

// ----------------------------------------------------------------------------------------
// The query string.
// ----------------------------------------------------------------------------------------

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Signer {
    Current,
    Previous,
    Stranger,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Shape {
    Lower,
    Upper,
    /// One hex digit changed.
    Flip(u8),
    Short,
    Long,
    NotHex,
}

/// A Sign by `signer` over the RequestTime `offset` seconds from now, written in `form`.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct SignSpec {
    signer: Signer,
    offset: i8,
    form: u8,
    shape: Shape,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Name<'a> {
    /// One of Chat's names, with each letter's case from the mask (even: as Chat writes it).
    Known(u8, u64),
    Any(&'a str),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Val<'a> {
    App(u8),
    Command(u8),
    Time(i8, u8),
    Sign(SignSpec),
    Any(&'a str),
    /// Up to 400 characters, to see what a refusal quotes of it.
    Long(u16, u8),
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

/// A query string: Chat's parameters perhaps, and others, in some order.
#[derive(Arbitrary, Debug)]
pub struct QueryInput<'a> {
    chat: Option<Chat<'a>>,
    pairs: Vec<(Name<'a>, Val<'a>)>,
    rotate: u8,
}

fn in_case(name: &str, mask: u64) -> String {
    let upper = |i: usize| (mask >> ((i + 1) % 64)) & 1 == 1;
    match mask & 1 {
        0 => name.to_owned(),
        _ => (name.chars().enumerate())
            .map(|(i, c)| match upper(i) {
                true => c.to_ascii_uppercase(),
                false => c.to_ascii_lowercase(),
            })
            .collect(),
    }
}

/// A RequestTime `offset` seconds from `now`, in one of the forms a caller may write.
fn time_text(now: u64, offset: i8, form: u8) -> String {
    let t = now.saturating_add_signed(i64::from(offset));
    match form % 12 {
        0..=5 => t.to_string(),
        6 => format!("+{t}"),
        7 => format!("0{t}"),
        8 => format!(" {t}"),
        9 => format!("{t}.0"),
        10 => "18446744073709551616".into(),
        _ => "9999999999999999999".into(),
    }
}

fn sign_text(now: u64, spec: SignSpec) -> String {
    let token = match spec.signer {
        Signer::Current => TOKEN,
        Signer::Previous => PREVIOUS,
        Signer::Stranger => STRANGER,
    };
    let hex = hex::encode(sign(token, &time_text(now, spec.offset, spec.form)));
    match spec.shape {
        Shape::Lower => hex,
        Shape::Upper => hex.to_ascii_uppercase(),
        Shape::Flip(at) => {
            let mut bytes = hex.into_bytes();
            let at = usize::from(at) % bytes.len();
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            String::from_utf8(bytes).unwrap()
        }
        Shape::Short => hex[1..].to_owned(),
        Shape::Long => format!("{hex}0"),
        Shape::NotHex => "zz".repeat(32),
    }
}

fn long_text(len: u16, kind: u8) -> String {
    let c = LONG_CHARS[usize::from(kind) % LONG_CHARS.len()];
    std::iter::repeat_n(c, usize::from(len % 400)).collect()
}

fn pick<T: Copy>(all: &[T], i: u8) -> T {
    all[usize::from(i) % all.len()]
}

impl QueryInput<'_> {
    /// The parameters in order, with times and Signs around `now` (Unix seconds).
    pub fn pairs(&self, now: u64) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        if let Some(chat) = &self.chat {
            let name = |n: &str| in_case(n, chat.case_mask);
            pairs.push((name("SdkAppid"), APPS[usize::from(chat.app) % 3].to_owned()));
            if let Some(i) = chat.command {
                pairs.push((name("CallbackCommand"), pick(&COMMANDS, i).to_owned()));
            }
            pairs.push((name("contenttype"), "json".into()));
            pairs.push((name("Sign"), sign_text(now, chat.sign)));
            let time = time_text(now, chat.sign.offset, chat.sign.form);
            pairs.push((name("RequestTime"), time));
            for (n, value) in [
                ("ClientIP", chat.client_ip),
                ("OptPlatform", chat.opt_platform),
            ] {
                pairs.extend(value.map(|v| (name(n), v.to_owned())));
            }
        }
        pairs.extend(self.pairs.iter().map(|(name, value)| {
            let name = match *name {
                Name::Known(i, mask) => in_case(pick(&NAMES, i), mask),
                Name::Any(s) => s.to_owned(),
            };
            let value = match *value {
                Val::App(i) => pick(&APPS, i).to_owned(),
                Val::Command(i) => pick(&COMMANDS, i).to_owned(),
                Val::Time(offset, form) => time_text(now, offset, form),
                Val::Sign(spec) => sign_text(now, spec),
                Val::Any(s) => s.to_owned(),
                Val::Long(len, kind) => long_text(len, kind),
            };
            (name, value)
        }));
        if !pairs.is_empty() {
            let len = pairs.len();
            pairs.rotate_left(usize::from(self.rotate) % len);
        }
        pairs
    }
}

// ----------------------------------------------------------------------------------------
// The body.
// ----------------------------------------------------------------------------------------

/// A JSON value, a few levels deep.
#[derive(Arbitrary, Debug)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    /// A string of U+FFFE, U+FFFF, quotes and backslashes.
    Refused(u8),
    /// Number text serde_json may or may not take.
    NumText(u8),
    /// Arrays nested this deep (serde_json stops at 128).
    Deep(u8),
    Array(Vec<Json<'a>>),
    Object(Vec<(&'a str, Json<'a>)>),
}

/// Up to 8 characters from U+FFFE, U+FFFF, `"`, `\` and `a`, by the bits of `bits`.
fn refused_text(bits: u8) -> String {
    let chars = ['\u{FFFE}', '\u{FFFF}', '"', '\\', 'a'];
    (0..=bits % 8)
        .map(|i| chars[usize::from(bits.rotate_left(u32::from(i))) % chars.len()])
        .collect()
}

impl Json<'_> {
    /// Appends the JSON text; whether it is surely valid JSON.
    fn render(&self, depth: u8, out: &mut String) -> bool {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => out.push_str(&n.to_string()),
            Json::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => out.push_str(&n.to_string()),
                None => out.push_str("null"),
            },
            Json::Str(s) => out.push_str(&string(s)),
            Json::Refused(bits) => out.push_str(&string(&refused_text(*bits))),
            Json::NumText(i) => {
                out.push_str(pick(&NUM_TEXTS, *i));
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
                let items = items.iter().map(|item| {
                    let mut text = String::new();
                    (item.render(depth + 1, &mut text), text)
                });
                return list(out, ('[', ']'), items);
            }
            Json::Object(fields) => {
                let fields = fields.iter().map(|(k, v)| {
                    let mut text = format!("{}:", string(k));
                    (v.render(depth + 1, &mut text), text)
                });
                return list(out, ('{', '}'), fields);
            }
        }
        true
    }
}

/// Appends the items between `brackets`, comma-separated; whether all are valid.
fn list(
    out: &mut String,
    brackets: (char, char),
    items: impl Iterator<Item = (bool, String)>,
) -> bool {
    let mut valid = true;
    let texts: Vec<String> = items
        .map(|(ok, text)| {
            valid &= ok;
            text
        })
        .collect();
    out.push(brackets.0);
    out.push_str(&texts.join(","));
    out.push(brackets.1);
    valid
}

/// `s` as a JSON string, as serde_json writes it (U+FFFE and U+FFFF raw).
pub fn string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

#[derive(Arbitrary, Debug)]
enum BodyCommand<'a> {
    Exception,
    Other(u8),
    Absent,
    Null,
    Number(i64),
    Any(&'a str),
}

/// An integer field as Chat may send it, or not.
#[derive(Arbitrary, Debug)]
enum IntField<'a> {
    Int(i64),
    Known(u8),
    /// A string of the number (blanks around when `padded`): a negative one is no number Chat
    /// writes.
    Str(i64, bool),
    /// `""` when true, else `null`: absent.
    Missing(bool),
    Float(f64),
    Bool(bool),
    Text(&'a str),
    NumText(u8),
}

#[derive(Arbitrary, Debug)]
enum StrField<'a> {
    Str(&'a str),
    Refused(u8),
    Long(u16, u8),
    /// `""` when true, else `null`.
    Missing(bool),
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

#[derive(Arbitrary, Debug)]
pub struct CallbackInput<'a> {
    command: BodyCommand<'a>,
    error_code: IntField<'a>,
    /// Leaves ErrorCode out (a short input, whose last fields take their defaults, keeps it).
    no_error_code: bool,
    strings: [Option<StrField<'a>>; 6],
    ints: [Option<IntField<'a>>; 3],
    msg_body: Option<MsgBody<'a>>,
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
    /// Blanks added up to MAX_BODY_BYTES + delta (delta in -2..=2).
    pub pad: Option<i8>,
}

#[derive(Arbitrary, Debug)]
pub enum BodyInput<'a> {
    Callback(Box<CallbackInput<'a>>),
    Json(Json<'a>),
    Bytes(&'a [u8]),
}

/// A rendered body.
pub struct Rendered {
    pub bytes: Vec<u8>,
    /// Surely a valid callback: JSON, every documented field of its documented type, once,
    /// and an ErrorCode. The decision must read it as such, never refuse it as a bad body.
    pub well_formed: bool,
    /// The CallbackCommand it was built with (`""`: absent, empty or null); `None` when it is
    /// not a built callback.
    pub command: Option<String>,
    /// Strings of more than 100 characters put in the body.
    pub long_strings: Vec<String>,
}

/// `s` as a JSON string, kept in `long` when a refusal could quote more than 100 characters.
fn text(s: &str, long: &mut Vec<String>) -> String {
    if s.chars().count() > 100 {
        long.push(s.to_owned());
    }
    string(s)
}

impl IntField<'_> {
    /// JSON text, and whether the decision must take it as an integer (or absent).
    fn render(&self, long: &mut Vec<String>) -> (String, bool) {
        match self {
            IntField::Int(n) => (n.to_string(), true),
            IntField::Known(i) => (pick(&CODES, *i).to_string(), true),
            IntField::Str(n, padded) => {
                let blank = if *padded { " " } else { "" };
                (format!("\"{blank}{n}{blank}\""), *n >= 0)
            }
            IntField::Missing(empty) => (if *empty { "\"\"" } else { "null" }.into(), true),
            IntField::Float(f) => (format!("{:?}", f.clamp(-1e300, 1e300)), false),
            IntField::Bool(b) => (b.to_string(), false),
            IntField::Text(s) => (text(s, long), false),
            IntField::NumText(i) => (pick(&NUM_TEXTS, *i).into(), false),
        }
    }
}

impl StrField<'_> {
    fn render(&self, long: &mut Vec<String>) -> (String, bool) {
        match self {
            StrField::Str(s) => (text(s, long), true),
            StrField::Refused(bits) => (text(&refused_text(*bits), long), true),
            StrField::Long(len, kind) => (text(&long_text(*len, *kind), long), true),
            StrField::Missing(empty) => (if *empty { "\"\"" } else { "null" }.into(), true),
            StrField::Number(n) => (n.to_string(), false),
            StrField::Array => ("[\"x\"]".into(), false),
        }
    }
}

impl CallbackInput<'_> {
    fn render(&self) -> Rendered {
        let mut long = Vec::new();
        let mut valid = true;
        let mut fields: Vec<(&str, String)> = Vec::new();
        let command = match &self.command {
            BodyCommand::Exception => EXCEPTION_COMMAND,
            BodyCommand::Other(i) => pick(&COMMANDS, *i),
            BodyCommand::Any(s) => *s,
            BodyCommand::Absent | BodyCommand::Null | BodyCommand::Number(_) => "",
        };
        match &self.command {
            BodyCommand::Absent => {}
            BodyCommand::Null => fields.push(("CallbackCommand", "null".into())),
            BodyCommand::Number(n) => {
                valid = false;
                fields.push(("CallbackCommand", n.to_string()));
            }
            _ => fields.push(("CallbackCommand", text(command, &mut long))),
        }
        // An empty or null ErrorCode is a missing one.
        valid &= !self.no_error_code && !matches!(self.error_code, IntField::Missing(_));
        let error_code = (!self.no_error_code).then_some(&self.error_code);
        let ints = ["ErrorCode", "Random", "OnlineOnlyFlag", "EventTime"];
        let all_ints = std::iter::once(error_code).chain(self.ints.iter().map(Option::as_ref));
        for (name, field) in ints.into_iter().zip(all_ints) {
            if let Some(field) = field {
                let (text, ok) = field.render(&mut long);
                valid &= ok;
                fields.push((name, text));
            }
        }
        let strings = [
            "GroupId",
            "Type",
            "From_Account",
            "Operator_Account",
            "ErrorInfo",
            "CloudCustomData",
        ];
        for (name, field) in strings.into_iter().zip(&self.strings) {
            if let Some(field) = field {
                let (text, ok) = field.render(&mut long);
                valid &= ok;
                fields.push((name, text));
            }
        }
        let msg_body = self.msg_body.as_ref().map(|body| match body {
            MsgBody::Elements(items) => {
                let items = items.iter().map(|item| {
                    let mut text = String::new();
                    (item.render(1, &mut text), text)
                });
                let mut text = String::new();
                valid &= list(&mut text, ('[', ']'), items);
                text
            }
            MsgBody::Text(s) => {
                valid = false;
                text(s, &mut long)
            }
            MsgBody::Object => {
                valid = false;
                "{\"MsgType\":\"TIMTextElem\"}".into()
            }
            MsgBody::Null => "null".into(),
        });
        fields.extend(msg_body.map(|m| ("MsgBody", m)));
        for (name, value) in &self.extra {
            let mut text = String::new();
            valid &= value.render(1, &mut text);
            // A second copy of a documented field is refused, not guessed.
            valid &= !DOCUMENTED.contains(name);
            fields.push((name, text));
        }
        if let Some(which) = self.duplicate
            && !fields.is_empty()
        {
            let (name, value) = fields[usize::from(which) % fields.len()].clone();
            valid &= !DOCUMENTED.contains(&name);
            fields.push((name, value));
        }
        if !fields.is_empty() {
            let len = fields.len();
            fields.rotate_left(usize::from(self.order) % len);
        }

        let (open, separator, colon, close) = match self.pretty {
            true => ("{\n  ", ",\n  ", ": ", "\n}"),
            false => ("{", ",", ":", "}"),
        };
        let blank = |bits: u8| [" ", "\t", "\n", "\r\n"][usize::from(bits & 3)];
        let members: Vec<String> = (fields.iter())
            .map(|(name, value)| format!("{}{colon}{value}", string(name)))
            .collect();
        let mut text = String::new();
        if self.surround & 1 != 0 {
            text.push_str(blank(self.surround >> 1));
        }
        text.push_str(&format!("{open}{}{close}", members.join(separator)));
        if self.surround & 8 != 0 {
            text.push_str(blank(self.surround >> 4));
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
            command: Some(command.to_owned()),
            long_strings: long,
        }
    }
}

impl BodyInput<'_> {
    pub fn render(&self) -> Rendered {
        let other = |bytes| Rendered {
            bytes,
            well_formed: false,
            command: None,
            long_strings: Vec::new(),
        };
        match self {
            BodyInput::Callback(callback) => callback.render(),
            BodyInput::Json(json) => {
                let mut text = String::new();
                json.render(0, &mut text);
                other(text.into_bytes())
            }
            BodyInput::Bytes(bytes) => other(bytes.to_vec()),
        }
    }
}

/// The body text as the envelope carries it: trimmed, U+FFFE and U+FFFF as JSON escapes.
pub fn as_carried(body: &[u8]) -> String {
    let text = std::str::from_utf8(body).expect("an accepted body is UTF-8");
    text.trim_matches([' ', '\t', '\n', '\r'])
        .replace('\u{FFFE}', "\\ufffe")
        .replace('\u{FFFF}', "\\uffff")
}

/// Whether `sent` spells `secret`, as is or as JSON or `{:?}` escapes it: an escape can join
/// a secret the caller sent in pieces (`"\u{f}uzz-Token"` is `"\u000fuzz-Token"` in JSON).
pub fn spells(sent: &str, secret: &str) -> bool {
    sent.contains(secret) || string(sent).contains(secret) || format!("{sent:?}").contains(secret)
}
