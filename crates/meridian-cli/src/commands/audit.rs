//! `meridian audit verify`: walk the tamper-evident audit chain and name the first record
//! that does not hold, from a state dir (read-only, beside a running controller) or from a
//! server's API (every hash recomputed here, so the server is not taken at its word).
//!
//! Exit codes: 0 the chain holds (its head is printed: keep it elsewhere and pass it back
//! as `--anchor` to detect truncation), 1 it does not, 3 usage, a state dir that cannot be
//! read, or a server that cannot be reached.

use std::path::PathBuf;

use meridian_core::chain::{ChainBreak, ChainHead, ChainPage, Verifier};
use serde_json::json;

use super::Format;
use crate::client::{self, Client, ServerArgs, exit, segment};

const EXIT_CODES: &str = "Exit codes: 0 the chain holds, 1 it is broken (the first bad record is named), 3 usage, \
                          unreadable state dir or unreachable server";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The audit records (every transition with its cause and evidence), oldest first, a page
    /// at a time.
    #[command(after_help = "Exit codes: 0 shown, 1 refused by the server, 3 usage or connection error")]
    Log(LogArgs),
    /// Check that no audit record was edited, deleted, reordered or slipped in; print the
    /// chain head (N:HASH) to keep elsewhere as an anchor.
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Read this state dir directly (read-only; a running controller may keep using it).
    /// Without it, ask the server (--server).
    #[arg(long, value_name = "DIR", conflicts_with = "plan")]
    pub state_dir: Option<PathBuf>,
    /// The plan whose chain to verify (the Kubernetes mode keeps one chain per plan).
    #[arg(long)]
    pub plan: Option<String>,
    /// A head printed by an earlier verify (N:HASH): the chain must still contain it
    /// unchanged, which detects records cut off its end.
    #[arg(long, value_name = "N:HASH")]
    pub anchor: Option<ChainHead>,
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Format,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Only this plan's records (its `seq` numbers are gapless: page with --after).
    #[arg(long)]
    pub plan: Option<String>,
    /// Records after this sequence number (the last one of an earlier page).
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// At most this many (the server's cap is 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Format,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(command: &Command) -> i32 {
    match command {
        Command::Log(args) => log(args),
        Command::Verify(args) => verify(args),
    }
}

/// `meridian audit log`: one line per record as the controller's log words it.
fn log(args: &LogArgs) -> i32 {
    let read = async {
        let client = Client::new(&args.server)?;
        let mut path = format!("/audit?after={}&limit={}", args.after, args.limit);
        if let Some(plan) = &args.plan {
            path.push_str(&format!("&plan={}", segment(plan)));
        }
        let page: serde_json::Value = client.get(&path).await?;
        Ok::<_, client::ClientError>((client, page))
    };
    let (client, page) = match client::block_on("audit log", read) {
        Some(Ok(done)) => done,
        Some(Err(e)) => {
            e.report("audit log");
            return e.exit_code();
        }
        None => return exit::USAGE,
    };
    if !args.output.is_text() {
        crate::output::data(args.output, &page);
        return exit::OK;
    }
    let records: Vec<meridian_core::AuditRecord> = match serde_json::from_value(page["records"].clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meridian audit log: unexpected answer from {}: {e}", client.server());
            return exit::USAGE;
        }
    };
    if records.is_empty() {
        println!("no records");
    }
    for r in &records {
        println!("{} {} {}", r.at.format("%Y-%m-%d %H:%M:%S UTC"), r.plan, r.line());
    }
    if records.len() >= args.limit as usize
        && let Some(last) = records.last()
    {
        let plan = args.plan.as_ref().map(|p| format!(" --plan {p}")).unwrap_or_default();
        eprintln!("more may follow: meridian audit log{plan} --after {}", last.seq);
    }
    exit::OK
}

fn verify(args: &VerifyArgs) -> i32 {
    let (source, outcome) = match &args.state_dir {
        Some(dir) => {
            let store = match meridian_store::Store::open_read_only(dir) {
                Ok(store) => store,
                Err(e) => {
                    eprintln!("meridian audit verify: {}", meridian_core::error_chain(&e));
                    return exit::USAGE;
                }
            };
            match store.verify_chain(args.anchor.clone()) {
                Ok(outcome) => (format!("state dir {}", dir.display()), outcome),
                Err(e) => {
                    eprintln!("meridian audit verify: {}", meridian_core::error_chain(&e));
                    return exit::USAGE;
                }
            }
        }
        None => {
            let verified = async {
                let client = Client::new(&args.server)?;
                verify_over_api(&client, args.plan.as_deref(), args.anchor.clone()).await
            };
            let Some(result) = client::block_on("audit verify", verified) else { return exit::USAGE };
            match result {
                Ok(found) => found,
                Err(e) => {
                    e.report("audit verify");
                    return e.exit_code();
                }
            }
        }
    };
    report(&source, &outcome, args.output)
}

/// Page through `/api/v1/audit/chain` (of `plan`, in the Kubernetes mode), recomputing every
/// hash: where it came from, and the head or the first break.
pub(crate) async fn verify_over_api(
    client: &Client,
    plan: Option<&str>,
    anchor: Option<ChainHead>,
) -> Result<(String, Result<ChainHead, ChainBreak>), client::ClientError> {
    const PAGE: usize = 1000;
    let plan = plan.map(|p| format!("&plan={}", segment(p))).unwrap_or_default();
    let mut verifier = Verifier::new(anchor);
    loop {
        let after = verifier.head().entries;
        let page: ChainPage = client.get(&format!("/audit/chain?after={after}&limit={PAGE}{plan}")).await?;
        let scope = page.scope.clone();
        for entry in &page.entries {
            if let Err(broken) = verifier.push(entry) {
                return Ok((source(client.server(), &scope), Err(broken)));
            }
        }
        if page.entries.len() < PAGE {
            let outcome = match page.unchained.into_iter().next() {
                Some(first) => Err(first),
                None => verifier.finish(),
            };
            return Ok((source(client.server(), &scope), outcome));
        }
    }
}

fn source(server: &str, scope: &str) -> String {
    format!("{server} ({scope})")
}

fn report(source: &str, outcome: &Result<ChainHead, ChainBreak>, output: Format) -> i32 {
    match output {
        Format::Json | Format::Yaml => {
            let value = match outcome {
                Ok(head) => json!({ "source": source, "intact": true, "head": head, "anchor": head.to_string() }),
                Err(broken) => {
                    json!({ "source": source, "intact": false, "break": broken, "message": broken.to_string() })
                }
            };
            crate::output::data(output, &value);
        }
        Format::Text | Format::Wide => match outcome {
            Ok(head) => {
                println!("audit chain intact: {} records in {source}", head.entries);
                println!("head: {head}");
                println!(
                    "keep the head elsewhere; `meridian audit verify --anchor {head}` later proves nothing was cut off"
                );
            }
            Err(broken) => {
                println!("audit chain BROKEN in {source}");
                println!("first bad record: {broken}");
            }
        },
    }
    if outcome.is_ok() { exit::OK } else { exit::FAILED }
}
