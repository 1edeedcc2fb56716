//! The client's config file: where the server is and which token file and CA to use, so
//! that `meridian status` works without `--server` on every command.
//!
//! ```yaml
//! # ~/.config/meridian/config.yaml
//! server: https://meridian.internal:7070
//! tokenFile: ~/.config/meridian/token     # relative paths: from this file's folder
//! caCert: /etc/meridian/ca.pem
//! ```
//!
//! Found at `$MERIDIAN_CONFIG` (which must exist), else `$XDG_CONFIG_HOME/meridian/config.yaml`,
//! else `~/.config/meridian/config.yaml` (both optional). Flags and their environment
//! variables win over it; a `--token` (or `MERIDIAN_TOKEN`) wins over its `tokenFile`. It
//! holds no token itself: the token stays in a file of its own.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::client::{ClientError, ServerArgs};

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClientConfig {
    server: Option<String>,
    token_file: Option<String>,
    ca_cert: Option<String>,
}

/// `args` with what they leave open filled from the config file.
pub fn layered(args: &ServerArgs) -> Result<ServerArgs, ClientError> {
    let found = match std::env::var_os("MERIDIAN_CONFIG").filter(|v| !v.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => default_path().filter(|p| p.exists()),
    };
    let Some(path) = found else { return Ok(args.clone()) };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ClientError::Usage(format!(
            "cannot read the client config {} (from MERIDIAN_CONFIG or the default place): {e}",
            path.display()
        ))
    })?;
    let config = parse(&path, &text)?;
    Ok(fill(args, config, path.parent().unwrap_or(Path::new("."))))
}

fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("meridian").join("config.yaml"))
}

fn parse(path: &Path, text: &str) -> Result<ClientConfig, ClientError> {
    if text.trim().is_empty() {
        return Ok(ClientConfig::default());
    }
    serde_yaml::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
        ClientError::Usage(format!(
            "{}:{line}:{column}: error: {message}; the client config holds server, tokenFile and caCert",
            path.display()
        ))
    })
}

/// Flags first; then the file, its paths taken from `dir` (and `~/` from `$HOME`).
fn fill(args: &ServerArgs, config: ClientConfig, dir: &Path) -> ServerArgs {
    let resolve = |p: String| -> PathBuf {
        match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
            _ => dir.join(p),
        }
    };
    let token_given = args.token.as_ref().is_some_and(|t| !t.trim().is_empty());
    ServerArgs {
        server: args.server.clone().or(config.server),
        token: args.token.clone(),
        token_file: args
            .token_file
            .clone()
            .or_else(|| (!token_given).then_some(config.token_file).flatten().map(resolve)),
        ca_cert: args.ca_cert.clone().or_else(|| config.ca_cert.map(resolve)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> ServerArgs {
        ServerArgs { server: None, token: None, token_file: None, ca_cert: None }
    }

    #[test]
    fn the_file_fills_what_flags_leave_open_with_paths_from_its_folder() {
        let config =
            parse(Path::new("c.yaml"), "server: https://m:7070\ntokenFile: token\ncaCert: /etc/ca.pem\n").unwrap();
        let filled = fill(&none(), config, Path::new("/home/a/.config/meridian"));
        assert_eq!(filled.server.as_deref(), Some("https://m:7070"));
        assert_eq!(filled.token_file, Some(PathBuf::from("/home/a/.config/meridian/token")));
        assert_eq!(filled.ca_cert, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn flags_win_and_a_token_given_drops_the_files_token_file() {
        let config = || parse(Path::new("c.yaml"), "server: https://m:7070\ntokenFile: /t\n").unwrap();
        let mut args = none();
        args.server = Some("http://127.0.0.1:1".into());
        args.token = Some("tok".into());
        let filled = fill(&args, config(), Path::new("/"));
        assert_eq!(filled.server.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!((filled.token.as_deref(), filled.token_file), (Some("tok"), None));
    }

    #[test]
    fn a_typo_is_located_and_names_the_fields() {
        let Err(ClientError::Usage(e)) = parse(Path::new("c.yaml"), "server: http://x\ntoken: abc\n") else { panic!() };
        assert!(e.starts_with("c.yaml:2:1: error: unknown field `token`"), "{e}");
        assert!(e.ends_with("the client config holds server, tokenFile and caCert"), "{e}");
    }
}
