//! Draining the redrive function's dead-letter queue: each message is a Lambda on-failure
//! destination record holding the subscription event that could not be redriven.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::Message;
use im_exception_webhook::config::Topics;
use im_exception_webhook::publish::Publisher;
use im_exception_webhook::record_source::{self, Scan};
use im_exception_webhook::republish::{self, Options, Summary};
use std::collections::{HashMap, HashSet};
use std::io::Write;

/// Long enough for one receive's ten messages to be republished (each record's publish has its
/// own deadline) before SQS hands them out again; short enough that a message left in flight
/// by an interrupted run is back within minutes, not hours.
pub const VISIBILITY_TIMEOUT_SECS: i32 = 300;

/// Not 0: a short poll asks only some of SQS's servers and may answer "empty" while messages
/// wait; a wait of a second asks them all, so an empty answer means an empty queue.
const WAIT_SECS: i32 = 1;

/// What draining the queue did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The records of every message, as for any other source.
    pub summary: Summary,
    pub deleted: usize,
    /// Messages left in the queue because something in them failed (not counting a dry run's).
    pub kept: usize,
    /// The queue could not be read (to the end).
    pub error: Option<String>,
}

pub struct Drain<'a, P> {
    pub sqs: &'a aws_sdk_sqs::Client,
    pub url: &'a str,
    pub topics: &'a Topics,
    pub publisher: &'a P,
    pub dry_run: bool,
}

/// Where a message stands once handled.
enum Handled {
    Deleted,
    /// Left in the queue: made visible again at the end of the run, for the next one.
    Left,
}

impl<P: Publisher> Drain<'_, P> {
    /// Receives until the queue has nothing more to give; writes one line per record and per
    /// message to `report`.
    pub async fn run(&self, report: &mut dyn Write) -> Outcome {
        let mut outcome = Outcome::default();
        let mut handled: HashSet<String> = HashSet::new();
        // The newest receipt handle of each message left in the queue.
        let mut left: HashMap<String, String> = HashMap::new();
        // Envelopes published from earlier messages: a record two messages share (the same
        // log event delivered twice) is published once per run, as within one input.
        let mut published: HashSet<String> = HashSet::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(WAIT_SECS)
                .visibility_timeout(VISIBILITY_TIMEOUT_SECS)
                .send()
                .await;
            let messages = match received {
                Ok(output) => output.messages.unwrap_or_default(),
                Err(e) => {
                    outcome.error = Some(format!(
                        "cannot receive from {}: {}",
                        self.url,
                        DisplayErrorContext(e)
                    ));
                    break;
                }
            };
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let handle = message.receipt_handle().unwrap_or_default().to_owned();
                let id = message.message_id().unwrap_or(&handle).to_owned();
                // A message left earlier that came back after its visibility timeout while the
                // run went on: handled already, only its newest receipt handle counts.
                if !handled.insert(id.clone()) {
                    if let Some(newest) = left.get_mut(&id) {
                        *newest = handle;
                    }
                    continue;
                }
                match self
                    .message(&message, &id, &handle, &mut published, &mut outcome, report)
                    .await
                {
                    Handled::Deleted => outcome.deleted += 1,
                    Handled::Left => {
                        left.insert(id, handle);
                    }
                }
            }
        }
        for (id, handle) in &left {
            self.make_visible(id, handle, report).await;
        }
        outcome
    }

    async fn message(
        &self,
        message: &Message,
        id: &str,
        handle: &str,
        published: &mut HashSet<String>,
        outcome: &mut Outcome,
        report: &mut dyn Write,
    ) -> Handled {
        let name = format!("{}/{id}", queue_name(self.url));
        let scan = match record_source::from_destination(&name, message.body().unwrap_or_default())
        {
            Ok(scan) => scan,
            Err(problem) => {
                outcome.summary.failed += 1;
                outcome.kept += 1;
                let _ = writeln!(report, "failed {name}: {problem}; the message stays");
                return Handled::Left;
            }
        };
        let (scan, repeated) = without_published(scan, published, report);
        let options = Options {
            dry_run: self.dry_run,
            // The message stays if one record fails, and all of it comes again next time:
            // with SNS down, waiting out each record's deadline would only make the run long.
            stop_after_failure: true,
        };
        let summary =
            republish::republish(&scan, self.topics, self.publisher, options, report).await;
        add(&mut outcome.summary, summary);
        outcome.summary.repeated += repeated;
        if summary.failed > 0 {
            outcome.kept += 1;
            let _ = writeln!(
                report,
                "kept {name}: {} of its records not published; the message stays",
                summary.failed
            );
            return Handled::Left;
        }
        published.extend(scan.records.into_iter().flatten().map(|r| r.envelope));
        if self.dry_run {
            let _ = writeln!(report, "would delete {name}");
            return Handled::Left;
        }
        match self
            .sqs
            .delete_message()
            .queue_url(self.url)
            .receipt_handle(handle)
            .send()
            .await
        {
            Ok(_) => {
                let _ = writeln!(report, "deleted {name}");
                Handled::Deleted
            }
            Err(e) => {
                outcome.kept += 1;
                let _ = writeln!(
                    report,
                    "kept {name}: its records were published but the message could not be \
                     deleted ({}); it comes back, and its records are published again",
                    DisplayErrorContext(e)
                );
                Handled::Left
            }
        }
    }

    /// Without this, a message left in the queue would be out of reach of the next run until
    /// its visibility timeout passed.
    async fn make_visible(&self, id: &str, handle: &str, report: &mut dyn Write) {
        let changed = self
            .sqs
            .change_message_visibility()
            .queue_url(self.url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await;
        if let Err(e) = changed {
            let _ = writeln!(
                report,
                "message {id} stays invisible for up to {VISIBILITY_TIMEOUT_SECS} s: {}",
                DisplayErrorContext(e)
            );
        }
    }
}

/// `scan` without the records whose envelope an earlier message of this run published, and
/// how many those were.
fn without_published(
    scan: Scan,
    published: &HashSet<String>,
    report: &mut dyn Write,
) -> (Scan, usize) {
    let mut repeated = 0;
    let records = scan
        .records
        .into_iter()
        .filter(|found| match found {
            Ok(record) if published.contains(&record.envelope) => {
                repeated += 1;
                let _ = writeln!(
                    report,
                    "repeated {}: the same envelope as a record of an earlier message, \
                     published once",
                    record.origin
                );
                false
            }
            _ => true,
        })
        .collect();
    let scan = Scan {
        records,
        skipped: scan.skipped,
    };
    (scan, repeated)
}

fn add(total: &mut Summary, more: Summary) {
    total.replayed += more.replayed;
    total.failed += more.failed;
    total.repeated += more.repeated;
    total.skipped += more.skipped;
}

/// The last part of a queue URL: enough to tell messages apart in the report.
fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_exception_webhook::record_source::{Origin, Record};

    #[test]
    fn a_queue_is_named_by_the_end_of_its_url() {
        assert_eq!(
            queue_name("https://sqs.us-east-1.amazonaws.com/123456789012/redrive-dlq"),
            "redrive-dlq"
        );
        assert_eq!(queue_name("http://localhost:5000/123/q/"), "q");
    }

    fn record(envelope: &str) -> Result<Record, record_source::Unreadable> {
        Ok(Record {
            origin: Origin {
                input: "m".into(),
                line: 1,
            },
            envelope: envelope.into(),
            topic_arn: None,
        })
    }

    #[test]
    fn records_published_from_an_earlier_message_are_left_out() {
        let scan = Scan {
            records: vec![record("{\"a\":1}"), record("{\"b\":2}")],
            skipped: 3,
        };
        let published = HashSet::from(["{\"a\":1}".to_owned()]);
        let mut report = Vec::new();
        let (left, repeated) = without_published(scan, &published, &mut report);
        assert_eq!(repeated, 1);
        assert_eq!(left.skipped, 3);
        assert_eq!(left.records, vec![record("{\"b\":2}")]);
        assert!(
            String::from_utf8(report)
                .unwrap()
                .starts_with("repeated m:1")
        );
    }
}
