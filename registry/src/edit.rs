//! Steward edits to `registry.toml`, made on the document itself so that
//! comments and layout the steward wrote survive, then validated by parsing
//! the result in full before anything is written.

use jiff::Timestamp;
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use crate::error::{RegistryError, Result};
use crate::model::{Permit, Registry, SourceGrant, SourceKind, Status};
use crate::vocab::{ContentHash, Role, SourceId, Tier};

#[derive(Clone, Debug, PartialEq)]
pub struct NewSource {
    pub id: SourceId,
    pub kind: SourceKind,
    pub location: String,
    pub owner: String,
    pub tier: Tier,
    pub description: Option<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub never_ingest: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewException {
    pub id: String,
    pub source: SourceId,
    pub path: String,
    pub permits: Vec<Permit>,
    pub approver: String,
    pub reason: String,
    pub granted_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewPrincipal {
    pub name: String,
    pub role: Role,
    pub token_hash: ContentHash,
    pub tier_ceiling: Tier,
    /// Empty with `all = true` means every source.
    pub sources: Vec<SourceId>,
    pub all_sources: bool,
    pub description: Option<String>,
    pub limits: crate::model::Limits,
}

/// One change a steward makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    AddSource(NewSource),
    SetStatus {
        id: SourceId,
        status: Status,
        reason: Option<String>,
    },
    GrantException(NewException),
    AddPrincipal(NewPrincipal),
}

impl Edit {
    /// The audit action name.
    pub fn action(&self) -> &'static str {
        match self {
            Edit::AddSource(_) => "source.add",
            Edit::SetStatus {
                status: Status::Approved,
                ..
            } => "source.approve",
            Edit::SetStatus {
                status: Status::Denied,
                ..
            } => "source.deny",
            Edit::SetStatus {
                status: Status::Revoked,
                ..
            } => "source.revoke",
            Edit::SetStatus {
                status: Status::Proposed,
                ..
            } => "source.propose",
            Edit::GrantException(_) => "exception.grant",
            Edit::AddPrincipal(_) => "principal.add",
        }
    }

    pub fn subject(&self) -> String {
        match self {
            Edit::AddSource(s) => s.id.to_string(),
            Edit::SetStatus { id, .. } => id.to_string(),
            Edit::GrantException(x) => x.id.clone(),
            Edit::AddPrincipal(p) => p.name.clone(),
        }
    }
}

fn datetime(ts: Timestamp) -> toml_edit::Value {
    let secs = Timestamp::from_second(ts.as_second()).unwrap_or(ts);
    match secs.to_string().parse::<toml_edit::Datetime>() {
        Ok(dt) => toml_edit::Value::from(dt),
        Err(_) => toml_edit::Value::from(secs.to_string()),
    }
}

fn string_array<'a>(items: impl IntoIterator<Item = &'a str>) -> toml_edit::Value {
    let mut a = Array::new();
    for s in items {
        a.push(s);
    }
    toml_edit::Value::Array(a)
}

fn tables_mut<'d>(doc: &'d mut DocumentMut, key: &str) -> Result<&'d mut ArrayOfTables> {
    if !doc.contains_key(key) {
        doc.insert(key, Item::ArrayOfTables(ArrayOfTables::new()));
    }
    doc[key].as_array_of_tables_mut().ok_or_else(|| {
        RegistryError::BadRequest(format!(
            "`{key}` in the registry is not an array of tables ([[{key}]])"
        ))
    })
}

fn source_table(s: &NewSource) -> Table {
    let mut t = Table::new();
    t["id"] = value(s.id.as_str());
    t["kind"] = value(s.kind.as_str());
    t["location"] = value(s.location.as_str());
    t["owner"] = value(s.owner.as_str());
    t["tier"] = value(i64::from(s.tier.get()));
    t["status"] = value(Status::Proposed.as_str());
    if let Some(d) = &s.description {
        t["description"] = value(d.as_str());
    }
    for (key, list) in [
        ("include", &s.include),
        ("exclude", &s.exclude),
        ("never_ingest", &s.never_ingest),
    ] {
        if !list.is_empty() {
            t[key] = Item::Value(string_array(list.iter().map(String::as_str)));
        }
    }
    t
}

fn exception_table(x: &NewException) -> Table {
    let mut t = Table::new();
    t["id"] = value(x.id.as_str());
    t["source"] = value(x.source.as_str());
    t["path"] = value(x.path.as_str());
    t["permits"] = Item::Value(string_array(x.permits.iter().map(|p| p.as_str())));
    t["approver"] = value(x.approver.as_str());
    t["reason"] = value(x.reason.as_str());
    t["granted_at"] = Item::Value(datetime(x.granted_at));
    t["expires_at"] = Item::Value(datetime(x.expires_at));
    t
}

fn principal_table(p: &NewPrincipal) -> Table {
    let mut t = Table::new();
    t["name"] = value(p.name.as_str());
    t["role"] = value(p.role.as_str());
    t["token_hash"] = value(p.token_hash.to_hex());
    t["tier_ceiling"] = value(i64::from(p.tier_ceiling.get()));
    t["sources"] = Item::Value(if p.all_sources {
        string_array(["*"])
    } else {
        string_array(p.sources.iter().map(SourceId::as_str))
    });
    if let Some(d) = &p.description {
        t["description"] = value(d.as_str());
    }
    limits_into(&mut t, p.limits);
    t
}

fn limits_into(t: &mut Table, l: crate::model::Limits) {
    if let Some(n) = l.requests_per_minute {
        t["requests_per_minute"] = value(i64::from(n));
    }
    if let Some(n) = l.tokens_per_day {
        t["tokens_per_day"] = value(n as i64);
    }
}

/// Which transitions a steward may make, and what to say otherwise.
fn check_transition(id: &SourceId, from: Status, to: Status) -> Result<()> {
    let allowed = match to {
        Status::Approved => matches!(from, Status::Proposed | Status::Denied | Status::Revoked),
        Status::Denied => from == Status::Proposed,
        Status::Revoked => from == Status::Approved,
        Status::Proposed => false,
    };
    if allowed {
        return Ok(());
    }
    let (action, hint) = match to {
        Status::Approved => ("approve", ""),
        Status::Denied if from == Status::Approved => ("deny", "; revoke it instead"),
        Status::Denied => ("deny", ""),
        Status::Revoked if from == Status::Proposed => ("revoke", "; deny it instead"),
        Status::Revoked => ("revoke", ""),
        Status::Proposed => ("propose", ""),
    };
    Err(RegistryError::BadTransition {
        id: id.to_string(),
        action,
        status: from.to_string(),
        hint,
    })
}

/// Applies `edit` to registry text, given the parsed `current` registry.
/// Returns the new text, which the caller must validate before writing.
pub fn apply(text: &str, current: &Registry, edit: &Edit, actor: &str, now: Timestamp) -> Result<String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| RegistryError::BadRequest(format!("registry does not parse: {e}")))?;
    match edit {
        Edit::AddSource(s) => {
            if current.sources.contains_key(&s.id) {
                return Err(RegistryError::DuplicateSource { id: s.id.to_string() });
            }
            tables_mut(&mut doc, "sources")?.push(source_table(s));
        }
        Edit::SetStatus { id, status, reason } => {
            let src = current
                .source(id)
                .ok_or_else(|| RegistryError::UnknownSource { id: id.to_string() })?;
            check_transition(id, src.status, *status)?;
            let table = tables_mut(&mut doc, "sources")?
                .iter_mut()
                .find(|t| t.get("id").and_then(Item::as_str) == Some(id.as_str()))
                .ok_or_else(|| RegistryError::UnknownSource { id: id.to_string() })?;
            table["status"] = value(status.as_str());
            table["status_changed_by"] = value(actor);
            table["status_changed_at"] = Item::Value(datetime(now));
            match reason {
                Some(r) => table["status_reason"] = value(r.as_str()),
                None => {
                    table.remove("status_reason");
                }
            }
        }
        Edit::GrantException(x) => {
            if current.exception(&x.id).is_some() {
                return Err(RegistryError::DuplicateException { id: x.id.clone() });
            }
            if current.source(&x.source).is_none() {
                return Err(RegistryError::UnknownSource {
                    id: x.source.to_string(),
                });
            }
            tables_mut(&mut doc, "exceptions")?.push(exception_table(x));
        }
        Edit::AddPrincipal(p) => {
            if current.principal(&p.name).is_some() {
                return Err(RegistryError::DuplicatePrincipal { name: p.name.clone() });
            }
            tables_mut(&mut doc, "principals")?.push(principal_table(p));
        }
    }
    Ok(doc.to_string())
}

/// Writes a registry from scratch, for `registry init` and for tests that
/// check that what is written reads back the same.
pub fn render(reg: &Registry, header: &str) -> String {
    let mut doc = DocumentMut::new();
    doc["version"] = value(crate::model::FORMAT_VERSION);
    let mut never = Table::new();
    never["use_builtin"] = value(reg.use_builtin_never_ingest);
    never["patterns"] = Item::Value(string_array(
        reg.never_ingest
            .rules()
            .iter()
            .filter(|r| r.origin == crate::rules::RuleOrigin::Global)
            .map(|r| r.pattern.as_str()),
    ));
    doc["never_ingest"] = Item::Table(never);
    if reg.freshness != crate::model::Freshness::default() {
        let mut ages = Table::new();
        for (i, d) in reg.freshness.max_age_days.iter().enumerate() {
            ages[&(i + 1).to_string()] = value(i64::from(*d));
        }
        let mut freshness = Table::new();
        freshness.set_implicit(true);
        freshness["max_age_days"] = Item::Table(ages);
        doc["freshness"] = Item::Table(freshness);
    }
    if reg.limits != crate::model::Limits::default() {
        let mut limits = Table::new();
        limits_into(&mut limits, reg.limits);
        doc["limits"] = Item::Table(limits);
    }
    let mut sources = ArrayOfTables::new();
    for s in reg.sources.values() {
        let mut t = source_table(&NewSource {
            id: s.id.clone(),
            kind: s.kind,
            location: s.location.clone(),
            owner: s.owner.clone(),
            tier: s.tier,
            description: s.description.clone(),
            include: s.include.patterns().map(String::from).collect(),
            exclude: s.exclude.patterns().map(String::from).collect(),
            never_ingest: s.never_ingest.patterns().map(String::from).collect(),
        });
        t["status"] = value(s.status.as_str());
        if let Some(d) = s.max_age_days {
            t["max_age_days"] = value(i64::from(d));
        }
        if s.answers != crate::model::AnswerRules::default() {
            let mut answers = toml_edit::InlineTable::new();
            for (key, treatment) in s.answers.entries() {
                answers.insert(key, treatment.as_str().into());
            }
            t["answers"] = value(answers);
        }
        if let Some(c) = &s.last_change {
            t["status_changed_by"] = value(c.by.as_str());
            t["status_changed_at"] = Item::Value(datetime(c.at));
            if let Some(r) = &c.reason {
                t["status_reason"] = value(r.as_str());
            }
        }
        sources.push(t);
    }
    let mut exceptions = ArrayOfTables::new();
    for x in &reg.exceptions {
        exceptions.push(exception_table(&NewException {
            id: x.id.clone(),
            source: x.source.clone(),
            path: x.path.clone(),
            permits: x.permits.iter().copied().collect(),
            approver: x.approver.clone(),
            reason: x.reason.clone(),
            granted_at: x.granted_at,
            expires_at: x.expires_at,
        }));
    }
    let mut principals = ArrayOfTables::new();
    for p in &reg.principals {
        let (all_sources, sources) = match &p.sources {
            SourceGrant::All => (true, Vec::new()),
            SourceGrant::Only(ids) => (false, ids.iter().cloned().collect()),
        };
        principals.push(principal_table(&NewPrincipal {
            name: p.name.clone(),
            role: p.role,
            token_hash: p.token_hash,
            tier_ceiling: p.tier_ceiling,
            sources,
            all_sources,
            description: p.description.clone(),
            limits: p.limits,
        }));
    }
    doc["sources"] = Item::ArrayOfTables(sources);
    doc["exceptions"] = Item::ArrayOfTables(exceptions);
    doc["principals"] = Item::ArrayOfTables(principals);
    let mut out = String::new();
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    if !header.is_empty() {
        out.push('\n');
    }
    out.push_str(&doc.to_string());
    out
}
