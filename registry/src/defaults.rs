//! The built-in never-ingest list: files and directories that hold
//! credentials often enough that ctxplane refuses them unless a steward
//! grants a scoped, time-bounded exception.

pub const BUILTIN_NEVER_INGEST: &[&str] = &[
    // dotenv and shell environment files
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    // keys, certificates with keys, keystores
    "*.pem",
    "*.key",
    "*.p8",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.ppk",
    "*.keytab",
    "*.kdbx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    // credential stores of common tools
    ".ssh/",
    ".gnupg/",
    ".aws/",
    ".azure/",
    ".config/gcloud/",
    ".docker/config.json",
    ".kube/config",
    "kubeconfig",
    "kubeconfig.yaml",
    "kubeconfig.yml",
    "kubeconfig.json",
    "*.kubeconfig",
    "*-kubeconfig",
    "*-kubeconfig.yaml",
    "*-kubeconfig.yml",
    ".netrc",
    "_netrc",
    ".npmrc",
    "*.npmrc",
    ".yarnrc.yml",
    ".pypirc",
    ".pgpass",
    "pgpass.conf",
    ".my.cnf",
    ".mylogin.cnf",
    ".s3cfg",
    ".boto",
    ".dockercfg",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".terraformrc",
    "terraform.rc",
    ".config/gh/hosts.yml",
    ".config/hub",
    "*.ovpn",
    "*.kdb",
    "*.keychain",
    "*.keychain-db",
    "*.psafe3",
    ".git-credentials",
    ".htpasswd",
    ".vault-token",
    "credentials",
    "credentials.*",
    "*credentials.json",
    "service-account*.json",
    // secret directories and secret config files
    "secrets/",
    ".secrets/",
    "secrets.yml",
    "secrets.yaml",
    "secrets.json",
    "secrets.toml",
    "secrets.env",
    "*.secret",
    "*.secrets",
    // infrastructure state that embeds secrets
    "*.tfstate",
    "*.tfstate.*",
    "*.tfvars",
    "*.tfvars.json",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{RuleOrigin, RuleSet};

    #[test]
    fn builtin_rules_compile_and_catch_the_usual_suspects() {
        let set = RuleSet::new(
            BUILTIN_NEVER_INGEST.iter().map(|p| (*p, RuleOrigin::Builtin)),
            true,
        )
        .unwrap();
        for path in [
            ".env",
            "svc/.env.production",
            "deploy/prod.env",
            "certs/server.pem",
            "home/.ssh/config",
            "keys/id_ed25519.pub",
            "infra/terraform.tfstate",
            "config/secrets/db.yaml",
            "creds/gcp-credentials.json",
            ".ENV",
            "ops/kubeconfig",
            "ops/kubeconfig.yaml",
            "clusters/prod.kubeconfig",
            "corp.npmrc",
            "home/.netrc",
            "home/.pgpass",
            "home/.my.cnf",
            "home/.s3cfg",
            "infra/prod.tfvars.json",
        ] {
            assert!(set.is_match(path), "{path} not caught");
        }
        for path in [
            "src/main.rs",
            "docs/environment.md",
            "src/secret_sharing.rs",
            "keyboard.c",
            "docs/kubeconfig.md",
            "src/npmrc.rs",
        ] {
            assert!(!set.is_match(path), "{path} wrongly caught");
        }
    }
}
