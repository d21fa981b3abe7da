//! UT1-style category trees, as the `[[ut1]]` entries of categories.toml name them: one folder
//! per category, each holding a `domains` file that is read like any other list.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;

use super::entry::{ListEntry, ListStats};
use super::list::parse_reader;

/// Loads a UT1-style directory: one folder per category, each holding a `domains` file. Only the
/// folders named in `mapping` are read, and each entry is handed to `sink` with its folder's
/// handle. Every folder is checked before any is read, so a missing one fails the whole load
/// (with `NotFound` naming the path) rather than leaving the caller half a policy.
pub fn load_ut1_dir<T: Copy>(
    root: &Path,
    mapping: &BTreeMap<String, T>,
    mut sink: impl FnMut(&T, ListEntry),
) -> io::Result<ListStats> {
    let files: Vec<_> = mapping
        .iter()
        .map(|(folder, handle)| (root.join(folder).join("domains"), handle))
        .collect();
    for (path, _) in &files {
        std::fs::metadata(path).map_err(|e| with_path(e, path))?;
    }
    let mut total = ListStats::default();
    for (path, handle) in &files {
        let file = File::open(path).map_err(|e| with_path(e, path))?;
        let stats = parse_reader(BufReader::new(file), |entry| sink(handle, entry))
            .map_err(|e| with_path(e, path))?;
        total.merge(&stats);
    }
    Ok(total)
}

fn with_path(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::super::entry::SkipReason;
    use super::super::testing::skipped;
    use super::*;

    fn unique_temp_dir(tag: &str) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        std::env::temp_dir().join(format!(
            "cordon-{tag}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn write_category(root: &Path, folder: &str, domains: &str) {
        let dir = root.join(folder);
        std::fs::create_dir_all(&dir).expect("create category folder");
        std::fs::write(dir.join("domains"), domains).expect("write domains file");
    }

    #[test]
    fn ut1_directory() {
        let root = unique_temp_dir("ut1");
        write_category(&root, "adult", "porn.example\nXXX.example\n1.2.3.4\n");
        write_category(&root, "gambling", "casino.example\r\nbet.example\r\n");
        write_category(&root, "unmapped", "never.example\n");
        let mapping = BTreeMap::from([("adult".to_string(), 24u8), ("gambling".to_string(), 28)]);
        let mut got = Vec::new();
        let stats = load_ut1_dir(&root, &mapping, |&id, entry| got.push((id, entry.domain)));
        let _ = std::fs::remove_dir_all(&root);
        let stats = stats.expect("all mapped folders exist");
        assert_eq!(
            got,
            [
                (24, "porn.example".to_string()),
                (24, "xxx.example".to_string()),
                (28, "casino.example".to_string()),
                (28, "bet.example".to_string()),
            ]
        );
        assert_eq!(stats.lines, 5);
        assert_eq!(stats.entries, 4);
        assert_eq!(skipped(&stats, SkipReason::IpAddress), 1);
    }

    #[test]
    fn ut1_missing_folder_fails_before_loading() {
        let root = unique_temp_dir("ut1-missing");
        write_category(&root, "adult", "porn.example\n");
        let mapping = BTreeMap::from([("adult".to_string(), 1u8), ("gone".to_string(), 2)]);
        let mut calls = 0;
        let result = load_ut1_dir(&root, &mapping, |_, _| calls += 1);
        let _ = std::fs::remove_dir_all(&root);
        let error = result.expect_err("folder `gone` does not exist");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(
            error.to_string().contains("gone/domains"),
            "message should name the path: {error}"
        );
        assert_eq!(calls, 0);
    }
}
