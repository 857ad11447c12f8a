//! `cfg(qdrant_configured)` when QDRANT_URL is set at build time: the tests
//! that need a Qdrant server are ignored (and reported so) otherwise.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(qdrant_configured)");
    println!("cargo::rerun-if-env-changed=QDRANT_URL");
    if std::env::var_os("QDRANT_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=qdrant_configured");
    }
}
