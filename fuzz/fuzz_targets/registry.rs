//! The registry parser: any bytes give a registry or located problems,
//! never a panic; a registry that parses renders to a file that parses
//! back to the same registry, and the policy answers for every path.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use registry::{FixedClock, Registry};

fuzz_target!(|data: &[u8]| {
    let Ok(reg) = Registry::from_bytes(data.to_vec(), Path::new("registry.toml")) else {
        return;
    };
    let text = registry::edit::render(&reg, "");
    let again = Registry::from_bytes(text.clone().into_bytes(), Path::new("registry.toml"))
        .unwrap_or_else(|e| panic!("rendered registry does not parse: {e}\n{text}"));
    assert!(reg == again, "render changed the registry:\n{text}");
    let clock = FixedClock("2026-12-02T12:00:00Z".parse().unwrap());
    let policy = reg.policy(&clock);
    for s in reg.sources.keys() {
        for path in ["src/main.rs", ".env", "a/../b", "docs/x.md"] {
            let _ = policy.decide_ingest(s.as_str(), path);
        }
    }
    for p in &reg.principals {
        let _ = policy.scope_for(p);
    }
});
