//! `meridian completion SHELL`: the shell completion script, generated from the same clap
//! definition the binary parses with, so it never drifts from the real subcommands and flags.

use clap::CommandFactory;

use crate::client::exit;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Install, for example:
  bash:  meridian completion bash > ~/.local/share/bash-completion/completions/meridian
  zsh:   meridian completion zsh > \"${fpath[1]}/_meridian\"
  fish:  meridian completion fish > ~/.config/fish/completions/meridian.fish")]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(args: &Args) -> i32 {
    let mut command = crate::Cli::command();
    clap_complete::generate(args.shell, &mut command, "meridian", &mut std::io::stdout());
    exit::OK
}
