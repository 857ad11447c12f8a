//! `ctxplane check`: the CI gate as a command. Exit 0 when clean, 1 when
//! anything fails, 2 for usage or configuration errors.

use std::process::ExitCode;

use plane::Plane;
use plane::check::Finding;
use serde_json::json;

use crate::cli::CheckArgs;

pub fn check(args: CheckArgs, plane: &Plane) -> anyhow::Result<ExitCode> {
    let format = if args.json { "json" } else { args.format.as_str() };
    if !matches!(format, "text" | "json" | "junit" | "github") {
        return Err(plane::ConfigError(format!(
            "--format must be text, json, junit or github, not {format:?}"
        ))
        .into());
    }
    let rep = match &args.snapshots {
        Some(file) => {
            let (text, label) = if file.as_os_str() == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                    .map_err(|e| plane::ConfigError(format!("reading stdin: {e}")))?;
                (t, "-".to_string())
            } else {
                let t = std::fs::read_to_string(file)
                    .map_err(|e| plane::ConfigError(format!("reading {}: {e}", file.display())))?;
                (t, file.display().to_string())
            };
            plane.check_snapshots(&plane::query::Asker::Operator, &text, &label)?
        }
        None => plane.check(None, args.source.as_deref()).map_err(|e| match e {
            // Naming a source that does not exist is bad usage (exit 2).
            plane::Error::NotFound(_) => plane::Error::Config(format!(
                "no source {:?} in the registry",
                args.source.as_deref().unwrap_or("")
            )),
            other => other,
        })?,
    };
    let snapshots = args.snapshots.is_some();
    let (checked, findings, errors) = (rep.sources, rep.findings, rep.errors);
    match format {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"ok": errors == 0, "errors": errors, "sources": checked, "findings": findings})
            )?
        ),
        "github" => {
            for f in &findings {
                println!(
                    "::{} file={},line={},title={}::{}",
                    f.severity,
                    f.file,
                    f.line,
                    f.code,
                    f.message
                        .replace('%', "%25")
                        .replace('\r', "%0D")
                        .replace('\n', "%0A")
                );
            }
        }
        "junit" => print!("{}", junit(&checked, &findings)),
        _ => {
            for f in &findings {
                println!("{}:{}: {} [{}] {}", f.file, f.line, f.severity, f.code, f.message);
            }
            let what = if snapshots {
                format!("{} snapshot(s)", checked.len())
            } else {
                let packages = checked.iter().filter(|c| c.starts_with("topic")).count();
                format!(
                    "{} source(s) and {packages} topic package(s)",
                    checked.len() - packages
                )
            };
            println!(
                "{what} checked: {} error(s), {} warning(s)",
                errors,
                findings.len() - errors
            );
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One test suite, one test case per source; a failure per error.
fn junit(sources: &[String], findings: &[Finding]) -> String {
    let errors = findings.iter().filter(|f| f.severity == "error").count();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"ctxplane check\" tests=\"{}\" failures=\"{errors}\">\n",
        sources.len()
    );
    for s in sources {
        out.push_str(&format!(
            "  <testcase classname=\"ctxplane\" name=\"{}\">\n",
            xml(s)
        ));
        for f in findings
            .iter()
            .filter(|f| &f.source == s && f.severity == "error")
        {
            out.push_str(&format!(
                "    <failure type=\"{}\" message=\"{}:{}: {}\"/>\n",
                xml(&f.code),
                xml(&f.file),
                f.line,
                xml(&f.message)
            ));
        }
        out.push_str("  </testcase>\n");
    }
    out.push_str("</testsuite>\n");
    out
}
