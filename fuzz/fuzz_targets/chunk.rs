//! The chunkers, tree-sitter grammars and text splitters alike (the first
//! byte picks the language): never a panic; chunks are in order, inside the
//! file, and carry exactly the lines they claim.
#![no_main]

use libfuzzer_sys::fuzz_target;

const LANGUAGES: &[&str] = &[
    "rust",
    "python",
    "javascript",
    "typescript",
    "tsx",
    "go",
    "java",
    "c",
    "cpp",
    "bash",
    "markdown",
    "rst",
    "toml",
    "yaml",
    "json",
    "text",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let language = LANGUAGES[pick as usize % LANGUAGES.len()];
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut prev_end = 0u32;
    for c in indexer::chunk::chunk(text, language) {
        assert!(c.start_line >= 1 && c.start_line <= c.end_line, "{language}: bad span {c:?}");
        assert!(c.end_line as usize <= lines.len(), "{language}: past the end {c:?}");
        assert!(c.start_line > prev_end, "{language}: overlapping or unordered chunks");
        prev_end = c.end_line;
        let expected: String = lines[c.start_line as usize - 1..c.end_line as usize].concat();
        assert_eq!(c.text, expected, "{language}: text is not its lines");
    }
});
