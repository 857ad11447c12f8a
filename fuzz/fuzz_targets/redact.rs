//! The redactor with the built-in rules: never a panic; the output keeps
//! every line break (spans and provenance rely on line numbers), findings
//! are in order and inside the input, and nothing found is left verbatim
//! where it was.
#![no_main]

use std::sync::OnceLock;

use indexer::redact::{Redactor, RuleSet};
use libfuzzer_sys::fuzz_target;

fn redactor() -> &'static Redactor {
    static R: OnceLock<Redactor> = OnceLock::new();
    R.get_or_init(|| Redactor::new(RuleSet::builtin(), [7u8; 32]))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let r = redactor().redact(text, Some("config/app.env"));
    assert_eq!(
        r.text.matches('\n').count(),
        text.matches('\n').count(),
        "line breaks changed"
    );
    let mut last_end = 0;
    for f in &r.findings {
        assert!(f.span.start >= last_end && f.span.end <= text.len() && f.span.start < f.span.end);
        last_end = f.span.end;
        let line = text[..f.span.start].matches('\n').count() as u32 + 1;
        assert_eq!(f.line, line, "finding on the wrong line");
    }
    let _ = redactor().redact_path(text);
});
