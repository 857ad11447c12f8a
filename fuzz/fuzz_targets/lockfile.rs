//! Every lockfile parser (the first byte picks the format): any text gives
//! pins, never a panic or a hang, and every pin points at a line of the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

const FORMATS: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "yarn.lock",
    "go.mod",
    "poetry.lock",
    "uv.lock",
    "Gemfile.lock",
    "requirements.txt",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let path = FORMATS[pick as usize % FORMATS.len()];
    let lines = text.lines().count().max(1);
    for pin in packages::lockfile::parse(path, text) {
        assert!(
            pin.line >= 1 && pin.line as usize <= lines + 1,
            "{path}: pin {pin:?} outside the file's {lines} lines"
        );
        assert!(!pin.name.is_empty(), "{path}: pin without a name: {pin:?}");
    }
});
