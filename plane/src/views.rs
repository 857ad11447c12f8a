//! Views of registry entries as the service shows them (CLI, HTTP, MCP):
//! sources, exceptions and principals, never a token or its full hash.

use jiff::Timestamp;
use registry::model::{Exception, Principal, Source, SourceGrant, Window};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct SourceView<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub location: &'a str,
    pub root: String,
    pub owner: &'a str,
    pub tier: u8,
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    pub include: Vec<&'a str>,
    pub exclude: Vec<&'a str>,
    pub never_ingest: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_change: Option<&'a registry::model::StatusChange>,
}

impl<'a> SourceView<'a> {
    pub fn new(s: &'a Source, registry_dir: &std::path::Path) -> Self {
        SourceView {
            id: s.id.as_str(),
            kind: s.kind.as_str(),
            location: &s.location,
            root: s.root(registry_dir).display().to_string(),
            owner: &s.owner,
            tier: s.tier.get(),
            status: s.status.as_str(),
            description: s.description.as_deref(),
            include: s.include.patterns().collect(),
            exclude: s.exclude.patterns().collect(),
            never_ingest: s.never_ingest.patterns().collect(),
            last_change: s.last_change.as_ref(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ExceptionView<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub path: &'a str,
    pub permits: Vec<&'a str>,
    pub approver: &'a str,
    pub reason: &'a str,
    pub granted_at: Timestamp,
    pub expires_at: Timestamp,
    pub window: Window,
}

impl<'a> ExceptionView<'a> {
    pub fn new(x: &'a Exception, now: Timestamp) -> Self {
        ExceptionView {
            id: &x.id,
            source: x.source.as_str(),
            path: &x.path,
            permits: x.permits.iter().map(|p| p.as_str()).collect(),
            approver: &x.approver,
            reason: &x.reason,
            granted_at: x.granted_at,
            expires_at: x.expires_at,
            window: x.window(now),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PrincipalView<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub tier_ceiling: u8,
    pub sources: Vec<&'a str>,
    /// The first 12 hex characters of the token hash, to tell tokens apart.
    pub token_hash_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
}

impl<'a> PrincipalView<'a> {
    pub fn new(p: &'a Principal) -> Self {
        PrincipalView {
            name: &p.name,
            role: p.role.as_str(),
            tier_ceiling: p.tier_ceiling.get(),
            sources: match &p.sources {
                SourceGrant::All => vec!["*"],
                SourceGrant::Only(ids) => ids.iter().map(|s| s.as_str()).collect(),
            },
            token_hash_prefix: p.token_hash.short(),
            description: p.description.as_deref(),
        }
    }
}
