//! A tokenizer for code and prose: words are split on anything that is not a
//! letter, digit or `_`, lowercased, and identifiers are also split into
//! their parts (`parseHttpRequest` -> `parsehttprequest`, `parse`, `http`,
//! `request`; `max_file_bytes` -> `max_file_bytes`, `max`, `file`, `bytes`),
//! the parts sharing the whole word's position. A query for either form
//! finds both.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

pub const CODE_TOKENIZER: &str = "ctxplane_code";

/// Tokens longer than this are not indexed (minified blobs, base64).
const MAX_TOKEN_CHARS: usize = 64;

#[derive(Clone, Debug, Default)]
pub struct CodeTokenizer;

#[derive(Debug)]
pub struct CodeTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for CodeTokenizer {
    type TokenStream<'a> = CodeTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CodeTokenStream {
        CodeTokenStream {
            tokens: tokenize(text),
            next: 0,
        }
    }
}

impl TokenStream for CodeTokenStream {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

/// Every token of `text`, in order.
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut position = 0;
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        let is_word = c.is_alphanumeric() || c == '_';
        match (start, is_word) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                push_word(&mut tokens, &text[s..i], s, position);
                position += 1;
                start = None;
            }
            _ => {}
        }
    }
    tokens
}

fn push_word(tokens: &mut Vec<Token>, word: &str, offset: usize, position: usize) {
    let trimmed = word.trim_matches('_');
    if trimmed.is_empty() || trimmed.chars().count() > MAX_TOKEN_CHARS {
        return;
    }
    let lead = word.len() - word.trim_start_matches('_').len();
    let offset = offset + lead;
    let whole = trimmed.to_lowercase();
    let parts = split_identifier(trimmed);
    tokens.push(Token {
        offset_from: offset,
        offset_to: offset + trimmed.len(),
        position,
        text: whole.clone(),
        position_length: 1,
    });
    if parts.len() > 1 {
        for (from, to) in parts {
            let part = trimmed[from..to].to_lowercase();
            if part != whole {
                tokens.push(Token {
                    offset_from: offset + from,
                    offset_to: offset + to,
                    position,
                    text: part,
                    position_length: 1,
                });
            }
        }
    }
}

/// Byte ranges of the parts of an identifier: split at `_`, at
/// lower->upper (`fooBar`), at the end of an acronym (`HTTPServer`), and
/// between letters and digits.
fn split_identifier(word: &str) -> Vec<(usize, usize)> {
    let chars: Vec<(usize, char)> = word.char_indices().collect();
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    for (k, &(i, c)) in chars.iter().enumerate() {
        if c == '_' {
            if let Some(s) = start.take() {
                parts.push((s, i));
            }
            continue;
        }
        let Some(s) = start else {
            start = Some(i);
            continue;
        };
        let prev = chars[k - 1].1;
        let next = chars.get(k + 1).map(|&(_, n)| n);
        let boundary = (prev.is_lowercase() && c.is_uppercase())
            || (prev.is_uppercase() && c.is_uppercase() && next.is_some_and(char::is_lowercase))
            || (prev.is_alphabetic() && c.is_numeric())
            || (prev.is_numeric() && c.is_alphabetic());
        if boundary && prev != '_' {
            parts.push((s, i));
            start = Some(i);
        }
    }
    if let Some(s) = start {
        parts.push((s, word.len()));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        tokenize(s).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn identifiers_are_kept_whole_and_split() {
        assert_eq!(
            texts("parseHttpRequest"),
            ["parsehttprequest", "parse", "http", "request"]
        );
        assert_eq!(
            texts("max_file_bytes"),
            ["max_file_bytes", "max", "file", "bytes"]
        );
        assert_eq!(texts("HTTPServer"), ["httpserver", "http", "server"]);
        assert_eq!(texts("sha256sum"), ["sha256sum", "sha", "256", "sum"]);
        assert_eq!(texts("__init__"), ["init"]);
    }

    #[test]
    fn paths_and_punctuation_split_into_words() {
        assert_eq!(texts("src/redact/rules.rs"), ["src", "redact", "rules", "rs"]);
        assert_eq!(texts("a.b(c)"), ["a", "b", "c"]);
        assert_eq!(texts("Ünïcode wörds"), ["ünïcode", "wörds"]);
    }

    #[test]
    fn parts_share_the_word_position() {
        let t = tokenize("fooBar baz");
        assert_eq!(t.iter().map(|t| t.position).collect::<Vec<_>>(), [0, 0, 0, 1]);
        assert_eq!(&"fooBar baz"[t[2].offset_from..t[2].offset_to], "Bar");
    }

    #[test]
    fn huge_tokens_are_dropped() {
        assert!(texts(&"a".repeat(100)).is_empty());
    }
}
