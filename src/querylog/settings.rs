//! `[query_log]` of the config file: which queries are logged, how the client is shown, and
//! where records go (a JSON-lines file or a dnstap collector); checked with the config
//! ([`QueryLogConfig::check`]) and made ready at start ([`QueryLogConfig::settings`]).

use std::net::SocketAddr;
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
    /// `file` (JSON lines) or `dnstap`.
    pub output: OutputSetting,
    /// output = "file": the file, relative to the config's directory.
    pub file: PathBuf,
    /// output = "file": the size (MiB, fractions allowed) at which the file is rotated.
    pub max_size_mb: f64,
    /// output = "file": rotated files kept (`file.1` .. `file.N`).
    pub keep: usize,
    /// Records waiting for the writer; past this, new ones are dropped and counted.
    pub queue: usize,
    /// `[query_log.dnstap]`: the collector.
    pub dnstap: DnstapConfig,
}

impl Default for QueryLogConfig {
    fn default() -> Self {
        QueryLogConfig {
            mode: ModeSetting::Off,
            client: ClientSetting::Address,
            hash_key_file: PathBuf::new(),
            output: OutputSetting::File,
            file: PathBuf::new(),
            max_size_mb: 100.0,
            keep: 5,
            queue: 65_536,
            dnstap: DnstapConfig::default(),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputSetting {
    File,
    Dnstap,
}

/// `[query_log.dnstap]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnstapConfig {
    /// The collector's Unix socket.
    pub unix: PathBuf,
    /// Or its TCP address, `IP:PORT`.
    pub tcp: String,
    /// The `identity` of every frame; the host name when empty.
    pub identity: String,
    /// The `version` of every frame; `cordon <version>` when empty.
    pub version: String,
}

/// The query log, ready to start.
pub struct Settings {
    pub mode: LogMode,
    pub client: ClientShown,
    pub queue: usize,
    pub output: Output,
}

pub enum Output {
    File(FileSettings),
    Dnstap(DnstapSettings),
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnstapSettings {
    pub collector: Collector,
    pub identity: String,
    pub version: String,
}

/// Where the dnstap collector listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collector {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl std::fmt::Display for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Collector::Unix(path) => write!(f, "unix:{}", path.display()),
            Collector::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// A `[query_log]` that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum QueryLogConfigError {
    #[error("query_log.file: required with output = \"file\" (where the JSON lines go)")]
    NoFile,
    #[error("query_log.max_size_mb {0}: must be above 0")]
    MaxSize(f64),
    #[error("query_log.queue must be above 0")]
    Queue,
    #[error("query_log.keep {0}: at most {MAX_KEEP}")]
    Keep(usize),
    #[error("query_log.dnstap: give the collector, unix = \"/path/to.sock\" or tcp = \"IP:PORT\"")]
    NoCollector,
    #[error("query_log.dnstap: unix and tcp are both set; give one collector")]
    TwoCollectors,
    #[error("query_log.dnstap.tcp \"{0}\" is not IP:PORT")]
    Tcp(String),
    #[error("query_log.{key} is only for output = \"{output}\"")]
    OtherOutput {
        key: &'static str,
        output: &'static str,
    },
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
/// The most rotated files kept (each rotation renames them all).
const MAX_KEEP: usize = 1000;

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
        match self.output {
            OutputSetting::File => {
                if self.file.as_os_str().is_empty() {
                    return Err(QueryLogConfigError::NoFile);
                }
                if !(self.max_size_mb.is_finite() && self.max_size_mb > 0.0) {
                    return Err(QueryLogConfigError::MaxSize(self.max_size_mb));
                }
                if self.keep > MAX_KEEP {
                    return Err(QueryLogConfigError::Keep(self.keep));
                }
                if self.dnstap != DnstapConfig::default() {
                    return Err(QueryLogConfigError::OtherOutput {
                        key: "dnstap",
                        output: "dnstap",
                    });
                }
            }
            OutputSetting::Dnstap => {
                if !self.file.as_os_str().is_empty() {
                    return Err(QueryLogConfigError::OtherOutput {
                        key: "file",
                        output: "file",
                    });
                }
                self.collector()?;
            }
        }
        Ok(())
    }

    fn collector(&self) -> Result<Collector, QueryLogConfigError> {
        let d = &self.dnstap;
        match (d.unix.as_os_str().is_empty(), d.tcp.trim().is_empty()) {
            (true, true) => Err(QueryLogConfigError::NoCollector),
            (false, false) => Err(QueryLogConfigError::TwoCollectors),
            (false, true) => Ok(Collector::Unix(d.unix.clone())),
            (true, false) => d
                .tcp
                .trim()
                .parse()
                .map(Collector::Tcp)
                .map_err(|_| QueryLogConfigError::Tcp(d.tcp.clone())),
        }
    }

    /// The query log ready to start, its key file read and paths resolved against `base`;
    /// `None` when it is off. `host` is the default dnstap identity.
    pub fn settings(
        &self,
        base: &Path,
        host: &str,
    ) -> Result<Option<Settings>, QueryLogConfigError> {
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
        let output = match self.output {
            OutputSetting::File => Output::File(FileSettings {
                path: resolve(&self.file),
                max_size: ((self.max_size_mb * 1_048_576.0) as u64).max(1),
                keep: self.keep,
            }),
            OutputSetting::Dnstap => {
                let d = &self.dnstap;
                Output::Dnstap(DnstapSettings {
                    collector: match self.collector()? {
                        Collector::Unix(p) => Collector::Unix(resolve(&p)),
                        tcp => tcp,
                    },
                    identity: match d.identity.is_empty() {
                        true => host.to_string(),
                        false => d.identity.clone(),
                    },
                    version: match d.version.is_empty() {
                        true => format!("cordon {}", env!("CARGO_PKG_VERSION")),
                        false => d.version.clone(),
                    },
                })
            }
        };
        Ok(Some(Settings {
            mode,
            client,
            queue: self.queue,
            output,
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
        let to = match &self.output {
            Output::File(f) => format!(
                "JSON lines to {} (rotated at {} bytes, {} kept)",
                f.path.display(),
                f.max_size,
                f.keep
            ),
            Output::Dnstap(d) => format!("dnstap to {}", d.collector),
        };
        format!("{which} with {client}, {to}")
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
        assert!(config.settings(Path::new("/etc"), "h").unwrap().is_none());
        // an unused file key is no error while the log is off
        assert!(parse("file = \"\"\noutput = \"dnstap\"").check().is_ok());
    }

    #[test]
    fn mistakes_are_named() {
        assert!(problem("mode = \"all\"").contains("query_log.file: required"));
        assert!(
            problem("mode = \"all\"\nfile = \"q.log\"\nmax_size_mb = 0").contains("max_size_mb 0")
        );
        assert!(problem("mode = \"all\"\nfile = \"q.log\"\nqueue = 0").contains("queue"));
        assert!(problem("mode = \"all\"\nfile = \"q.log\"\nkeep = 5000").contains("at most 1000"));
        assert!(problem("mode = \"all\"\noutput = \"dnstap\"").contains("give the collector"));
        let both =
            "mode = \"all\"\noutput = \"dnstap\"\n[dnstap]\nunix = \"/s\"\ntcp = \"127.0.0.1:1\"";
        assert!(problem(both).contains("both set"));
        let bad = "mode = \"all\"\noutput = \"dnstap\"\n[dnstap]\ntcp = \"localhost\"";
        assert!(problem(bad).contains("not IP:PORT"));
        let stray = "mode = \"all\"\nfile = \"q.log\"\n[dnstap]\nunix = \"/s\"";
        assert!(problem(stray).contains("only for output = \"dnstap\""));
        let key = "mode = \"all\"\nfile = \"q.log\"\nhash_key_file = \"k\"";
        assert!(problem(key).contains("only for client = \"hash\""));
        assert!(toml::from_str::<QueryLogConfig>("mode = \"some\"").is_err());
        assert!(toml::from_str::<QueryLogConfig>("colour = 1").is_err());
    }

    #[test]
    fn settings_resolve_paths_and_defaults() {
        let config = parse("mode = \"blocked\"\nfile = \"q.log\"\nmax_size_mb = 0.5\nkeep = 2");
        let settings = config
            .settings(Path::new("/etc/cordon"), "h")
            .unwrap()
            .unwrap();
        assert_eq!(settings.mode, LogMode::Blocked);
        assert!(matches!(settings.client, ClientShown::Address));
        let Output::File(file) = settings.output else {
            panic!("a file")
        };
        assert_eq!(file.path, Path::new("/etc/cordon/q.log"));
        assert_eq!((file.max_size, file.keep), (524_288, 2));

        let config =
            parse("mode = \"all\"\noutput = \"dnstap\"\n[dnstap]\ntcp = \"127.0.0.1:6000\"");
        let settings = config
            .settings(Path::new("/etc"), "node-a")
            .unwrap()
            .unwrap();
        let Output::Dnstap(d) = settings.output else {
            panic!("dnstap")
        };
        assert_eq!(
            d.collector,
            Collector::Tcp("127.0.0.1:6000".parse().unwrap())
        );
        assert_eq!(d.identity, "node-a");
        assert_eq!(d.version, format!("cordon {}", env!("CARGO_PKG_VERSION")));
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
        let short = parse(&text("short")).settings(dir.path(), "h");
        assert!(matches!(short, Err(QueryLogConfigError::ShortKey(_))));
        let missing = parse(&text("missing")).settings(dir.path(), "h");
        assert!(matches!(missing, Err(QueryLogConfigError::KeyFile { .. })));
        let good = parse(&text("good"))
            .settings(dir.path(), "h")
            .unwrap()
            .unwrap();
        assert!(matches!(&good.client, ClientShown::Hash(k) if k.is_lasting()));
    }
}
