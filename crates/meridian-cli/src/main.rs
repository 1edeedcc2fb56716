//! The `meridian` command: parse arguments, run one subcommand, map its outcome to an exit code.

mod commands;
mod input;

use clap::{Parser, Subcommand};

/// Meridian: phased regional rollouts with approval gates and health analysis.
#[derive(Debug, Parser)]
#[command(
    name = "meridian",
    version,
    about = "Meridian: phased regional rollouts with approval gates and health analysis",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check plan and approval files; every problem at file:line:column with a hint.
    Validate(commands::validate::Args),
    /// Project a plan's timeline by running the engine on a simulated clock.
    Plan(commands::plan::Args),
    /// Print the JSON Schema of plans and approvals (for editor completion).
    Schema,
    /// Run the standalone controller: watch plans, decide, actuate, serve the API.
    Run(commands::run::Args),
    /// A complete rollout against a built-in simulated fleet, on embedded defaults.
    Demo(commands::demo::Args),
}

fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        Command::Validate(args) => commands::validate::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Schema => commands::schema::run(),
        Command::Run(args) => commands::run::run(args),
        Command::Demo(args) => commands::demo::run(args),
    };
    std::process::exit(code);
}
