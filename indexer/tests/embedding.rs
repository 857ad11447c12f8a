//! The real embedding model (installed by scripts/setup-model.sh, which the
//! test command runs first): vectors are unit length, deterministic, and
//! related texts are closer than unrelated ones.
#![allow(clippy::unwrap_used)]

use indexer::embed::{DIM, Embedder, find_model_dir};

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn the_model_embeds_meaningfully() {
    let dir = find_model_dir(None).expect("run scripts/setup-model.sh first");
    let e = Embedder::load(&dir, 1).unwrap();
    assert!(e.model_id().starts_with("all-MiniLM-L6-v2-int8-"));
    let v = e
        .embed(&[
            "How do I retry a failed payment with exponential backoff?",
            "Retry policy: failed charges are retried with exponential backoff and jitter.",
            "The cafeteria serves lunch from noon until two.",
        ])
        .unwrap();
    assert_eq!(v.len(), 3);
    for x in &v {
        assert_eq!(x.len(), DIM);
        assert!((dot(x, x) - 1.0).abs() < 1e-4);
    }
    assert!(
        dot(&v[0], &v[1]) > dot(&v[0], &v[2]) + 0.2,
        "{} vs {}",
        dot(&v[0], &v[1]),
        dot(&v[0], &v[2])
    );
    let again = e
        .embed(&["How do I retry a failed payment with exponential backoff?"])
        .unwrap();
    assert!(dot(&again[0], &v[0]) > 0.9999);
    assert!(e.embed(&[]).unwrap().is_empty());
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = find_model_dir(Some(tmp.path())).unwrap_err().to_string();
    assert!(err.contains("setup-model.sh"), "{err}");
}

#[test]
fn long_documents_are_embedded_whole_in_windows() {
    use indexer::embed::WINDOW_TOKENS;
    let dir = find_model_dir(None).expect("run scripts/setup-model.sh first");
    let e = Embedder::load(&dir, 1).unwrap();
    assert!(e.model_id().ends_with("-w256"), "{}", e.model_id());

    // A short text is one window, and the same vector as before.
    let short = "Retry policy: failed charges are retried with exponential backoff.";
    assert_eq!(e.windows(short).unwrap().len(), 1);
    let (a, b) = (e.embed(&[short]).unwrap(), e.embed_documents(&[short]).unwrap());
    assert!(dot(&a[0], &b[0]) > 0.9999);

    // A long one: contiguous windows covering every byte, none over the
    // window, cut at line ends.
    let mut long = String::new();
    for i in 0..40 {
        long.push_str(&format!(
            "Apples and oranges are sorted into crate number {i} at the orchard.\n"
        ));
    }
    for i in 0..12 {
        long.push_str(&format!(
            "Gluon confinement in quantum chromodynamics keeps quarks bound inside hadrons (note {i}).\n"
        ));
    }
    let windows = e.windows(&long).unwrap();
    assert!(windows.len() >= 2, "{}", windows.len());
    let mut at = 0;
    for (range, tokens) in &windows {
        assert_eq!(range.start, at);
        assert!(*tokens <= WINDOW_TOKENS, "{tokens}");
        assert!(
            long[..range.end].ends_with('\n'),
            "cut inside a line at {}",
            range.end
        );
        at = range.end;
    }
    assert_eq!(at, long.len());

    // The tail counts: a question about it is closer to the whole document
    // than to its truncated head.
    let q = e
        .embed(&["How does gluon confinement bind quarks in quantum chromodynamics?"])
        .unwrap();
    let truncated = e.embed(&[long.as_str()]).unwrap();
    let whole = e.embed_documents(&[long.as_str()]).unwrap();
    assert!((dot(&whole[0], &whole[0]) - 1.0).abs() < 1e-4);
    assert!(
        dot(&q[0], &whole[0]) > dot(&q[0], &truncated[0]) + 0.05,
        "whole {} vs head {}",
        dot(&q[0], &whole[0]),
        dot(&q[0], &truncated[0])
    );
}
