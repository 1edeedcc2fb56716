//! `meridian plan PATH... --from-server URL --plan NAME`: what `meridian plan` needs from a
//! running controller to project the rest of its rollout. The plan comes from the local files
//! (a `Plan` does not travel over the API); the live state of each plan projected and the
//! approvals the controller holds come from the server, and the projection starts from that
//! state. Owns the fetching and the check that the local plan is the one the server runs;
//! the projection itself is `meridian_core::simulate::simulate_together_from`.

use std::path::PathBuf;

use meridian_core::approval::ApprovalRecord;
use meridian_core::{Plan, PlanState};
use serde::Deserialize;

use crate::client::{self, Client};
use crate::exit;

/// How to reach the server for `--from-server`: the same token and CA flags and variables as
/// the client commands (`--server` is `--from-server` here).
#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// Project the rest of the rollout running on this server (e.g. http://127.0.0.1:7070) from
    /// its live state: the plan from PATH, its state and the approvals from the server. Needs
    /// --plan; the projection starts now.
    #[arg(long = "from-server", value_name = "URL", requires = "plan", conflicts_with = "start")]
    pub from_server: Option<String>,
    /// Bearer token for --from-server (a viewer's will do).
    #[arg(long, env = "MERIDIAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the bearer token for --from-server.
    #[arg(long, env = "MERIDIAN_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate to trust for an https --from-server.
    #[arg(long, env = "MERIDIAN_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// What the server said: a state per plan projected (in their order) and its approvals.
pub struct Live {
    pub server: String,
    pub states: Vec<PlanState>,
    pub approvals: Vec<ApprovalRecord>,
}

#[derive(Deserialize)]
struct PlanDetail {
    state: PlanState,
}

#[derive(Deserialize)]
struct Approvals {
    approvals: Vec<ApprovalRecord>,
}

/// The live states of `plans` and the server's approvals; `Err` holds the exit code once the
/// reason is printed. A plan whose local definition names other regions, services or waves
/// than its live state is refused (3): the projection would be of another rollout.
pub fn fetch(args: &LiveArgs, url: &str, plans: &[Plan]) -> Result<Live, i32> {
    let client = Client::for_url("plan", url, args.token.clone(), args.token_file.clone(), args.ca_cert.clone())?;
    let fetched = client::block_on("plan", async {
        let mut states = Vec::with_capacity(plans.len());
        for plan in plans {
            let detail: PlanDetail = client.get(&format!("/plans/{}", client::segment(&plan.name))).await?;
            states.push(detail.state);
        }
        let approvals: Approvals = client.get("/approvals").await?;
        Ok::<_, client::ClientError>((states, approvals.approvals))
    })
    .ok_or(exit::FAILED)?;
    let (states, approvals) = fetched.map_err(|e| {
        e.report("plan");
        e.exit_code()
    })?;
    let server = client.server().to_string();
    for (plan, state) in plans.iter().zip(&states) {
        let differences = state.differences(plan);
        if !differences.is_empty() {
            eprintln!(
                "meridian plan: the local plan {} is not the one {server} runs ({}; \"state\" is the server's)",
                plan.name,
                differences.join(", ")
            );
            eprintln!("  hint: pass the files the controller reads, at the revision it runs");
            return Err(exit::USAGE);
        }
    }
    Ok(Live { server, states, approvals })
}

/// The approvals to project with: the server's, and the local ones (`--approvals`, PATH) it
/// does not hold under the same name, as a "what if".
pub fn merge_approvals(server: Vec<ApprovalRecord>, local: Vec<ApprovalRecord>) -> Vec<ApprovalRecord> {
    let mut all = server;
    for a in local {
        if !all.iter().any(|s| s.name == a.name) {
            all.push(a);
        }
    }
    all
}
