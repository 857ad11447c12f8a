//! The topic-package parser: any text gives a package or located problems;
//! span hashing and marker finding never panic on what it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count() + 1;
    match packages::topic::parse(text) {
        Ok(pkg) => {
            for c in &pkg.citations {
                let _ = packages::topic::Citation::parse_ref(&c.reference());
                let _ = packages::topic::span_hash(text, c.start, c.end);
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in problems {
                assert!(p.line >= 1 && p.line <= lines, "problem at line {} of {lines}", p.line);
            }
        }
    }
    for line in text.lines().take(64) {
        let _ = packages::topic::markers(line);
    }
});
