//! The shape of `src/`, checked: modules import each other without cycles,
//! and no source file grows past one job (about 600 lines before its unit
//! tests). Both are promises of `docs/architecture.md`; a test keeps them
//! from eroding one convenient import at a time.
//!
//! The import graph is read from the text: every `crate::a::b::{c, d::e}`
//! path names the longest module prefix that exists as a file. Re-exports are
//! followed back to the file they come from by that same rule only when the
//! path spells the defining module, so a `pub use` in a `mod.rs` counts as an
//! edge of that `mod.rs`, which is what makes a re-export cycle visible too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Source files longer than this (before `#[cfg(test)]`) do more than one job.
const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/rules/kind/mod.rs` → `rules::kind`; `src/lib.rs` → `` (the root).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without its unit-test module and without comments.
fn code(text: &str) -> String {
    let body = text.split("#[cfg(test)]").next().unwrap_or("");
    body.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands the path that follows `crate::` at the start of `s`, with nested
/// braces, into full paths: `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(s: &str) -> Vec<String> {
    fn path(s: &[u8], i: &mut usize, prefix: &str, out: &mut Vec<String>) {
        let mut cur = String::from(prefix);
        loop {
            let start = *i;
            while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_') {
                *i += 1;
            }
            let seg = std::str::from_utf8(&s[start..*i]).unwrap_or("");
            if !seg.is_empty() && seg != "self" {
                if !cur.is_empty() {
                    cur.push_str("::");
                }
                cur.push_str(seg);
            }
            if s[*i..].starts_with(b"::{") {
                *i += 3;
                loop {
                    while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\n' || s[*i] == b',') {
                        *i += 1;
                    }
                    if *i >= s.len() || s[*i] == b'}' {
                        *i += 1;
                        return;
                    }
                    path(s, i, &cur, out);
                    // Skip `as alias`.
                    while *i < s.len() && s[*i] != b',' && s[*i] != b'}' {
                        *i += 1;
                    }
                }
            } else if s[*i..].starts_with(b"::") {
                *i += 2;
            } else {
                out.push(cur);
                return;
            }
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    path(s.as_bytes(), &mut i, "", &mut out);
    out
}

fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let resolve = |p: &str| -> Option<String> {
        let mut parts: Vec<&str> = p.split("::").collect();
        while !parts.is_empty() {
            let m = parts.join("::");
            if modules.contains_key(&m) {
                return Some(m);
            }
            parts.pop();
        }
        None
    };
    let mut edges = BTreeMap::new();
    for (m, f) in &modules {
        if m.is_empty() {
            continue; // lib.rs declares every module; it is the root, not a user.
        }
        let text = code(&fs::read_to_string(f).expect("read file"));
        let mut to = BTreeSet::new();
        for (i, _) in text.match_indices("crate::") {
            for p in expand(&text[i + "crate::".len()..]) {
                if let Some(t) = resolve(&p) {
                    // A module's own children and itself are not dependencies
                    // worth a cycle: `mod.rs` declares them.
                    if &t != m && !t.starts_with(&format!("{m}::")) {
                        to.insert(t);
                    }
                }
            }
        }
        // `super::x` names a module relative to this one's parent.
        for (i, _) in text.match_indices("super::") {
            if text[..i].ends_with("::") {
                continue; // the second `super` of `super::super::`, counted below
            }
            let mut rest = &text[i..];
            let mut base: Vec<&str> = m.split("::").collect();
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            let prefix = base.join("::");
            for p in expand(rest) {
                let full = if prefix.is_empty() {
                    p
                } else {
                    format!("{prefix}::{p}")
                };
                if let Some(t) = resolve(&full)
                    && &t != m
                    && !t.starts_with(&format!("{m}::"))
                    && !m.starts_with(&format!("{t}::"))
                {
                    to.insert(t);
                }
            }
        }
        edges.insert(m.clone(), to);
    }
    edges
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct St<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(st: &mut St<'a>, v: &'a str) {
        st.index.insert(v, st.next);
        st.low.insert(v, st.next);
        st.next += 1;
        st.stack.push(v);
        st.on.insert(v);
        let g = st.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !st.index.contains_key(w) {
                visit(st, w);
                let lw = st.low[w];
                let lv = st.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if st.on.contains(w) {
                let iw = st.index[w];
                let lv = st.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if st.low[v] == st.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = st.stack.pop() {
                st.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                st.out.push(comp);
            }
        }
    }
    let mut st = St {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !st.index.contains_key(v.as_str()) {
            visit(&mut st, v);
        }
    }
    st.out
}

#[test]
fn the_path_expander_reads_nested_braces() {
    assert_eq!(expand("a::b;"), vec!["a::b"]);
    assert_eq!(
        expand("a::{b, c::{d, e as f}, self};"),
        vec!["a::b", "a::c::d", "a::c::e", "a"]
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
}

#[test]
fn no_import_cycle_in_src() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(g.len() > 30, "read the module tree ({} modules)", g.len());
    let found = cycles(&g);
    assert!(
        found.is_empty(),
        "modules that import each other (directly or through others): {found:?}"
    );
}

#[test]
fn no_source_file_over_one_job() {
    let mut files = Vec::new();
    for dir in ["src", "firmware-sim/src"] {
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = fs::read_to_string(f).expect("read file");
            let n = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or("")
                .lines()
                .count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}
