//! Asking before a destructive client command (`abort`, `revoke`). On a terminal the user
//! answers `y` or `yes` (anything else, or end of input, declines); `--yes` skips the question.
//! Off a terminal (a pipeline, a script) there is nobody to ask, so the command proceeds, as
//! kubectl's do; `--yes` there documents the intent.
//!
//! Owns only the question; the commands decide what they ask and what declining means.

use std::io::{BufRead, IsTerminal, Write};

/// Should `command` go ahead? Asks `question` on stderr when stdin is a terminal and `yes`
/// (the `--yes` flag) was not given.
pub fn confirm(command: &str, question: &str, yes: bool) -> bool {
    if yes || !std::io::stdin().is_terminal() {
        return true;
    }
    eprint!("{question}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let confirmed = std::io::stdin().lock().read_line(&mut answer).is_ok() && accepted(&answer);
    if !confirmed {
        eprintln!("meridian {command}: not confirmed; nothing was sent");
    }
    confirmed
}

/// `y` or `yes`, in any case, around whitespace.
fn accepted(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_y_or_yes_confirms() {
        for yes in ["y\n", "Y", " yes \n", "YES"] {
            assert!(super::accepted(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "y es"] {
            assert!(!super::accepted(no), "{no:?}");
        }
    }
}
