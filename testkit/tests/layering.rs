//! Layering that holds: no crate of the workspace has a cycle among its modules, at the top
//! level (`esp` → `sa` → `crypto`, never back) or among the children of one module.
//!
//! The check reads the sources: every `crate::a::b` and `super::a` path outside comments is an
//! edge from the module of the file that names it to the module it names. A cycle fails the
//! test with its members, so the next change that closes one is caught where it is made.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace's members (the `members` list of the root Cargo.toml): every crate's `src`
/// is checked, new crates included.
fn members(root: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let list = manifest
        .split("members")
        .nth(1)
        .and_then(|rest| rest.split('[').nth(1))
        .and_then(|rest| rest.split(']').next())
        .expect("a members list in the workspace's Cargo.toml");
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Module path of a source file relative to `src` (`esp/decap.rs` → `[esp, decap]`,
/// `esp/mod.rs` → `[esp]`, `lib.rs` → `[]`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module paths a line names through `crate::` or `super::`, resolved against `module`
/// (the module the file defines). `crate::{a, b::c}` names `a` and `b::c`.
fn paths_named(line: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (start, _) in line
        .match_indices("crate::")
        .chain(line.match_indices("super::"))
    {
        if start > 0 && line[..start].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let is_super = line[start..].starts_with("super::");
        let rest = &line[start + "crate::".len()..];
        let base: Vec<String> = if is_super {
            // `super` of `a/b.rs` (module a::b) is `a`; of `a/mod.rs` (module a) it is the
            // crate root.
            let mut b = module.to_vec();
            b.pop();
            b
        } else {
            Vec::new()
        };
        let mut heads = Vec::new();
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                heads.push(item.trim().to_string());
            }
        } else {
            heads.push(rest.to_string());
        }
        for h in heads {
            let mut p = base.clone();
            for seg in h.split("::") {
                let ident: String = seg.chars().take_while(|&c| is_ident(c)).collect();
                if ident.is_empty() || !ident.starts_with(|c: char| c.is_ascii_lowercase()) {
                    break;
                }
                p.push(ident.clone());
                if ident.len() != seg.len() {
                    break;
                }
            }
            if p.len() > base.len() {
                found.push(p);
            }
        }
    }
    found
}

/// Edges between modules at `depth` (1: top-level modules; 2: children of one top-level
/// module), for the crate at `src`. Only edges between modules that exist as files count.
fn edges(src: &Path, depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files
        .iter()
        .map(|f| module_of(f.strip_prefix(src).unwrap()))
        .collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(src).unwrap();
        let module = module_of(rel);
        if module.len() < depth || module.first().is_some_and(|m| m == "bin") {
            continue;
        }
        let me = &module[..depth];
        let text = std::fs::read_to_string(f).unwrap();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for target in paths_named(code, &module) {
                if target.len() < depth || !modules.contains(&target[..depth]) {
                    continue;
                }
                let to = &target[..depth];
                if to == me || to[..depth - 1] != me[..depth - 1] {
                    continue;
                }
                g.entry(me.join("::")).or_default().insert(to.join("::"));
            }
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.g.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn no_crate_has_a_module_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    let crates = members(&root);
    assert!(crates.len() >= 8, "{crates:?}");
    for krate in &crates {
        let src = root.join(krate).join("src");
        assert!(src.is_dir(), "{} is missing", src.display());
        for depth in [1, 2] {
            for c in cycles(&edges(&src, depth)) {
                found.push(format!("{krate}: {}", c.join(" ↔ ")));
            }
        }
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_a_cycle() {
    let dir = std::env::temp_dir().join(format!("esprit-layering-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "pub mod x;\nuse crate::b::Thing;\n").unwrap();
    std::fs::write(
        src.join("a/x.rs"),
        "use super::y; // crate::b in a comment\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "use crate::{a::x::f, c};\n").unwrap();
    let top = edges(&src, 1);
    let found = cycles(&top);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found, vec![vec!["a".to_string(), "b".to_string()]]);
    assert_eq!(
        top.get("a").map(|s| s.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["b".to_string()])
    );
}
