//! The configurations `docs/scale-out/` ships (mounted by its compose
//! file) are valid ctxplane settings and describe the layout the README
//! documents: one Qdrant collection prefix and deployment for the indexer
//! and every replica, 3 shards with 2 copies.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use plane::{Settings, VectorBackend};

fn resolve(name: &str) -> Settings {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/scale-out")
        .join(name);
    Settings::resolve(plane::Overrides {
        config: Some(path),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn the_shipped_scale_out_configs_agree() {
    let (indexer, replica) = (resolve("indexer.toml"), resolve("replica.toml"));
    let qdrant = |s: &Settings| match &s.vectors {
        VectorBackend::Qdrant {
            prefix,
            deployment,
            shards,
            replication,
            ..
        } => (prefix.clone(), deployment.clone(), *shards, *replication),
        VectorBackend::Embedded => panic!("not on Qdrant"),
    };
    let (i, r) = (qdrant(&indexer), qdrant(&replica));
    assert_eq!(i.0, r.0, "one collection prefix");
    assert_eq!(i.1.as_deref(), Some("acme-prod"));
    assert_eq!(i.1, r.1, "one deployment id");
    assert_eq!((i.2, i.3), (3, 2));
    assert_eq!(indexer.registry, replica.registry);
    assert_eq!(indexer.data_dir, replica.data_dir);
    let compose =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/scale-out/compose.yaml"))
            .unwrap();
    for needle in [
        "indexer.toml",
        "replica.toml",
        "\"--read-only\"",
        "\"--watch\"",
        "CTXPLANE_AUDIT_PROCESS",
    ] {
        assert!(compose.contains(needle), "compose.yaml lacks {needle}");
    }
}
