//! The shape of `actors/src`, checked so it stays true (issue 11):
//!
//! - no import cycle between its modules: neither between top-level modules (`router` ↔
//!   `ack_tracker`) nor between a module and its own submodules (a child that `use super::…`s an
//!   item its parent uses the child for); messages that cross between actors live in the leaf
//!   module `messages`;
//! - no `OnceLock`/`OnceCell` holding an actor address, a `Recipient` or a handle of them (a
//!   late-bound cell): dependencies are handed in at start, mailboxes are created first;
//! - no source file over [`MAX_LINES`] lines.
//!
//! The module graph is read from the source text: `crate::…`, `super::…`, `self::…` paths and paths
//! through a file's own `mod` children (`use`, `pub use` and paths in code alike), with comments,
//! strings and the `#[cfg(test)] mod tests` at the end of a file left out. A path names the longest
//! module prefix it has; a module declaration alone is no edge. `LAYOUT_SRC` points the test at
//! another tree (to see it fail on an older one).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a source file of `actors/` may be.
const MAX_LINES: usize = 650;

/// Module path (`crate` for lib.rs, `router`, `room::state` …) → its source.
fn modules(src: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(src).expect("under src").with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            let name = if parts.is_empty() { "crate".to_owned() } else { parts.join("::") };
            (name, std::fs::read_to_string(&f).expect("read source"))
        })
        .collect()
}

/// The code of a file without comments, string and char literals, and its trailing test module.
fn code(source: &str) -> String {
    let source = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    let c: Vec<char> = source.chars().collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        match c[i] {
            '/' if next == Some('/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            'r' if (next == Some('"') || next == Some('#')) && (i == 0 || !ident(c[i - 1])) => {
                let mut j = i + 1;
                let mut hashes = 0;
                while c.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if c.get(j) != Some(&'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                while j < c.len() && !(c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#'))) {
                    j += 1;
                }
                out.push_str("\"\"");
                i = j + 1 + hashes;
            }
            '"' => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                out.push_str("\"\"");
                i += 1;
            }
            '\'' if next == Some('\\') => {
                i += 3; // the quote, the backslash and the escaped character
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                out.push_str("' '");
                i += 1;
            }
            '\'' if c.get(i + 2) == Some(&'\'') => {
                out.push_str("' '");
                i += 3;
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// Identifiers and the punctuation paths are made of.
fn tokens(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let c: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_alphanumeric() || ch == '_' || ch == '$' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '$') {
                i += 1;
            }
            out.push(c[start..i].iter().collect::<String>().trim_start_matches('$').to_owned());
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if ch.is_whitespace() {
            i += 1;
        } else {
            out.push(ch.to_string());
            i += 1;
        }
    }
    out
}

/// The paths starting at `tokens[at]` (a `use` tree expands to one path per leaf).
fn paths(tokens: &[String], at: usize) -> Vec<Vec<String>> {
    fn tree(t: &[String], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
        let mut path = prefix;
        loop {
            match t.get(i).map(String::as_str) {
                Some("{") => {
                    i += 1;
                    loop {
                        match t.get(i).map(String::as_str) {
                            Some("}") => return i + 1,
                            Some(",") => i += 1,
                            Some(_) => i = tree(t, i, path.clone(), out),
                            None => return i,
                        }
                    }
                }
                Some(s) if s.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                    if s != "self" || path.is_empty() {
                        path.push(s.to_owned());
                    }
                    i += 1;
                    if t.get(i).map(String::as_str) == Some("::") {
                        i += 1;
                        continue;
                    }
                    out.push(path);
                    return i;
                }
                _ => {
                    out.push(path);
                    return i;
                }
            }
        }
    }
    let mut out = Vec::new();
    tree(tokens, at, Vec::new(), &mut out);
    out
}

/// Module → the modules its code names (never itself).
fn graph(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let split = |m: &str| -> Vec<String> { if m == "crate" { Vec::new() } else { m.split("::").map(str::to_owned).collect() } };
    let join = |p: &[String]| if p.is_empty() { "crate".to_owned() } else { p.join("::") };
    let mut edges = BTreeMap::new();
    for (module, source) in mods {
        let here = split(module);
        let t = tokens(&code(source));
        let children: BTreeSet<&str> =
            mods.keys().filter_map(|m| m.strip_prefix(&format!("{}::", module)).filter(|c| !c.contains("::"))).collect();
        let children: BTreeSet<&str> = if module == "crate" { mods.keys().filter(|m| !m.contains("::") && *m != "crate").map(String::as_str).collect() } else { children };
        let mut out = BTreeSet::new();
        for i in 0..t.len() {
            let first = t[i].as_str();
            let starts = matches!(first, "crate" | "super" | "self") || children.contains(first);
            if !starts || t.get(i + 1).map(String::as_str) != Some("::") || (i > 0 && (t[i - 1] == "::" || t[i - 1] == ".")) {
                continue;
            }
            for path in paths(&t, i) {
                let mut abs = here.clone();
                let mut rest = path.as_slice();
                match rest.first().map(String::as_str) {
                    Some("crate") => {
                        abs.clear();
                        rest = &rest[1..];
                    }
                    Some("self") => rest = &rest[1..],
                    Some("super") => {
                        while rest.first().map(String::as_str) == Some("super") {
                            abs.pop();
                            rest = &rest[1..];
                        }
                    }
                    _ => {}
                }
                abs.extend(rest.iter().cloned());
                let target = (0..=abs.len()).rev().map(|n| join(&abs[..n])).find(|m| mods.contains_key(m)).unwrap_or_else(|| "crate".into());
                if target != *module {
                    out.insert(target);
                }
            }
        }
        edges.insert(module.clone(), out);
    }
    edges
}

/// Every elementary cycle found by a depth-first search, each as `a -> b -> … -> a`.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    fn visit<'a>(
        n: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        found: &mut BTreeSet<String>,
    ) {
        if let Some(pos) = stack.iter().position(|s| *s == n) {
            let mut cycle: Vec<&str> = stack[pos..].to_vec();
            let min = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
            cycle.rotate_left(min);
            cycle.push(cycle[0]);
            found.insert(cycle.join(" -> "));
            return;
        }
        if done.contains(n) {
            return;
        }
        stack.push(n);
        for m in edges.get(n).into_iter().flatten() {
            visit(m, edges, stack, done, found);
        }
        stack.pop();
        done.insert(n);
    }
    let mut found = BTreeSet::new();
    for n in edges.keys() {
        visit(n, edges, &mut Vec::new(), &mut BTreeSet::new(), &mut found);
    }
    found
}

/// The graph between top-level modules (`router::handle` counts as `router`).
fn top_level(edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_owned();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in edges {
        let entry = out.entry(top(from)).or_default();
        entry.extend(tos.iter().map(|t| top(t)).filter(|t| *t != top(from)));
    }
    out
}

fn src() -> PathBuf {
    std::env::var_os("LAYOUT_SRC").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), PathBuf::from)
}

#[test]
fn no_import_cycles_between_modules() {
    let mods = modules(&src());
    let edges = graph(&mods);
    assert!(edges.get("crate").is_some_and(|e| e.contains("store")), "the graph is read: lib.rs uses the store ({edges:?})");
    let mut found: Vec<String> = cycles(&top_level(&edges)).into_iter().map(|c| format!("top level: {c}")).collect();
    found.extend(cycles(&edges).into_iter().map(|c| format!("modules: {c}")));
    assert!(found.is_empty(), "import cycles in actors/src:\n  {}", found.join("\n  "));
}

#[test]
fn messages_is_a_leaf_of_actor_modules() {
    let edges = graph(&modules(&src()));
    let actors = ["ack_tracker", "room", "rooms", "router", "session", "sse", "ttl_sweeper", "crate"];
    for (from, tos) in edges.iter().filter(|(m, _)| m.starts_with("messages")) {
        let bad: Vec<&String> = tos.iter().filter(|t| actors.contains(&t.split("::").next().unwrap_or(t))).collect();
        assert!(bad.is_empty(), "{from} imports actor modules {bad:?}");
    }
}

#[test]
fn no_late_bound_cell_holds_an_actor() {
    let mut found = Vec::new();
    for (module, source) in modules(&src()) {
        let code = code(&source);
        for cell in ["OnceLock", "OnceCell"] {
            for (at, _) in code.match_indices(cell) {
                let rest = &code[at + cell.len()..];
                let Some(generic) = rest.strip_prefix('<') else { continue };
                let mut depth = 1;
                let end = generic
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '<' => 1,
                            '>' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map_or(generic.len(), |(i, _)| i);
                let held = &generic[..end];
                if ["Addr", "Recipient", "Handle"].iter().any(|a| held.contains(a)) {
                    found.push(format!("{module}: {cell}<{held}>"));
                }
            }
        }
    }
    assert!(found.is_empty(), "late-bound cells holding actors:\n  {}", found.join("\n  "));
}

#[test]
fn no_source_file_is_too_long() {
    let long: Vec<String> = modules(&src())
        .into_iter()
        .map(|(m, s)| (m, s.lines().count()))
        .filter(|&(_, n)| n > MAX_LINES)
        .map(|(m, n)| format!("{m}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines:\n  {}", long.join("\n  "));
}

#[test]
fn the_reader_sees_paths_through_comments_strings_and_use_trees() {
    let code = code("use crate::{a::B, c::{self, D}};\n// crate::x::Y\nlet s = \"crate::z::W\"; let c = '\"'; super::e::F; r#\"crate::q\"#;\n#[cfg(test)]\nmod tests { use crate::t; }");
    let t = tokens(&code);
    let starts: Vec<usize> = (0..t.len()).filter(|&i| ["crate", "super"].contains(&t[i].as_str()) && t.get(i + 1).is_some_and(|n| n == "::")).collect();
    let all: Vec<Vec<String>> = starts.into_iter().flat_map(|i| paths(&t, i)).collect();
    let want: Vec<Vec<String>> = [vec!["crate", "a", "B"], vec!["crate", "c"], vec!["crate", "c", "D"], vec!["super", "e", "F"]]
        .iter()
        .map(|p| p.iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(all, want);
}
