//! The context-package validator: any text gives problems with lines in the
//! file, never a panic.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use packages::context::{Checks, validate};
use packages::lockfile::DependencyMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let owners: BTreeSet<String> = ["platform-team".to_string()].into();
    let deps = DependencyMap::default();
    let exists = |p: &str| p.starts_with("src/");
    let checks = Checks {
        known_owners: &owners,
        path_exists: &exists,
        today: jiff::civil::date(2026, 12, 2),
        max_age_days: 90,
        deps: &deps,
    };
    let lines = text.lines().count() + 1;
    for p in validate(text, &checks) {
        assert!(p.line >= 1 && p.line <= lines, "{p:?} outside {lines} lines");
    }
});
