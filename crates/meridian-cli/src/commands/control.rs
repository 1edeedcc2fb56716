//! `meridian pause|resume|abort|promote|retry PLAN [--wave W | --region R]`: queue an
//! operator command through the API.
//!
//! Exit codes: 0 accepted, 1 refused by the server (unknown wave, no permission, ...),
//! 3 usage or connection error.

use meridian_core::CommandKind;
use serde_json::{Value, json};

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
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(kind: CommandKind, args: &Args) -> i32 {
    let command = kind.to_string();
    client::block_on(&command, run_async(kind, args)).unwrap_or(exit::USAGE)
}

async fn run_async(kind: CommandKind, args: &Args) -> i32 {
    let name = kind.to_string();
    let client = match Client::new(&args.server) {
        Ok(c) => c,
        Err(e) => {
            e.report(&name);
            return exit::USAGE;
        }
    };
    let scope = match (&args.wave, &args.region) {
        (Some(w), _) => Some(json!({ "wave": w })),
        (None, Some(r)) => Some(json!({ "region": r })),
        (None, None) => None,
    };
    let path = format!("/plans/{}/{name}", segment(&args.plan));
    match client.post::<Value>(&path, scope.as_ref()).await {
        Ok(answer) => {
            let by = answer["command"]["by"].as_str().unwrap_or("?");
            let scope = match (&args.wave, &args.region) {
                (Some(w), _) => format!(", wave {w}"),
                (None, Some(r)) => format!(", region {r}"),
                (None, None) => String::new(),
            };
            println!("{name} accepted for plan {}{scope} (by {by}); the controller applies it at once", args.plan);
            exit::OK
        }
        Err(e) => {
            e.report(&name);
            e.exit_code()
        }
    }
}
