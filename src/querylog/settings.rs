//! `[query_log]` of the config file: which queries are logged, how the client is shown, and
//! the JSON-lines file they go to; checked with the config ([`QueryLogConfig::check`]) and made
//! ready at start ([`QueryLogConfig::settings`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::client::{ClientShown, HashKey};
use crate::dns::record::LogMode;

/// `[query_log]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryLogConfig {
    /// `off` (the default), `blocked` or `all`.
    pub mode: ModeSetting,
    /// How the client appears: `address`, `hash` (keyed) or `none`.
    pub client: ClientSetting,
    /// client = "hash": a file holding the secret key (at least 16 bytes); a random key per
    /// start when unset.
    pub hash_key_file: PathBuf,
    /// The file, relative to the config's directory.
    pub file: PathBuf,
    /// The size (MiB, fractions allowed) at which the file is rotated.
    pub max_size_mb: f64,
    /// Rotated files kept (`file.1` .. `file.N`).
    pub keep: usize,
    /// Records waiting for the writer; past this, new ones are dropped and counted.
    pub queue: usize,
}

impl Default for QueryLogConfig {
    fn default() -> Self {
        QueryLogConfig {
            mode: ModeSetting::Off,
            client: ClientSetting::Address,
            hash_key_file: PathBuf::new(),
            file: PathBuf::new(),
            max_size_mb: 100.0,
            keep: 5,
            queue: 65_536,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeSetting {
    Off,
    Blocked,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSetting {
    Address,
    Hash,
    None,
}

/// The query log, ready to start.
pub struct Settings {
    pub mode: LogMode,
    pub client: ClientShown,
    pub queue: usize,
    pub file: FileSettings,
}

/// A JSON-lines file rotated by size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSettings {
    pub path: PathBuf,
    /// Bytes; a file is rotated before a line would take it past this.
    pub max_size: u64,
    /// Rotated files kept.
    pub keep: usize,
}

/// A `[query_log]` that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum QueryLogConfigError {
    #[error("query_log.file: required (where the JSON lines go)")]
    NoFile,
    #[error("query_log.max_size_mb {0}: must be above 0")]
    MaxSize(f64),
    #[error("query_log.queue must be above 0")]
    Queue,
    #[error("query_log.hash_key_file is only for client = \"hash\"")]
    KeyWithoutHash,
    #[error("query_log.hash_key_file {path}: {error}")]
    KeyFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("query_log.hash_key_file {0}: fewer than 16 bytes; write a long random key (openssl rand -hex 32)")]
    ShortKey(PathBuf),
}

/// The shortest hash key accepted, in bytes.
const MIN_KEY: usize = 16;

impl QueryLogConfig {
    pub fn enabled(&self) -> bool {
        self.mode != ModeSetting::Off
    }

    /// Checks what can be checked without reading files: with `mode = "off"`, nothing.
    pub fn check(&self) -> Result<(), QueryLogConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if self.queue == 0 {
            return Err(QueryLogConfigError::Queue);
        }
        if self.client != ClientSetting::Hash && !self.hash_key_file.as_os_str().is_empty() {
            return Err(QueryLogConfigError::KeyWithoutHash);
        }
        if self.file.as_os_str().is_empty() {
            return Err(QueryLogConfigError::NoFile);
        }
        if !(self.max_size_mb.is_finite() && self.max_size_mb > 0.0) {
            return Err(QueryLogConfigError::MaxSize(self.max_size_mb));
        }
        Ok(())
    }

    /// The query log ready to start, its key file read and paths resolved against `base`;
    /// `None` when it is off.
    pub fn settings(&self, base: &Path) -> Result<Option<Settings>, QueryLogConfigError> {
        self.check()?;
        let mode = match self.mode {
            ModeSetting::Off => return Ok(None),
            ModeSetting::Blocked => LogMode::Blocked,
            ModeSetting::All => LogMode::All,
        };
        let resolve = |p: &Path| match p.is_absolute() {
            true => p.to_path_buf(),
            false => base.join(p),
        };
        let client = match self.client {
            ClientSetting::Address => ClientShown::Address,
            ClientSetting::None => ClientShown::Hidden,
            ClientSetting::Hash if self.hash_key_file.as_os_str().is_empty() => {
                ClientShown::Hash(HashKey::random())
            }
            ClientSetting::Hash => {
                let path = resolve(&self.hash_key_file);
                let key = std::fs::read(&path).map_err(|error| QueryLogConfigError::KeyFile {
                    path: path.clone(),
                    error,
                })?;
                let key = key.trim_ascii();
                if key.len() < MIN_KEY {
                    return Err(QueryLogConfigError::ShortKey(path));
                }
                ClientShown::Hash(HashKey::new(key))
            }
        };
        let file = FileSettings {
            path: resolve(&self.file),
            max_size: ((self.max_size_mb * 1_048_576.0) as u64).max(1),
            keep: self.keep,
        };
        Ok(Some(Settings {
            mode,
            client,
            queue: self.queue,
            file,
        }))
    }
}

impl Settings {
    /// How `cordon check` and the start line describe it.
    pub fn describe(&self) -> String {
        let which = match self.mode {
            LogMode::Blocked => "blocked queries",
            LogMode::All => "all queries",
        };
        let client = match &self.client {
            ClientShown::Address => "client addresses",
            ClientShown::Hash(key) if key.is_lasting() => "clients as keyed hashes",
            ClientShown::Hash(_) => "clients as keyed hashes (a new key each start)",
            ClientShown::Hidden => "no clients",
        };
        let f = &self.file;
        format!(
            "{which} with {client}, JSON lines to {} (rotated at {} bytes, {} kept)",
            f.path.display(),
            f.max_size,
            f.keep
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> QueryLogConfig {
        toml::from_str(text).unwrap()
    }

    fn problem(text: &str) -> String {
        parse(text).check().unwrap_err().to_string()
    }

    #[test]
    fn off_by_default_and_off_checks_nothing() {
        let config = QueryLogConfig::default();
        assert!(!config.enabled());
        assert!(config.settings(Path::new("/etc")).unwrap().is_none());
        // an unusable key is no error while the log is off
        assert!(parse("file = \"\"\nqueue = 0").check().is_ok());
    }

    #[test]
    fn mistakes_are_named() {
        assert!(problem("mode = \"all\"").contains("query_log.file: required"));
        assert!(
            problem("mode = \"all\"\nfile = \"q.log\"\nmax_size_mb = 0").contains("max_size_mb 0")
        );
        assert!(problem("mode = \"all\"\nfile = \"q.log\"\nqueue = 0").contains("queue"));
        let key = "mode = \"all\"\nfile = \"q.log\"\nhash_key_file = \"k\"";
        assert!(problem(key).contains("only for client = \"hash\""));
        assert!(toml::from_str::<QueryLogConfig>("mode = \"some\"").is_err());
        assert!(toml::from_str::<QueryLogConfig>("colour = 1").is_err());
    }

    #[test]
    fn settings_resolve_paths_and_defaults() {
        let config = parse("mode = \"blocked\"\nfile = \"q.log\"\nmax_size_mb = 0.5\nkeep = 2");
        let settings = config.settings(Path::new("/etc/cordon")).unwrap().unwrap();
        assert_eq!(settings.mode, LogMode::Blocked);
        assert!(matches!(settings.client, ClientShown::Address));
        let file = settings.file;
        assert_eq!(file.path, Path::new("/etc/cordon/q.log"));
        assert_eq!((file.max_size, file.keep), (524_288, 2));
    }

    #[test]
    fn a_hash_key_is_read_and_must_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short"), "abc\n").unwrap();
        std::fs::write(dir.path().join("good"), "0123456789abcdef0123\n").unwrap();
        let text = |key: &str| {
            format!(
                "mode = \"all\"\nfile = \"q.log\"\nclient = \"hash\"\nhash_key_file = \"{key}\""
            )
        };
        let short = parse(&text("short")).settings(dir.path());
        assert!(matches!(short, Err(QueryLogConfigError::ShortKey(_))));
        let missing = parse(&text("missing")).settings(dir.path());
        assert!(matches!(missing, Err(QueryLogConfigError::KeyFile { .. })));
        let good = parse(&text("good")).settings(dir.path()).unwrap().unwrap();
        assert!(matches!(&good.client, ClientShown::Hash(k) if k.is_lasting()));
    }
}
