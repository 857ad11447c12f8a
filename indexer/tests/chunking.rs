//! Tree-sitter chunking, one fixture per language: every grammar and
//! query loads, chunks follow definitions (with their doc comments), spans
//! are exact, and large definitions split into their members.
#![allow(clippy::unwrap_used)]

use indexer::chunk::{Chunk, FIT_CHARS, MAX_CHARS, chunk, grammar_error, has_grammar, language_of};

fn fixture(name: &str) -> (String, Vec<Chunk>) {
    let path = format!("{}/tests/fixtures/chunk/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let language = language_of(name);
    assert!(has_grammar(language), "{language}: {:?}", grammar_error(language));
    let chunks = chunk(&text, language);
    assert_spans(&text, &chunks);
    (text, chunks)
}

/// Chunks are in order, do not overlap, are exactly their lines, and every
/// non-blank line is in some chunk.
fn assert_spans(text: &str, chunks: &[Chunk]) {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut covered = vec![false; lines.len()];
    let mut next = 1;
    for c in chunks {
        assert!(c.start_line >= next && c.end_line >= c.start_line, "{c:?}");
        let want = lines[c.start_line as usize - 1..c.end_line as usize].concat();
        assert_eq!(c.text, want[..want.len().min(MAX_CHARS)], "{c:?}");
        for l in c.start_line..=c.end_line {
            covered[l as usize - 1] = true;
        }
        next = c.end_line + 1;
    }
    for (i, l) in lines.iter().enumerate() {
        assert!(
            covered[i] || l.trim().is_empty(),
            "line {} not in any chunk: {l:?}",
            i + 1
        );
    }
}

/// The chunk naming `symbol` has `kind` and contains `marker` (e.g. the
/// doc comment above the definition).
fn expect(chunks: &[Chunk], symbol: &str, kind: &str, marker: &str) {
    let c = chunks
        .iter()
        .find(|c| {
            c.symbol
                .as_deref()
                .is_some_and(|s| s.split(", ").any(|x| x == symbol))
        })
        .unwrap_or_else(|| panic!("no chunk for {symbol}: {chunks:#?}"));
    assert_eq!(c.kind, kind, "{symbol}: {c:#?}");
    assert!(c.text.contains(marker), "{symbol} lacks {marker:?}: {c:#?}");
}

#[test]
fn rust() {
    let (_, c) = fixture("sample.rs");
    expect(&c, "RetryPolicy", "struct", "/// How a failed call is retried");
    expect(&c, "RetryPolicy", "struct", "#[derive(Clone, Debug, PartialEq)]");
    expect(&c, "std::fmt::Display for RetryPolicy", "impl", "fn fmt(");
    expect(&c, "PaymentError", "impl", "/// Errors a payment client");
    expect(&c, "Gateway", "trait", "fn charge(");
    expect(&c, "cents", "trait", "macro_rules! cents");
    expect(&c, "tests", "trait", "mod tests");
}

#[test]
fn python() {
    let (_, c) = fixture("sample.py");
    expect(&c, "Entry", "class", "@dataclasses.dataclass");
    expect(&c, "Reconciler", "class", "def match(");
    expect(&c, "total", "function", "\"\"\"Sum of entry amounts");
}

#[test]
fn javascript() {
    let (_, c) = fixture("sample.js");
    expect(
        &c,
        "verifySignature",
        "function",
        " * Verifies a webhook signature",
    );
    expect(&c, "WebhookRouter", "class", "async dispatch(");
    expect(&c, "parseEvent", "function", "JSON.parse(raw)");
}

#[test]
fn typescript() {
    let (_, c) = fixture("sample.ts");
    expect(&c, "Flag", "interface", "/** A feature flag");
    expect(&c, "Stage", "interface", "Staging = \"staging\"");
    expect(&c, "FlagClient", "class", "isEnabled(key: string");
    expect(&c, "defaultClient", "function", "new FlagClient(");
    expect(&c, "Testing", "function", "alwaysOn");
}

#[test]
fn go() {
    let (_, c) = fixture("sample.go");
    expect(&c, "Bucket", "struct", "// Bucket is a token bucket");
    expect(&c, "Limiter", "interface", "// Limiter is anything");
    expect(&c, "NewBucket", "interface", "// NewBucket returns");
    expect(&c, "Allow", "method", "// Allow takes one token");
}

#[test]
fn java() {
    let (_, c) = fixture("Sample.java");
    expect(&c, "Sample", "class", "/** An append-only audit trail");
    expect(&c, "AuditSink", "class", "interface AuditSink");
    expect(&c, "Severity", "enum", "enum Severity");
}

#[test]
fn c() {
    let (_, c) = fixture("sample.c");
    expect(&c, "ring", "struct", "/* A fixed-capacity ring buffer");
    expect(&c, "ring_status", "struct", "typedef enum");
    expect(&c, "ring_push", "function", "/* Appends one byte");
    expect(&c, "ring_pop", "function", "/* Removes the oldest byte");
    expect(&c, "ring_status_name", "function", "switch (s)");
}

#[test]
fn cpp() {
    let (_, c) = fixture("sample.cpp");
    expect(&c, "acme", "module", "class LruCache");
    expect(&c, "acme", "module", "double hit_ratio");
}

#[test]
fn bash() {
    let (_, c) = fixture("sample.sh");
    expect(&c, "rotate_one", "function", "# Compresses one log file");
    expect(&c, "prune", "function", "xargs -r rm");
}

#[test]
fn a_large_class_splits_into_its_methods() {
    let methods: String = (0..8)
        .map(|i| {
            format!(
                "    def step_{i}(self, x):\n        \"\"\"Step {i} of the pipeline.\"\"\"\n{}        return x\n\n",
                format!("        x = transform_{i}(x, self.options, self.context)\n").repeat(5)
            )
        })
        .collect();
    let text = format!("import os\n\n\nclass Pipeline:\n    \"\"\"Runs steps.\"\"\"\n\n{methods}");
    let chunks = chunk(&text, "python");
    assert_spans(&text, &chunks);
    // The class header is a crumb: it joins the first method.
    expect(&chunks, "step_0", "class", "class Pipeline:");
    for i in 1..8 {
        expect(
            &chunks,
            &format!("step_{i}"),
            "method",
            &format!("Step {i} of the pipeline"),
        );
    }
    expect(&chunks, "Pipeline", "class", "class Pipeline:");
    assert!(chunks.iter().all(|c| c.text.len() <= FIT_CHARS), "{chunks:#?}");
}

#[test]
fn a_long_function_splits_into_windows_that_keep_its_name() {
    let body = "    let value = compute_something(input, &config, &mut state);\n".repeat(80);
    let text = format!("/// Does it all.\nfn everything(input: u32) {{\n{body}}}\n");
    let chunks = chunk(&text, "rust");
    assert_spans(&text, &chunks);
    assert!(chunks.len() >= 3, "{chunks:#?}");
    for c in &chunks {
        assert_eq!(c.symbol.as_deref(), Some("everything"));
        assert_eq!(c.kind, "function");
        assert!(c.text.len() <= FIT_CHARS);
    }
}

#[test]
fn unparsable_code_still_chunks() {
    let text = "fn broken( {\n  let x = ;\n}\n\n}}}} fn other() {}\n".repeat(30);
    let chunks = chunk(&text, "rust");
    assert_spans(&text, &chunks);
    assert!(!chunks.is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever the input, every chunker returns exact, ordered spans.
    #[test]
    fn any_text_chunks_into_exact_spans(
        text in "(fn |def |class |# |\\[a\\]|\\{|\\}|\"|:|=|-{3}|[a-z ]{1,12}|\n|\t|é){0,300}",
        lang in proptest::sample::select(vec![
            "rust", "python", "javascript", "typescript", "tsx", "go", "java", "c", "cpp", "bash",
            "markdown", "rst", "toml", "yaml", "json", "text",
        ]),
    ) {
        let chunks = chunk(&text, lang);
        assert_spans(&text, &chunks);
    }
}
