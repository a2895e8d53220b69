//! A walk over the spanned TOML document: every value knows its key path and its line, so each
//! error can name both; tables reject keys they do not know, listing the ones they do.

use super::error::ConfigError;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The file being read: its text (for line numbers), its name and its directory.
pub(crate) struct Cx<'a> {
    text: &'a str,
    file: String,
    dir: PathBuf,
}

impl<'a> Cx<'a> {
    /// A context for `text` read from `origin`.
    pub(crate) fn new(text: &'a str, origin: &Path) -> Self {
        let dir = match origin.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Cx {
            text,
            file: origin.display().to_string(),
            dir,
        }
    }

    /// The 1-based line of a byte offset.
    pub(crate) fn line(&self, offset: usize) -> usize {
        let bytes = self.text.as_bytes();
        let end = offset.min(bytes.len());
        bytes[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    /// An error at `span` about `key`.
    pub(crate) fn error(
        &self,
        span: &Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: Some(self.line(span.start)),
            key: (!key.is_empty()).then(|| key.to_string()),
            message: message.into(),
        }
    }

    /// An error that belongs to the file as a whole.
    pub(crate) fn file_error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    /// A path from the file, relative ones taken from the file's directory.
    pub(crate) fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// The error for a document TOML itself rejects.
    pub(crate) fn syntax_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim_end().to_string();
        let Some(span) = e.span() else {
            return self.file_error(message);
        };
        if message.starts_with("duplicate key") {
            return self.duplicate_error(&span);
        }
        self.error(&span, "", message)
    }

    /// A duplicate key, said in terms of what was defined twice.
    fn duplicate_error(&self, span: &Range<usize>) -> ConfigError {
        let key_text = self.text.get(span.clone()).unwrap_or("").trim();
        let line_start = self
            .text
            .get(..span.start.min(self.text.len()))
            .and_then(|s| s.rfind('\n'))
            .map_or(0, |i| i + 1);
        let line = self
            .text
            .get(line_start..)
            .and_then(|s| s.lines().next())
            .unwrap_or("")
            .trim();
        let header = line
            .strip_prefix('[')
            .filter(|h| !h.starts_with('['))
            .and_then(|h| h.split(']').next());
        if let Some(header) = header {
            let parts: Vec<&str> = header
                .split('.')
                .map(|p| p.trim().trim_matches('"').trim_matches('\''))
                .collect();
            let path = parts.join(".");
            let message = match parts.as_slice() {
                ["connections", name] => {
                    format!("duplicate connection name '{name}' (each connection is defined once)")
                }
                ["connections", conn, "children", name] => format!(
                    "duplicate child name '{name}' in connection '{conn}' (each child is defined once)"
                ),
                _ => format!("[{path}] is defined twice"),
            };
            return self.error(span, &path, message);
        }
        let key = key_text.trim_matches('"').trim_matches('\'');
        let message = format!("duplicate key '{key}' (each key is set once)");
        if !line.starts_with(key_text) {
            return self.error(span, key, message);
        }
        // A key at the start of its line belongs to the table of the nearest header above.
        let table = self
            .text
            .get(..line_start)
            .unwrap_or("")
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|h| {
                h.trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or("")
                    .split('.')
                    .map(|p| p.trim().trim_matches('"').trim_matches('\''))
                    .collect::<Vec<_>>()
                    .join(".")
            });
        match table {
            Some(t) if !t.is_empty() => self.error(span, &format!("{t}.{key}"), message),
            _ => self.error(span, key, message),
        }
    }
}

/// How a TOML value's type reads in an error.
fn describe(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// One value of the document with its key path.
#[derive(Clone)]
pub(crate) struct Val<'a> {
    cx: &'a Cx<'a>,
    v: &'a Spanned<DeValue<'a>>,
    /// The key path, such as `connections.site-b.proposals[1]`.
    pub(crate) path: String,
}

impl<'a> Val<'a> {
    /// The value's span.
    pub(crate) fn span(&self) -> Range<usize> {
        self.v.span()
    }

    /// An error about this value.
    pub(crate) fn err(&self, message: impl Into<String>) -> ConfigError {
        self.cx.error(&self.span(), &self.path, message)
    }

    /// "expected {what}, got {type}".
    pub(crate) fn expected(&self, what: &str) -> ConfigError {
        self.err(format!(
            "expected {what}, got {}",
            describe(self.v.get_ref())
        ))
    }

    /// A string value.
    pub(crate) fn str(&self) -> Result<&'a str, ConfigError> {
        match self.v.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.expected("a string")),
        }
    }

    /// A string value; the error says what the string should hold.
    pub(crate) fn str_for(&self, what: &str) -> Result<&'a str, ConfigError> {
        match self.v.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.expected(what)),
        }
    }

    /// A boolean: `true`/`false`, or swanctl's `"yes"`/`"no"`.
    pub(crate) fn bool(&self) -> Result<bool, ConfigError> {
        match self.v.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            DeValue::String(s) => match s.as_ref() {
                "yes" | "true" => Ok(true),
                "no" | "false" => Ok(false),
                other => Err(self.err(format!(
                    "expected true or false (or \"yes\"/\"no\"), got '{other}'"
                ))),
            },
            _ => Err(self.expected("true or false")),
        }
    }

    /// The value if it is a TOML integer (None for other types); an error if it does not fit
    /// an i128.
    pub(crate) fn integer(&self) -> Result<Option<i128>, ConfigError> {
        match self.v.get_ref() {
            DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
                .map(Some)
                .map_err(|_| self.err("integer out of range")),
            _ => Ok(None),
        }
    }

    /// The value if it is a TOML float (None for other types).
    pub(crate) fn float(&self) -> Option<f64> {
        match self.v.get_ref() {
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            _ => None,
        }
    }

    /// An integer in `min..=max`.
    pub(crate) fn int_in(&self, min: i128, max: i128) -> Result<i128, ConfigError> {
        match self.integer()? {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            Some(n) => Err(self.err(format!("expected an integer in {min}..={max}, got {n}"))),
            None => Err(self.expected(&format!("an integer in {min}..={max}"))),
        }
    }

    /// A u16 in `min..=max`.
    pub(crate) fn u16_in(&self, min: u16, max: u16) -> Result<u16, ConfigError> {
        let n = self.int_in(i128::from(min), i128::from(max))?;
        u16::try_from(n).map_err(|_| self.err("integer out of range"))
    }

    /// A u32 in `min..=max`.
    pub(crate) fn u32_in(&self, min: u32, max: u32) -> Result<u32, ConfigError> {
        let n = self.int_in(i128::from(min), i128::from(max))?;
        u32::try_from(n).map_err(|_| self.err("integer out of range"))
    }

    /// The elements of an array, each with its indexed path; a single value stands for a list of
    /// one (swanctl lists are often written as one value).
    pub(crate) fn items(&self) -> Vec<Val<'a>> {
        match self.v.get_ref() {
            DeValue::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| Val {
                    cx: self.cx,
                    v,
                    path: format!("{}[{i}]", self.path),
                })
                .collect(),
            _ => vec![self.clone()],
        }
    }

    /// A list of strings: an array of strings, or one string (which, when `split_commas`, is a
    /// comma-separated list as in swanctl.conf). Each item comes with the value it was read from
    /// and its indexed path.
    pub(crate) fn strings(
        &self,
        what: &str,
        split_commas: bool,
    ) -> Result<Vec<(&'a str, Val<'a>)>, ConfigError> {
        match self.v.get_ref() {
            DeValue::Array(_) => self
                .items()
                .into_iter()
                .map(|item| {
                    item.str_for(&format!("a string ({what})"))
                        .map(|s| (s, item))
                })
                .collect(),
            DeValue::String(s) if split_commas && s.contains(',') => Ok(s
                .as_ref()
                .split(',')
                .enumerate()
                .map(|(i, part)| {
                    let mut item = self.clone();
                    item.path = format!("{}[{i}]", self.path);
                    (part.trim(), item)
                })
                .collect()),
            DeValue::String(s) => Ok(vec![(s.as_ref(), self.clone())]),
            _ => Err(self.expected(&format!("a string or an array of strings ({what})"))),
        }
    }

    /// The value as a table.
    pub(crate) fn table(&self) -> Result<Tbl<'a>, ConfigError> {
        match self.v.get_ref() {
            DeValue::Table(t) => Ok(Tbl {
                cx: self.cx,
                t,
                span: self.span(),
                path: self.path.clone(),
            }),
            _ => Err(self.expected("a table")),
        }
    }
}

/// A table of the document with its key path.
pub(crate) struct Tbl<'a> {
    cx: &'a Cx<'a>,
    t: &'a DeTable<'a>,
    span: Range<usize>,
    /// The key path ("" for the document).
    pub(crate) path: String,
}

impl<'a> Tbl<'a> {
    /// The document's top-level table.
    pub(crate) fn root(cx: &'a Cx<'a>, root: &'a Spanned<DeTable<'a>>) -> Self {
        Tbl {
            cx,
            t: root.get_ref(),
            span: 0..0,
            path: String::new(),
        }
    }

    /// The path of a key of this table.
    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// An error about this table (on the line that opens it).
    pub(crate) fn err(&self, message: impl Into<String>) -> ConfigError {
        self.cx.error(&self.span, &self.path, message)
    }

    /// An error about a key of this table that is missing (on the line that opens the table).
    pub(crate) fn missing(&self, key: &str, message: impl Into<String>) -> ConfigError {
        self.cx.error(&self.span, &self.key_path(key), message)
    }

    /// The entries in the order the file has them.
    pub(crate) fn entries(&self) -> Vec<(&'a str, Range<usize>, Val<'a>)> {
        let mut out: Vec<_> = self
            .t
            .iter()
            .map(|(k, v)| {
                let key: &'a str = k.get_ref().as_ref();
                (
                    key,
                    k.span(),
                    Val {
                        cx: self.cx,
                        v,
                        path: self.key_path(key),
                    },
                )
            })
            .collect();
        out.sort_by_key(|(_, span, _)| span.start);
        out
    }

    /// Rejects the first key (in file order) not in `known`.
    pub(crate) fn check_keys(&self, known: &[&str]) -> Result<(), ConfigError> {
        for (key, span, _) in self.entries() {
            if !known.contains(&key) {
                return Err(self.cx.error(
                    &span,
                    &self.key_path(key),
                    format!("unknown key '{key}' (expected one of {})", known.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// The value of a key, if set.
    pub(crate) fn get(&self, key: &str) -> Option<Val<'a>> {
        self.t.get(key).map(|v| Val {
            cx: self.cx,
            v,
            path: self.key_path(key),
        })
    }
}
