//! The architecture's rules, read from the source (ARCHITECTURE.md says why each holds): a test
//! fails the day one is broken, instead of a review noticing it later.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every source file under `src/`, as (path relative to `src/`, text).
fn src() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let rel = f
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

/// The text without comment lines (`//`, `///`, `//!`).
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_function_is_longer_than_80_lines() {
    let mut long = Vec::new();
    for (file, text) in src() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            let is_fn = [
                "fn ",
                "pub fn ",
                "async fn ",
                "pub async fn ",
                "pub(super) fn ",
            ]
            .iter()
            .chain(&[
                "pub(super) async fn ",
                "pub(crate) fn ",
                "pub(crate) async fn ",
            ])
            .chain(&["const fn ", "pub const fn "])
            .any(|p| trimmed.starts_with(p));
            if !is_fn {
                continue;
            }
            // The signature ends at `{` (a body) or `;` (a declaration).
            let Some(open) = (i..lines.len()).find(|&k| {
                let l = lines[k].trim_end();
                l.ends_with('{') || l.ends_with(';')
            }) else {
                continue;
            };
            if lines[open].trim_end().ends_with(';') {
                continue;
            }
            let close = (open + 1..lines.len()).find(|&k| {
                let l = lines[k];
                l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}')
            });
            if let Some(close) = close {
                if close - i + 1 > 80 {
                    long.push(format!("{file}:{} ({} lines)", i + 1, close - i + 1));
                }
            }
        }
    }
    assert!(long.is_empty(), "functions over 80 lines: {long:?}");
}

#[test]
fn modules_depend_on_each_other_without_a_circle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in src() {
        let top = file
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        // Unit tests may reach anywhere.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (at, _) in code(text).match_indices("crate::") {
            let rest = &code(text)[at + 7..];
            let used: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !used.is_empty() && used != top {
                graph.entry(top.clone()).or_default().insert(used);
            }
        }
    }
    // Depth-first search for a path back to where it started.
    fn reaches(
        graph: &BTreeMap<String, BTreeSet<String>>,
        from: &str,
        to: &str,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        graph
            .get(from)
            .into_iter()
            .flatten()
            .any(|next| next == to || (seen.insert(next.clone()) && reaches(graph, next, to, seen)))
    }
    for module in graph.keys() {
        let circle = reaches(&graph, module, module, &mut BTreeSet::new());
        assert!(!circle, "`{module}` depends on itself through: {graph:?}");
    }
}

#[test]
fn the_edge_calls_no_adapter_store_sealer_or_registry() {
    for (file, text) in src() {
        if !file.starts_with("api/") {
            continue;
        }
        let code = code(text.split("#[cfg(test)]").next().unwrap_or_default());
        for banned in [
            "crate::store",
            ".adapter",
            ".sealer",
            "Sealer",
            ".registry()",
            "Registry",
        ] {
            assert!(!code.contains(banned), "src/{file} uses `{banned}`");
        }
    }
}

#[test]
fn a_vendor_is_named_in_code_outside_its_own_files_in_at_most_three() {
    for kind in snapgate::domain::ProviderKind::ALL {
        let name = kind.as_str();
        let own = |file: &str| {
            ["providers/", "simulator/"].iter().any(|dir| {
                file.strip_prefix(dir)
                    .is_some_and(|rest| rest.starts_with(name))
            })
        };
        let naming: Vec<String> = src()
            .into_iter()
            .filter(|(file, text)| !own(file) && code(text).to_lowercase().contains(name))
            .map(|(file, _)| file)
            .collect();
        assert!(naming.len() <= 3, "{name} is named in {naming:?}");
    }
}

#[test]
fn no_postgresql_store_file_is_over_500_lines() {
    for (file, text) in src() {
        if file.starts_with("store/postgres") {
            let lines = text.lines().count();
            assert!(lines <= 500, "src/{file}: {lines} lines");
        }
    }
}
