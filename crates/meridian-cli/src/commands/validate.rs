//! `meridian validate PATH...`: every problem in one run, located, with hints.
//!
//! Exit codes (the table in `main.rs`): 0 clean (warnings allowed), 1 errors (or warnings
//! under `--strict`), 3 usage (bad arguments, unreadable paths).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::Format;
use meridian_controller::config::read_sources;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories (read recursively for *.yaml and *.yml).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Treat warnings (risky but legal choices) as errors.
    #[arg(long)]
    pub strict: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    /// Judge expiry against this time instead of the clock (RFC 3339).
    #[arg(long, value_parser = super::parse_time)]
    pub now: Option<DateTime<Utc>>,
}

pub fn run(args: &Args) -> i32 {
    // A file that is not UTF-8 is a located error in the report, not a usage error.
    let sources = match read_sources(&args.paths) {
        Ok(sources) => sources,
        Err(e) => {
            eprintln!("meridian validate: {e:#}");
            return crate::exit::USAGE;
        }
    };
    let files = sources.count();
    let mut bundle = sources.load(Some(args.now.unwrap_or_else(Utc::now)));
    if args.strict {
        bundle.report.make_strict();
    }
    let report = &bundle.report;
    match args.format {
        Format::Json | Format::Yaml => {
            let out = json!({
                "files": files,
                "plans": bundle.plans.iter().map(|p| &p.name).collect::<Vec<_>>(),
                "approvals": bundle.approvals.iter().map(|a| &a.name).collect::<Vec<_>>(),
                "errors": report.errors(),
                "warnings": report.warnings(),
                "diagnostics": report.diagnostics,
                "selections": selections(&bundle.plans),
            });
            crate::output::data(args.format, &out);
        }
        Format::Text | Format::Wide => {
            for d in &report.diagnostics {
                println!("{d}");
            }
            for s in selections(&bundle.plans) {
                println!(
                    "note: plan {}, wave {}: selector {} chose {}",
                    s.plan,
                    s.wave,
                    s.selector,
                    s.regions.join(", ")
                );
            }
            println!(
                "{} {}, {} {}, {} {}: {} {}, {} {}",
                files,
                plural(files, "file", "files"),
                bundle.plans.len(),
                plural(bundle.plans.len(), "valid plan", "valid plans"),
                bundle.approvals.len(),
                plural(bundle.approvals.len(), "approval", "approvals"),
                report.errors(),
                plural(report.errors(), "error", "errors"),
                report.warnings(),
                plural(report.warnings(), "warning", "warnings"),
            );
        }
    }
    if report.has_errors() { 1 } else { 0 }
}

/// The regions a wave's label selector chose (validation already made sure each region is in
/// exactly one wave; this says which selector put it there).
#[derive(serde::Serialize)]
struct Selection<'a> {
    plan: &'a str,
    wave: &'a str,
    selector: &'a str,
    regions: Vec<&'a str>,
}

fn selections(plans: &[meridian_core::Plan]) -> Vec<Selection<'_>> {
    let mut out: Vec<Selection<'_>> = Vec::new();
    for plan in plans {
        for wave in &plan.waves {
            for (&r, chosen) in wave.regions.iter().zip(&wave.chosen_by) {
                let meridian_core::plan::ChosenBy::Selector(selector) = chosen else { continue };
                let region = plan.regions[r].name.as_str();
                match out.last_mut() {
                    Some(s) if s.plan == plan.name && s.wave == wave.name => s.regions.push(region),
                    _ => out.push(Selection { plan: &plan.name, wave: &wave.name, selector, regions: vec![region] }),
                }
            }
        }
    }
    out
}

pub fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}
