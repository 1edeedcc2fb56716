//! The `meridian` command: parse arguments, run one subcommand, map its outcome to an exit code.

#![allow(
    clippy::print_stderr,
    reason = "the binary is the edge where outcomes become messages on stderr and exit codes"
)]

mod client;
mod client_config;
mod commands;
mod confirm;
mod output;
mod pinned;

use clap::{Parser, Subcommand};

/// Exit codes, one table for every command (`meridian --help` prints it; README "Exit codes").
pub(crate) mod exit {
    /// Done: valid, shown, accepted; a rollout waited for completed with every unit enabled
    /// (or reached the `--until` condition); `run` stopped by a signal.
    pub const OK: i32 = 0;
    /// The answer is no: invalid configuration (`validate`, `plan`, `run`), a request the
    /// server refused, a rollout that failed, halted or was aborted, a controller that could
    /// not start or whose background task failed.
    pub const FAILED: i32 = 1;
    /// `status --wait` gave up at `--timeout`.
    pub const TIMED_OUT: i32 = 2;
    /// Bad arguments, a path that does not exist, a server that could not be reached or
    /// understood.
    pub const USAGE: i32 = 3;
    /// A rollout waited for completed, but not every unit is enabled: failures a promote
    /// accepted, or aborted regions (`--accept-failures` makes it 0).
    pub const NOT_ALL_ENABLED: i32 = 4;
    /// `status --wait --until COND` (a condition other than `complete`): the scope completed
    /// first, so the condition can no longer be reached.
    pub const NOT_REACHED: i32 = 5;

    /// The table, as `--help` prints it.
    pub const TABLE: &str = "\
Exit codes (every command):
  0  done: valid, shown, accepted; a rollout waited for is complete with every unit enabled
     (or reached its --until condition)
  1  no: invalid configuration, a refused request, a rollout that failed, halted or was
     aborted, a controller that could not start or whose background task failed
  2  status --wait: --timeout passed first
  3  usage: bad arguments, a path that does not exist, a server that could not be reached
  4  a rollout waited for is complete, but not every unit is enabled (accepted failures,
     aborted regions); --accept-failures makes it 0
  5  status --wait --until COND: the rollout completed first, so COND never comes";
}

/// Meridian: phased regional rollouts with approval gates and health analysis.
#[derive(Debug, Parser)]
#[command(
    name = "meridian",
    version,
    about = "Meridian: phased regional rollouts with approval gates and health analysis",
    propagate_version = true,
    after_help = exit::TABLE
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
    /// What an edit of plans (OLD -> NEW) would change for the rollouts as they stand.
    Diff(commands::diff::Args),
    /// Print the JSON Schema of plans and approvals (for editor completion).
    Schema,
    /// Print the CustomResourceDefinitions for the Kubernetes mode (`| kubectl apply -f -`).
    Crds,
    /// Run the standalone controller: watch plans, decide, actuate, serve the API.
    Run(commands::run::Args),
    /// Run the controller in Kubernetes: plans, regions and approvals as resources, state in
    /// the API server.
    Kube(commands::kube::Args),
    /// A complete rollout against a built-in simulated fleet, on embedded defaults.
    Demo(commands::demo::Args),
    /// Show the plans, or one plan's regions x services; `--wait` for CI (exit codes in --help).
    Status(commands::status::Args),
    /// Grant an approval flag through the API.
    Approve(commands::approve::ApproveArgs),
    /// Revoke an approval through the API; it is never valid again.
    Revoke(commands::approve::RevokeArgs),
    /// Signed approvals: make a signing key (`keygen`), sign an approval file (`sign`).
    #[command(subcommand)]
    Approval(commands::approval::Command),
    /// The tamper-evident audit trail: `verify` names the first edited, deleted, reordered or
    /// inserted record and prints the chain head to keep as an anchor.
    #[command(subcommand)]
    Audit(commands::audit::Command),
    /// Hold a plan, wave or region at its current traffic.
    Pause(commands::control::Args),
    /// Undo a pause.
    Resume(commands::control::Args),
    /// Stop: roll back everything in scope that is not enabled; nothing in scope starts again.
    Abort(commands::control::AbortArgs),
    /// Skip the current bake (or accept a wave's halt) once, or with --full every remaining bake
    /// in scope; never skips approvals, windows or health.
    Promote(commands::control::PromoteArgs),
    /// Send failed and rolled-back units in scope back to the start.
    Retry(commands::control::Args),
    /// Declare a run-time freeze: no step starts in scope until it ends; traffic is kept.
    Freeze(commands::control::FreezeArgs),
    /// Lift a run-time freeze (or every one).
    Unfreeze(commands::control::UnfreezeArgs),
    /// The evidence report of a plan: approvals at first traffic, steps, bake health,
    /// failures, commands, and the proof that no traffic ran without its approvals.
    Report(commands::report::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(commands::completion::Args),
    /// List the approvals on record (files and API, revoked ones too), or show one.
    Approvals(commands::info::ApprovalsArgs),
    /// The controller's own history: approvals granted, revoked, expired; config changes;
    /// denied requests.
    History(commands::info::HistoryArgs),
    /// The configuration in force (generation, load time, warnings) and the last rejected
    /// edit with its located errors (exit 1 while one stands).
    Config(commands::info::ConfigArgs),
    /// Who the token is: its name, role and flags.
    Whoami(commands::info::WhoamiArgs),
    /// The client's and the server's versions.
    Version(commands::info::VersionArgs),
    /// Measure the controller: `fleet` runs `meridian run` on a generated fleet of plans.
    #[command(subcommand)]
    Bench(commands::bench::Command),
}

/// A controller allocates from many threads (the async workers, the blocking pool), and
/// glibc gives each its own arena, where memory freed stays mapped: at 1,000 plans x 150
/// units that was about 75 MiB of the resident set (291 MiB, 217 MiB with two arenas). Two
/// are enough for a loop that decides on one thread. `MALLOC_ARENA_MAX` in the environment
/// still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn few_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread exists; it only sets a
        // tunable of the allocator.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn few_malloc_arenas() {}

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| client::exit_on_parse_error(e));
    if !matches!(cli.command, Command::Run(_) | Command::Kube(_) | Command::Demo(_)) {
        die_quietly_on_a_closed_pipe();
    } else {
        few_malloc_arenas();
    }
    let code = match &cli.command {
        Command::Validate(args) => commands::validate::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Diff(args) => commands::diff::run(args),
        Command::Schema => commands::schema::run(),
        Command::Crds => commands::crds::run(),
        Command::Run(args) => commands::run::run(args),
        Command::Kube(args) => commands::kube::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Approve(args) => commands::approve::approve(args),
        Command::Revoke(args) => commands::approve::revoke(args),
        Command::Approval(command) => commands::approval::run(command),
        Command::Audit(command) => commands::audit::run(command),
        Command::Pause(args) => commands::control::run(meridian_core::CommandKind::Pause, args),
        Command::Resume(args) => commands::control::run(meridian_core::CommandKind::Resume, args),
        Command::Abort(args) => commands::control::abort(args),
        Command::Promote(args) => commands::control::promote(args),
        Command::Retry(args) => commands::control::run(meridian_core::CommandKind::Retry, args),
        Command::Freeze(args) => commands::control::freeze(args),
        Command::Unfreeze(args) => commands::control::unfreeze(args),
        Command::Report(args) => commands::report::run(args),
        Command::Completion(args) => commands::completion::run(args),
        Command::Approvals(args) => commands::info::approvals(args),
        Command::History(args) => commands::info::history(args),
        Command::Config(args) => commands::info::config(args),
        Command::Whoami(args) => commands::info::whoami(args),
        Command::Version(args) => commands::info::version(args),
        Command::Bench(command) => commands::bench::run(command),
    };
    std::process::exit(code);
}

/// A command that only prints ends quietly when its reader goes away (`meridian plan | head`),
/// as Unix tools do, instead of panicking on the broken pipe: SIGPIPE gets its default action
/// back (Rust ignores it). `run` and `demo` keep Rust's choice, so that a closed stderr makes a
/// write fail (and be handled) rather than kill a controller.
fn die_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: resetting one signal's disposition to the default, at start, before any thread is
    // spawned; no handler of ours is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
