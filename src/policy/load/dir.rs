//! The policy directory (categories.toml, services.toml, groups.toml, one file per policy),
//! read and checked as a whole: every error is reported as FILE:LINE, and nothing is built from
//! a directory that has one (contract 4).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::policy::categories::{CategoryDb, CategoryDbBuilder, CategoryId, CategorySet, Taxonomy};
use crate::policy::cidr;
use crate::policy::qname::{hash_dotted, QName};
use crate::policy::rules::{RuleKind, RuleSet};
use crate::policy::snapshot::{DefaultAction, Policy, ResponseMode};

use super::cache::{CacheMeta, ListCache};
use super::entry::ListStats;
use super::list::{parse_list, parse_reader};
use super::names;
use super::source::{fetchable, ListSource};
use super::ut1::load_ut1_dir;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileError {
    pub file: PathBuf,
    /// 1-based; absent when the problem is the file as a whole (missing, unreadable).
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a policy directory.
#[derive(Debug, Clone, thiserror::Error)]
pub struct PolicyErrors(pub Vec<FileError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A device group as groups.toml defines it, before it is joined with devices.
#[derive(Debug, Clone)]
pub struct GroupDef {
    pub name: String,
    pub priority: i64,
    pub policy: Arc<Policy>,
    pub uem_groups: Vec<String>,
    pub clients: Vec<ipnet::IpNet>,
    pub devices: Vec<String>,
}

/// A checked policy directory.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub dir: PathBuf,
    pub taxonomy: Arc<Taxonomy>,
    pub categories: Arc<CategoryDb>,
    /// Each list file that was read, with what it held and skipped.
    pub lists: Vec<(PathBuf, ListStats)>,
    /// Each list named by URL, read from its cached copy if there is one.
    pub urls: Vec<UrlListReport>,
    /// Ordered by priority, highest first.
    pub groups: Vec<GroupDef>,
    pub default_group: String,
    pub isolation_group: String,
    /// What is allowed yet weakens a policy (a default-block policy that leaves CNAME targets
    /// unchecked): `cordon check` prints them; they never stop a load.
    pub warnings: Vec<FileError>,
}

/// A list named by URL, as the load found it.
#[derive(Debug, Clone)]
pub struct UrlListReport {
    pub url: String,
    /// Its own refresh interval (`refresh_s` in categories.toml); the default when `None`.
    pub refresh: Option<Duration>,
    /// What the cache knows of it (the last fetch's failure too), if anything.
    pub meta: Option<CacheMeta>,
    /// What its cached copy held; `None` when there is no copy (the category gets nothing
    /// from this list until a fetch succeeds).
    pub stats: Option<ListStats>,
}

impl PolicySet {
    /// Reads and checks `dir`; lists named by URL are read from no cache (so have no copy).
    pub fn load(dir: &Path) -> Result<PolicySet, PolicyErrors> {
        PolicySet::load_with(dir, None)
    }

    /// Reads and checks `dir`, lists named by URL from their copies in `cache`.
    pub fn load_with(dir: &Path, cache: Option<&ListCache>) -> Result<PolicySet, PolicyErrors> {
        let mut loader = Loader {
            dir: dir.to_path_buf(),
            cache: cache.cloned(),
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let set = loader.load_all();
        match set {
            Some(set) if loader.errors.is_empty() => Ok(set),
            _ => Err(PolicyErrors(loader.errors)),
        }
    }
}

// ---- the files' shapes ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CategoriesFile {
    #[serde(default)]
    category: Vec<CategoryEntry>,
    #[serde(default)]
    ut1: Vec<Ut1Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoryEntry {
    id: Spanned<i64>,
    name: Spanned<String>,
    #[serde(default)]
    lists: Vec<Spanned<ListSource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ut1Entry {
    dir: Spanned<String>,
    map: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServicesFile {
    #[serde(default)]
    service: Vec<ServiceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    name: Spanned<String>,
    domains: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupsFile {
    default_group: Spanned<String>,
    /// Where a responder's manual isolation puts a device; the highest-priority group if unset.
    isolation_group: Option<Spanned<String>>,
    #[serde(default)]
    group: Vec<GroupEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    name: Spanned<String>,
    #[serde(default = "zero")]
    priority: Spanned<i64>,
    policy: Spanned<String>,
    #[serde(default)]
    uem_groups: Vec<Spanned<String>>,
    #[serde(default)]
    clients: Vec<Spanned<String>>,
    #[serde(default)]
    devices: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default = "default_action")]
    default: DefaultAction,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    #[serde(default)]
    allow_services: Vec<Spanned<String>>,
    #[serde(default)]
    block_categories: Vec<Spanned<String>>,
    /// Categories that block an allowed answer whose CNAME chain reaches them, beside
    /// `block_categories`. Absent: every security category under `default = "block"`, none
    /// under `default = "allow"`; `[]` opts out.
    block_cname_categories: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    block_uncategorised: bool,
    #[serde(default = "default_response")]
    response: ResponseMode,
    #[serde(default)]
    sinkhole: Vec<Spanned<String>>,
    #[serde(default = "default_blocked_ttl")]
    blocked_ttl: Spanned<i64>,
    #[serde(default = "default_max_ttl")]
    max_ttl: Spanned<i64>,
    /// Categories whose names isolate the device that asks (with `[tripwire] enabled`).
    #[serde(default)]
    tripwire_categories: Vec<Spanned<String>>,
    /// Names an incident added: asking for one (or a name below it) isolates the device.
    #[serde(default)]
    tripwire: Vec<Spanned<String>>,
    /// Seconds of probation after an isolation ends; 0: none.
    #[serde(default = "zero")]
    probation_s: Spanned<i64>,
}

fn zero() -> Spanned<i64> {
    Spanned::new(0..0, 0)
}
fn default_action() -> DefaultAction {
    DefaultAction::Allow
}
fn default_response() -> ResponseMode {
    ResponseMode::Nxdomain
}
/// A few seconds, so that a released device gets its access back quickly (contract 5).
fn default_blocked_ttl() -> Spanned<i64> {
    Spanned::new(0..0, 5)
}
/// Five minutes: how long a device that gets isolated may keep using answers it already has.
fn default_max_ttl() -> Spanned<i64> {
    Spanned::new(0..0, 300)
}

// ---- loading ----

struct Loader {
    dir: PathBuf,
    cache: Option<ListCache>,
    errors: Vec<FileError>,
    warnings: Vec<FileError>,
}

/// A file's text, kept to turn byte offsets into line numbers.
struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }
}

type Services = BTreeMap<String, Vec<QName>>;
/// Each list file read, with what it held and skipped.
type ListReport = Vec<(PathBuf, ListStats)>;
/// What `categories.toml` gave: the taxonomy, the category DB, the lists files and URLs read.
type Categories = (Taxonomy, CategoryDb, ListReport, Vec<UrlListReport>);

impl Loader {
    fn load_all(&mut self) -> Option<PolicySet> {
        let (taxonomy, categories, lists, urls) = self.load_categories()?;
        let services = self.load_services();
        let (groups, default_group, isolation_group) = self.load_groups(&taxonomy, &services)?;
        Some(PolicySet {
            dir: self.dir.clone(),
            taxonomy: Arc::new(taxonomy),
            categories: Arc::new(categories),
            lists,
            urls,
            groups,
            default_group,
            isolation_group,
            warnings: std::mem::take(&mut self.warnings),
        })
    }

    fn error(&mut self, src: &Source, span: Option<std::ops::Range<usize>>, message: String) {
        let line = span.filter(|s| s.end > 0).map(|s| src.line_of(s.start));
        self.errors.push(FileError {
            file: src.path.clone(),
            line,
            message,
        });
    }

    fn whole_file_error(&mut self, path: &Path, message: String) {
        self.errors.push(FileError {
            file: path.to_path_buf(),
            line: None,
            message,
        });
    }

    /// Reads and parses a TOML file; `None` (with the error recorded) when it is missing or bad.
    fn parse<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &str,
        required: bool,
    ) -> Option<(Source, T)> {
        let path = self.dir.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return None;
            }
            Err(e) => {
                self.whole_file_error(&path, format!("cannot read: {e}"));
                return None;
            }
        };
        let src = Source { path, text };
        match toml::from_str::<T>(&src.text) {
            Ok(value) => Some((src, value)),
            Err(e) => {
                let message = e.message().trim().to_string();
                self.error(&src, e.span(), message);
                None
            }
        }
    }

    fn load_categories(&mut self) -> Option<Categories> {
        let (src, file) = self.parse::<CategoriesFile>("categories.toml", true)?;
        let mut taxonomy = Taxonomy::new();
        let mut ids = Vec::new();
        for c in &file.category {
            let id = u8::try_from(*c.id.get_ref()).ok().and_then(CategoryId::new);
            let Some(id) = id else {
                self.error(
                    &src,
                    Some(c.id.span()),
                    format!("category id {} is not in 0..=63", c.id.get_ref()),
                );
                continue;
            };
            if taxonomy.id(c.name.get_ref()).is_some() || taxonomy.iter().any(|(i, _)| i == id) {
                self.error(
                    &src,
                    Some(c.name.span()),
                    format!(
                        "category id {} or name \"{}\" is defined twice",
                        id.get(),
                        c.name.get_ref()
                    ),
                );
                continue;
            }
            taxonomy.insert(id, c.name.get_ref());
            ids.push(id);
        }
        let mut builder = CategoryDbBuilder::new();
        let mut stats = Vec::new();
        let mut urls = Vec::new();
        for (c, id) in file.category.iter().zip(ids) {
            for list in &c.lists {
                let mut add =
                    |domain: &str, exception| builder.add(hash_dotted(domain), id, exception);
                match list.get_ref() {
                    ListSource::File(name) => {
                        let path = self.dir.join(name);
                        if let Some(s) = self.read_list(&src, list.span(), &path, add) {
                            stats.push((path, s));
                        }
                    }
                    ListSource::Url { url, refresh_s } => {
                        let read = self.read_url(&src, list.span(), url, *refresh_s, &mut add);
                        urls.extend(read);
                    }
                }
            }
        }
        for ut1 in &file.ut1 {
            self.read_ut1(&src, ut1, &taxonomy, &mut builder, &mut stats);
        }
        match builder.build() {
            Ok(db) => Some((taxonomy, db, stats, urls)),
            Err(e) => {
                self.error(&src, None, e.to_string());
                None
            }
        }
    }

    fn read_list(
        &mut self,
        src: &Source,
        span: std::ops::Range<usize>,
        path: &Path,
        mut add: impl FnMut(&str, bool),
    ) -> Option<ListStats> {
        match std::fs::read_to_string(path) {
            Ok(text) => Some(parse_list(&text, |e| add(&e.domain, e.exception))),
            Err(e) => {
                self.error(src, Some(span), format!("list \"{}\": {e}", path.display()));
                None
            }
        }
    }

    /// A list named by URL: its cached copy, if the fetcher has made one. No copy is a warning,
    /// not an error: the server starts (or reloads) and the fetcher fills the category when it
    /// can; an unreadable copy is an error, as an unreadable file is.
    fn read_url(
        &mut self,
        src: &Source,
        span: std::ops::Range<usize>,
        url: &str,
        refresh_s: Option<u64>,
        add: &mut impl FnMut(&str, bool),
    ) -> Option<UrlListReport> {
        if !fetchable(url) {
            let message = format!("list \"{url}\": only https:// and http:// URLs are fetched");
            self.error(src, Some(span), message);
            return None;
        }
        if refresh_s == Some(0) {
            let message = format!("list \"{url}\": refresh_s must be above 0");
            self.error(src, Some(span), message);
            return None;
        }
        let mut report = UrlListReport {
            url: url.to_string(),
            refresh: refresh_s.map(Duration::from_secs),
            meta: None,
            stats: None,
        };
        let cache = self.cache.clone();
        let Some(meta) = cache.as_ref().and_then(|c| c.copy(url)) else {
            report.meta = cache.as_ref().and_then(|c| c.meta(url));
            let place = cache.map_or("no cache".to_string(), |c| {
                format!("nothing in {}", c.dir().display())
            });
            self.warnings.push(FileError {
                file: src.path.clone(),
                line: Some(src.line_of(span.start)),
                message: format!(
                    "warning: list \"{url}\" has no copy yet ({place}): its category gets \
                     nothing from it until a fetch succeeds"
                ),
            });
            return Some(report);
        };
        let path = cache.as_ref().map(|c| c.list_path(url)).unwrap_or_default();
        let read = std::fs::File::open(&path).and_then(|file| {
            parse_reader(std::io::BufReader::new(file), |e| {
                add(&e.domain, e.exception)
            })
        });
        match read {
            Ok(stats) => {
                report.meta = Some(meta);
                report.stats = Some(stats);
                Some(report)
            }
            Err(e) => {
                let message = format!("list \"{url}\": its copy {}: {e}", path.display());
                self.error(src, Some(span), message);
                None
            }
        }
    }

    fn read_ut1(
        &mut self,
        src: &Source,
        ut1: &Ut1Entry,
        taxonomy: &Taxonomy,
        builder: &mut CategoryDbBuilder,
        stats: &mut Vec<(PathBuf, ListStats)>,
    ) {
        let mut mapping = BTreeMap::new();
        for (folder, cat) in &ut1.map {
            match taxonomy.id(cat.get_ref()) {
                Some(id) => {
                    mapping.insert(folder.clone(), id);
                }
                None => self.error(
                    src,
                    Some(cat.span()),
                    format!("unknown category \"{}\"", cat.get_ref()),
                ),
            }
        }
        let root = self.dir.join(ut1.dir.get_ref());
        let result = load_ut1_dir(&root, &mapping, |&id, e| {
            builder.add(hash_dotted(&e.domain), id, e.exception)
        });
        match result {
            Ok(s) => stats.push((root, s)),
            Err(e) => self.error(
                src,
                Some(ut1.dir.span()),
                format!("UT1 directory \"{}\": {e}", root.display()),
            ),
        }
    }

    fn load_services(&mut self) -> Services {
        let mut services = Services::new();
        let Some((src, file)) = self.parse::<ServicesFile>("services.toml", false) else {
            return services;
        };
        for s in file.service {
            let domains = s
                .domains
                .iter()
                .filter_map(|d| self.domain(&src, d).map(|(name, _)| name))
                .collect();
            if services.insert(s.name.get_ref().clone(), domains).is_some() {
                self.error(
                    &src,
                    Some(s.name.span()),
                    format!("service \"{}\" is defined twice", s.name.get_ref()),
                );
            }
        }
        services
    }

    /// A rule's domain: `example.com` (exact) or `*.example.com` (the domain and all below).
    fn domain(&mut self, src: &Source, entry: &Spanned<String>) -> Option<(QName, bool)> {
        let text = entry.get_ref().trim();
        let (text, subtree) = match text.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let parsed = names::normalize(text)
            .map_err(|e| e.to_string())
            .and_then(|n| QName::from_dotted(&n).map_err(|e| e.to_string()));
        match parsed {
            Ok(name) => Some((name, subtree)),
            Err(e) => {
                self.error(
                    src,
                    Some(entry.span()),
                    format!("\"{}\": {e}", entry.get_ref()),
                );
                None
            }
        }
    }

    fn load_groups(
        &mut self,
        taxonomy: &Taxonomy,
        services: &Services,
    ) -> Option<(Vec<GroupDef>, String, String)> {
        let (src, file) = self.parse::<GroupsFile>("groups.toml", true)?;
        let mut policies: BTreeMap<String, Arc<Policy>> = BTreeMap::new();
        let mut groups = Vec::new();
        for g in &file.group {
            let policy_name = g.policy.get_ref();
            if !valid_policy_name(policy_name) {
                self.error(
                    &src,
                    Some(g.policy.span()),
                    format!("policy name \"{policy_name}\" must be letters, digits, '-' or '_'"),
                );
                continue;
            }
            if !policies.contains_key(policy_name) {
                match self.load_policy(policy_name, taxonomy, services) {
                    Some(p) => policies.insert(policy_name.clone(), Arc::new(p)),
                    None => continue,
                };
            }
            let clients = g
                .clients
                .iter()
                .filter_map(|c| match cidr::parse_net(c.get_ref()) {
                    Ok(net) => Some(net),
                    Err(e) => {
                        self.error(&src, Some(c.span()), e.to_string());
                        None
                    }
                })
                .collect();
            groups.push(GroupDef {
                name: g.name.get_ref().clone(),
                priority: *g.priority.get_ref(),
                policy: policies[policy_name].clone(),
                uem_groups: g.uem_groups.iter().map(|u| u.get_ref().clone()).collect(),
                clients,
                devices: g.devices.iter().map(|d| d.get_ref().clone()).collect(),
            });
        }
        self.check_groups(&src, &file, &groups);
        self.check_unused_policies(&policies, taxonomy, services);
        groups.sort_by_key(|g| std::cmp::Reverse(g.priority));
        let isolation = match &file.isolation_group {
            Some(name) => name.get_ref().clone(),
            None => groups.first().map(|g| g.name.clone()).unwrap_or_default(),
        };
        Some((groups, file.default_group.get_ref().clone(), isolation))
    }

    fn check_groups(&mut self, src: &Source, file: &GroupsFile, groups: &[GroupDef]) {
        for (i, g) in file.group.iter().enumerate() {
            let earlier = &file.group[..i];
            if earlier.iter().any(|e| e.name.get_ref() == g.name.get_ref()) {
                self.error(
                    src,
                    Some(g.name.span()),
                    format!("group \"{}\" is defined twice", g.name.get_ref()),
                );
            }
            if let Some(e) = earlier
                .iter()
                .find(|e| e.priority.get_ref() == g.priority.get_ref())
            {
                self.error(src, Some(g.priority.span()), format!(
                    "groups \"{}\" and \"{}\" share priority {}: a device in both must have one winner",
                    e.name.get_ref(), g.name.get_ref(), g.priority.get_ref()
                ));
            }
        }
        let default = file.default_group.get_ref();
        if !groups.iter().any(|g| &g.name == default) && self.errors.is_empty() {
            self.error(
                src,
                Some(file.default_group.span()),
                format!("default_group \"{default}\" is not a [[group]]"),
            );
        }
        if let Some(iso) = &file.isolation_group {
            if !groups.iter().any(|g| &g.name == iso.get_ref()) && self.errors.is_empty() {
                self.error(
                    src,
                    Some(iso.span()),
                    format!("isolation_group \"{}\" is not a [[group]]", iso.get_ref()),
                );
            }
        }
    }

    /// Policy files no group names yet are checked too, so that a typo shows before the day a
    /// group starts using the file.
    fn check_unused_policies(
        &mut self,
        used: &BTreeMap<String, Arc<Policy>>,
        taxonomy: &Taxonomy,
        services: &Services,
    ) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|f| f.strip_suffix(".toml").map(str::to_string))
            .filter(|n| {
                !["categories", "services", "groups"].contains(&n.as_str()) && !used.contains_key(n)
            })
            .filter(|n| valid_policy_name(n))
            .collect();
        names.sort();
        for name in names {
            self.load_policy(&name, taxonomy, services);
        }
    }

    fn load_policy(
        &mut self,
        name: &str,
        taxonomy: &Taxonomy,
        services: &Services,
    ) -> Option<Policy> {
        let (src, file) = self.parse::<PolicyFile>(&format!("{name}.toml"), true)?;
        let mut rules = RuleSet::new();
        for (kind, entries) in [(RuleKind::Deny, &file.deny), (RuleKind::Allow, &file.allow)] {
            for entry in entries {
                if let Some((qname, subtree)) = self.domain(&src, entry) {
                    rules.add(kind, &qname, subtree, 0);
                }
            }
        }
        let mut service_names = Vec::new();
        for s in &file.allow_services {
            let Some(domains) = services.get(s.get_ref()) else {
                self.error(
                    &src,
                    Some(s.span()),
                    format!("unknown service \"{}\" (see services.toml)", s.get_ref()),
                );
                continue;
            };
            let index = service_names.len() as u16;
            service_names.push(s.get_ref().clone());
            for d in domains {
                rules.add(RuleKind::Service, d, true, index);
            }
        }
        let block_categories = self.categories(&src, taxonomy, &file.block_categories);
        let cname_categories = self.cname_categories(&src, &file, taxonomy, block_categories);
        let target_categories = block_categories.union(cname_categories);
        let (sinkhole_v4, sinkhole_v6) = self.sinkholes(&src, &file.sinkhole);
        let blocked_ttl = self.ttl(&src, &file.blocked_ttl, "blocked_ttl");
        let max_ttl = self.ttl(&src, &file.max_ttl, "max_ttl");
        let tripwire_categories = self.categories(&src, taxonomy, &file.tripwire_categories);
        let mut tripwires = RuleSet::new();
        for entry in &file.tripwire {
            if let Some((qname, _)) = self.domain(&src, entry) {
                // A tripwire stands for the name and every name below it, as a listed domain.
                tripwires.add(RuleKind::Deny, &qname, true, 0);
            }
        }
        let probation_s = self.ttl(&src, &file.probation_s, "probation_s");
        Some(Policy {
            name: name.to_string(),
            default: file.default,
            rules,
            services: service_names,
            block_categories,
            target_categories,
            block_uncategorised: file.block_uncategorised,
            response: file.response,
            sinkhole_v4,
            sinkhole_v6,
            blocked_ttl,
            max_ttl,
            tripwire_categories,
            tripwires,
            probation_s,
        })
    }

    fn categories(
        &mut self,
        src: &Source,
        taxonomy: &Taxonomy,
        names: &[Spanned<String>],
    ) -> CategorySet {
        let mut set = CategorySet::EMPTY;
        for c in names {
            match taxonomy.id(c.get_ref()) {
                Some(id) => set.insert(id),
                None => self.error(
                    src,
                    Some(c.span()),
                    format!("unknown category \"{}\" (see categories.toml)", c.get_ref()),
                ),
            }
        }
        set
    }

    /// `block_cname_categories`, or its default: every security category the taxonomy defines
    /// for a default-block policy, none for a default-allow one (whose `block_categories` apply to
    /// targets already). A default-block policy whose targets miss a security category is
    /// warned about: an allowed name whose chain leads there would resolve.
    fn cname_categories(
        &mut self,
        src: &Source,
        file: &PolicyFile,
        taxonomy: &Taxonomy,
        block_categories: CategorySet,
    ) -> CategorySet {
        let security = taxonomy
            .iter()
            .map(|(id, _)| id)
            .filter(|id| id.is_security())
            .fold(CategorySet::EMPTY, |mut set, id| {
                set.insert(id);
                set
            });
        let listed = file
            .block_cname_categories
            .as_ref()
            .map(|list| self.categories(src, taxonomy, list.get_ref()));
        let set = match listed {
            Some(set) => set,
            None if file.default == DefaultAction::Block => security,
            None => CategorySet::EMPTY,
        };
        let missing = security.without(set.union(block_categories));
        if file.default == DefaultAction::Block && !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|id| taxonomy.name(id)).collect();
            let line = file
                .block_cname_categories
                .as_ref()
                .map(|l| src.line_of(l.span().start));
            self.warnings.push(FileError {
                file: src.path.clone(),
                line,
                message: format!(
                    "warning: default = \"block\" but CNAME targets in {} are unchecked: an allowed \
                     name whose CNAME chain reaches them resolves; list them in \
                     block_cname_categories (or remove the key to check every security category)",
                    names.join(", ")
                ),
            });
        }
        set
    }

    fn sinkholes(
        &mut self,
        src: &Source,
        entries: &[Spanned<String>],
    ) -> (std::net::Ipv4Addr, std::net::Ipv6Addr) {
        let (mut v4, mut v6) = (None, None);
        for e in entries {
            match e.get_ref().parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => v4 = v4.or(Some(a)),
                Ok(IpAddr::V6(a)) => v6 = v6.or(Some(a)),
                Err(_) => self.error(
                    src,
                    Some(e.span()),
                    format!("sinkhole \"{}\" is not an IP address", e.get_ref()),
                ),
            }
        }
        (
            v4.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            v6.unwrap_or(std::net::Ipv6Addr::UNSPECIFIED),
        )
    }

    fn ttl(&mut self, src: &Source, value: &Spanned<i64>, key: &str) -> u32 {
        match u32::try_from(*value.get_ref()) {
            Ok(v) if v <= 604_800 => v,
            _ => {
                self.error(
                    src,
                    Some(value.span()),
                    format!("{key} must be 0..=604800 seconds"),
                );
                0
            }
        }
    }
}

fn valid_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const CATEGORIES: &str = "[[category]]\nid = 0\nname = \"malware\"\n";
    const GROUPS: &str =
        "default_group = \"standard\"\n[[group]]\nname = \"standard\"\npolicy = \"standard\"\n";

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        let dir = dir_with(files);
        match PolicySet::load(dir.path()) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.iter()
                    .map(|e| {
                        format!(
                            "{}:{:?}: {}",
                            e.file.file_name().unwrap().to_string_lossy(),
                            e.line,
                            e.message
                        )
                    })
                    .collect()
            }
        }
    }

    #[test]
    fn a_good_directory_loads() {
        let dir = dir_with(&[
            ("categories.toml", CATEGORIES),
            ("groups.toml", GROUPS),
            ("standard.toml", "block_categories = [\"malware\"]\n"),
        ]);
        let set = PolicySet::load(dir.path()).unwrap();
        assert_eq!(set.groups.len(), 1);
        assert_eq!(set.groups[0].policy.max_ttl, 300);
    }

    #[test]
    fn every_error_names_its_file_and_line() {
        let found = errors(&[
            ("categories.toml", CATEGORIES),
            ("groups.toml", GROUPS),
            ("standard.toml", "allow = [\"ok.example\",\n  \"bad..example\"]\nblock_categories = [\"malwar\"]\nmax_ttl = -1\n"),
        ]);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("standard.toml:Some(2): \"bad..example\""),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("standard.toml:Some(3): unknown category \"malwar\""),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("standard.toml:Some(4): max_ttl"),
            "{found:?}"
        );
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        let found = errors(&[
            ("categories.toml", CATEGORIES),
            ("groups.toml", GROUPS),
            ("standard.toml", "block_categores = []\n"),
        ]);
        assert!(
            found[0].starts_with("standard.toml:Some(1): unknown field `block_categores`"),
            "{found:?}"
        );
        let found = errors(&[("categories.toml", CATEGORIES), ("groups.toml", GROUPS)]);
        assert!(
            found[0].starts_with("standard.toml:None: cannot read"),
            "{found:?}"
        );
    }

    #[test]
    fn a_policy_file_no_group_uses_is_checked_too() {
        let found = errors(&[
            ("categories.toml", CATEGORIES),
            ("groups.toml", GROUPS),
            ("standard.toml", ""),
            ("spare.toml", "default = \"blok\"\n"),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("spare.toml:Some(1):"), "{found:?}");
    }

    #[test]
    fn groups_must_have_distinct_priorities_and_a_real_default() {
        let groups = "default_group = \"nope\"\n[[group]]\nname = \"a\"\npolicy = \"standard\"\n[[group]]\nname = \"b\"\npolicy = \"standard\"\n";
        let found = errors(&[
            ("categories.toml", CATEGORIES),
            ("groups.toml", groups),
            ("standard.toml", ""),
        ]);
        assert!(
            found.iter().any(|e| e.contains("share priority 0")),
            "{found:?}"
        );
        let groups = "default_group = \"nope\"\n[[group]]\nname = \"a\"\npolicy = \"standard\"\n";
        let found = errors(&[
            ("categories.toml", CATEGORIES),
            ("groups.toml", groups),
            ("standard.toml", ""),
        ]);
        assert!(
            found[0].contains("default_group \"nope\" is not a [[group]]"),
            "{found:?}"
        );
    }

    #[test]
    fn the_shipped_isolation_policy_blocks_chains_into_security_categories() {
        use crate::policy::build::PolicyParts;
        use crate::policy::check_target;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let set = PolicySet::load(&dir).expect("the shipped policies load");
        assert!(set.warnings.is_empty(), "{:?}", set.warnings);
        let isolation = set
            .groups
            .iter()
            .find(|g| g.name == "restricted")
            .map(|g| g.policy.clone())
            .unwrap();
        // every security category the taxonomy has, listed in the file rather than defaulted
        for (id, name) in set.taxonomy.iter().filter(|(id, _)| id.is_security()) {
            assert!(isolation.target_categories.contains(id), "{name}");
        }
        let text = std::fs::read_to_string(dir.join("isolation.toml")).unwrap();
        assert!(
            text.contains("\nblock_cname_categories = ["),
            "listed explicitly"
        );
        let parts = PolicyParts::new(set);
        let snapshot = parts.snapshot(Default::default(), Arc::new(cidr::PrefixTable::new()), 0);
        let restricted = snapshot
            .groups
            .iter()
            .position(|g| g.name == "restricted")
            .map(|i| crate::policy::GroupIdx(i as u16))
            .unwrap();
        // the stand-in entry of lists/malware.txt, met as a CNAME target of an allowed name
        let target = QName::from_dotted("cdn.malware.cordon-test.example").unwrap();
        let block = check_target(&snapshot, restricted, &target).expect("a block");
        let category = block.category().map(|c| snapshot.taxonomy.name(c));
        assert_eq!(category, Some("malware"));
    }

    #[test]
    fn a_list_by_url_is_read_from_its_cached_copy() {
        let url = "https://feeds.example/malware.txt";
        let categories = format!(
            "[[category]]\nid = 0\nname = \"malware\"\nlists = [\n  {{ url = \"{url}\", refresh_s = 60 }},\n]\n"
        );
        let dir = dir_with(&[
            ("categories.toml", &categories),
            ("groups.toml", GROUPS),
            ("standard.toml", "block_categories = [\"malware\"]\n"),
        ]);
        let cache = ListCache::new(dir.path().join("cache"));
        // no copy yet: it loads, with a warning, and the list gives nothing
        let set = PolicySet::load_with(dir.path(), Some(&cache)).unwrap();
        assert_eq!(set.categories.len(), 0);
        assert_eq!(set.urls.len(), 1);
        assert_eq!(set.urls[0].refresh, Some(Duration::from_secs(60)));
        assert!(set.urls[0].stats.is_none());
        assert_eq!(set.warnings.len(), 1);
        let warning = set.warnings[0].to_string();
        assert!(
            warning.contains("categories.toml:5: warning: list"),
            "{warning}"
        );
        assert!(warning.contains("has no copy yet"), "{warning}");

        let mut meta = CacheMeta::new(url);
        meta.fetched_at = Some(1_800_000_000);
        cache
            .store(b"0.0.0.0 evil.example\n||c2.example^\n", &meta)
            .unwrap();
        let set = PolicySet::load_with(dir.path(), Some(&cache)).unwrap();
        assert!(set.warnings.is_empty(), "{:?}", set.warnings);
        assert_eq!(set.categories.len(), 2);
        assert_eq!(set.urls[0].stats.as_ref().map(|s| s.entries), Some(2));
        assert_eq!(set.urls[0].meta, Some(meta));
        assert!(set.lists.is_empty(), "only files are in `lists`");
    }

    #[test]
    fn a_list_url_must_be_fetchable_and_its_interval_above_zero() {
        let categories = "[[category]]\nid = 0\nname = \"malware\"\nlists = [\n  \"ftp://feeds.example/a.txt\",\n  { url = \"https://feeds.example/b.txt\", refresh_s = 0 },\n  { url = \"lists/c.txt\" },\n]\n";
        let found = errors(&[
            ("categories.toml", categories),
            ("groups.toml", GROUPS),
            ("standard.toml", ""),
        ]);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("categories.toml:Some(5): list \"ftp://"),
            "{found:?}"
        );
        assert!(
            found[0].ends_with("only https:// and http:// URLs are fetched"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("categories.toml:Some(6):"),
            "{found:?}"
        );
        assert!(found[1].ends_with("refresh_s must be above 0"), "{found:?}");
        assert!(
            found[2].starts_with("categories.toml:Some(7): list \"lists/c.txt\""),
            "{found:?}"
        );
    }

    #[test]
    fn policy_names_cannot_leave_the_directory() {
        let groups = "default_group = \"a\"\n[[group]]\nname = \"a\"\npolicy = \"../etc/passwd\"\n";
        let found = errors(&[("categories.toml", CATEGORIES), ("groups.toml", groups)]);
        assert!(found[0].contains("must be letters, digits"), "{found:?}");
    }
}
