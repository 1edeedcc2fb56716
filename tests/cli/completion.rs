//! `meridian completion SHELL` prints a script for each shell that knows the subcommands.

use crate::support::{meridian, stderr, stdout};

#[test]
fn each_shell_gets_a_script_that_knows_the_subcommands() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef meridian"), ("fish", "complete -c meridian")] {
        let o = meridian(&["completion", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(script.contains(marker), "{shell}: {marker:?} not in\n{script}");
        for word in ["status", "approve", "revoke", "abort", "token-file", "until"] {
            assert!(script.contains(word), "{shell}: {word:?} not in\n{script}");
        }
    }
    let o = meridian(&["completion", "tcsh"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("possible values: bash"), "{}", stderr(&o));
}
