//! The plane as every interface sees it, without any interface: the role
//! matrix, the stop gate, the one query audit record, steward mistakes as
//! typed errors, with the clock injected.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use plane::query::{Asker, ContextRequest, Via};
use plane::stewardship::{ExceptionGrant, SourceKindName, SourceProposal};
use plane::{Embedding, Error, Operation, PassKind, Plane, Profile, Settings};
use registry::{ContentHash, FixedClock, RegistryStore, Role, Status};

const TOKENS: [(&str, Role); 4] = [
    ("tok-agent", Role::Agent),
    ("tok-dev", Role::Developer),
    ("tok-steward", Role::Steward),
    ("tok-ci", Role::Ci),
];

const OPS: [Operation; 16] = [
    Operation::Context,
    Operation::Provenance,
    Operation::Snapshot,
    Operation::ListSources,
    Operation::Freshness,
    Operation::Check,
    Operation::ProposeSource,
    Operation::Approve,
    Operation::Deny,
    Operation::Revoke,
    Operation::ListExceptions,
    Operation::GrantException,
    Operation::ReadAudit,
    Operation::VerifyAudit,
    Operation::Stop,
    Operation::Resume,
];

fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

/// Settings for a registry at `root/registry.toml`, data in `root/.ctxplane`.
fn settings_at(root: &std::path::Path) -> Settings {
    Settings::resolve(plane::Overrides {
        registry: Some(root.join("registry.toml")),
        data_dir: Some(root.join(".ctxplane")),
        actor: Some("operator".into()),
        ..Default::default()
    })
    .unwrap()
}

fn open() -> (tempfile::TempDir, Plane) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("src/lib.rs"),
        "/// Settles a payment.\npub fn settle() {}\n",
    )
    .unwrap();
    let mut reg = String::from(
        "version = 1\n\n[[sources]]\nid = \"app\"\nkind = \"dir\"\nlocation = \"src\"\nowner = \"team\"\ntier = 2\nstatus = \"approved\"\n",
    );
    for (token, role) in TOKENS {
        reg.push_str(&format!(
            "\n[[principals]]\nname = \"{}\"\nrole = \"{}\"\ntoken_hash = \"{}\"\ntier_ceiling = 4\nsources = [\"*\"]\n",
            role.as_str(),
            role.as_str(),
            ContentHash::of(token.as_bytes()).to_hex()
        ));
    }
    std::fs::write(root.join("registry.toml"), reg).unwrap();
    let settings = settings_at(root);
    let store = RegistryStore::new(
        &settings.registry,
        &settings.data_dir,
        Arc::new(FixedClock(now())),
    );
    let plane = Plane::open(settings, store, Profile::reader(Embedding::Off("test".into()))).unwrap();
    plane.update(None, PassKind::Full, &mut plane::Quiet).unwrap();
    (dir, plane)
}

#[test]
fn the_role_matrix_is_one_table_for_every_interface() {
    let (_dir, plane) = open();
    for (token, role) in TOKENS {
        let who = plane.authenticate(Some(token)).unwrap();
        assert_eq!(who.principal.role, role);
        for op in OPS {
            let allowed = plane.authorize(&who, op).is_ok();
            let expected = match op {
                Operation::Context | Operation::Provenance => role != Role::Ci,
                Operation::ListSources | Operation::Freshness | Operation::Snapshot => true,
                Operation::Check => role != Role::Agent,
                _ => role == Role::Steward,
            };
            assert_eq!(allowed, expected, "{role:?} {op:?}");
            if !allowed {
                assert!(matches!(plane.authorize(&who, op), Err(Error::Forbidden)));
            }
        }
    }
    for bad in [None, Some(""), Some("nope"), Some(&*"x".repeat(600))] {
        assert!(
            matches!(plane.authenticate(bad), Err(Error::Unauthorized)),
            "{bad:?}"
        );
    }
}

#[test]
fn the_stop_gate_never_changes_the_flag_it_checks() {
    let (_dir, plane) = open();
    let steward = plane.authenticate(Some("tok-steward")).unwrap();
    let agent = plane.authenticate(Some("tok-agent")).unwrap();
    plane.stop(&steward, "incident 42").unwrap();
    for _ in 0..3 {
        assert!(matches!(
            plane.authorize(&agent, Operation::Context),
            Err(Error::Stopped { .. })
        ));
        // Revocation passes the gate, and the gate stays shut for the rest.
        plane.authorize(&steward, Operation::Revoke).unwrap();
        assert_eq!(plane.stopped().as_deref(), Some("incident 42"));
    }
    // Roles are checked before the stop: a stranger learns nothing.
    assert!(matches!(
        plane.authorize(&agent, Operation::ReadAudit),
        Err(Error::Forbidden)
    ));
    assert!(matches!(plane.stop(&steward, "  "), Err(Error::BadRequest(_))));
    plane.resume(&steward).unwrap();
    assert_eq!(plane.stopped(), None);
    plane.authorize(&agent, Operation::Context).unwrap();
}

#[test]
fn one_audit_record_per_query_whatever_the_interface() {
    let (_dir, plane) = open();
    let agent = Asker::Principal(plane.authenticate(Some("tok-agent")).unwrap());
    for (asker, via) in [
        (&agent, Via::Http),
        (&agent, Via::Mcp),
        (&Asker::Operator, Via::Cli),
    ] {
        let d = plane
            .context(
                asker,
                ContextRequest {
                    query: "settle a payment".into(),
                    packages: Some(false),
                    ..Default::default()
                },
                via,
            )
            .unwrap();
        assert_eq!(d.answer.results[0].provenance.source, "app");
    }
    let entries = plane.store().audit().tail_entries(3).unwrap();
    let keys = |e: &registry::audit::Entry| {
        let mut k: Vec<String> = e.details.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert!(entries.iter().all(|e| e.action == "query"));
    assert_eq!(
        keys(&entries[0]),
        keys(&entries[2]),
        "the same record for every interface"
    );
    let vias: Vec<_> = entries
        .iter()
        .map(|e| e.details["via"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(vias, ["http", "mcp", "cli"]);
    assert_eq!(entries[0].actor, "agent");
    assert_eq!(entries[2].actor, "operator");
    // Never the text itself.
    assert!(
        entries
            .iter()
            .all(|e| !e.details.to_string().contains("settle a payment"))
    );
    // The clock is the injected one.
    assert!(entries.iter().all(|e| e.ts == now()));
}

#[test]
fn steward_mistakes_are_typed() {
    let (_dir, plane) = open();
    let steward = plane.authenticate(Some("tok-steward")).unwrap();
    let proposal = |id: &str| SourceProposal {
        id: id.into(),
        kind: SourceKindName::Dir,
        location: "src".into(),
        owner: "team".into(),
        tier: 1,
        description: None,
        include: vec![],
        exclude: vec![],
        never_ingest: vec![],
    };
    assert!(matches!(
        plane.propose_source("s", proposal("app")),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        plane.propose_source("s", proposal("Not An Id")),
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        plane.set_status("s", "ghost", Status::Approved, None),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        plane.set_status("s", "app", Status::Approved, None),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        plane.set_status("s", "app", Status::Revoked, Some(" ".into())),
        Err(Error::BadRequest(_))
    ));
    let grant = |id: &str, expires: Timestamp| ExceptionGrant {
        id: Some(id.into()),
        source: "app".into(),
        path: "secrets/example.txt".into(),
        reason: "template".into(),
        expires_at: expires.to_string(),
    };
    // Expiry is judged against the injected clock, not the wall clock.
    let past = now() - SignedDuration::from_hours(1);
    assert!(matches!(
        plane.grant_exception(&steward, grant("exc-a", past)),
        Err(Error::BadRequest(_))
    ));
    let soon = now() + SignedDuration::from_hours(24);
    plane.grant_exception(&steward, grant("exc-a", soon)).unwrap();
    assert!(matches!(
        plane.grant_exception(&steward, grant("exc-a", soon)),
        Err(Error::Conflict(_))
    ));
    // A revocation purges and proves it.
    let out = plane
        .set_status("s", "app", Status::Revoked, Some("leak".into()))
        .unwrap();
    assert_eq!(out.purge_verified, Some(true));
    assert_eq!(out.remaining.unwrap().chunks, 0);
}

#[test]
fn a_registry_edit_that_keeps_the_mtime_still_takes_effect() {
    let (dir, plane) = open();
    plane.authenticate(Some("tok-agent")).unwrap();
    let path = dir.path().join("registry.toml");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let rotated = text.replace(
        &ContentHash::of(b"tok-agent").to_hex(),
        &ContentHash::of(b"tok-rotated").to_hex(),
    );
    assert_eq!(rotated.len(), text.len());
    std::fs::write(&path, rotated).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert!(matches!(
        plane.authenticate(Some("tok-agent")),
        Err(Error::Unauthorized)
    ));
    plane.authenticate(Some("tok-rotated")).unwrap();
}

/// A clock the test moves.
#[derive(Debug)]
struct MovingClock(std::sync::Mutex<Timestamp>);

impl registry::Clock for MovingClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

#[test]
fn a_lapsed_exception_withholds_its_path_on_the_next_query_and_its_snapshots_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("src/notes.md"),
        "# Settlement notes\n\nThe quokka batch settles at noon.\n",
    )
    .unwrap();
    let start = now();
    let reg = format!(
        "version = 1\n\n[never_ingest]\npatterns = [\"**/notes.md\"]\n\n[[sources]]\nid = \"app\"\nkind = \"dir\"\nlocation = \"src\"\nowner = \"team\"\ntier = 2\nstatus = \"approved\"\n\n\
         [[exceptions]]\nid = \"exc-notes\"\nsource = \"app\"\npath = \"notes.md\"\npermits = [\"never_ingest\"]\napprover = \"lead\"\nreason = \"reviewed\"\ngranted_at = {}\nexpires_at = {}\n\n\
         [[principals]]\nname = \"agent\"\nrole = \"agent\"\ntoken_hash = \"{}\"\ntier_ceiling = 2\nsources = [\"*\"]\n",
        start - SignedDuration::from_hours(24),
        start + SignedDuration::from_hours(24),
        ContentHash::of(b"tok-agent").to_hex()
    );
    std::fs::write(root.join("registry.toml"), reg).unwrap();
    let settings = settings_at(root);
    let clock = Arc::new(MovingClock(std::sync::Mutex::new(start)));
    let store = RegistryStore::new(&settings.registry, &settings.data_dir, clock.clone());
    let plane = Plane::open(settings, store, Profile::reader(Embedding::Off("test".into()))).unwrap();
    plane.update(None, PassKind::Full, &mut plane::Quiet).unwrap();

    let ask = || {
        let who = plane.authenticate(Some("tok-agent")).unwrap();
        let req: ContextRequest =
            serde_json::from_str(r#"{"query":"quokka batch settles","mode":"lexical","packages":false}"#)
                .unwrap();
        plane.context(&Asker::Principal(who), req, Via::Http).unwrap()
    };
    let live = ask();
    assert_eq!(live.answer.results.len(), 1, "the exception lets notes.md in");
    assert_eq!(live.answer.results[0].provenance.path, "notes.md");
    let snap = live.snapshot.id.clone();

    // A day and a minute later the exception has lapsed; nothing was re-indexed.
    *clock.0.lock().unwrap() = start + SignedDuration::from_hours(24) + SignedDuration::from_secs(60);
    let lapsed = ask();
    assert!(lapsed.answer.results.is_empty());
    assert_eq!(lapsed.answer.withheld_by_policy, 1);
    let r = plane.snapshot(&Asker::Operator, &snap).unwrap();
    assert_eq!(r.results[0].status, "never_ingest", "{:?}", r.results[0]);
    assert!(
        r.results[0].detail.contains("exc-notes"),
        "{}",
        r.results[0].detail
    );
    assert_eq!(r.verdict, "no_longer_valid");
}

#[test]
fn snapshots_past_their_retention_are_pruned_with_an_audit_entry() {
    let (_dir, plane) = open();
    let clock = Arc::new(MovingClock(std::sync::Mutex::new(now())));
    // The same data dir, read by a plane whose clock moves.
    let settings = plane.settings().clone();
    let store = RegistryStore::new(&settings.registry, &settings.data_dir, clock.clone());
    let plane = Plane::open(settings, store, Profile::reader(Embedding::Off("test".into()))).unwrap();
    let ask = || {
        let req: ContextRequest =
            serde_json::from_str(r#"{"query":"settles a payment","mode":"lexical"}"#).unwrap();
        plane.context(&Asker::Operator, req, Via::Cli).unwrap()
    };
    let old = ask().snapshot.id;
    assert!(plane.snapshot(&Asker::Operator, &old).is_ok());
    let (days, bytes) = plane.snapshot_usage();
    assert_eq!(days, 1);
    assert!(bytes > 0);

    *clock.0.lock().unwrap() = now() + SignedDuration::from_hours(24 * 91);
    let new = ask().snapshot.id;
    assert!(matches!(
        plane.snapshot(&Asker::Operator, &old),
        Err(Error::NotFound(_))
    ));
    assert!(plane.snapshot(&Asker::Operator, &new).is_ok());
    let pruned: Vec<_> = plane
        .store()
        .audit()
        .tail_entries(usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "snapshots.pruned")
        .collect();
    assert_eq!(pruned.len(), 1);
    assert_eq!(pruned[0].details["snapshots"], 1);
    assert_eq!(pruned[0].details["retention_days"], 90);
    assert_eq!(plane.snapshot_usage().0, 1);
}

#[test]
fn a_stored_query_text_is_redacted() {
    let (dir, _) = open();
    let root = dir.path();
    std::fs::write(
        root.join("ctxplane.toml"),
        "registry = \"registry.toml\"\ndata_dir = \".ctxplane\"\nsnapshot_store_query = true\n",
    )
    .unwrap();
    let settings = Settings::resolve(plane::Overrides {
        config: Some(root.join("ctxplane.toml")),
        actor: Some("operator".into()),
        ..Default::default()
    })
    .unwrap();
    assert!(settings.snapshot_store_query);
    let store = RegistryStore::new(
        &settings.registry,
        &settings.data_dir,
        Arc::new(FixedClock(now())),
    );
    let plane = Plane::open(settings, store, Profile::reader(Embedding::Off("test".into()))).unwrap();
    let token = "ghp_Q7vT2mX9kLp4Rz8Wn3Yb6Hc1Jd5Fg0Ks8Ea2";
    let req: ContextRequest = serde_json::from_value(serde_json::json!({
        "query": format!("settle a payment with token {token}"),
        "mode": "lexical"
    }))
    .unwrap();
    let id = plane
        .context(&Asker::Operator, req, Via::Cli)
        .unwrap()
        .snapshot
        .id;
    let kept = plane
        .snapshot(&Asker::Operator, &id)
        .unwrap()
        .snapshot
        .query
        .unwrap();
    assert!(
        kept.contains("settle a payment") && kept.contains("[REDACTED:"),
        "{kept}"
    );
    let stored = std::fs::read_dir(root.join(".ctxplane/snapshots"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(!stored.contains(token));
}
