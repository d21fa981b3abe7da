//! Where a category's list comes from: a file in the policy directory, or a URL fetched off the
//! query path (`src/lists/`) and read here from its cached copy (`cache.rs`).
//!
//! In categories.toml an entry of `lists` is a string (a path, or an `https://`/`http://` URL
//! refreshed every `lists.refresh_s`) or a table `{ url = "https://…", refresh_s = 900 }` that
//! gives the list its own interval.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// One entry of a category's `lists`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListSource {
    /// Relative to the policy directory.
    File(String),
    /// Anything with `://`; whether the scheme is one Cordon fetches is checked by the loader.
    Url {
        url: String,
        /// The list's own refresh interval, in seconds; `lists.refresh_s` when absent.
        refresh_s: Option<u64>,
    },
}

impl ListSource {
    fn from_text(text: &str) -> ListSource {
        if text.contains("://") {
            ListSource::Url {
                url: text.to_string(),
                refresh_s: None,
            }
        } else {
            ListSource::File(text.to_string())
        }
    }
}

/// The schemes Cordon fetches.
pub fn fetchable(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("https://") && url.len() > 8)
        || (lower.starts_with("http://") && url.len() > 7)
}

impl<'de> Deserialize<'de> for ListSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Source;
        impl<'de> Visitor<'de> for Source {
            type Value = ListSource;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file path, a URL, or { url = \"https://…\", refresh_s = N }")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ListSource, E> {
                Ok(ListSource::from_text(text))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListSource, A::Error> {
                let (mut url, mut refresh_s) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "url" => url = Some(map.next_value::<String>()?),
                        "refresh_s" => refresh_s = Some(map.next_value::<u64>()?),
                        other => {
                            return Err(de::Error::unknown_field(other, &["url", "refresh_s"]))
                        }
                    }
                }
                let url = url.ok_or_else(|| de::Error::missing_field("url"))?;
                Ok(ListSource::Url { url, refresh_s })
            }
        }
        deserializer.deserialize_any(Source)
    }
}

/// A list fetched by URL, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlList {
    pub url: String,
    /// Its own interval; the default (`lists.refresh_s`) when `None`.
    pub refresh: Option<Duration>,
}

/// Only what the fetcher needs of categories.toml; everything else is the loader's to check.
#[derive(Deserialize, Default)]
struct Lenient {
    #[serde(default)]
    category: Vec<LenientCategory>,
}

#[derive(Deserialize)]
struct LenientCategory {
    #[serde(default)]
    lists: Vec<ListSource>,
}

/// Every list categories.toml names by a URL Cordon fetches, once each (the shortest interval
/// when a URL is named twice), in the order written.
pub fn url_lists(policies: &Path) -> Result<Vec<UrlList>, String> {
    let path = policies.join("categories.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: Lenient =
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message().trim()))?;
    let mut found: Vec<UrlList> = Vec::new();
    for source in file.category.into_iter().flat_map(|c| c.lists) {
        let ListSource::Url { url, refresh_s } = source else {
            continue;
        };
        if !fetchable(&url) || refresh_s == Some(0) {
            continue;
        }
        let refresh = refresh_s.map(Duration::from_secs);
        match found.iter_mut().find(|l| l.url == url) {
            Some(seen) => {
                seen.refresh = match (seen.refresh, refresh) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            None => found.push(UrlList { url, refresh }),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Lists {
        lists: Vec<ListSource>,
    }

    #[test]
    fn a_list_is_a_path_a_url_or_a_table() {
        let parsed: Lists = toml::from_str(
            "lists = [\"lists/a.txt\", \"https://feeds.example/b.txt\", \
             { url = \"https://feeds.example/c.txt\", refresh_s = 900 }]",
        )
        .unwrap();
        assert_eq!(
            parsed.lists,
            [
                ListSource::File("lists/a.txt".into()),
                ListSource::Url {
                    url: "https://feeds.example/b.txt".into(),
                    refresh_s: None
                },
                ListSource::Url {
                    url: "https://feeds.example/c.txt".into(),
                    refresh_s: Some(900)
                },
            ]
        );
        for (text, wanted) in [
            (
                "lists = [{ url = \"https://x.example/\", every = 3 }]",
                "unknown field `every`",
            ),
            ("lists = [{ refresh_s = 3 }]", "missing field `url`"),
            (
                "lists = [{ url = \"https://x.example/\", refresh_s = -1 }]",
                "invalid value",
            ),
            ("lists = [3]", "a file path, a URL"),
        ] {
            let error = toml::from_str::<Lists>(text).err().expect(text).to_string();
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }

    #[test]
    fn only_http_and_https_are_fetched() {
        assert!(fetchable("https://feeds.example/list.txt"));
        assert!(fetchable("HTTP://feeds.example/list.txt"));
        assert!(!fetchable("ftp://feeds.example/list.txt"));
        assert!(!fetchable("https://"));
        assert!(!fetchable("file:///etc/hosts"));
    }

    #[test]
    fn the_fetcher_reads_every_url_once_with_the_shortest_interval() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("categories.toml"),
            "[[category]]\nid = 0\nname = \"a\"\nlists = [\"lists/a.txt\", \"https://x.example/1\", \
             { url = \"https://x.example/2\", refresh_s = 60 }]\n\
             [[category]]\nid = 1\nname = \"b\"\nlists = [{ url = \"https://x.example/2\", refresh_s = 30 }, \
             \"ftp://x.example/3\"]\n",
        )
        .unwrap();
        let found = url_lists(dir.path()).unwrap();
        assert_eq!(
            found,
            [
                UrlList {
                    url: "https://x.example/1".into(),
                    refresh: None
                },
                UrlList {
                    url: "https://x.example/2".into(),
                    refresh: Some(Duration::from_secs(30))
                },
            ]
        );
    }
}
