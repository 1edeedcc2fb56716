//! The API client behind `status`, `approve`, `revoke` and the five commands: where the server
//! is, which token to send, and the server's `{"error", "hint"}` answers turned into messages
//! and exit codes.
//!
//! Owns no command logic; each subcommand module builds its requests and decides its output.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// Exit codes shared by the client subcommands.
pub(crate) use crate::exit;

/// Where the API is and how to authenticate: flags, else environment variables, else the
/// client config file (`client_config`), else the default server.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Base URL of the Meridian API [default: the config file's `server`, else
    /// http://127.0.0.1:7070].
    #[arg(long, env = "MERIDIAN_SERVER")]
    pub server: Option<String>,
    /// Bearer token (from the server's tokens file). Visible to other users in `ps`: prefer
    /// --token-file or the environment.
    #[arg(long, env = "MERIDIAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the bearer token (surrounding whitespace ignored), so that it stays out
    /// of `ps` and shell history; not together with --token or MERIDIAN_TOKEN.
    #[arg(long, env = "MERIDIAN_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate to trust for an https server with a private or self-signed certificate.
    #[arg(long, env = "MERIDIAN_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {server}: {message}")]
    Connection { server: String, message: String },
    #[error("{error}")]
    Api { status: u16, error: String, hint: Option<String> },
    #[error("unexpected answer from {server}: {message}")]
    Decode { server: String, message: String },
}

impl ClientError {
    /// `Api` errors are the server's refusal (1); the rest are usage or connection (3).
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Api { .. } => exit::FAILED,
            _ => exit::USAGE,
        }
    }

    /// Worth retrying while waiting: the server is down, restarting, or busy.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connection { .. } => true,
            ClientError::Api { status, .. } => *status == 503,
            _ => false,
        }
    }

    /// Print to stderr, prefixed with the command, with the hint on its own line.
    pub fn report(&self, command: &str) {
        eprintln!("meridian {command}: {self}");
        match self {
            // The server's 401 hint speaks HTTP (an Authorization header); a CLI user passes a
            // flag or sets a variable.
            ClientError::Api { status: 401, .. } => eprintln!("  hint: {TOKEN_HINT}"),
            ClientError::Api { hint: Some(hint), .. } => eprintln!("  hint: {hint}"),
            ClientError::Connection { .. } => {
                eprintln!(
                    "  hint: is the controller running? pass --server, set MERIDIAN_SERVER, or set server in the client \
                     config (~/.config/meridian/config.yaml)"
                )
            }
            _ => {}
        }
    }
}

/// How a CLI user gives a token (the server's own 401 hint speaks of HTTP headers).
const TOKEN_HINT: &str = "pass --token-file FILE or --token TOKEN, or set MERIDIAN_TOKEN_FILE or MERIDIAN_TOKEN, \
                          with a token from the server's tokens file";

/// The token to send: `--token` (or `MERIDIAN_TOKEN`), else the contents of `--token-file` (or
/// `MERIDIAN_TOKEN_FILE`), else none. Both at once is a usage error rather than a silent
/// choice, since the flag and the variable may come from different places.
fn resolve_token(args: &ServerArgs) -> Result<Option<String>, ClientError> {
    let given = args.token.clone().filter(|t| !t.trim().is_empty());
    let Some(path) = &args.token_file else { return Ok(given) };
    if given.is_some() {
        return Err(ClientError::Usage(format!(
            "both a token (--token or MERIDIAN_TOKEN) and a token file (--token-file or MERIDIAN_TOKEN_FILE: {}) \
             are given; keep one",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Usage(format!("failed to read token file {}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ClientError::Usage(format!(
            "token file {} is empty; put the token from the server's tokens file in it",
            path.display()
        )));
    }
    if token.contains(char::is_whitespace) {
        return Err(ClientError::Usage(format!(
            "token file {} holds more than one word; it must hold only the token",
            path.display()
        )));
    }
    Ok(Some(token.to_string()))
}

/// A configured client of one server.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    /// A client for `url` with a command's own token and CA flags (`meridian diff --server`,
    /// `meridian plan --from-server`); `Err` holds the exit code once the reason is printed
    /// as `command`'s.
    pub fn for_url(
        command: &str,
        url: &str,
        token: Option<String>,
        token_file: Option<PathBuf>,
        ca_cert: Option<PathBuf>,
    ) -> Result<Self, i32> {
        let args = ServerArgs { server: Some(url.to_string()), token, token_file, ca_cert };
        Client::new(&args).map_err(|e| {
            e.report(command);
            e.exit_code()
        })
    }

    pub fn new(args: &ServerArgs) -> Result<Self, ClientError> {
        let args = &crate::client_config::layered(args)?;
        let server = args.server.as_deref().unwrap_or(DEFAULT_SERVER);
        let base = server.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Usage(format!("invalid --server {server:?}; use a URL such as {DEFAULT_SERVER}")));
        }
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).connect_timeout(Duration::from_secs(5));
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| ClientError::Usage(format!("failed to read --ca-cert {}: {e}", path.display())))?;
            let tls = crate::pinned::client_config(&pem)
                .map_err(|e| ClientError::Usage(format!("invalid --ca-cert {}: {e}", path.display())))?;
            builder = builder.tls_backend_preconfigured(tls);
        }
        let http = builder.build().map_err(|e| ClientError::Usage(format!("failed to set up the HTTP client: {e}")))?;
        let token = resolve_token(args)?;
        Ok(Client { http, base, token })
    }

    pub fn server(&self) -> &str {
        &self.base
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path)), path).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: Option<&Value>) -> Result<T, ClientError> {
        let mut request = self.http.post(self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request, path).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str, body: Option<&Value>) -> Result<T, ClientError> {
        let mut request = self.http.delete(self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request, path).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        mut request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, ClientError> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Connection { server: self.base.clone(), message: error_chain(&e) })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Connection { server: self.base.clone(), message: error_chain(&e) })?;
        if !status.is_success() {
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let error = body["error"].as_str().map(str::to_string).unwrap_or_else(|| {
                format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("error")).to_lowercase()
            });
            let hint = body["hint"].as_str().map(str::to_string);
            return Err(ClientError::Api { status: status.as_u16(), error, hint });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            server: self.base.clone(),
            message: format!("GET/POST {path}: {e}; is this a Meridian server of the same version?"),
        })
    }
}

/// "error sending request: connection refused", not only the outermost layer.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

/// Percent-encode one path segment (plan and approval names are Kubernetes names, but be safe).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Run a client future on a small runtime of its own; `None` when the runtime cannot start.
pub fn block_on<F: Future>(command: &str, future: F) -> Option<F::Output> {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => Some(runtime.block_on(future)),
        Err(e) => {
            eprintln!("meridian {command}: failed to start the async runtime: {e}");
            None
        }
    }
}

/// Bad arguments exit 3 (`exit::USAGE`) for every command; `--help` and `--version` print
/// and exit 0.
pub fn exit_on_parse_error(error: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        error.exit()
    }
    // clap's own code for a usage error is 2, which is `status --wait`'s timeout here.
    let _ = error.print();
    std::process::exit(exit::USAGE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(token: Option<&str>, file: Option<PathBuf>) -> ServerArgs {
        ServerArgs { server: None, token: token.map(Into::into), token_file: file, ca_cert: None }
    }

    #[test]
    fn a_token_comes_from_the_flag_or_a_file_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  secret-token-0000000001\n").unwrap();
        assert_eq!(resolve_token(&args(Some("t-1"), None)), Ok(Some("t-1".into())));
        assert_eq!(resolve_token(&args(None, Some(file.clone()))), Ok(Some("secret-token-0000000001".into())));
        assert_eq!(resolve_token(&args(Some(" "), Some(file.clone()))), Ok(Some("secret-token-0000000001".into())));
        assert!(
            matches!(resolve_token(&args(Some("t-1"), Some(file.clone()))), Err(ClientError::Usage(e)) if e.contains("keep one"))
        );
        assert_eq!(resolve_token(&args(None, None)), Ok(None));

        let missing = dir.path().join("nope");
        let Err(ClientError::Usage(e)) = resolve_token(&args(None, Some(missing.clone()))) else { panic!() };
        assert!(e.starts_with(&format!("failed to read token file {}: ", missing.display())), "{e}");
        std::fs::write(&file, "\n").unwrap();
        let Err(ClientError::Usage(e)) = resolve_token(&args(None, Some(file.clone()))) else { panic!() };
        assert_eq!(
            e,
            format!("token file {} is empty; put the token from the server's tokens file in it", file.display())
        );
        std::fs::write(&file, "a b\n").unwrap();
        assert!(
            matches!(resolve_token(&args(None, Some(file))), Err(ClientError::Usage(e)) if e.contains("more than one word"))
        );
    }
}
