//! ctxplane's indexer: approved sources in, redacted chunks out.

pub mod redact;
