//! Read commands for what only the API shows: `meridian approvals [NAME]`, `meridian history`,
//! `meridian whoami` and `meridian version`. Each prints a table (or lines) as text, or the
//! API's JSON as is with `-o json`.
//!
//! Exit codes: 0 shown, 1 refused by the server (or an unknown approval), 3 usage or
//! connection error.

use meridian_core::edit::EditSummary;
use serde_json::Value;

use super::Format;
use crate::client::{self, Client, ClientError, ServerArgs, exit};
use crate::output;

const EXIT_CODES: &str = "Exit codes: 0 shown, 1 refused by the server or unknown, 3 usage or connection error";

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct ApprovalsArgs {
    /// One approval: show it in full (default: list every one, revoked ones too).
    pub name: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct HistoryArgs {
    /// Only this kind (approval-granted, approval-revoked, approval-expired, config-applied,
    /// config-rejected, access-denied, ...).
    #[arg(long)]
    pub kind: Option<String>,
    /// Events after this id (the `next` of an earlier page).
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// At most this many (the server's cap is 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: 0 the configuration in force is the files' latest, 1 the last edit was \
                        rejected (the previous version stays in force) or the server refused, 3 usage or \
                        connection error")]
pub struct ConfigArgs {
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct WhoamiArgs {
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct VersionArgs {
    /// Only the client's version; ask no server.
    #[arg(long)]
    pub client: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Run `read` against the server; its error reported under `command`'s name.
fn with_client<F, Fut>(command: &str, server: &ServerArgs, read: F) -> i32
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<i32, ClientError>>,
{
    let client = match Client::new(server) {
        Ok(c) => c,
        Err(e) => {
            e.report(command);
            return exit::USAGE;
        }
    };
    match client::block_on(command, read(client)) {
        Some(Ok(code)) => code,
        Some(Err(e)) => {
            e.report(command);
            e.exit_code()
        }
        None => exit::USAGE,
    }
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("")
}

pub fn approvals(args: &ApprovalsArgs) -> i32 {
    with_client("approvals", &args.server, |client| async move {
        let list: Value = client.get("/approvals").await?;
        let all = list["approvals"].as_array().cloned().unwrap_or_default();
        let Some(name) = &args.name else {
            match args.format {
                Format::Json | Format::Yaml => output::data(args.format, &list),
                Format::Text => print!("{}", approvals_table(&all, false)),
                Format::Wide => print!("{}", approvals_table(&all, true)),
            }
            return Ok(exit::OK);
        };
        let Some(one) = all.iter().find(|a| text(a, "name") == name) else {
            let names: Vec<&str> = all.iter().map(|a| text(a, "name")).collect();
            eprintln!("meridian approvals: no approval named {name:?}");
            eprintln!("  hint: known approvals: {}", if names.is_empty() { "none".into() } else { names.join(", ") });
            return Ok(exit::FAILED);
        };
        match args.format {
            Format::Json | Format::Yaml => output::data(args.format, one),
            Format::Text | Format::Wide => print!("{}", approval_detail(one)),
        }
        Ok(exit::OK)
    })
}

/// `jp` / `signin, store` / `every plan`: one part of an approval's scope in words.
fn scope_part(approval: &Value, key: &str) -> Option<String> {
    let items: Vec<&str> = approval["scope"][key].as_array()?.iter().filter_map(Value::as_str).collect();
    (!items.is_empty()).then(|| format!("{key} {}", items.join(",")))
}

fn scope(approval: &Value) -> String {
    let parts: Vec<String> = ["plans", "regions", "services"].iter().filter_map(|k| scope_part(approval, k)).collect();
    if parts.is_empty() { "everywhere".into() } else { parts.join(" ") }
}

/// The approvals as a table, one row each.
/// `wide` adds when each was granted, its reference, its signing key and its revocation.
pub fn approvals_table(all: &[Value], wide: bool) -> String {
    if all.is_empty() {
        return "no approvals\n".into();
    }
    let mut header = vec!["NAME", "FLAG", "STATUS", "GRANTED BY", "EXPIRES", "SCOPE"];
    if wide {
        header.extend(["GRANTED AT", "REFERENCE", "SIGNED BY KEY", "REVOKED"]);
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for a in all {
        let mut row = vec![
            text(a, "name").into(),
            text(a, "flag").into(),
            text(a, "status").into(),
            text(a, "grantedBy").into(),
            a["expires"].as_str().unwrap_or("never").into(),
            scope(a),
        ];
        if wide {
            let r = &a["revoked"];
            row.extend([
                a["grantedAt"].as_str().unwrap_or("-").into(),
                a["reference"].as_str().unwrap_or("-").into(),
                a["signature"]["key"].as_str().unwrap_or("-").into(),
                if r.is_object() { format!("{} by {}", text(r, "at"), text(r, "by")) } else { "-".into() },
            ]);
        }
        rows.push(row);
    }
    crate::output::table(&rows, "")
}

/// One approval, a field a line.
pub fn approval_detail(a: &Value) -> String {
    let mut rows = vec![
        vec!["name:".to_string(), text(a, "name").into()],
        vec!["flag:".into(), text(a, "flag").into()],
        vec!["status:".into(), text(a, "status").into()],
        vec!["granted by:".into(), text(a, "grantedBy").into()],
        vec!["granted at:".into(), a["grantedAt"].as_str().unwrap_or("-").into()],
        vec!["expires:".into(), a["expires"].as_str().unwrap_or("never").into()],
        vec!["reference:".into(), a["reference"].as_str().unwrap_or("-").into()],
        vec!["scope:".into(), scope(a)],
    ];
    if a["signature"].is_object() {
        rows.push(vec!["signed by key:".into(), text(&a["signature"], "key").into()]);
    }
    if a["revoked"].is_object() {
        let r = &a["revoked"];
        let reason = r["reason"].as_str().map(|x| format!(": {x}")).unwrap_or_default();
        rows.push(vec!["revoked:".into(), format!("by {} at {}{reason}", text(r, "by"), text(r, "at"))]);
    }
    crate::output::table(&rows, "")
}

pub fn history(args: &HistoryArgs) -> i32 {
    with_client("history", &args.server, |client| async move {
        let mut path = format!("/history?after={}&limit={}", args.after, args.limit);
        if let Some(kind) = &args.kind {
            path.push_str(&format!("&kind={}", client::segment(kind)));
        }
        let page: Value = client.get(&path).await?;
        match args.format {
            Format::Json | Format::Yaml => output::data(args.format, &page),
            Format::Text | Format::Wide => {
                let events = page["events"].as_array().cloned().unwrap_or_default();
                print!("{}", history_table(&events));
                if events.len() >= args.limit as usize {
                    eprintln!("more may follow: meridian history --after {}", page["next"]);
                }
            }
        }
        Ok(exit::OK)
    })
}

/// The controller's history, one row per event, its detail's main fields on the row.
pub fn history_table(events: &[Value]) -> String {
    if events.is_empty() {
        return "no events\n".into();
    }
    let mut rows = vec![["ID", "AT", "KIND", "WHO", "DETAIL"].map(String::from).to_vec()];
    for e in events {
        let detail: Vec<String> = ["approval", "flag", "plan", "method", "path", "reason", "code", "error"]
            .iter()
            .filter_map(|k| e["detail"][k].as_str().map(|v| format!("{k}={v}")))
            .collect();
        rows.push(vec![
            e["id"].to_string(),
            text(e, "at").into(),
            text(e, "kind").into(),
            text(e, "who").into(),
            detail.join(" "),
        ]);
    }
    crate::output::table(&rows, "")
}

pub fn whoami(args: &WhoamiArgs) -> i32 {
    with_client("whoami", &args.server, |client| async move {
        let me: Value = client.get("/whoami").await?;
        match args.format {
            Format::Json | Format::Yaml => output::data(args.format, &me),
            _ if me["authDisabled"] == Value::Bool(true) => {
                println!(
                    "{} (authentication is disabled on {}: every request may do everything)",
                    text(&me["identity"], "name"),
                    client.server()
                )
            }
            Format::Text | Format::Wide => {
                let id = &me["identity"];
                let flags: Vec<&str> =
                    id["flags"].as_array().map(|f| f.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                let flags = if flags.is_empty() { String::new() } else { format!(", flags {}", flags.join(", ")) };
                println!("{} (role {}{flags}) on {}", text(id, "name"), text(id, "role"), client.server());
            }
        }
        Ok(exit::OK)
    })
}

/// `meridian config`: the configuration in force, and the last rejected edit with its errors.
pub fn config(args: &ConfigArgs) -> i32 {
    with_client("config", &args.server, |client| async move {
        let status: Value = client.get("/config").await?;
        let rejected = status["rejected"].is_object();
        match args.format {
            Format::Json | Format::Yaml => output::data(args.format, &status),
            Format::Text | Format::Wide => print!("{}", config_text(&status)),
        }
        Ok(if rejected { exit::FAILED } else { exit::OK })
    })
}

/// The configuration status in words.
pub fn config_text(status: &Value) -> String {
    let loaded = status["loadedAt"].as_str().unwrap_or("never");
    let warnings = status["warnings"].as_u64().unwrap_or(0);
    let mut out = format!(
        "configuration generation {} in force, loaded {loaded}, {warnings} warning{}\n",
        status["generation"],
        if warnings == 1 { "" } else { "s" }
    );
    if let Some(r) = status["rejected"].as_object() {
        let errors: Vec<&str> =
            r.get("errors").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        out.push_str(&format!(
            "the last edit was REJECTED at {}; the previous version stays in force until it is fixed:\n",
            r.get("at").and_then(Value::as_str).unwrap_or("?")
        ));
        for e in errors {
            out.push_str(&format!("  {e}\n"));
        }
    }
    if let Some(edit) = status["lastEdit"].as_object() {
        let edited: Vec<EditSummary> =
            edit.get("plans").and_then(|p| serde_json::from_value(p.clone()).ok()).unwrap_or_default();
        out.push_str(&format!(
            "last plan edit applied at {} (generation {}):\n",
            edit.get("at").and_then(Value::as_str).unwrap_or("?"),
            edit.get("generation").and_then(Value::as_u64).unwrap_or(0)
        ));
        for plan in edited {
            out.push_str(&format!("  plan {}: {}\n", plan.plan, plan.counts()));
            for line in plan.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

pub fn version(args: &VersionArgs) -> i32 {
    let client_version = env!("CARGO_PKG_VERSION");
    if args.client {
        match args.format {
            Format::Json | Format::Yaml => {
                output::data(args.format, &serde_json::json!({ "client": { "version": client_version } }))
            }
            Format::Text | Format::Wide => println!("client {client_version}"),
        }
        return exit::OK;
    }
    if args.format.is_text() {
        println!("client {client_version}");
    }
    with_client("version", &args.server, |client| async move {
        let server: Value = client.get("/version").await?;
        match args.format {
            Format::Json | Format::Yaml => output::data(
                args.format,
                &serde_json::json!({ "client": { "version": client_version }, "server": server }),
            ),
            Format::Text | Format::Wide => println!("server {} ({})", text(&server, "version"), client.server()),
        }
        Ok(exit::OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_text_says_what_the_last_edit_changed() {
        let status = serde_json::json!({
            "generation": 4, "loadedAt": "2026-06-01T09:00:00Z", "warnings": 0,
            "lastEdit": {"at": "2026-06-01T09:00:00Z", "generation": 4, "plans": [{
                "plan": "quick",
                "units": [{"region": "a", "service": "signin", "change": "removed", "phase": "progressing",
                           "percent": 50, "reason": "region a removed from the plan"}],
                "waves": [{"wave": "two", "change": "removed", "reason": "removed from the plan"}]
            }]}
        });
        assert_eq!(
            config_text(&status),
            "configuration generation 4 in force, loaded 2026-06-01T09:00:00Z, 0 warnings
last plan edit applied at 2026-06-01T09:00:00Z (generation 4):
  plan quick: 1 unit removed, 1 wave removed
    wave two removed: removed from the plan
    unit a/signin removed: region a removed from the plan
"
        );
    }
}
