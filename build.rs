//! Records the commit the binary was built from, for `ctxplane --version`,
//! and sets `cfg(qdrant_bin)` when CTXPLANE_QDRANT_BIN names a Qdrant
//! server binary at build time: the tests that start one are ignored (and
//! reported so) otherwise.

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown commit".into());
    println!("cargo:rustc-env=CTXPLANE_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(qdrant_bin)");
    println!("cargo::rerun-if-env-changed=CTXPLANE_QDRANT_BIN");
    if std::env::var_os("CTXPLANE_QDRANT_BIN").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=qdrant_bin");
    }
}
