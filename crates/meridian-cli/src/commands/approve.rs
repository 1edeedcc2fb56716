//! `meridian approve FLAG --plan P ...` and `meridian revoke NAME`: record and withdraw
//! approvals through the API. The approval sent is the same manifest as an approval file.
//!
//! Exit codes: 0 done, 1 refused by the server (no permission for the flag, invalid, name
//! taken, ...), 3 usage or connection error.

use chrono::{DateTime, Utc};
use meridian_core::duration::Span;
use serde_json::{Value, json};

use super::Format;
use crate::client::{self, Client, ServerArgs, exit, segment};

const EXIT_CODES: &str = "Exit codes: 0 done, 1 refused by the server, 3 usage or connection error";

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct ApproveArgs {
    /// The flag to grant, as named in a region's or wave's `approvals`.
    pub flag: String,
    /// The plan it applies to.
    #[arg(long)]
    pub plan: String,
    /// Only this region (repeat for several; default: every region of the plan).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// Only this service (repeat for several; default: every service).
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
    /// The evidence: a letter, a ticket, a CI run.
    #[arg(long)]
    pub reference: String,
    /// When it stops being valid: RFC 3339 (2026-12-31T00:00:00Z) or a span from now (7d).
    /// Default: it does not expire.
    #[arg(long)]
    pub expires: Option<String>,
    /// Name of the approval object (default: FLAG-YYYYMMDD-HHMMSS).
    #[arg(long)]
    pub name: Option<String>,
    /// Who granted it, when that is not the token's holder (e.g. "Ministry liaison office");
    /// the server records the token's name beside it.
    #[arg(long)]
    pub granted_by: Option<String>,
    /// Sign the approval with this private key (from `meridian approval keygen`) before
    /// sending it: for flags whose plan requires signed approvals. The signature covers
    /// grantedBy, so it is filled in first (--granted-by, else your token's name).
    #[arg(long, value_name = "KEY_FILE")]
    pub key: Option<std::path::PathBuf>,
    /// `text`, or the server's answer as `json` or `yaml`.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "On a terminal revoke asks first (--yes skips the question); off a terminal it proceeds.\n\
                        Exit codes: 0 done, 1 refused by the server or not confirmed, 3 usage or connection error")]
pub struct RevokeArgs {
    /// The approval's name (see `GET /api/v1/approvals`).
    pub name: String,
    /// Why, for the audit trail.
    #[arg(long)]
    pub reason: Option<String>,
    /// Do not ask for confirmation on a terminal (off a terminal nothing is asked).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// `text`, or the server's answer as `json` or `yaml`.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `--expires`: an RFC 3339 time, or a span from `now`.
pub fn parse_expires(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    match text.parse::<Span>() {
        Ok(span) if !span.is_zero() => Ok(now + span.to_delta()),
        _ => Err(format!("invalid --expires {text:?}; use RFC 3339 (2026-12-31T00:00:00Z) or a span such as 7d")),
    }
}

/// A valid object name from the flag and the time: lowercase letters, digits and '-'.
pub fn default_name(flag: &str, now: DateTime<Utc>) -> String {
    let flag: String = flag
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
        .collect();
    let flag = flag.trim_matches('-');
    let flag = if flag.is_empty() { "approval" } else { flag };
    format!("{flag}-{}", now.format("%Y%m%d-%H%M%S"))
}

/// The Approval manifest sent to `POST /api/v1/approvals`.
pub fn manifest(args: &ApproveArgs, now: DateTime<Utc>) -> Result<Value, String> {
    let expires = args.expires.as_deref().map(|t| parse_expires(t, now)).transpose()?;
    let name = args.name.clone().unwrap_or_else(|| default_name(&args.flag, now));
    let mut spec = json!({
        "flag": args.flag,
        "reference": args.reference,
        "scope": { "plans": [args.plan] },
    });
    if !args.regions.is_empty() {
        spec["scope"]["regions"] = json!(args.regions);
    }
    if !args.services.is_empty() {
        spec["scope"]["services"] = json!(args.services);
    }
    if let Some(e) = expires {
        spec["expires"] = json!(e.to_rfc3339());
    }
    if let Some(by) = &args.granted_by {
        spec["grantedBy"] = json!(by);
    }
    Ok(json!({
        "apiVersion": "meridian.dev/v1alpha1",
        "kind": "Approval",
        "metadata": { "name": name },
        "spec": spec,
    }))
}

pub fn approve(args: &ApproveArgs) -> i32 {
    client::block_on("approve", approve_async(args)).unwrap_or(exit::USAGE)
}

async fn approve_async(args: &ApproveArgs) -> i32 {
    let mut body = match manifest(args, Utc::now()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("meridian approve: {e}");
            return exit::USAGE;
        }
    };
    let client = match Client::new(&args.server) {
        Ok(c) => c,
        Err(e) => {
            e.report("approve");
            return exit::USAGE;
        }
    };
    if let Some(key) = &args.key {
        body = match signed(&client, body, key).await {
            Ok(b) => b,
            Err(code) => return code,
        };
    }
    match client.post::<Value>("/approvals", Some(&body)).await {
        Ok(answer) if !args.format.is_text() => {
            crate::output::data(args.format, &answer);
            exit::OK
        }
        Ok(answer) => {
            let a = &answer["approval"];
            let scope = match (args.regions.is_empty(), args.services.is_empty()) {
                (true, true) => String::new(),
                (false, true) => format!(", regions {}", args.regions.join(", ")),
                (true, false) => format!(", services {}", args.services.join(", ")),
                (false, false) => {
                    format!(", regions {}, services {}", args.regions.join(", "), args.services.join(", "))
                }
            };
            let expires = a["expires"].as_str().map(|e| format!("; expires {e}")).unwrap_or_default();
            let signed = a["signature"]["key"].as_str().map(|k| format!("; signed with key {k}")).unwrap_or_default();
            println!(
                "granted {} as approval {} for plan {}{scope} (by {}){expires}{signed}",
                args.flag,
                a["name"].as_str().unwrap_or("?"),
                args.plan,
                a["grantedBy"].as_str().unwrap_or("?"),
            );
            for w in answer["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", w.as_str().unwrap_or_default());
            }
            exit::OK
        }
        Err(e) => {
            e.report("approve");
            e.exit_code()
        }
    }
}

/// `body` with its grantedBy settled (the token's name when not given: the server would
/// fill in the same, after the signature was made) and signed with `key`.
async fn signed(client: &Client, mut body: Value, key: &std::path::Path) -> Result<Value, i32> {
    if body["spec"].get("grantedBy").is_none() {
        let who: Value = client.get("/whoami").await.map_err(|e| {
            e.report("approve");
            e.exit_code()
        })?;
        let Some(name) = who["identity"]["name"].as_str() else {
            eprintln!("meridian approve: the server did not say who the token is; pass --granted-by");
            return Err(exit::USAGE);
        };
        body["spec"]["grantedBy"] = json!(name);
    }
    // JSON is YAML: the same parser, validator and signer as `meridian approval sign`.
    let text = serde_json::to_string_pretty(&body).unwrap_or_default();
    match super::approval::sign_text("the approval", &text, key, "meridian approve") {
        Ok((_, approval)) => serde_json::to_value(approval).map_err(|e| {
            eprintln!("meridian approve: cannot encode the signed approval: {e}");
            exit::FAILED
        }),
        Err(failure) => {
            eprintln!("{}", failure.message);
            Err(failure.code)
        }
    }
}

pub fn revoke(args: &RevokeArgs) -> i32 {
    let question = format!("revoke approval {} (it is never valid again)", args.name);
    if !crate::confirm::confirm("revoke", &question, args.yes) {
        return exit::FAILED;
    }
    client::block_on("revoke", revoke_async(args)).unwrap_or(exit::USAGE)
}

async fn revoke_async(args: &RevokeArgs) -> i32 {
    let client = match Client::new(&args.server) {
        Ok(c) => c,
        Err(e) => {
            e.report("revoke");
            return exit::USAGE;
        }
    };
    let body = args.reason.as_ref().map(|r| json!({ "reason": r }));
    let path = format!("/approvals/{}", segment(&args.name));
    match client.delete::<Value>(&path, body.as_ref()).await {
        Ok(answer) if !args.format.is_text() => {
            crate::output::data(args.format, &answer);
            exit::OK
        }
        Ok(answer) => {
            println!(
                "revoked approval {} (flag {}) by {}; it is never valid again",
                args.name,
                answer["flag"].as_str().unwrap_or("?"),
                answer["by"].as_str().unwrap_or("?")
            );
            exit::OK
        }
        Err(e) => {
            e.report("revoke");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn expires_takes_a_time_or_a_span() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap();
        assert_eq!(parse_expires("2026-12-31T00:00:00Z", now).unwrap().to_rfc3339(), "2026-12-31T00:00:00+00:00");
        assert_eq!(parse_expires("7d", now).unwrap(), Utc.with_ymd_and_hms(2026, 6, 8, 9, 0, 0).unwrap());
        assert!(parse_expires("tomorrow", now).unwrap_err().contains("RFC 3339"));
        assert_eq!(default_name("JP_Regulator", now), "jp-regulator-20260601-090000");
    }
}
