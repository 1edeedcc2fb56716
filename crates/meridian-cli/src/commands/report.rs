//! `meridian report --plan P`: the evidence report of a plan (approvals in force at first
//! traffic, steps, bake health, failures, commands, accepted failures, and the proof that no
//! traffic was raised without its approvals) as Markdown, HTML or JSON.
//!
//! This module only fetches the inputs, from a state dir read-only or from the API, one
//! function per source returning the same [`Inputs`], and writes the output. The report is
//! `meridian_core::report`'s.

use std::io::Write;
use std::path::PathBuf;

use meridian_core::AuditRecord;
use meridian_core::approval::ApprovalChange;
use meridian_core::report::{self, Answer, ApprovalHistoryEvent, ChainHead, ReportError, ReportInput};
use serde::Deserialize;
use serde_json::Value;

use crate::client::{self, Client, ClientError, ServerArgs, exit, segment};

const EXIT_CODES: &str = "\
Exit codes:
  0  written; no traffic was raised anywhere in the report without its approvals
  1  written, but it does not show that: a record raised traffic citing an approval that did
     not hold then (yes), or citing one the approval history does not have (unproven)
  3  usage error, unknown plan or region, a state dir without a database, or the server
     could not be reached";

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// The plan to report on.
    #[arg(long)]
    pub plan: String,
    /// Only this region (default: every region with audit records).
    #[arg(long)]
    pub region: Option<String>,
    /// md for tickets, html for a printable page (self-contained), json for machines.
    #[arg(long, value_enum, default_value = "md")]
    pub format: ReportFormat,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Read a state dir directly (read-only; the controller may be running) instead of the API.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Md,
    Html,
    Json,
}

/// What the report is made from, whichever source it came from.
#[derive(Debug, Default)]
pub struct Inputs {
    pub audit: Vec<AuditRecord>,
    pub approvals: Vec<ApprovalHistoryEvent>,
    /// The audit chain, verified: its head, or what broke it (`None`: not available).
    pub chain: Option<Result<ChainHead, String>>,
}

/// Why the inputs could not be read.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("plan {plan:?} is unknown; plans: {}", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownPlan { plan: String, known: Vec<String> },
    #[error("{}", meridian_core::error_chain(.0))]
    Store(#[from] meridian_store::StoreError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

pub fn run(args: &Args) -> i32 {
    let fetched = match &args.state_dir {
        Some(dir) => from_state_dir(dir, &args.plan),
        None => match Client::new(&args.server) {
            Ok(client) => match client::block_on("report", from_server(&client, &args.plan)) {
                Some(fetched) => fetched,
                None => return exit::USAGE,
            },
            Err(e) => Err(e.into()),
        },
    };
    let inputs = match fetched {
        Ok(inputs) => inputs,
        Err(FetchError::Client(e)) => {
            e.report("report");
            return exit::USAGE;
        }
        Err(e) => {
            eprintln!("meridian report: {e}");
            return exit::USAGE;
        }
    };
    let input = ReportInput {
        plan: &args.plan,
        audit: &inputs.audit,
        approvals: &inputs.approvals,
        region: args.region.as_deref(),
        chain: inputs.chain.as_ref(),
    };
    let report = match report::derive(&input) {
        Ok(report) => report,
        Err(e @ (ReportError::NoRecords { .. } | ReportError::UnknownRegion { .. })) => {
            eprintln!("meridian report: {e}");
            return exit::USAGE;
        }
    };
    let text = match args.format {
        ReportFormat::Md => report::markdown(&report),
        ReportFormat::Html => report::html(&report),
        ReportFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("meridian report: failed to encode the report: {e}");
                return exit::FAILED;
            }
        },
    };
    let written = match &args.out {
        Some(path) => std::fs::write(path, &text).map_err(|e| format!("failed to write {}: {e}", path.display())),
        None => std::io::stdout().write_all(text.as_bytes()).map_err(|e| format!("failed to write the report: {e}")),
    };
    if let Err(e) = written {
        eprintln!("meridian report: {e}");
        return exit::USAGE;
    }
    match report.traffic_without_approvals {
        Answer::No => exit::OK,
        answer => {
            eprintln!(
                "meridian report: traffic without its approvals: {}; see the proof of the regions concerned",
                answer.as_str()
            );
            exit::FAILED
        }
    }
}

/// The inputs from a state dir, opened read-only.
fn from_state_dir(dir: &std::path::Path, plan: &str) -> Result<Inputs, FetchError> {
    let reader = meridian_store::StoreReader::open(dir)?;
    let known = reader.plans()?;
    if !known.iter().any(|p| p == plan) {
        return Err(FetchError::UnknownPlan { plan: plan.to_string(), known });
    }
    Ok(Inputs {
        audit: reader.audit(plan)?,
        approvals: reader.approval_history()?.into_iter().map(meridian_store::history_event).collect(),
        chain: reader.verify_chain()?,
    })
}

/// How many records or events one API request asks for (the API's maximum).
const PAGE: usize = 1000;

/// The inputs from the API: every audit record of the plan and the approval history, paged.
async fn from_server(client: &Client, plan: &str) -> Result<Inputs, FetchError> {
    #[derive(Deserialize)]
    struct Plans {
        plans: Vec<Named>,
    }
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    let known: Plans = client.get("/plans").await?;
    if !known.plans.iter().any(|p| p.name == plan) {
        let known = known.plans.into_iter().map(|p| p.name).collect();
        return Err(FetchError::UnknownPlan { plan: plan.to_string(), known });
    }

    #[derive(Deserialize)]
    struct AuditPage {
        records: Vec<AuditRecord>,
    }
    let mut audit: Vec<AuditRecord> = Vec::new();
    loop {
        let after = audit.last().map_or(0, |r| r.seq);
        let path = format!("/audit?plan={}&after={after}&limit={PAGE}", segment(plan));
        let page: AuditPage = client.get(&path).await?;
        let done = page.records.len() < PAGE;
        audit.extend(page.records);
        if done {
            break;
        }
    }

    #[derive(Deserialize)]
    struct HistoryPage {
        events: Vec<Value>,
        next: i64,
    }
    let mut approvals = Vec::new();
    let mut after = 0;
    loop {
        let page: HistoryPage = client.get(&format!("/history?after={after}&limit={PAGE}")).await?;
        let done = page.events.len() < PAGE || page.next == after;
        approvals.extend(page.events.iter().filter_map(approval_event));
        after = page.next;
        if done {
            break;
        }
    }
    // The chain, every hash recomputed here: the plan's own (Kubernetes mode), else the
    // state dir's one chain (the standalone controller refuses `plan` with a 400).
    let chain = match super::audit::verify_over_api(client, Some(plan), None).await {
        Err(ClientError::Api { status: 400, .. }) => super::audit::verify_over_api(client, None, None).await,
        other => other,
    };
    let chain = match chain {
        Ok((_, verified)) => Some(verified.map_err(|b| b.to_string())),
        // A server from before the chain: not available, and the report says so.
        Err(ClientError::Api { status: 404, .. }) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Inputs { audit, approvals, chain })
}

/// An `approval-granted|updated|revoked` entry of `/history` as a history event; `None` for
/// other kinds (and for one that does not hold a record).
fn approval_event(event: &Value) -> Option<ApprovalHistoryEvent> {
    let kind = match event["kind"].as_str()? {
        "approval-granted" => ApprovalChange::Granted,
        "approval-updated" => ApprovalChange::Updated,
        "approval-revoked" => ApprovalChange::Revoked,
        _ => return None,
    };
    let detail = &event["detail"];
    Some(ApprovalHistoryEvent {
        kind,
        at: serde_json::from_value(event["at"].clone()).ok()?,
        by: event["who"].as_str().unwrap_or_default().to_string(),
        source: detail["source"].as_str().unwrap_or_default().to_string(),
        reason: detail["reason"].as_str().map(str::to_string),
        record: serde_json::from_value(detail["record"].clone()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_entries_of_the_history_are_read_and_the_rest_left_out() {
        let granted = serde_json::json!({
            "id": 4, "at": "2026-06-01T09:00:00Z", "kind": "approval-granted", "who": "alice",
            "detail": {"approval": "ops-go-1", "flag": "ops-go", "source": "api", "reason": null,
                       "record": {"name": "ops-go-1", "flag": "ops-go", "grantedBy": "alice"}}
        });
        let event = approval_event(&granted).unwrap();
        assert_eq!((event.kind, event.by.as_str(), event.source.as_str()), (ApprovalChange::Granted, "alice", "api"));
        assert_eq!(event.record.name, "ops-go-1");
        let other = serde_json::json!({"id": 5, "at": "2026-06-01T09:00:00Z", "kind": "config-applied", "who": "config", "detail": {}});
        assert!(approval_event(&other).is_none());
    }
}
