//! How the query log's writers report trouble: every failure counted by kind
//! (`cordon_query_log_errors_total`), records written and lost counted, and a warning logged at
//! most once a minute while a failure lasts (a full disk or a dead collector must not flood the
//! log), with how many were held back.

use std::fmt::Display;
use std::time::{Duration, Instant};

use prometheus::IntCounter;

use crate::metrics::Metrics;

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A write to the file or to the collector (a full disk, a timeout).
    Write,
    /// The file could not be rotated.
    Rotate,
    /// The collector could not be reached, or refused the handshake.
    Connect,
    /// The collector closed the connection.
    Closed,
}

impl Failure {
    const ALL: [Failure; 4] = [
        Failure::Write,
        Failure::Rotate,
        Failure::Connect,
        Failure::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Write => "write",
            Failure::Rotate => "rotate",
            Failure::Connect => "connect",
            Failure::Closed => "closed",
        }
    }
}

/// How often a lasting failure is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// One writer's counters and its throttled warnings.
pub struct Report {
    /// Records written (`output` bound).
    pub written: IntCounter,
    /// Records whose write failed.
    pub lost: IntCounter,
    failures: [IntCounter; 4],
    last_warning: Option<Instant>,
    held_back: u64,
}

impl Report {
    /// The counters of `output` (`file`, `dnstap`), every series exported at 0 from the start.
    pub fn new(metrics: &Metrics, output: &str) -> Report {
        let m = metrics;
        Report {
            written: m.query_log_written.with_label_values(&[output]),
            lost: m.query_log_dropped.with_label_values(&["failed"]),
            failures: Failure::ALL.map(|f| m.query_log_errors.with_label_values(&[f.as_str()])),
            last_warning: None,
            held_back: 0,
        }
    }

    /// Counts a failure and warns, unless a warning went out less than a minute ago.
    pub fn failed(&mut self, failure: Failure, what: impl Display) {
        self.failures[failure as usize].inc();
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            self.held_back += 1;
            return;
        }
        let more = match std::mem::take(&mut self.held_back) {
            0 => String::new(),
            n => format!(" ({n} more failures in the last minute)"),
        };
        tracing::warn!("query log: {what}{more}");
        self.last_warning = Some(now);
    }

    /// Says that a failure is over (logged, if it was), so that the next one is logged at once.
    pub fn recovered(&mut self, what: impl Display) {
        if self.last_warning.take().is_some() {
            self.held_back = 0;
            tracing::info!("query log: {what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_kind() {
        let metrics = Metrics::new();
        let mut report = Report::new(&metrics, "file");
        report.failed(Failure::Write, "disk full");
        report.failed(Failure::Write, "disk full");
        report.failed(Failure::Rotate, "cannot rename");
        let text = metrics.render();
        assert!(
            text.contains("cordon_query_log_errors_total{kind=\"write\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("cordon_query_log_errors_total{kind=\"rotate\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cordon_query_log_errors_total{kind=\"connect\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("cordon_query_log_written_total{output=\"file\"} 0"),
            "{text}"
        );
        assert_eq!(report.held_back, 2, "one warning a minute");
        report.recovered("writing again");
        assert_eq!((report.held_back, report.last_warning), (0, None));
    }
}
