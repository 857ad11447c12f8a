//! An adversarial redaction corpus, generated with fresh random values on
//! every run: each case plants secrets in one of the forms built-in rules
//! used to miss (copies, adjacent assignments, values away from their
//! names, formats no rule covered, encodings, long values), and negatives
//! are ordinary code, near misses and windows of real source files.
//!
//! Token shapes follow the providers' documented formats; the generic
//! secrets are random strings. Nothing here is taken from another
//! scanner's test data.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;

/// One generated case: after redaction no secret may remain (positives), or
/// the text must come out unchanged (negatives).
#[derive(Debug, Clone)]
pub struct Case {
    pub category: &'static str,
    pub text: String,
    pub secrets: Vec<String>,
}

impl Case {
    pub fn is_positive(&self) -> bool {
        !self.secrets.is_empty()
    }
}

/// splitmix64: small, fast, and enough for test data.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the process's random hasher keys: fresh every run.
    pub fn fresh() -> Rng {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Rng(h.finish())
    }

    pub fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len).map(|_| *self.pick(alphabet) as char).collect()
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const HEX: &[u8] = b"0123456789abcdef";
const PASSWORD: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!%^*_-+";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A random password-like secret: mixed classes, always with a digit, and
/// never a run of asterisks (the way documentation masks a value).
pub fn password(rng: &mut Rng) -> String {
    let len = 14 + rng.below(10);
    let mut s = rng.string(PASSWORD, len);
    while s.contains("**") {
        s = rng.string(PASSWORD, len);
    }
    s.push_str(&rng.string(b"23456789", 2));
    s.insert_str(0, &rng.string(b"ABCDEFGHJKLMNPQRSTUVWXYZ", 1));
    s
}

/// A random token in one provider's documented shape.
pub fn vendor_token(rng: &mut Rng) -> (&'static str, String) {
    match rng.below(8) {
        0 => ("GitHub", format!("ghp_{}", rng.string(ALNUM, 36))),
        1 => ("GitLab", format!("glpat-{}", rng.string(ALNUM, 20))),
        2 => ("Stripe", format!("sk_live_{}", rng.string(ALNUM, 24))),
        3 => ("AWS", format!("AKIA{}", rng.string(UPPER32, 16))),
        4 => ("npm", format!("npm_{}", rng.string(ALNUM, 36))),
        5 => (
            "Slack",
            format!(
                "xoxb-{}-{}-{}",
                rng.string(b"0123456789", 11),
                rng.string(b"0123456789", 12),
                rng.string(ALNUM, 24)
            ),
        ),
        6 => (
            "SendGrid",
            format!("SG.{}.{}", rng.string(ALNUM, 22), rng.string(ALNUM, 43)),
        ),
        _ => ("DigitalOcean", format!("dop_v1_{}", rng.string(HEX, 64))),
    }
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn pem_body(rng: &mut Rng, lines: usize) -> Vec<String> {
    (0..lines).map(|_| rng.string(B64, 64)).collect()
}

fn jwt(rng: &mut Rng) -> String {
    let header = base64(br#"{"alg":"HS256","typ":"JWT"}"#)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_");
    let payload = base64(
        format!(
            r#"{{"sub":"{}","iat":{}}}"#,
            rng.string(HEX, 12),
            1_700_000_000 + rng.below(9_999_999)
        )
        .as_bytes(),
    )
    .trim_end_matches('=')
    .replace('+', "-")
    .replace('/', "_");
    format!("{header}.{payload}.{}", rng.string(ALNUM, 43))
}

/// Secret-bearing names in the styles of different formats.
const NAMES: &[&str] = &[
    "DB_PASSWORD",
    "api_key",
    "SECRET_KEY",
    "auth_token",
    "client_secret",
    "smtp.password",
    "ACCESS_TOKEN",
    "private_key",
];

/// One positive case of the given kind (0..KINDS).
pub const KINDS: usize = 33;

pub fn positive(rng: &mut Rng, kind: usize) -> Case {
    let pw = password(rng);
    let (vendor, tok) = vendor_token(rng);
    let name = *rng.pick(NAMES);
    let c = |category, text: String, secrets: Vec<String>| Case {
        category,
        text,
        secrets,
    };
    match kind {
        0 => c(
            "copy: later in the file",
            format!("{name}={tok}\n\nsome = other\n# rotate {tok} before May\n"),
            vec![tok],
        ),
        1 => c(
            "copy: twice on a line",
            format!("export TOKEN=\"{tok}\" # also in CI as {tok}\n"),
            vec![tok],
        ),
        2 => c(
            "copy: in a comment",
            format!("{name} = \"{pw}\"\n// old value was {pw}, kept for the migration\n"),
            vec![pw],
        ),
        3 => {
            let a = password(rng);
            let key = format!("AKIA{}", rng.string(UPPER32, 16));
            c(
                "adjacent: properties",
                format!(
                    "api_url=https://api.example.net/v2\naws_access_key_id={key}\naws_secret_access_key={a}\ndb.password={pw}\nlog.level=INFO\n"
                ),
                vec![key, a, pw],
            )
        }
        4 => {
            let a = password(rng);
            c(
                "adjacent: env after allowlisted line",
                format!(
                    "API_URL=http://localhost:8080\nAPI_SECRET={a}\nSECRET_KEY_PREFIX=abc123\nDB_PASSWORD={pw}\n"
                ),
                vec![a, pw],
            )
        }
        5 => c(
            "adjacent: ini",
            format!("[database]\nuser = app\npassword = {pw}\n[cache]\ntoken = {tok}\n"),
            vec![pw, tok],
        ),
        6 => c(
            "another line: YAML >-",
            format!(
                "service:\n  {}: >-\n    {pw}\n  port: 5432\n",
                name.to_lowercase()
            ),
            vec![pw],
        ),
        7 => c(
            "another line: YAML |",
            format!("config:\n  api_token: |\n    {tok}\nnext: 1\n"),
            vec![tok],
        ),
        8 => c(
            "another line: k8s name/value",
            format!(
                "env:\n  - name: {}\n    value: \"{pw}\"\n  - name: LOG_LEVEL\n    value: info\n",
                name.to_uppercase().replace('.', "_")
            ),
            vec![pw],
        ),
        9 => {
            let (a, b) = pw.split_at(pw.len() / 2);
            c(
                "another line: Python concatenation",
                format!("DB_PASSWORD = (\"{a}\"\n               \"{b}\")\n"),
                vec![pw.clone()],
            )
        }
        10 => {
            let (a, b) = tok.split_at(tok.len() / 2);
            c(
                "another line: JS concatenation",
                format!("const apiKey = '{a}' +\n  '{b}';\n"),
                vec![tok.clone()],
            )
        }
        11 => c(
            "another line: shell continuation",
            format!("curl -X POST https://api.example.net \\\n  --password \\\n  {pw}\n"),
            vec![pw],
        ),
        12 => {
            let t = jwt(rng);
            let (a, b) = t.split_at(t.find('.').map_or(10, |i| i + 1));
            c(
                "another line: JWT split in two literals",
                format!("let t = \"{a}\"\n  + \"{b}\";\n"),
                vec![t.clone()],
            )
        }
        13 => c(
            "form: vendor token - 'VALUE'",
            format!("{vendor} token - '{pw}'\n"),
            vec![pw],
        ),
        14 => c(
            "form: prose",
            format!("Hi team, your API key is {pw} and it expires next week.\n"),
            vec![pw],
        ),
        15 => {
            let mut jenkins = || {
                format!(
                    "{{{}}}",
                    base64(format!("AQAAABAAAAAQ{}", rng.string(ALNUM, 40)).as_bytes())
                )
            };
            let (v, w) = (jenkins(), jenkins());
            c(
                "form: Jenkins credentials.xml",
                format!(
                    "<com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl>\n  <id>deploy</id>\n  <username>ci</username>\n  <password>{v}</password>\n</com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl>\n<secret>{w}</secret>\n"
                ),
                vec![v, w],
            )
        }
        16 => c(
            "form: properties with a space",
            format!("db.user app\ndb.password {pw}\n"),
            vec![pw],
        ),
        17 => c(
            "form: Dockerfile ENV name value",
            format!("FROM alpine:3.20\nENV API_TOKEN {pw}\nRUN ./build.sh\n"),
            vec![pw],
        ),
        18 => c(
            "form: mysql -pX",
            format!("mysql -u root -p{pw} -h db.internal app < dump.sql\n"),
            vec![pw],
        ),
        19 => c(
            "form: sshpass -p",
            format!("sshpass -p '{pw}' ssh deploy@10.0.0.5\n"),
            vec![pw],
        ),
        20 => c(
            "form: PGPASSWORD=",
            format!("PGPASSWORD={pw} psql -h db -U app\n"),
            vec![pw],
        ),
        21 => c(
            "form: SQL IDENTIFIED BY",
            format!("CREATE USER 'app'@'%' IDENTIFIED BY '{pw}';\n"),
            vec![pw],
        ),
        22 => {
            let other = password(rng);
            c(
                "form: SQL WITH PASSWORD",
                format!(
                    "CREATE ROLE app WITH LOGIN PASSWORD '{pw}';\nALTER USER app WITH ENCRYPTED PASSWORD '{other}';\n"
                ),
                vec![pw, other],
            )
        }
        23 => c(
            "form: setter call",
            format!("ds.setUser(\"app\");\nds.setPassword(\"{pw}\");\n"),
            vec![pw],
        ),
        24 => c(
            "form: HTML hidden input",
            format!("<form>\n<input type=\"hidden\" name=\"api_key\" value=\"{pw}\">\n</form>\n"),
            vec![pw],
        ),
        25 => c(
            "form: Markdown table",
            format!("| Service | Token |\n|---|---|\n| billing | `{pw}` |\n"),
            vec![pw],
        ),
        26 => {
            let enc = base64(tok.as_bytes());
            c(
                "encoded: base64 of a token",
                format!("data = \"{enc}\"\n"),
                vec![enc],
            )
        }
        27 => {
            let body = pem_body(rng, 8).join("\n");
            let pem = format!("-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n");
            let enc = base64(pem.as_bytes());
            c(
                "encoded: kubeconfig client-key-data",
                format!(
                    "users:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {enc}\n",
                    base64(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
                ),
                vec![enc],
            )
        }
        28 => {
            let lines = pem_body(rng, 6);
            c(
                "form: private key without END",
                format!("key:\n-----BEGIN PRIVATE KEY-----\n{}\n", lines.join("\n")),
                lines,
            )
        }
        29 => {
            let p = format!("{}@{}", rng.string(ALNUM, 8), rng.string(ALNUM, 6));
            c(
                "form: URL password with @",
                format!("DATABASE_URL=postgres://app:{p}@db.internal:5432/app\n"),
                vec![p],
            )
        }
        30 => {
            let long = rng.string(ALNUM, 420);
            c(
                "long: value over 300 characters",
                format!("{name}=\"{long}\"\n"),
                vec![long],
            )
        }
        31 => c(
            "vendor: token in JSON",
            format!("{{\n  \"service\": \"{vendor}\",\n  \"token\": \"{tok}\"\n}}\n"),
            vec![tok],
        ),
        _ => {
            let a = password(rng);
            c(
                "form: CLI --password",
                format!("app deploy --user ci --password {a} --region eu\n"),
                vec![a],
            )
        }
    }
}

/// Near misses that must come out unchanged.
const NEAR_MISSES: &[&str] = &[
    "pub struct ItemFn { brace_token: syn::token::Brace, stmts: Vec<Stmt> }\n",
    "let token = lexer.next_token();\nlet password_len = 12;\n",
    "billiard==3.6.4.0\nkombu>=5.3.4.1\n",
    "See RFC 9111 section 5.2.2.2 and section-4.1.2.6.\n",
    "fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {}\n",
    "let takes_ownership = move |token: CancellationToken| token.cancel();\n",
    "SESSION_COOKIE_NAME = \"sessionid\"\nCSRF_HEADER_NAME = \"HTTP_X_CSRFTOKEN\"\n",
    "password = forms.CharField(widget=forms.PasswordInput)\n",
    "api_version: apps/v1\nkind: Deployment\n",
    "DB_PASSWORD=${DB_PASSWORD}\nAPI_KEY={{ vault.api_key }}\n",
    "secret_key_ref:\n  name: app-secrets\n  key: db-password\n",
    "| Setting | Default |\n|---|---|\n| `SESSION_COOKIE_AGE` | `1209600` |\n",
    "token = self._get_token(request)\nkey = make_template_fragment_key(fragment_name, vary_on)\n",
    "- name: DB_PASSWORD\n  valueFrom:\n    secretKeyRef:\n      name: db\n      key: password\n",
];

/// Windows of about 30 lines from real source files under `roots`.
fn real_windows(rng: &mut Rng, roots: &[&Path], n: usize) -> Vec<String> {
    let mut files = Vec::new();
    for root in roots {
        let mut found = Vec::new();
        super::collect_files(root, root, &mut found);
        files.extend(found.into_iter().filter(|(rel, _)| {
            (rel.ends_with(".rs") || rel.ends_with(".py"))
                && !rel.split('/').any(|s| s == "tests" || s == "test")
        }));
    }
    files.sort();
    let mut out = Vec::new();
    let mut tries = 0;
    while out.len() < n && !files.is_empty() && tries < n * 10 {
        tries += 1;
        let (_, path) = rng.pick(&files);
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() < 30 {
            continue;
        }
        let start = rng.below(lines.len() - 30);
        out.push(lines[start..start + 30].join("\n") + "\n");
    }
    out
}

/// The corpus: `per_kind` positives of every kind, the near misses, and
/// `real` windows of real code under `roots` as negatives.
pub fn corpus(rng: &mut Rng, per_kind: usize, roots: &[&Path], real: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for kind in 0..KINDS {
        for _ in 0..per_kind {
            cases.push(positive(rng, kind));
        }
    }
    for text in NEAR_MISSES {
        cases.push(Case {
            category: "negative: near miss",
            text: (*text).to_string(),
            secrets: Vec::new(),
        });
    }
    for text in real_windows(rng, roots, real) {
        cases.push(Case {
            category: "negative: real code",
            text,
            secrets: Vec::new(),
        });
    }
    cases
}

/// Per category: (cases passed, cases), and the texts of failed cases.
pub fn score(
    redactor: &indexer::redact::Redactor,
    cases: &[Case],
) -> (BTreeMap<&'static str, (usize, usize)>, Vec<Case>) {
    let mut by = BTreeMap::new();
    let mut failed = Vec::new();
    for case in cases {
        let out = redactor.redact(&case.text, None).text;
        let ok = if case.is_positive() {
            case.secrets.iter().all(|s| !out.contains(s.as_str()))
        } else {
            out == case.text
        };
        let e = by.entry(case.category).or_insert((0, 0));
        e.0 += usize::from(ok);
        e.1 += 1;
        if !ok {
            failed.push(case.clone());
        }
    }
    (by, failed)
}
