//! Counters and gauges, rendered in the Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;

/// Query latency bucket upper bounds, in milliseconds.
const BUCKETS: [f64; 9] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

#[derive(Debug, Default)]
pub struct Metrics {
    queries_topic: AtomicU64,
    queries_hybrid: AtomicU64,
    queries_lexical: AtomicU64,
    queries_dense: AtomicU64,
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    tokens_served: AtomicU64,
    unauthorized: AtomicU64,
    forbidden: AtomicU64,
    limited: AtomicU64,
    files_denied: AtomicU64,
    secrets_redacted: AtomicU64,
    last_pass_unix: AtomicU64,
    pending_sources: AtomicU64,
}

impl Metrics {
    pub(crate) fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn limited(&self) {
        self.limited.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn forbidden(&self) {
        self.forbidden.fetch_add(1, Ordering::Relaxed);
    }

    /// Sources with changes not yet indexed (set by the watcher).
    pub fn set_pending_sources(&self, n: usize) {
        self.pending_sources.store(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_pass(&self, report: &indexer::PassReport, now: Timestamp) {
        let denied: u64 = report
            .sources
            .iter()
            .flat_map(|s| s.denied.values())
            .map(|t| t.count)
            .sum();
        let redacted: u64 = report.sources.iter().map(|s| s.redactions).sum();
        self.files_denied.fetch_add(denied, Ordering::Relaxed);
        self.secrets_redacted.fetch_add(redacted, Ordering::Relaxed);
        self.last_pass_unix
            .store(now.as_second().max(0) as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_query(&self, served_by: &str, took_ms: f64, tokens: usize) {
        match served_by {
            "topic_package" => &self.queries_topic,
            "lexical" => &self.queries_lexical,
            "dense" => &self.queries_dense,
            _ => &self.queries_hybrid,
        }
        .fetch_add(1, Ordering::Relaxed);
        let bucket = BUCKETS
            .iter()
            .position(|b| took_ms <= *b)
            .unwrap_or(BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add((took_ms * 1000.0) as u64, Ordering::Relaxed);
        self.tokens_served.fetch_add(tokens as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, dense: &retriever::DenseStatus, stopped: bool, now: Timestamp) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line("# HELP ctxplane_queries_total Queries answered, by the tier that served them.".into());
        line("# TYPE ctxplane_queries_total counter".into());
        for (tier, c) in [
            ("topic_package", &self.queries_topic),
            ("hybrid", &self.queries_hybrid),
            ("lexical", &self.queries_lexical),
            ("dense", &self.queries_dense),
        ] {
            line(format!(
                "ctxplane_queries_total{{served_by=\"{tier}\"}} {}",
                c.load(Ordering::Relaxed)
            ));
        }
        line("# HELP ctxplane_query_duration_seconds Query latency inside the retriever.".into());
        line("# TYPE ctxplane_query_duration_seconds histogram".into());
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.latency[i].load(Ordering::Relaxed);
            line(format!(
                "ctxplane_query_duration_seconds_bucket{{le=\"{}\"}} {cum}",
                b / 1000.0
            ));
        }
        cum += self.latency[BUCKETS.len()].load(Ordering::Relaxed);
        line(format!(
            "ctxplane_query_duration_seconds_bucket{{le=\"+Inf\"}} {cum}"
        ));
        line(format!(
            "ctxplane_query_duration_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        ));
        line(format!("ctxplane_query_duration_seconds_count {cum}"));
        let counters = [
            (
                "ctxplane_tokens_served_total",
                "Tokens of content served.",
                self.tokens_served.load(Ordering::Relaxed),
            ),
            (
                "ctxplane_auth_unauthorized_total",
                "Requests without a valid token.",
                self.unauthorized.load(Ordering::Relaxed),
            ),
            (
                "ctxplane_auth_forbidden_total",
                "Requests whose role may not use the operation.",
                self.forbidden.load(Ordering::Relaxed),
            ),
            (
                "ctxplane_limited_total",
                "Requests refused by a principal's rate limit or daily token quota.",
                self.limited.load(Ordering::Relaxed),
            ),
            (
                "ctxplane_files_denied_total",
                "Files the policy kept out, over passes since start.",
                self.files_denied.load(Ordering::Relaxed),
            ),
            (
                "ctxplane_secrets_redacted_total",
                "Secrets redacted, over passes since start.",
                self.secrets_redacted.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            line(format!("# HELP {name} {help}"));
            line(format!("# TYPE {name} counter"));
            line(format!("{name} {v}"));
        }
        let last = self.last_pass_unix.load(Ordering::Relaxed);
        let lag = if last == 0 {
            -1
        } else {
            now.as_second() - last as i64
        };
        let gauges = [
            (
                "ctxplane_index_lag_seconds",
                "Seconds since the last indexing pass (-1: none yet).",
                lag as f64,
            ),
            (
                "ctxplane_index_pending_sources",
                "Sources with changes not yet indexed.",
                self.pending_sources.load(Ordering::Relaxed) as f64,
            ),
            (
                "ctxplane_index_chunks",
                "Chunks in the lexical index.",
                dense.chunks as f64,
            ),
            (
                "ctxplane_vector_coverage_ratio",
                "Share of chunks with a vector.",
                dense.coverage,
            ),
            (
                "ctxplane_vectors_complete",
                "1 when every chunk has a vector (hybrid search over everything); 0 while vectors are built behind the lexical index, or without a model.",
                if dense.available && dense.coverage >= 1.0 {
                    1.0
                } else {
                    0.0
                },
            ),
            (
                "ctxplane_stopped",
                "1 during an emergency stop.",
                if stopped { 1.0 } else { 0.0 },
            ),
        ];
        for (name, help, v) in gauges {
            line(format!("# HELP {name} {help}"));
            line(format!("# TYPE {name} gauge"));
            line(format!("{name} {v}"));
        }
        out
    }
}
