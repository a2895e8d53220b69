//! The configuration error: where (file, line, key) and what was expected.

use std::fmt;

/// Why a configuration was rejected. Its `Display` reads like
/// `esprit-ike.toml:7: connections.site-b.proposals[1]: unknown key exchange 'ecp999' (expected one
/// of x25519, ecp256, ecp384, modp2048)`. It never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given to [`Config::load`](super::Config::load) or as the origin of
    /// [`Config::parse`](super::Config::parse).
    pub file: String,
    /// The 1-based line the error is on, when it belongs to a place in the file.
    pub line: Option<usize>,
    /// The key's path, such as `connections.site-b.proposals[1]`, when the error belongs to one.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}
