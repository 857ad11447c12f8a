//! The console's pages. maud escapes every interpolated value, so what
//! comes from the registry, a source, a package or the audit log renders
//! as text; no page has inline script or style (the CSP forbids both).

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};
use plane::overview::{Activity, ActivityFilter, PackageRow, SourceDetail, SourceRow};
use registry::Outcome;
use serde_json::Value;

use super::{Flash, Signed, urlencode};

fn when(t: Option<jiff::Timestamp>) -> String {
    t.map_or("never".into(), |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn short(v: &Value, max: usize) -> String {
    let s = if v.is_null() { String::new() } else { v.to_string() };
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

fn badge(kind: &str) -> Markup {
    html! { span class={"badge b-" (kind.replace(|c: char| !c.is_ascii_alphanumeric(), "-"))} { (kind) } }
}

fn csrf(s: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · ctxplane console" }
            link rel="stylesheet" href="/console/assets/console.css";
            script src="/console/assets/console.js" defer {}
        }
    }
}

fn nav(s: &Signed, active: &str) -> Markup {
    let mut links = vec![("sources", "Sources"), ("packages", "Topic packages")];
    if s.steward() {
        links.extend([
            ("exceptions", "Exceptions"),
            ("principals", "Principals"),
            ("activity", "Activity"),
        ]);
    }
    html! {
        header class="top" {
            a class="brand" href="/console/sources" { "ctxplane" }
            nav aria-label="Console sections" {
                ul {
                    @for (slug, label) in links {
                        li { a href={"/console/" (slug)} aria-current=[(slug == active).then_some("page")] { (label) } }
                    }
                }
            }
            div class="who" {
                span { (s.who.name()) " · " (s.who.principal.role.as_str()) }
                form method="post" action="/console/signout" {
                    (csrf(s))
                    button type="submit" class="link" { "Sign out" }
                }
            }
        }
    }
}

fn stop_banner(s: &Signed) -> Markup {
    html! {
        section id="stop" data-live aria-live="polite" {
            @if let Some(reason) = &s.stopped {
                div class="stopped" role="alert" {
                    strong { "Emergency stop in force." }
                    " Reason: " (reason) ". Queries and ingestion are refused; revocation still works."
                    @if s.steward() {
                        form method="post" action="/console/resume" class="inline" {
                            (csrf(s))
                            button type="submit" { "Resume" }
                        }
                    }
                }
            }
        }
    }
}

fn stop_form(s: &Signed) -> Markup {
    html! {
        @if s.steward() && s.stopped.is_none() {
            details class="danger-zone" {
                summary { "Emergency stop" }
                form method="post" action="/console/stop" {
                    (csrf(s))
                    label for="stop-reason" { "Reason (required)" }
                    input id="stop-reason" name="reason" required maxlength="500";
                    button type="submit" class="danger" { "Stop everything" }
                }
            }
        }
    }
}

fn flash(f: &Option<Flash>) -> Markup {
    let Some(f) = f else { return html! {} };
    html! {
        div class="flash" role="status" {
            @match f {
                Flash::Done(m) => p class="ok" { (m) },
                Flash::Failed(m) => p class="err" { "Refused: " (m) },
                Flash::Status(o) => {
                    p class="ok" { (o.action) " " (o.source) " → " (o.status) " (audit #" (o.audit_seq) ")" }
                    @if let Some(r) = &o.remaining {
                        h3 { "Purge proof" }
                        p { "What remains of " (o.source) " in each store (all zero after a verified purge):" }
                        table class="proof" {
                            tbody {
                                tr { th scope="row" { "chunks in the lexical index" } td { (r.chunks) } }
                                tr { th scope="row" { "vectors" } td { (r.vectors) } }
                                tr { th scope="row" { "manifest" } td { (if r.manifest { "present" } else { "0" }) } }
                                tr { th scope="row" { "deleted documents still in index segments" } td { (r.deleted_in_index) } }
                                tr { th scope="row" { "dead records in the vector log" } td { (r.dead_vectors) } }
                                tr { th scope="row" { "vector store checked" } td { (if r.vectors_checked { "yes" } else { "no" }) } }
                                tr { th scope="row" { "cached vectors of texts no longer indexed" } td { (r.cached_vectors) } }
                            }
                        }
                        p { "Purge verified: " strong { (if o.purge_verified == Some(true) { "yes" } else { "no" }) } }
                    }
                    @if let Some(p) = &o.purged {
                        @if !p.is_empty() { p { "Purged: " (p.join(", ")) } }
                    }
                }
                Flash::Token { principal, token } => {
                    p class="ok" { "Principal " (principal) " added. Its token is shown once; store it now:" }
                    p { code class="token" { (token) } }
                }
                Flash::Decisions(ds) => {
                    table {
                        caption { "What the policy decides now" }
                        thead { tr { th { "path" } th { "decision" } th { "why" } th { "decision id" } } }
                        tbody {
                            @for d in ds {
                                tr {
                                    td { (d.path) }
                                    @match &d.outcome {
                                        Outcome::Allow { exception: None } => { td { (badge("allow")) } td {} }
                                        Outcome::Allow { exception: Some(x) } => { td { (badge("allow")) } td { "exception " (x) } }
                                        Outcome::Deny(r) => { td { (badge("deny")) } td { (r.to_string()) } }
                                    }
                                    td { code { (d.id) } }
                                }
                            }
                        }
                    }
                }
                Flash::Verified(v) => {
                    @let intact = v["intact"].as_bool() == Some(true);
                    p class=(if intact { "ok" } else { "err" }) {
                        "Audit chain " (if intact { "intact" } else { "BROKEN" }) ": "
                        (v["entries"].as_u64().unwrap_or(0)) " entries verified"
                        @if let Some(b) = v["first_bad"].as_u64() { "; first bad line " (b) }
                        "."
                    }
                }
            }
        }
    }
}

fn layout(s: &Signed, title: &str, active: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a class="skip" href="#main" { "Skip to content" }
                (nav(s, active))
                (stop_banner(s))
                main id="main" {
                    h1 { (title) }
                    (flash(&s.flash))
                    (body)
                }
                footer { (stop_form(s)) }
            }
        }
    }
}

pub fn signin(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body class="signin" {
                main id="main" {
                    h1 { "ctxplane console" }
                    p { "Sign in with a steward token (developers: read-only, your scope). Agents and CI cannot sign in." }
                    @if let Some(e) = error { p class="err" role="alert" { (e) } }
                    form method="post" action="/console/signin" autocomplete="off" {
                        label for="token" { "Token" }
                        input id="token" name="token" type="password" required autocomplete="off" spellcheck="false";
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

pub fn error_page(status: StatusCode, message: &str) -> Markup {
    let reason = status.canonical_reason().unwrap_or("error");
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(reason))
            body {
                main id="main" {
                    h1 { (status.as_u16()) " " (reason) }
                    @if !message.is_empty() { p { (message) } }
                    p { a href="/console" { "Back to the console" } }
                }
            }
        }
    }
}

fn denied_cell(r: &SourceRow) -> Markup {
    html! {
        @if r.denied.is_empty() { "0" }
        @for (reason, d) in &r.denied { span class="nowrap" { (reason) ": " (d.count) } " " }
    }
}

pub fn sources(s: &Signed, rows: Vec<SourceRow>) -> Markup {
    let waiting: Vec<_> = rows.iter().filter(|r| r.status == "proposed").collect();
    layout(
        s,
        "Sources",
        "sources",
        html! {
            section id="waiting" data-live {
                @if !waiting.is_empty() {
                    h2 { "Waiting for a decision" }
                    ul {
                        @for r in &waiting {
                            li { a href={"/console/sources/" (urlencode(&r.id))} { (r.id) } " — " (r.owner) ", tier " (r.tier)
                                @if let Some(d) = &r.description { " — " (d) } }
                        }
                    }
                }
            }
            section id="sources-table" data-live {
                div class="scroll" {
                    table {
                        caption { (rows.len()) " sources" }
                        thead { tr {
                            th scope="col" { "Source" } th scope="col" { "Kind" } th scope="col" { "Tier" }
                            th scope="col" { "Owner" } th scope="col" { "Status" } th scope="col" { "Freshness" }
                            th scope="col" { "Last pass" } th scope="col" { "Chunks" } th scope="col" { "Vectors" }
                            th scope="col" { "Denied files" } th scope="col" { "Secrets redacted" } th scope="col" { "Drift" }
                        } }
                        tbody {
                            @for r in &rows {
                                tr data-source=(r.id) {
                                    th scope="row" { a href={"/console/sources/" (urlencode(&r.id))} { (r.id) }
                                        @if let Some(d) = &r.description { div class="desc" { (d) } } }
                                    td { (r.kind) } td { (r.tier) } td { (r.owner) }
                                    td { (badge(&r.status)) }
                                    td { @if let Some(f) = &r.freshness { (badge(f)) } @else { "—" } }
                                    td { (when(r.last_pass)) }
                                    td class="num" { (r.chunks) }
                                    td class="num" { (r.vectors) " (" (pct(r.coverage)) ")" }
                                    td { (denied_cell(r)) }
                                    td class="num" { (r.redacted) }
                                    td class="num" { (r.drift) }
                                }
                            }
                        }
                    }
                }
            }
            @if s.steward() {
                section {
                    h2 { "Propose a source" }
                    form method="post" action="/console/sources" class="grid" {
                        (csrf(s))
                        label for="p-id" { "Id" } input id="p-id" name="id" required pattern="[a-z0-9][a-z0-9._-]{0,63}";
                        label for="p-kind" { "Kind" }
                        select id="p-kind" name="kind" { option value="dir" { "dir" } option value="git" { "git" } }
                        label for="p-location" { "Location (path)" } input id="p-location" name="location" required;
                        label for="p-owner" { "Owner" } input id="p-owner" name="owner" required;
                        label for="p-tier" { "Tier" }
                        select id="p-tier" name="tier" { @for t in 1..=4 { option value=(t) { (t) } } }
                        label for="p-desc" { "Description" } input id="p-desc" name="description";
                        label for="p-include" { "Include globs (one per line)" } textarea id="p-include" name="include" rows="2" {}
                        label for="p-exclude" { "Exclude globs" } textarea id="p-exclude" name="exclude" rows="2" {}
                        label for="p-never" { "Never-ingest globs" } textarea id="p-never" name="never_ingest" rows="2" {}
                        div {} button type="submit" { "Propose" }
                    }
                }
            }
        },
    )
}

fn list(items: &[String]) -> Markup {
    html! {
        @if items.is_empty() { "none" }
        @else { ul class="plain" { @for i in items { li { code { (i) } } } } }
    }
}

fn reason_form(s: &Signed, id: &str, verb: &str, required: bool, danger: bool) -> Markup {
    let fid = format!("{verb}-reason");
    html! {
        form method="post" action={"/console/sources/" (urlencode(id)) "/" (verb)} class="action" {
            (csrf(s))
            label for=(fid) { "Reason" @if required { " (required)" } }
            input id=(fid) name="reason" maxlength="500" required[required];
            button type="submit" class=[danger.then_some("danger")] { (verb[..1].to_uppercase()) (verb[1..]) }
        }
    }
}

pub fn source(s: &Signed, d: SourceDetail) -> Markup {
    let r = &d.row;
    layout(
        s,
        &format!("Source {}", r.id),
        "sources",
        html! {
            p { (badge(&r.status)) " " @if let Some(f) = &r.freshness { (badge(f)) } " "
                (r.kind) ", tier " (r.tier) ", owned by " (r.owner) }
            @if let Some(desc) = &r.description { p class="desc" { (desc) } }
            @if let Some(c) = &d.last_change {
                p { "Last status change by " (c.by) " at " (when(Some(c.at)))
                    @if let Some(why) = &c.reason { ": " (why) } }
            }
            @if s.steward() {
                section class="actions" aria-label="Decisions" {
                    @if r.status != "approved" { (reason_form(s, &r.id, "approve", true, false)) }
                    @if r.status == "proposed" { (reason_form(s, &r.id, "deny", true, false)) }
                    @if r.status == "approved" { (reason_form(s, &r.id, "revoke", true, true)) }
                }
            }
            section id="index" data-live {
                h2 { "Index" }
                dl class="facts" {
                    dt { "Last pass" } dd { (when(r.last_pass)) }
                    dt { "Chunks" } dd { (r.chunks) }
                    dt { "Vectors" } dd { (r.vectors) " (" (pct(r.coverage)) ")" }
                    dt { "Secrets redacted" } dd { (r.redacted) }
                    @if let Some(f) = &d.freshness {
                        dt { "Files indexed" } dd { (f.files_indexed) }
                        dt { "Changed on disk" } dd { (f.modified.count) " modified, " (f.added.count) " added, " (f.removed.count) " removed" }
                        dt { "Past max age (" (f.max_age_days) " days)" } dd { (f.stale.count) }
                        @if let Some(e) = &f.error { dt { "Error" } dd class="err" { (e) } }
                    }
                }
                h3 { "Denied files by reason (last pass)" }
                @if r.denied.is_empty() { p { "None." } }
                @else {
                    table {
                        thead { tr { th { "reason" } th { "files" } th { "examples" } } }
                        tbody { @for (reason, x) in &r.denied { tr { td { (reason) } td class="num" { (x.count) } td { (x.examples.join(", ")) } } } }
                    }
                }
            }
            section {
                h2 { "Policy" }
                dl class="facts" {
                    dt { "Location" } dd { code { (d.location) } }
                    dt { "Root" } dd { code { (d.root) } }
                    dt { "Include" } dd { (list(&d.include)) }
                    dt { "Exclude" } dd { (list(&d.exclude)) }
                    dt { "Never ingest" } dd { (list(&d.never_ingest)) }
                }
                @if s.steward() {
                    form method="post" action={"/console/sources/" (urlencode(&r.id)) "/decide"} class="action" {
                        (csrf(s))
                        label for="paths" { "Ask the policy about paths (one per line)" }
                        textarea id="paths" name="paths" rows="3" required {}
                        button type="submit" { "Decide" }
                    }
                }
            }
            section {
                h2 { "Drift" }
                @let drift = d.freshness.as_ref().map(|f| f.drift.as_slice()).unwrap_or(&[]);
                @if drift.is_empty() { p { "No version claim contradicts a lockfile." } }
                @else {
                    ul { @for n in drift { li { code { (n.file) ":" (n.line) } " claims " (n.dependency) " " (n.claimed) "; pinned " (n.pinned.join(", ")) } } }
                }
            }
            section {
                h2 { "Topic packages and checks" }
                (packages_table(&d.packages))
                @if d.findings.is_empty() { p { "Context package check: no findings." } }
                @else {
                    ul { @for f in &d.findings { li { (badge(f.severity)) " " code { (f.file) ":" (f.line) } " [" (f.code) "] " (f.message) } } }
                }
            }
            @if !d.exceptions.is_empty() {
                section {
                    h2 { "Exceptions" }
                    ul { @for x in &d.exceptions { li { code { (x["path"].as_str().unwrap_or("")) } " " (badge(x["window"].as_str().unwrap_or(""))) " until " (x["expires_at"].as_str().unwrap_or("")) " — " (x["reason"].as_str().unwrap_or("")) } } }
                }
            }
            section id="passes" data-live {
                h2 { "Recent passes" }
                @if d.passes.is_empty() { p { "No pass has walked it in the recent audit log." } }
                @else {
                    div class="scroll" { table {
                        thead { tr { th { "audit #" } th { "when" } th { "by" } th { "files" } th { "indexed" } th { "chunks +/−" } th { "redactions" } th { "error" } } }
                        tbody { @for p in &d.passes { tr {
                            td { (p.seq) } td { (when(Some(p.ts))) } td { (p.actor) }
                            td class="num" { (short(&p.detail["files"], 20)) } td class="num" { (short(&p.detail["indexed"], 20)) }
                            td class="num" { "+" (short(&p.detail["chunks_added"], 20)) " / −" (short(&p.detail["chunks_removed"], 20)) }
                            td class="num" { (short(&p.detail["redactions"], 20)) }
                            td { (p.detail["error"].as_str().unwrap_or("")) }
                        } } }
                    } }
                }
            }
            @if s.steward() {
                section id="history" data-live {
                    h2 { "Audit history" }
                    (entries_table(&d.history))
                }
            }
        },
    )
}

fn packages_table(rows: &[PackageRow]) -> Markup {
    html! {
        @if rows.is_empty() { p { "No topic packages." } }
        @else {
            div class="scroll" { table {
                thead { tr { th { "status" } th { "package" } th { "owner" } th { "reviewed" } th { "review lapses" } th { "cites" } th { "what changed" } } }
                tbody { @for p in rows { tr data-package=(p.id) {
                    td { (badge(&p.status)) }
                    th scope="row" { (p.id) @if !p.title.is_empty() { div class="desc" { (p.title) } } div class="desc" { code { (p.file) } } }
                    td { (p.owner) }
                    td { (p.reviewed_at.as_deref().unwrap_or("never")) @if let Some(by) = &p.reviewed_by { " by " (by) } }
                    td { (p.expires_on.as_deref().unwrap_or("—")) }
                    td { (p.citations) " in " (p.sources.join(", ")) }
                    td { @if p.changes.is_empty() { "—" } @else { ul class="plain" { @for c in &p.changes { li { (c) } } } } }
                } } }
            } }
        }
    }
}

pub fn packages(s: &Signed, rows: Vec<PackageRow>) -> Markup {
    layout(
        s,
        "Topic packages",
        "packages",
        html! {
            p { "Stale and moved packages first. A stale package is not served; fix its citations and re-review it (" code { "ctxplane packages rehash" } ")." }
            section id="packages" data-live { (packages_table(&rows)) }
        },
    )
}

pub fn exceptions(s: &Signed, x: &Value, rows: &[SourceRow]) -> Markup {
    let now: Option<jiff::Timestamp> = x["now"].as_str().and_then(|t| t.parse().ok());
    let all = x["exceptions"].as_array().cloned().unwrap_or_default();
    let group = |w: &str| {
        all.iter()
            .filter(|e| e["window"] == w)
            .cloned()
            .collect::<Vec<_>>()
    };
    let days_left = |e: &Value| -> String {
        let (Some(now), Some(exp)) = (
            now,
            e["expires_at"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
        ) else {
            return "—".into();
        };
        let secs = exp.as_second() - now.as_second();
        if secs <= 0 {
            "0".into()
        } else {
            format!("{}", (secs + 86_399) / 86_400)
        }
    };
    layout(
        s,
        "Exceptions",
        "exceptions",
        html! {
            section id="exceptions" data-live {
                @for (w, title) in [("live", "Live"), ("not_yet", "Not yet live"), ("expired", "Expired")] {
                    @let xs = group(w);
                    h2 { (title) " (" (xs.len()) ")" }
                    @if !xs.is_empty() {
                        div class="scroll" { table {
                            thead { tr { th { "id" } th { "source" } th { "path" } th { "days left" } th { "expires" } th { "approved by" } th { "reason" } } }
                            tbody { @for e in &xs { tr data-exception=(e["id"].as_str().unwrap_or("")) {
                                td { code { (e["id"].as_str().unwrap_or("")) } }
                                td { (e["source"].as_str().unwrap_or("")) }
                                td { code { (e["path"].as_str().unwrap_or("")) } }
                                td class="num" { (days_left(e)) }
                                td { (e["expires_at"].as_str().unwrap_or("")) }
                                td { (e["approver"].as_str().unwrap_or("")) }
                                td { (e["reason"].as_str().unwrap_or("")) }
                            } } }
                        } }
                    }
                }
            }
            section {
                h2 { "Grant an exception" }
                p { "Lets one never-ingest path in, for at most " (registry::model::MAX_EXCEPTION_DAYS) " days; you are recorded as the approver." }
                form method="post" action="/console/exceptions" class="grid" {
                    (csrf(s))
                    label for="x-source" { "Source" }
                    select id="x-source" name="source" required { @for r in rows { option value=(r.id) { (r.id) } } }
                    label for="x-path" { "Path glob" } input id="x-path" name="path" required;
                    label for="x-reason" { "Reason" } input id="x-reason" name="reason" required maxlength="500";
                    label for="x-days" { "Days (1–" (registry::model::MAX_EXCEPTION_DAYS) ")" }
                    input id="x-days" name="days" type="number" min="1" max=(registry::model::MAX_EXCEPTION_DAYS) value="30" required;
                    div {} button type="submit" { "Grant" }
                }
            }
        },
    )
}

pub fn principals(s: &Signed, v: Value) -> Markup {
    let rows = v.as_array().cloned().unwrap_or_default();
    layout(
        s,
        "Principals",
        "principals",
        html! {
            section id="principals" data-live {
                div class="scroll" { table {
                    thead { tr { th { "name" } th { "role" } th { "tier ceiling" } th { "granted" } th { "may read now" } th { "token hash" } th { "description" } } }
                    tbody { @for p in &rows { tr data-principal=(p["name"].as_str().unwrap_or("")) {
                        th scope="row" { (p["name"].as_str().unwrap_or("")) }
                        td { (p["role"].as_str().unwrap_or("")) }
                        td class="num" { (short(&p["tier_ceiling"], 4)) }
                        td { (p["sources"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        td { (p["reads"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        td { code { (p["token_hash_prefix"].as_str().unwrap_or("")) } }
                        td { (p["description"].as_str().unwrap_or("")) }
                    } } }
                } }
            }
            section {
                h2 { "Add a principal" }
                form method="post" action="/console/principals" class="grid" {
                    (csrf(s))
                    label for="n-name" { "Name" } input id="n-name" name="name" required;
                    label for="n-role" { "Role" }
                    select id="n-role" name="role" { @for r in ["agent", "developer", "ci", "steward"] { option value=(r) { (r) } } }
                    label for="n-tier" { "Tier ceiling" }
                    select id="n-tier" name="tier_ceiling" { @for t in 1..=4 { option value=(t) { (t) } } }
                    label for="n-sources" { "Sources (comma-separated)" } input id="n-sources" name="sources";
                    label for="n-all" { "All sources" } input id="n-all" name="all_sources" type="checkbox" value="1";
                    label for="n-desc" { "Description" } input id="n-desc" name="description";
                    div {} button type="submit" { "Add" }
                }
            }
        },
    )
}

fn entries_table(entries: &[registry::audit::Entry]) -> Markup {
    html! {
        @if entries.is_empty() { p { "No entries." } }
        @else {
            div class="scroll" { table class="audit" {
                thead { tr { th { "#" } th { "when" } th { "actor" } th { "action" } th { "subject" } th { "details" } } }
                tbody { @for e in entries { tr {
                    td class="num" { (e.seq) } td class="nowrap" { (when(Some(e.ts))) } td { (e.actor) }
                    td { code { (e.action) } } td { (e.subject) } td class="details" { (short(&e.details, 300)) }
                } } }
            } }
        }
    }
}

pub fn activity(s: &Signed, f: &ActivityFilter, a: &Activity) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    layout(
        s,
        "Activity",
        "activity",
        html! {
            form method="post" action="/console/activity/verify" class="inline" {
                (csrf(s))
                button type="submit" { "Verify the audit chain" }
            }
            section id="queries" data-live {
                h2 { "Queries served (last " (a.scanned) " audit entries)" }
                p { "Tokens served: " strong { (a.tokens_served) } }
                @if !a.queries.is_empty() {
                    table {
                        thead { tr { th { "principal" } th { "queries" } th { "served by" } th { "tokens" } } }
                        tbody { @for q in &a.queries { tr {
                            th scope="row" { (q.principal) } td class="num" { (q.queries) }
                            td { @for (by, n) in &q.served_by { span class="nowrap" { (by) ": " (n) } " " } }
                            td class="num" { (q.tokens) }
                        } } }
                    }
                }
            }
            h2 { "Audit log" }
            form method="get" action="/console/activity" class="filters" {
                label for="f-actor" { "Actor" } input id="f-actor" name="actor" value=(v(&f.actor));
                label for="f-action" { "Action" } input id="f-action" name="action" value=(v(&f.action)) placeholder="e.g. source or query";
                label for="f-source" { "Source" } input id="f-source" name="source" value=(v(&f.source));
                button type="submit" { "Filter" }
            }
            section id="entries" data-live { (entries_table(&a.entries)) }
        },
    )
}
