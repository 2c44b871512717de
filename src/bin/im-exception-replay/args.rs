//! The command line: where the records come from, and whether to publish them.

use std::time::Duration;

pub const USAGE: &str = "\
usage: im-exception-replay [--dry-run] [FILE]...
       im-exception-replay [--dry-run] --log-group NAME --since WHEN [--until WHEN]
       im-exception-replay [--dry-run] --queue URL

Republishes the envelopes of the webhook's publish_failed log records to the SNS topics of
their categories, exactly as the webhook would have published them.

Sources (one per run):
  FILE...             the function's JSON log lines, or what `aws logs filter-log-events`
                      prints (pages may be concatenated); - or no FILE: standard input
  --log-group NAME    the records of log group NAME, read with FilterLogEvents
                      (filter pattern { $.event = \"publish_failed\" })
    --since WHEN      from WHEN (required)
    --until WHEN      to WHEN, inclusive (default: now)
  --queue URL         the redrive function's dead-letter queue: each message's records are
                      republished, and the message deleted once all of them are; a message with
                      a record not published stays in the queue

  WHEN is a duration ago (30s, 30m, 6h, 2d) or an RFC 3339 time (2026-12-01T10:00:00Z).

Options:
  --dry-run           print what would be published; publish nothing, delete nothing
  -h, --help          this text

Configuration: the topics from the function's variables TOPIC_ARN_INVALID_GROUP,
TOPIC_ARN_FREQUENCY_LIMIT, TOPIC_ARN_CONTENT_FILTER, TOPIC_ARN_MUTED_SENDER and (optional)
TOPIC_ARN_UNCLASSIFIED; region and credentials from the standard AWS chain (AWS_PROFILE,
SSO, credential_process, AWS_REGION, AWS_ACCESS_KEY_ID, ...; AWS_ENDPOINT_URL).

Output: one line per record on standard error, then `replayed N, failed M` on standard
output. Exit status 0 when nothing failed, 1 when something did, 2 when the arguments, the
input or the configuration could not be read.";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Replay { dry_run: bool, source: Source },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Files, `-` for standard input.
    Files(Vec<String>),
    LogGroup {
        name: String,
        since: When,
        until: Option<When>,
    },
    Queue {
        url: String,
    },
}

/// A point in time as given on the command line: resolved against the clock only when used,
/// so parsing stays a pure function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Ago(Duration),
    /// Milliseconds since the epoch, as CloudWatch Logs counts.
    At(i64),
}

impl When {
    /// Milliseconds since the epoch, `now_ms` being the time now; never before the epoch,
    /// which CloudWatch Logs refuses.
    pub fn millis(self, now_ms: i64) -> i64 {
        let millis = match self {
            When::Ago(ago) => {
                now_ms.saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))
            }
            When::At(at) => at,
        };
        millis.max(0)
    }
}

/// Reads the arguments (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut dry_run = false;
    let mut files = Vec::new();
    let mut log_group = None;
    let mut since = None;
    let mut until = None;
    let mut queue = None;
    let mut args = args.into_iter();
    let mut only_files = false;
    while let Some(arg) = args.next() {
        if only_files || arg == "-" || !arg.starts_with('-') {
            files.push(arg);
            continue;
        }
        // `--name=value` as well as `--name value`.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--" => only_files = true,
            "--dry-run" if inline.is_none() => dry_run = true,
            "--log-group" => set_once(&mut log_group, value(&name)?, &name)?,
            "--since" => set_once(&mut since, when(&value(&name)?)?, &name)?,
            "--until" => set_once(&mut until, when(&value(&name)?)?, &name)?,
            "--queue" => set_once(&mut queue, value(&name)?, &name)?,
            _ => return Err(format!("unknown option {arg}")),
        }
    }

    let source = match (log_group, queue) {
        (Some(_), Some(_)) => return Err("--log-group and --queue: give one source".into()),
        (Some(_), None) | (None, Some(_)) if !files.is_empty() => {
            return Err(format!(
                "{:?}: files are not read with --log-group or --queue",
                files[0]
            ));
        }
        (Some(name), None) => {
            let since = since.ok_or("--log-group needs --since")?;
            Source::LogGroup { name, since, until }
        }
        (None, Some(url)) => Source::Queue { url },
        (None, None) => Source::Files(if files.is_empty() {
            vec!["-".into()]
        } else {
            files
        }),
    };
    if !matches!(source, Source::LogGroup { .. }) && (since.is_some() || until.is_some()) {
        return Err("--since and --until go with --log-group".into());
    }
    Ok(Command::Replay { dry_run, source })
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), String> {
    if slot.replace(value).is_some() {
        return Err(format!("{name} is given twice"));
    }
    Ok(())
}

/// `30s`, `30m`, `6h`, `2d` (that long ago), or an RFC 3339 time.
pub fn when(text: &str) -> Result<When, String> {
    if let Some(ago) = duration(text) {
        return Ok(When::Ago(ago));
    }
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            format!(
                "{text:?} is neither a duration (30m, 6h, 2d) nor an RFC 3339 time \
                 (2026-12-01T10:00:00Z)"
            )
        })?;
    let millis = at.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(millis)
        .map(When::At)
        .map_err(|_| format!("{text:?} is out of range"))
}

/// A whole number with a unit: s, m, h or d.
fn duration(text: &str) -> Option<Duration> {
    let unit = text.chars().last()?;
    let seconds_per_unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    let number = &text[..text.len() - 1];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = number.parse::<u64>().ok()?.checked_mul(seconds_per_unit)?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Command, String> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    fn replay(dry_run: bool, source: Source) -> Result<Command, String> {
        Ok(Command::Replay { dry_run, source })
    }

    #[test]
    fn files_and_standard_input_as_before() {
        assert_eq!(args(""), replay(false, Source::Files(vec!["-".into()])));
        assert_eq!(
            args("a.log - b.json"),
            replay(
                false,
                Source::Files(vec!["a.log".into(), "-".into(), "b.json".into()])
            )
        );
        assert_eq!(
            args("--dry-run a.log"),
            replay(true, Source::Files(vec!["a.log".into()]))
        );
        assert_eq!(
            args("-- --dry-run"),
            replay(false, Source::Files(vec!["--dry-run".into()])),
            "after --, a file named like an option"
        );
        assert_eq!(args("x --help"), Ok(Command::Help));
        assert_eq!(args("-h"), Ok(Command::Help));
    }

    #[test]
    fn a_log_group_with_its_window() {
        assert_eq!(
            args("--log-group /aws/lambda/f --since 6h --until 2026-12-01T10:00:00Z"),
            replay(
                false,
                Source::LogGroup {
                    name: "/aws/lambda/f".into(),
                    since: When::Ago(Duration::from_secs(6 * 3600)),
                    until: Some(When::At(1_796_119_200_000)),
                }
            )
        );
        assert_eq!(
            args("--dry-run --log-group=g --since=30m"),
            replay(
                true,
                Source::LogGroup {
                    name: "g".into(),
                    since: When::Ago(Duration::from_secs(1800)),
                    until: None,
                }
            )
        );
    }

    #[test]
    fn a_queue() {
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/redrive-dlq";
        assert_eq!(
            args(&format!("--queue {url} --dry-run")),
            replay(true, Source::Queue { url: url.into() })
        );
    }

    #[test]
    fn what_cannot_be_read_is_refused_with_a_reason() {
        for (line, says) in [
            ("--log-group g", "needs --since"),
            ("--log-group", "needs a value"),
            ("--log-group g --since", "needs a value"),
            ("--log-group g --since yesterday", "neither a duration"),
            ("--log-group g --since 6h --since 2h", "twice"),
            ("--log-group g --queue q --since 1h", "one source"),
            ("--log-group g --since 1h file.log", "files are not read"),
            ("--queue q file.log", "files are not read"),
            ("--since 1h", "go with --log-group"),
            ("--queue q --until 1h", "go with --log-group"),
            ("--dry-run=yes", "unknown option"),
            ("--verbose", "unknown option"),
            ("--queue=", "needs a value"),
        ] {
            let error = args(line).expect_err(line);
            assert!(error.contains(says), "{line}: {error}");
        }
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(when("45s"), Ok(When::Ago(Duration::from_secs(45))));
        assert_eq!(when("30m"), Ok(When::Ago(Duration::from_secs(1800))));
        assert_eq!(when("2d"), Ok(When::Ago(Duration::from_secs(172_800))));
        assert_eq!(when("0h"), Ok(When::Ago(Duration::ZERO)));
        assert_eq!(
            when("2026-12-01T10:00:00Z"),
            Ok(When::At(1_796_119_200_000))
        );
        assert_eq!(
            when("2026-12-01T12:00:00.250+02:00"),
            Ok(When::At(1_796_119_200_250)),
            "an offset, and milliseconds"
        );
        for bad in [
            "",
            "h",
            "6",
            "-6h",
            "+6h",
            "6 h",
            "1.5h",
            "6H",
            "6w",
            "2026-12-01",
            "10:00",
            "99999999999999999999d",
        ] {
            assert!(when(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_when_is_resolved_against_now() {
        let now = 1_796_119_200_000;
        assert_eq!(When::Ago(Duration::from_secs(60)).millis(now), now - 60_000);
        assert_eq!(When::At(5).millis(now), 5);
        assert_eq!(When::Ago(Duration::MAX).millis(now), 0);
        assert_eq!(When::At(-5).millis(now), 0);
    }
}
