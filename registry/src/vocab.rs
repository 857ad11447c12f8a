//! The plain data types every ctxplane crate shares: source ids, tiers,
//! content hashes, line spans, roles. No I/O lives here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A source's stable identifier, as written in `registry.toml`.
///
/// Lowercase ASCII letters, digits, `-`, `_` and `.`, starting with a letter
/// or digit, at most 64 bytes: safe in paths, URLs, filters and logs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceId(String);

impl SourceId {
    pub fn new(id: impl Into<String>) -> Result<Self, String> {
        let id = id.into();
        validate_ident(&id, "source id")?;
        Ok(SourceId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks the identifier grammar shared by source ids, exception ids and
/// principal names.
pub fn validate_ident(id: &str, what: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if id.len() > 64 {
        return Err(format!("{what} {id:?} is longer than 64 bytes"));
    }
    let first = id.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(format!(
            "{what} {id:?} must start with a lowercase letter or digit"
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{what} {id:?} contains {bad:?}; use lowercase letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

impl TryFrom<String> for SourceId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        SourceId::new(s)
    }
}

impl From<SourceId> for String {
    fn from(id: SourceId) -> String {
        id.0
    }
}

/// Lets a map keyed by source id be read with a `&str` (an id from an
/// index record or a citation) without validating or copying it: the
/// order, equality and hash are the string's own.
impl std::borrow::Borrow<str> for SourceId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SourceId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SourceId::new(s)
    }
}

/// Sensitivity tier of a source, 1 (least sensitive) to 4 (most).
///
/// A principal with tier ceiling `n` may read tiers `1..=n` and nothing above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Tier(u8);

impl Tier {
    pub const MIN: Tier = Tier(1);
    pub const MAX: Tier = Tier(4);

    pub fn new(n: u8) -> Result<Self, String> {
        if (1..=4).contains(&n) {
            Ok(Tier(n))
        } else {
            Err(format!("tier must be 1, 2, 3 or 4, not {n}"))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    pub fn all() -> impl Iterator<Item = Tier> {
        (1..=4).map(Tier)
    }
}

impl TryFrom<u8> for Tier {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        Tier::new(n)
    }
}

impl From<Tier> for u8 {
    fn from(t: Tier) -> u8 {
        t.0
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let n: u8 = s
            .trim()
            .parse()
            .map_err(|_| format!("tier must be 1, 2, 3 or 4, not {s:?}"))?;
        Tier::new(n)
    }
}

/// A blake3 digest, shown and stored as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    pub fn from_blake3(h: blake3::Hash) -> Self {
        ContentHash(*h.as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 12 hex characters, for human-facing listings.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }

    pub fn from_hex(s: &str) -> Result<Self, String> {
        blake3::Hash::from_hex(s)
            .map(|h| ContentHash(*h.as_bytes()))
            .map_err(|_| format!("{s:?} is not a blake3 hash (64 hex characters)"))
    }

    /// Equality in constant time, for comparing credential hashes.
    pub fn ct_eq(&self, other: &ContentHash) -> bool {
        blake3::Hash::from_bytes(self.0) == blake3::Hash::from_bytes(other.0)
    }
}

impl TryFrom<String> for ContentHash {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ContentHash::from_hex(&s)
    }
}

impl From<ContentHash> for String {
    fn from(h: ContentHash) -> String {
        h.to_hex()
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

/// An inclusive 1-based line span inside a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    pub start_line: u32,
    pub end_line: u32,
}

/// What a principal is, which decides the operations it may perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An AI agent asking for context.
    Agent,
    /// A person who manages the registry.
    Steward,
    /// A build pipeline checking packages and freshness.
    Ci,
    /// A person asking where an answer came from.
    Developer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Steward => "steward",
            Role::Ci => "ci",
            Role::Developer => "developer",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "agent" => Ok(Role::Agent),
            "steward" => Ok(Role::Steward),
            "ci" => Ok(Role::Ci),
            "developer" => Ok(Role::Developer),
            _ => Err(format!("role must be agent, steward, ci or developer, not {s:?}")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ids_are_restricted() {
        assert!(SourceId::new("payments-api").is_ok());
        assert!(SourceId::new("docs.v2_x").is_ok());
        for bad in ["", "Payments", "-x", "a/b", "a b", "../x", &"a".repeat(65)] {
            assert!(SourceId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tiers_are_one_to_four() {
        assert!(Tier::new(0).is_err());
        assert!(Tier::new(5).is_err());
        assert_eq!("3".parse::<Tier>(), Ok(Tier(3)));
        assert!("high".parse::<Tier>().is_err());
    }

    #[test]
    fn content_hash_hex_round_trips() {
        let h = ContentHash::of(b"hello");
        assert_eq!(ContentHash::from_hex(&h.to_hex()), Ok(h));
        assert!(ContentHash::from_hex("zz").is_err());
    }
}
