//! `meridian pause|resume|abort|promote|retry PLAN [--wave W | --region R]`: queue an
//! operator command through the API (`promote --full` keeps promoting the scope until it
//! completes). `meridian freeze PLAN --reason TEXT [--until TIME]
//! [--wave W | --region R] [--name N]` and `meridian unfreeze PLAN [--name N]` declare and
//! lift run-time freezes the same way.
//!
//! Exit codes: 0 accepted, 1 refused by the server (unknown wave, no permission, ...),
//! 3 usage or connection error.

use chrono::Utc;
use meridian_core::CommandKind;
use serde_json::{Value, json};

use super::Format;
use crate::client::{self, Client, ServerArgs, exit, segment};

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: 0 accepted, 1 refused by the server, 3 usage or connection error")]
pub struct Args {
    /// The plan.
    pub plan: String,
    /// Only this wave.
    #[arg(long, conflicts_with = "region")]
    pub wave: Option<String>,
    /// Only this region.
    #[arg(long)]
    pub region: Option<String>,
    /// `text`, or the server's answer as `json` or `yaml`.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `abort`: the scope, and `--yes`.
#[derive(Debug, clap::Args)]
#[command(after_help = "On a terminal abort asks first (--yes skips the question); off a terminal it proceeds.\n\
                        Exit codes: 0 accepted, 1 refused by the server or not confirmed, 3 usage or connection error")]
pub struct AbortArgs {
    #[command(flatten)]
    pub scope: Args,
    /// Do not ask for confirmation on a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `promote`: the scope, and `--full`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: 0 accepted, 1 refused by the server, 3 usage or connection error")]
pub struct PromoteArgs {
    #[command(flatten)]
    pub scope: Args,
    /// Promote the whole remaining scope: every remaining step bake and wave bake in it is
    /// skipped until it completes. Approvals, windows, freezes and health still gate; a pause,
    /// an abort or a failure in scope cancels it.
    #[arg(long)]
    pub full: bool,
}

pub fn promote(args: &PromoteArgs) -> i32 {
    client::block_on("promote", run_async(CommandKind::Promote, &args.scope, args.full)).unwrap_or(exit::USAGE)
}

/// `abort`, once confirmed: it cannot be undone (a retry starts the regions from scratch).
pub fn abort(args: &AbortArgs) -> i32 {
    let a = &args.scope;
    let question = match (&a.wave, &a.region) {
        (Some(w), _) => format!(
            "abort wave {w} of plan {} (every region of it not fully enabled is rolled back and starts no more)",
            a.plan
        ),
        (None, Some(r)) => {
            format!("abort region {r} of plan {} (rolled back unless fully enabled; it starts no more)", a.plan)
        }
        (None, None) => format!("abort plan {} (every region not fully enabled is rolled back)", a.plan),
    };
    if !crate::confirm::confirm("abort", &question, args.yes) {
        return exit::FAILED;
    }
    run(CommandKind::Abort, a)
}

pub fn run(kind: CommandKind, args: &Args) -> i32 {
    let command = kind.to_string();
    client::block_on(&command, run_async(kind, args, false)).unwrap_or(exit::USAGE)
}

async fn run_async(kind: CommandKind, args: &Args, full: bool) -> i32 {
    let name = kind.to_string();
    let client = match Client::new(&args.server) {
        Ok(c) => c,
        Err(e) => {
            e.report(&name);
            return exit::USAGE;
        }
    };
    let mut scope = match (&args.wave, &args.region) {
        (Some(w), _) => Some(json!({ "wave": w })),
        (None, Some(r)) => Some(json!({ "region": r })),
        (None, None) => None,
    };
    if full {
        scope.get_or_insert_with(|| json!({}))["full"] = json!(true);
    }
    let path = format!("/plans/{}/{name}", segment(&args.plan));
    match client.post::<Value>(&path, scope.as_ref()).await {
        Ok(answer) if !args.format.is_text() => {
            crate::output::data(args.format, &answer);
            exit::OK
        }
        Ok(answer) => {
            let by = answer["command"]["by"].as_str().unwrap_or("?");
            let scope = match (&args.wave, &args.region) {
                (Some(w), _) => format!(", wave {w}"),
                (None, Some(r)) => format!(", region {r}"),
                (None, None) => String::new(),
            };
            let name = if full { format!("{name} --full") } else { name };
            println!("{name} accepted for plan {}{scope} (by {by}); the controller applies it at once", args.plan);
            exit::OK
        }
        Err(e) => {
            e.report(&name);
            e.exit_code()
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: 0 accepted, 1 refused by the server, 3 usage or connection error")]
pub struct FreezeArgs {
    /// The plan.
    pub plan: String,
    /// Why: shown as the blocked reason of every unit it holds, and audited.
    #[arg(long)]
    pub reason: String,
    /// When it ends by itself: RFC 3339, or a span from now (2h, 3d). Default: when lifted.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this wave.
    #[arg(long, conflicts_with = "region")]
    pub wave: Option<String>,
    /// Only this region.
    #[arg(long)]
    pub region: Option<String>,
    /// Its name, to lift it by (default: plan, wave-W or region-R). Freezing a name again
    /// replaces that freeze.
    #[arg(long)]
    pub name: Option<String>,
    /// `text`, or the server's answer as `json` or `yaml`.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: 0 accepted, 1 refused by the server, 3 usage or connection error")]
pub struct UnfreezeArgs {
    /// The plan.
    pub plan: String,
    /// The run-time freeze to lift (default: every one).
    #[arg(long)]
    pub name: Option<String>,
    /// `text`, or the server's answer as `json` or `yaml`.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn freeze(args: &FreezeArgs) -> i32 {
    client::block_on("freeze", freeze_async(args)).unwrap_or(exit::USAGE)
}

/// The body of `POST /plans/{name}/freeze`.
fn freeze_body(args: &FreezeArgs, now: chrono::DateTime<Utc>) -> Result<Value, String> {
    let mut body = json!({ "reason": args.reason });
    if let Some(until) = &args.until {
        let at = super::approve::parse_expires(until, now).map_err(|e| e.replace("--expires", "--until"))?;
        body["until"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    for (key, value) in [("wave", &args.wave), ("region", &args.region), ("name", &args.name)] {
        if let Some(v) = value {
            body[key] = json!(v);
        }
    }
    Ok(body)
}

async fn freeze_async(args: &FreezeArgs) -> i32 {
    let body = match freeze_body(args, Utc::now()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("meridian freeze: {e}");
            return exit::USAGE;
        }
    };
    let client = match Client::new(&args.server) {
        Ok(c) => c,
        Err(e) => {
            e.report("freeze");
            return exit::USAGE;
        }
    };
    let path = format!("/plans/{}/freeze", segment(&args.plan));
    match client.post::<Value>(&path, Some(&body)).await {
        Ok(answer) if !args.format.is_text() => {
            crate::output::data(args.format, &answer);
            exit::OK
        }
        Ok(answer) => {
            let c = &answer["command"];
            let scope = match (c["wave"].as_str(), c["region"].as_str()) {
                (_, Some(r)) => format!("region {r}"),
                (Some(w), None) => format!("wave {w}"),
                _ => "the whole plan".to_string(),
            };
            let until = c["freeze"]["until"].as_str().map_or("until lifted".to_string(), |u| format!("until {u}"));
            println!(
                "freeze {} accepted for plan {}, {scope}, {until} (by {}); no step starts there meanwhile",
                c["freeze"]["name"].as_str().unwrap_or("?"),
                args.plan,
                c["by"].as_str().unwrap_or("?")
            );
            exit::OK
        }
        Err(e) => {
            e.report("freeze");
            e.exit_code()
        }
    }
}

pub fn unfreeze(args: &UnfreezeArgs) -> i32 {
    client::block_on("unfreeze", unfreeze_async(args)).unwrap_or(exit::USAGE)
}

async fn unfreeze_async(args: &UnfreezeArgs) -> i32 {
    let client = match Client::new(&args.server) {
        Ok(c) => c,
        Err(e) => {
            e.report("unfreeze");
            return exit::USAGE;
        }
    };
    let body = args.name.as_ref().map(|n| json!({ "name": n }));
    let path = format!("/plans/{}/unfreeze", segment(&args.plan));
    match client.post::<Value>(&path, body.as_ref()).await {
        Ok(answer) if !args.format.is_text() => {
            crate::output::data(args.format, &answer);
            exit::OK
        }
        Ok(answer) => {
            let what = match &args.name {
                Some(n) => format!("freeze {n}"),
                None => "every run-time freeze".into(),
            };
            let by = answer["command"]["by"].as_str().unwrap_or("?");
            println!("unfreeze of {what} accepted for plan {} (by {by}); the controller applies it at once", args.plan);
            exit::OK
        }
        Err(e) => {
            e.report("unfreeze");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn args(until: Option<&str>) -> FreezeArgs {
        FreezeArgs {
            plan: "p".into(),
            reason: "incident 4711".into(),
            until: until.map(Into::into),
            wave: None,
            region: Some("jp".into()),
            name: None,
            format: Format::Text,
            server: ServerArgs { server: None, token: None, token_file: None, ca_cert: None },
        }
    }

    #[test]
    fn freeze_body_takes_a_time_or_a_span_and_the_scope() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap();
        let body = freeze_body(&args(Some("2h")), now).unwrap();
        assert_eq!(body, json!({"reason": "incident 4711", "until": "2026-06-01T11:00:00Z", "region": "jp"}));
        assert_eq!(freeze_body(&args(None), now).unwrap(), json!({"reason": "incident 4711", "region": "jp"}));
        assert!(freeze_body(&args(Some("soon")), now).unwrap_err().contains("invalid --until"));
    }
}
