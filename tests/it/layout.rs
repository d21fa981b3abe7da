//! The layering rules of ARCHITECTURE.md, checked on the source: the query path and the control
//! plane know no vendor and no HTTP, the query path knows no writer, and no two files import
//! each other. A change that breaks one fails here with the file and the import named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["control", "writer"]`) -> source text, for every file under src/.
fn sources() -> BTreeMap<Vec<String>, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    let root = stack[0].clone();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                found.insert(module_of(&root, &path), text);
            }
        }
    }
    found
}

fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments (doc links are not imports) and without its
/// `#[cfg(test)] mod tests` (tests may reach anywhere).
fn code(text: &str) -> String {
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at]);
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::`/`super::` path a file names, braces of `use` trees expanded.
fn paths(text: &str) -> Vec<String> {
    let text = &code(text);
    let mut out = Vec::new();
    let mut statement: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        let start = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|p| line.strip_prefix(p));
        let part = match (&mut statement, start) {
            (Some(open), _) => {
                open.push_str(line);
                None
            }
            (None, Some(rest)) => Some(rest.to_string()),
            (None, None) => continue,
        };
        if let Some(part) = part {
            statement = Some(part);
        }
        if let Some(done) = statement.take_if(|s| s.contains(';')) {
            let tree: String = done[..done.find(';').unwrap()]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            out.extend(expand(&tree));
        }
    }
    // Paths written inline, outside `use`.
    for start in ["crate::", "super::"] {
        for (at, _) in text.match_indices(start) {
            let path: String = text[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(path);
        }
    }
    out
}

fn expand(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{').filter(|_| tree.ends_with('}')) else {
        return vec![tree.to_string()];
    };
    let (prefix, inner) = (&tree[..open], &tree[open + 1..tree.len() - 1]);
    let (mut parts, mut depth, mut current) = (Vec::new(), 0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p))
        .map(|p| format!("{prefix}{p}"))
        .collect()
}

/// The files each file imports, by module path.
fn imports() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let files = sources();
    let mut graph = BTreeMap::new();
    for (module, text) in &files {
        let mut targets = BTreeSet::new();
        for path in paths(text) {
            let mut segments = path.split("::").filter(|s| !s.is_empty());
            let mut full: Vec<String> = match segments.next() {
                Some("crate") => Vec::new(),
                Some("super") => module[..module.len().saturating_sub(1)].to_vec(),
                _ => continue,
            };
            for s in segments {
                if s == "super" {
                    full.pop();
                } else {
                    full.push(s.to_string());
                }
            }
            let target = (1..=full.len())
                .rev()
                .map(|k| full[..k].to_vec())
                .find(|m| files.contains_key(m));
            if let Some(t) = target.filter(|t| t != module) {
                targets.insert(t);
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

fn under(module: &[String], top: &str) -> bool {
    module.first().is_some_and(|m| m == top)
}

#[test]
fn the_layers_import_only_downwards() {
    let rules: [(&str, &[&str]); 4] = [
        ("control", &["jamf", "ssf", "events", "api", "dns"]),
        (
            "policy",
            &["jamf", "ssf", "events", "api", "dns", "control"],
        ),
        ("dns", &["control", "events", "api", "jamf", "ssf"]),
        ("identity", &["control", "events", "api", "jamf", "ssf"]),
    ];
    let mut broken = Vec::new();
    for (file, targets) in imports() {
        for (layer, forbidden) in rules {
            for t in targets.iter().filter(|_| under(&file, layer)) {
                if forbidden.iter().any(|f| under(t, f)) {
                    broken.push(format!("{} imports {}", file.join("::"), t.join("::")));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn no_two_files_import_each_other() {
    let graph = imports();
    let mut circles = Vec::new();
    for (a, targets) in &graph {
        for b in targets.iter().filter(|b| *b > a) {
            if graph.get(b).is_some_and(|t| t.contains(a)) {
                circles.push(format!("{} <-> {}", a.join("::"), b.join("::")));
            }
        }
    }
    assert!(circles.is_empty(), "{circles:#?}");
}

#[test]
fn the_checker_sees_imports_in_use_trees() {
    let text = "use super::{alpha::{Beta, gamma}, delta};\nfn f() { crate::policy::x(); }";
    let found = paths(text);
    for want in [
        "super::alpha::Beta",
        "super::alpha::gamma",
        "super::delta",
        "crate::policy::x",
    ] {
        assert!(found.iter().any(|p| p == want), "{want} in {found:?}");
    }
}
