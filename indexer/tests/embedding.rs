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
