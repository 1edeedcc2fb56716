//! `meridian-fleet`: run a simulated fleet on 127.0.0.1 by hand, until Ctrl-C.
//!
//! ```text
//! meridian-fleet --plan config/demo.yaml                # the demo plan's regions and services on :9464
//! meridian-fleet --regions us-east,jp --services signin,store --port 0 \
//!     --fault jp/store=0.2 --fail-when 'us-east/store>=50:0.3'
//! ```

#![allow(clippy::print_stderr, reason = "the binary is the edge where errors become messages on stderr")]

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use meridian_fleet::{Fault, Fleet, FleetConfig, ScriptedFault};

#[derive(Debug, Parser)]
#[command(name = "meridian-fleet", about = "A simulated fleet of traffic endpoints and metrics on 127.0.0.1")]
struct Args {
    /// Port on 127.0.0.1 (0: any free port). 9464 is the one config/demo.yaml points at.
    #[arg(long, default_value_t = 9464)]
    port: u16,
    /// Take regions and services from this plan file.
    #[arg(long)]
    plan: Option<String>,
    /// Which plan of the file, when it holds several.
    #[arg(long)]
    plan_name: Option<String>,
    /// Comma-separated regions (instead of --plan).
    #[arg(long, value_delimiter = ',')]
    regions: Vec<String>,
    /// Comma-separated services (instead of --plan).
    #[arg(long, value_delimiter = ',')]
    services: Vec<String>,
    /// Synthetic requests per second of one unit at 100 %.
    #[arg(long, default_value_t = meridian_fleet::config::DEFAULT_REQUESTS_PER_SECOND)]
    rps: f64,
    /// Error ratio when nothing is wrong.
    #[arg(long, default_value_t = meridian_fleet::config::DEFAULT_BASELINE_ERROR_RATIO)]
    baseline_error_ratio: f64,
    /// Seconds counted by `fleet_requests`.
    #[arg(long, default_value_t = 10)]
    window_secs: u64,
    /// A fault from the start: `REGION=RATIO` or `REGION/SERVICE=RATIO`.
    #[arg(long)]
    fault: Vec<String>,
    /// A scripted fault: `REGION/SERVICE>=PERCENT:RATIO` (the whole region fails once SERVICE
    /// reaches PERCENT there).
    #[arg(long)]
    fail_when: Vec<String>,
    /// Require `Authorization: Bearer <value of this environment variable>` on traffic calls.
    #[arg(long)]
    token_env: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = build_config(&args)?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("failed to start tokio")?;
    runtime.block_on(async {
        let fleet = Fleet::start(config).await?;
        let base = fleet.base_url();
        let banner = format!(
            "meridian-fleet listening on {base}\n  actuator: {}\n  metrics:  {}  and  {base}/metrics\n  puts:     {base}/fleet/puts\n",
            fleet.traffic_url_template(),
            fleet.unit_metrics_url_template(),
        );
        // A reader that went away (a closed pipe) must not stop the fleet.
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(banner.as_bytes()).and_then(|()| stdout.flush());
        drop(stdout);
        tokio::signal::ctrl_c().await.context("failed to wait for Ctrl-C")?;
        fleet.shutdown().await?;
        Ok(())
    })
}

fn build_config(args: &Args) -> anyhow::Result<FleetConfig> {
    let mut config = match &args.plan {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("failed to read plan file {path}"))?;
            let bundle = meridian_core::validate::load(&[(path.clone(), text)], None);
            if bundle.report.has_errors() {
                for d in &bundle.report.diagnostics {
                    eprintln!("{d}");
                }
                bail!("{path} has errors; `meridian validate {path}` shows them too");
            }
            let plan = match &args.plan_name {
                Some(name) => bundle.plan(name).with_context(|| format!("no plan named {name} in {path}"))?,
                None => bundle.plans.first().with_context(|| format!("no plan in {path}"))?,
            };
            FleetConfig::from_plan(plan)
        }
        None => FleetConfig::new(args.regions.clone(), args.services.clone()),
    };
    config = config
        .with_port(args.port)
        .with_requests_per_second(args.rps)
        .with_baseline_error_ratio(args.baseline_error_ratio)
        .with_metrics_window(Duration::from_secs(args.window_secs));
    for spec in &args.fault {
        config = config.with_fault(parse_fault(spec)?);
    }
    for spec in &args.fail_when {
        config = config.with_scripted_fault(parse_scripted_fault(spec)?);
    }
    if let Some(var) = &args.token_env {
        let token = std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        config = config.with_token(token);
    }
    Ok(config)
}

fn parse_fault(spec: &str) -> anyhow::Result<Fault> {
    let (unit, ratio) =
        spec.split_once('=').with_context(|| format!("--fault {spec:?}: expected REGION[/SERVICE]=RATIO"))?;
    let error_ratio = ratio.parse().with_context(|| format!("--fault {spec:?}: {ratio:?} is not a number"))?;
    let (region, service) = match unit.split_once('/') {
        Some((region, service)) => (region.to_string(), Some(service.to_string())),
        None => (unit.to_string(), None),
    };
    Ok(Fault { region, service, error_ratio })
}

fn parse_scripted_fault(spec: &str) -> anyhow::Result<ScriptedFault> {
    let usage = || format!("--fail-when {spec:?}: expected REGION/SERVICE>=PERCENT:RATIO");
    let (trigger, ratio) = spec.rsplit_once(':').with_context(usage)?;
    let (unit, percent) = trigger.split_once(">=").with_context(usage)?;
    let (region, service) = unit.split_once('/').with_context(usage)?;
    Ok(ScriptedFault {
        region: region.to_string(),
        trigger_service: service.to_string(),
        at_percent: percent.trim().parse().with_context(usage)?,
        error_ratio: ratio.trim().parse().with_context(usage)?,
        service: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fault_specs() {
        assert_eq!(
            parse_fault("jp/store=0.2").unwrap(),
            Fault { region: "jp".into(), service: Some("store".into()), error_ratio: 0.2 }
        );
        assert_eq!(parse_fault("jp=1").unwrap(), Fault { region: "jp".into(), service: None, error_ratio: 1.0 });
        assert!(parse_fault("jp").is_err());
        let scripted = parse_scripted_fault("us-east/store>=50:0.3").unwrap();
        assert_eq!((scripted.region.as_str(), scripted.trigger_service.as_str()), ("us-east", "store"));
        assert_eq!((scripted.at_percent, scripted.error_ratio), (50, 0.3));
        assert!(parse_scripted_fault("us-east/store:0.3").is_err());
    }
}
