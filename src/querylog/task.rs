//! Starting and stopping the query log: the tap the handler fills, and the thread that drains
//! it into the file or to the dnstap collector. `app.rs` hands the [`LogTap`] to the handler
//! and keeps the [`QueryLogTask`]; dropping it stops the thread after it wrote what was left.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::ClientShown;
use super::collector::Sender;
use super::dnstap::Encoder;
use super::file::FileWriter;
use super::report::Report;
use super::settings::{Output, QueryLogConfig, QueryLogConfigError};
use crate::dns::record::{lower_thread_priority, LogTap, Tap};
use crate::metrics::Metrics;

/// Why the query log could not start.
#[derive(Debug, thiserror::Error)]
pub enum QueryLogError {
    #[error(transparent)]
    Config(#[from] QueryLogConfigError),
    #[error("query_log.file {path}: cannot open it for appending: {error}")]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("query log: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// How long a stopping server waits for the writer to write what is queued.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The query log's writer thread; stopped when dropped, and joined unless it is stuck (a disk
/// or collector that does not answer) past [`STOP_WAIT`]: a stopping server never hangs on it.
pub struct QueryLogTask {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for QueryLogTask {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let until = Instant::now() + STOP_WAIT;
        while !thread.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!(
                "query log: the writer did not stop within 5 s; records still queued are lost"
            );
        }
    }
}

/// Starts the query log `config` asks for: `None` when it is off. Relative paths start at
/// `base`; `host` is the dnstap identity unless the config names one.
pub fn start(
    config: &QueryLogConfig,
    base: &Path,
    host: &str,
    metrics: &Metrics,
) -> Result<Option<(LogTap, QueryLogTask)>, QueryLogError> {
    let Some(settings) = config.settings(base, host)? else {
        return Ok(None);
    };
    if let ClientShown::Hash(key) = &settings.client {
        if !key.is_lasting() {
            tracing::warn!(
                "query_log: client = \"hash\" without hash_key_file: the key is new at every \
                 start, so a client's hashes do not link across restarts"
            );
        }
    }
    let described = settings.describe();
    let tap = Tap::new(
        settings.queue,
        metrics.query_log_dropped.with_label_values(&["full"]),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (drain, stopped) = (tap.clone(), stop.clone());
    let (messages, thread) = match settings.output {
        Output::File(file) => {
            let path = file.path.clone();
            let writer = FileWriter::open(file, settings.client, Report::new(metrics, "file"))
                .map_err(|error| QueryLogError::Open { path, error })?;
            let thread = std::thread::Builder::new()
                .name("cordon-querylog".into())
                .spawn(move || {
                    lower_thread_priority();
                    writer.run(drain, stopped)
                });
            (false, thread)
        }
        Output::Dnstap(dnstap) => {
            let encoder = Encoder::new(
                dnstap.identity.clone().into_bytes(),
                dnstap.version.clone().into_bytes(),
                settings.client,
            );
            let connected = metrics.dnstap_connected.with_label_values::<&str>(&[]);
            let report = Report::new(metrics, "dnstap");
            let sender = Sender::new(dnstap, encoder, report, connected);
            let thread = std::thread::Builder::new()
                .name("cordon-dnstap".into())
                .spawn(move || {
                    lower_thread_priority();
                    sender.run(drain, stopped)
                });
            (true, thread)
        }
    };
    let thread = thread.map_err(QueryLogError::Thread)?;
    tracing::info!("query log: {described}");
    let log = LogTap {
        mode: settings.mode,
        tap,
        messages,
    };
    let task = QueryLogTask {
        stop,
        thread: Some(thread),
    };
    Ok(Some((log, task)))
}
