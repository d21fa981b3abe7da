//! The query log as a JSON-lines file, written by a thread of its own: it drains the tap every
//! 100 ms, appends each batch's lines in one write, and rotates by size (`file` becomes
//! `file.1`, `file.1` becomes `file.2`, ... up to `keep`; the oldest goes). A write that fails
//! (a full disk, a removed directory) is counted, its records are counted as lost, what it left
//! half-written is cut off, and the next batch tries again: DNS never waits for the disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::client::ClientShown;
use super::json::write_line;
use super::report::{Failure, Report};
use super::settings::FileSettings;
use crate::dns::record::{QueryRecord, Tap, Words};

/// How long the writer sleeps when the tap is empty.
const IDLE: Duration = Duration::from_millis(100);
/// Records taken from the tap at a time.
const BATCH: usize = 1024;

pub struct FileWriter {
    settings: FileSettings,
    client: ClientShown,
    report: Report,
    /// The file appended to; `None` after a failure, until the next batch opens it again.
    file: Option<File>,
    /// Its length, as far as this writer made it.
    size: u64,
    lines: Vec<u8>,
    words: Words,
}

impl FileWriter {
    /// Opens (or creates) the file, so that a path that cannot be written stops the start.
    pub fn open(
        settings: FileSettings,
        client: ClientShown,
        report: Report,
    ) -> std::io::Result<FileWriter> {
        let mut writer = FileWriter {
            settings,
            client,
            report,
            file: None,
            size: 0,
            lines: Vec::new(),
            words: Words::default(),
        };
        writer.file()?;
        Ok(writer)
    }

    /// Drains `tap` until `stop` is set, then writes what is left and returns.
    pub fn run(mut self, tap: Arc<Tap>, stop: Arc<AtomicBool>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let stopping = stop.load(Ordering::Acquire);
            batch.clear();
            if tap.take(BATCH, &mut batch) > 0 {
                self.write(&batch);
            } else if stopping {
                return;
            } else {
                std::thread::sleep(IDLE);
            }
        }
    }

    /// Appends the records' lines, rotating first whenever the next line would take the file
    /// past `max_size` (a single line larger than that gets a file of its own).
    pub fn write(&mut self, batch: &[QueryRecord]) {
        self.lines.clear();
        let mut ends = Vec::with_capacity(batch.len());
        for record in batch {
            write_line(record, &self.client, &mut self.words, &mut self.lines);
            ends.push(self.lines.len());
        }
        let lines = std::mem::take(&mut self.lines);
        let (mut chunk_start, mut chunk_records) = (0, 0);
        for (i, &end) in ends.iter().enumerate() {
            let line_start = if i == 0 { 0 } else { ends[i - 1] };
            let pending = (end - chunk_start) as u64;
            let something_before = self.size > 0 || line_start > chunk_start;
            if self.size + pending > self.settings.max_size && something_before {
                self.append(&lines[chunk_start..line_start], chunk_records);
                self.rotate();
                (chunk_start, chunk_records) = (line_start, 0);
            }
            chunk_records += 1;
        }
        self.append(&lines[chunk_start..], chunk_records);
        self.lines = lines;
    }

    fn file(&mut self) -> std::io::Result<&mut File> {
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.settings.path)?;
                self.size = file.metadata()?.len();
                file
            }
        };
        Ok(self.file.insert(file))
    }

    fn append(&mut self, bytes: &[u8], records: usize) {
        if bytes.is_empty() {
            return;
        }
        match self.file().and_then(|f| f.write_all(bytes)) {
            Ok(()) => {
                self.size += bytes.len() as u64;
                self.report.written.inc_by(records as u64);
                let path = self.settings.path.display();
                self.report.recovered(format_args!("writing {path} again"));
            }
            Err(error) => {
                // Cut off what the failed write left, so that the next line starts a line.
                if let Some(file) = self.file.take() {
                    let _ = file.set_len(self.size);
                }
                self.report.lost.inc_by(records as u64);
                let path = self.settings.path.display();
                self.report.failed(
                    Failure::Write,
                    format_args!("cannot write {path}: {error}; {records} records lost"),
                );
            }
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        match rotate(&self.settings.path, self.settings.keep) {
            Ok(()) => self.size = 0,
            Err(error) => {
                let path = self.settings.path.display();
                self.report.failed(
                    Failure::Rotate,
                    format_args!("cannot rotate {path}: {error}; appending to it"),
                );
            }
        }
    }
}

/// `path` with a number: `queries.log.2`.
pub fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Shifts `path.1` .. `path.(keep-1)` up by one (the old `path.keep` is replaced), then renames
/// `path` to `path.1`; with `keep` 0, removes `path`.
pub fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    let missing_ok = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    if keep == 0 {
        return missing_ok(std::fs::remove_file(path));
    }
    for n in (1..keep).rev() {
        missing_ok(std::fs::rename(numbered(path, n), numbered(path, n + 1)))?;
    }
    missing_ok(std::fs::rename(path, numbered(path, 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::querylog::json::tests::record;

    fn writer(path: &Path, max_size: u64, keep: usize, metrics: &Metrics) -> FileWriter {
        let settings = FileSettings {
            path: path.to_path_buf(),
            max_size,
            keep,
        };
        FileWriter::open(settings, ClientShown::Hidden, Report::new(metrics, "file")).unwrap()
    }

    fn line_count(path: &Path) -> usize {
        std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
    }

    #[test]
    fn lines_are_appended_and_the_file_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queries.log");
        let metrics = Metrics::new();
        let mut one = Vec::new();
        write_line(
            &record(),
            &ClientShown::Hidden,
            &mut Words::default(),
            &mut one,
        );
        let line = one.len() as u64;
        // three lines fit in a file, a fourth does not
        let mut w = writer(&path, 3 * line + line / 2, 2, &metrics);
        let records = vec![record(); 3];
        w.write(&records);
        assert_eq!(line_count(&path), 3);
        assert!(!numbered(&path, 1).exists(), "not rotated yet");
        w.write(&records[..1]);
        assert_eq!((line_count(&path), line_count(&numbered(&path, 1))), (1, 3));
        // one batch that spans three files: 2 more fill the file, 3 go to the next, 2 after
        w.write(&vec![record(); 7]);
        assert_eq!(line_count(&path), 2);
        assert_eq!(line_count(&numbered(&path, 1)), 3);
        assert_eq!(line_count(&numbered(&path, 2)), 3);
        assert!(!numbered(&path, 3).exists(), "keep = 2");
        for p in [path.clone(), numbered(&path, 1), numbered(&path, 2)] {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.len() as u64 <= 3 * line + line / 2, "{}", p.display());
            for l in text.lines() {
                serde_json::from_str::<serde_json::Value>(l).unwrap();
            }
        }
        assert_eq!(w.report.written.get(), 11);
    }

    #[test]
    fn a_line_larger_than_the_size_gets_a_file_of_its_own_and_keep_0_keeps_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.log");
        let metrics = Metrics::new();
        let mut w = writer(&path, 10, 0, &metrics);
        w.write(&vec![record(); 3]);
        assert_eq!(line_count(&path), 1);
        assert!(!numbered(&path, 1).exists());
        assert_eq!(w.report.written.get(), 3);
    }

    #[test]
    fn an_existing_file_is_appended_to_and_counts_toward_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.log");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let metrics = Metrics::new();
        let mut w = writer(&path, 1 << 20, 5, &metrics);
        w.write(&[record()]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"earlier\":true}\n{\"time\""), "{text}");
    }

    #[test]
    fn rotation_names_shift_up_and_the_oldest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.log");
        for (p, text) in [
            (path.clone(), "now"),
            (numbered(&path, 1), "one"),
            (numbered(&path, 2), "two"),
            (numbered(&path, 3), "three"),
        ] {
            std::fs::write(p, text).unwrap();
        }
        rotate(&path, 3).unwrap();
        assert!(!path.exists());
        let read = |n| std::fs::read_to_string(numbered(&path, n)).unwrap();
        assert_eq!(
            (read(1), read(2), read(3)),
            ("now".into(), "one".into(), "two".into())
        );
        // a gap (file.2 removed by hand) is fine: the order of the rest is kept
        std::fs::write(&path, "again").unwrap();
        std::fs::remove_file(numbered(&path, 2)).unwrap();
        rotate(&path, 3).unwrap();
        let all = (read(1), read(2), read(3));
        assert_eq!(all, ("again".into(), "now".into(), "two".into()));
        assert_eq!(
            numbered(Path::new("/var/log/q.jsonl"), 4),
            Path::new("/var/log/q.jsonl.4")
        );
    }

    #[test]
    fn a_full_disk_is_counted_and_the_writer_goes_on() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.log");
        std::os::unix::fs::symlink(full, &path).unwrap();
        let metrics = Metrics::new();
        let mut w = writer(&path, 1 << 20, 5, &metrics);
        w.write(&vec![record(); 4]);
        w.write(&vec![record(); 2]);
        assert_eq!(w.report.lost.get(), 6);
        assert_eq!(w.report.written.get(), 0);
        let text = metrics.render();
        assert!(
            text.contains("cordon_query_log_errors_total{kind=\"write\"} 2"),
            "{text}"
        );
        // the disk has room again: the next batch is written
        std::fs::remove_file(&path).unwrap();
        w.write(&[record()]);
        assert_eq!((w.report.written.get(), line_count(&path)), (1, 1));
    }
}
