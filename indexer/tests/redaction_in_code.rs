//! The built-in rules on ordinary source code: names that mention secrets
//! (password fields, session cookies, auth settings) hold expressions, not
//! secrets, and must come through untouched; real values in config and
//! code must not.
#![allow(clippy::unwrap_used)]

use indexer::redact::{Redactor, RuleSet};

fn redactor() -> Redactor {
    Redactor::new(RuleSet::builtin(), [7u8; 32])
}

#[test]
fn code_that_names_secrets_is_left_alone() {
    let r = redactor();
    for line in [
        "    password_confirm = self.cleaned_data.get(confirm_field_name)",
        "    new_password2 = forms.CharField(widget=forms.PasswordInput, strip=False)",
        "    def pop_token(self, key, default=__missing_sentinel):",
        "    cookie = request.cookies.get(settings.SESSION_COOKIE_NAME)",
        "    token_srid = models.IntegerField()",
        "@override_settings(AUTH_USER_MODEL=\"accounts.TenantUser\")",
        "        (\"auth\", \"0012_alter_user_first_name_max_length\"),",
        "    for model in (\"auth.Group\", \"accounts.CustomUser2\"):",
        "    self.assertNotIn(resp, self.secret_value, status_code=403)",
        "    u = self.make_user(email, password=password, date_joined=date_joined)",
        "    secret_backend = \"myapp.backends.SecretStoreBackend\"",
        "        <key>TokenFieldAlignment</key>",
        "zone = ZoneInfo(key='Europe/Amsterdam')",
    ] {
        let out = r.redact(line, Some("app/code.py"));
        assert!(out.findings.is_empty(), "{line:?} -> {:?}", out.text);
    }
}

#[test]
fn values_in_config_and_code_are_redacted() {
    let r = redactor();
    for (line, secret) in [
        ("DB_PASSWORD=q8Zt3LmW0pKx7Rv2", "q8Zt3LmW0pKx7Rv2"),
        ("api_token: 7f3a9c2e81b64d0fa5e2c9b1", "7f3a9c2e81b64d0fa5e2c9b1"),
        (
            "session_secret = \"mK2v9QxL4tR8wZ1nB6cY\"",
            "mK2v9QxL4tR8wZ1nB6cY",
        ),
        (
            "{\"env\": \"SERVICE_TOKEN=Zk4q9XbT2mLr8VwN1cYp\\nDEBUG=false\"}",
            "Zk4q9XbT2mLr8VwN1cYp",
        ),
        (
            "conf.set(\"client_secret\", \"Pq7rT2vX9zB4nM6kL1wS\")",
            "Pq7rT2vX9zB4nM6kL1wS",
        ),
        (
            "WEBHOOK_SIGNING_KEY=whk.9f8e7d6c5b4a3f2e1d0c",
            "whk.9f8e7d6c5b4a3f2e1d0c",
        ),
    ] {
        let out = r.redact(line, Some("config/settings"));
        assert!(!out.text.contains(secret), "{line:?} -> {:?}", out.text);
    }
}
