//! Who a request comes from and what it may do: bearer tokens from a tokens file, each with
//! a role and, for approvers and CI, the flags it may grant and revoke.
//!
//! Owns the tokens file format (raw, then validated, every problem reported at once), token
//! matching in constant time, the file's mode (world-writable refused, world-readable with plain
//! tokens warned about), and the permission rules. It does not audit by itself: the
//! middleware and the handlers pass every denial to `ControlPlane::record_denial`.
//!
//! | role     | read (GET) | commands                | grant / revoke approvals |
//! |----------|------------|-------------------------|--------------------------|
//! | viewer   | yes        | no                      | no                       |
//! | operator | yes        | all five                | no                       |
//! | approver | yes        | no                      | its listed flags only    |
//! | ci       | yes        | promote and resume only | its listed flags only    |

use std::fmt;
use std::path::Path;

use axum::extract::{OriginalUri, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use meridian_core::CommandKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

/// Plain tokens shorter than this are refused: they could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Read, and pause, resume, abort, promote and retry.
    Operator,
    /// Read, and grant and revoke approvals of its listed flags.
    Approver,
    /// Read, promote and resume, and grant and revoke approvals of its listed flags.
    Ci,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Ci => "ci",
        })
    }
}

/// The caller of an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The token's name: the `by` of commands, revocations and denials.
    pub name: String,
    /// `None` when authentication is disabled: everything is allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// Something a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    Read,
    Command(CommandKind),
    /// Grant an approval at all (checked before the body is read).
    GrantAny,
    Grant {
        flag: &'a str,
    },
    Revoke {
        flag: &'a str,
    },
    /// Revoke an approval at all (checked before the approval is looked up, so a token
    /// that may revoke nothing learns nothing from a 404).
    RevokeAny,
}

impl Identity {
    /// `Err` says why not, in words fit for a 403 answer.
    pub fn allows(&self, action: Action<'_>) -> Result<(), String> {
        let Some(role) = self.role else { return Ok(()) };
        let has_flag = |flag: &str| self.flags.iter().any(|f| f == flag);
        let flags = || {
            if self.flags.is_empty() { "none".to_string() } else { self.flags.join(", ") }
        };
        match (action, role) {
            (Action::Read, _) => Ok(()),
            (Action::Command(_), Role::Operator) => Ok(()),
            (Action::Command(CommandKind::Promote | CommandKind::Resume), Role::Ci) => Ok(()),
            (Action::Command(kind), Role::Ci) => {
                Err(format!("token {:?} (role ci) may promote and resume, not {kind}", self.name))
            }
            (Action::Command(kind), _) => {
                Err(format!("token {:?} (role {role}) may not {kind}; that needs role operator", self.name))
            }
            (Action::GrantAny | Action::RevokeAny, Role::Approver | Role::Ci) => Ok(()),
            (Action::Grant { flag } | Action::Revoke { flag }, Role::Approver | Role::Ci) if has_flag(flag) => Ok(()),
            (Action::Grant { flag }, Role::Approver | Role::Ci) => {
                Err(format!("token {:?} may not grant flag {flag:?} (it may grant: {})", self.name, flags()))
            }
            (Action::Revoke { flag }, Role::Approver | Role::Ci) => {
                Err(format!("token {:?} may not revoke approvals of flag {flag:?} (it may: {})", self.name, flags()))
            }
            (Action::GrantAny | Action::Grant { .. }, _) => Err(format!(
                "token {:?} (role {role}) may not grant approvals; that needs role approver or ci with the flag",
                self.name
            )),
            (Action::Revoke { .. } | Action::RevokeAny, _) => Err(format!(
                "token {:?} (role {role}) may not revoke approvals; that needs role approver or ci with the flag",
                self.name
            )),
        }
    }
}

/// How requests are authenticated.
#[derive(Clone)]
pub struct Auth {
    /// `None`: authentication disabled.
    tokens: Option<Vec<TokenEntry>>,
    /// What is accepted but unsafe (plain tokens in a file every user can read).
    warnings: Vec<String>,
}

#[derive(Clone)]
struct TokenEntry {
    identity: Identity,
    sha256: [u8; 32],
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print token hashes.
        match &self.tokens {
            None => f.write_str("Auth(disabled)"),
            Some(t) => write!(f, "Auth({} tokens)", t.len()),
        }
    }
}

/// Why a tokens file was refused: every problem, each with its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("failed to read tokens file {path}: {message}")]
    Read { path: String, message: String },
    #[error("invalid tokens file {source_name}:\n  {}", problems.join("\n  "))]
    Invalid { source_name: String, problems: Vec<String> },
    #[error("tokens file {path} {problem}")]
    Insecure { path: String, problem: String },
}

/// Entries are kept as YAML values here and read one by one, so that a broken entry does
/// not hide the problems of the others.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokensFile {
    tokens: Vec<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawToken {
    name: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_sha256: Option<String>,
    /// Checked by hand, so that an unknown role is one problem among the others.
    role: String,
    #[serde(default)]
    flags: Vec<String>,
}

/// Why a request could not be authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Malformed,
    Unknown,
}

impl Auth {
    /// Every request is allowed, as `anonymous`. For demos; `router` logs it loudly.
    pub fn disabled() -> Self {
        Auth { tokens: None, warnings: Vec::new() }
    }

    /// What the tokens file allows but should not (for `meridian run` to print at start).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn is_disabled(&self) -> bool {
        self.tokens.is_none()
    }

    /// Read, check and parse a tokens file. A file every user may write is refused (anyone
    /// on the host could add a token); one every user may read while it holds plain `token`
    /// entries is accepted with a warning, as ssh does with keys.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let name = path.display().to_string();
        let read_err = |e: std::io::Error| AuthError::Read { path: name.clone(), message: e.to_string() };
        let mode = file_mode(path).map_err(read_err)?;
        if mode & 0o002 != 0 {
            return Err(AuthError::Insecure {
                path: name,
                problem: format!(
                    "is writable by every user (mode {:04o}): anyone on this host could add a token; \
                     run chmod o-w on it (chmod 600 is best) and start again",
                    mode & 0o7777
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let mut auth = Auth::from_yaml(&name, &text)?;
        if mode & 0o004 != 0 {
            let plain = plain_token_entries(&text);
            if !plain.is_empty() {
                auth.warnings.push(format!(
                    "tokens file {name} is readable by every user (mode {:04o}) and holds plain tokens ({}): \
                     anyone on this host can use them; chmod 600 it, or give tokenSha256 instead",
                    mode & 0o7777,
                    plain.join(", ")
                ));
            }
        }
        Ok(auth)
    }

    /// Parse and validate a tokens file; `source_name` names it in errors.
    pub fn from_yaml(source_name: &str, text: &str) -> Result<Self, AuthError> {
        let invalid = |problems: Vec<String>| AuthError::Invalid { source_name: source_name.to_string(), problems };
        let raw: RawTokensFile = serde_yaml::from_str(text).map_err(|e| invalid(vec![e.to_string()]))?;
        let mut problems = Vec::new();
        let raw: Vec<(usize, RawToken)> = raw
            .tokens
            .into_iter()
            .enumerate()
            .filter_map(|(i, value)| match serde_yaml::from_value::<RawToken>(value) {
                Ok(t) => Some((i, t)),
                Err(e) => {
                    problems.push(format!("tokens[{i}]: {e}"));
                    None
                }
            })
            .collect();
        let mut entries: Vec<TokenEntry> = Vec::new();
        // Every name and hash seen, valid entries or not, so duplicates are always reported.
        let mut names: Vec<String> = Vec::new();
        let mut hashes: Vec<([u8; 32], String)> = Vec::new();
        if raw.is_empty() && problems.is_empty() {
            problems.push("tokens: the list is empty, so every request would be refused; add tokens".to_string());
        }
        for (i, t) in raw {
            let at = format!("tokens[{i}]");
            let before = problems.len();
            let role = match t.role.as_str() {
                "viewer" => Some(Role::Viewer),
                "operator" => Some(Role::Operator),
                "approver" => Some(Role::Approver),
                "ci" => Some(Role::Ci),
                other => {
                    problems.push(format!("{at}.role: unknown role {other:?}; use viewer, operator, approver or ci"));
                    None
                }
            };
            if t.name.trim().is_empty() {
                problems.push(format!("{at}.name: empty; name the person or system that holds the token"));
            } else if names.contains(&t.name) {
                problems.push(format!("{at}.name: {:?} is listed twice; token names must be unique", t.name));
            }
            let sha256 = match (&t.token, &t.token_sha256) {
                (Some(_), Some(_)) => {
                    problems.push(format!("{at}: give token or tokenSha256, not both"));
                    None
                }
                (None, None) => {
                    problems.push(format!(
                        "{at}: no token; give tokenSha256 (hex sha256 of the token, preferred) or token"
                    ));
                    None
                }
                // `authenticate` trims what it is given, and a header carries visible ASCII only:
                // such a token could never be presented.
                (Some(plain), None)
                    if plain.trim() != plain || !plain.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) =>
                {
                    problems.push(format!(
                        "{at}.token: starts or ends with whitespace, or holds characters other than printable \
                         ASCII, so no Authorization header can carry it; use a long random token of letters and digits"
                    ));
                    None
                }
                (Some(plain), None) if plain.len() < MIN_TOKEN_LEN => {
                    problems
                        .push(format!("{at}.token: shorter than {MIN_TOKEN_LEN} characters; use a long random token"));
                    None
                }
                (Some(plain), None) => Some(sha256(plain.as_bytes())),
                (None, Some(hex)) => match parse_sha256_hex(hex) {
                    Some(h) => Some(h),
                    None => {
                        problems.push(format!(
                            "{at}.tokenSha256: not 64 hex digits; e.g. printf %s \"$TOKEN\" | sha256sum"
                        ));
                        None
                    }
                },
            };
            match role {
                Some(role @ (Role::Viewer | Role::Operator)) if !t.flags.is_empty() => problems
                    .push(format!("{at}.flags: role {role} grants no approvals; flags apply to approver and ci")),
                Some(Role::Approver) if t.flags.is_empty() => {
                    problems.push(format!("{at}.flags: an approver needs the list of flags it may grant"))
                }
                _ => {}
            }
            if let Some(f) = t.flags.iter().position(|f| f.trim().is_empty()) {
                problems.push(format!("{at}.flags[{f}]: empty flag"));
            }
            if let Some(h) = sha256 {
                if let Some((_, other)) = hashes.iter().find(|(seen, _)| *seen == h) {
                    problems.push(format!("{at}: same token as {other:?}; every holder needs its own token"));
                }
                hashes.push((h, t.name.clone()));
            }
            names.push(t.name.clone());
            if problems.len() == before
                && let (Some(sha256), Some(role)) = (sha256, role)
            {
                entries
                    .push(TokenEntry { identity: Identity { name: t.name, role: Some(role), flags: t.flags }, sha256 });
            }
        }
        if problems.is_empty() {
            Ok(Auth { tokens: Some(entries), warnings: Vec::new() })
        } else {
            Err(invalid(problems))
        }
    }

    /// Match an `Authorization` header value against the tokens.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, AuthFailure> {
        let Some(tokens) = &self.tokens else {
            return Ok(Identity { name: "anonymous".into(), role: None, flags: Vec::new() });
        };
        let value = authorization.ok_or(AuthFailure::Missing)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthFailure::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthFailure::Malformed);
        }
        // Hash first so every comparison is over 32 bytes, and look at every entry, so the
        // time taken says nothing about which token (or how much of one) matched.
        let presented = sha256(token.trim().as_bytes());
        let mut found = None;
        for entry in tokens {
            if bool::from(entry.sha256.ct_eq(&presented)) {
                found = Some(&entry.identity);
            }
        }
        found.cloned().ok_or(AuthFailure::Unknown)
    }
}

#[cfg(unix)]
fn file_mode(path: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode())
}

/// Elsewhere there are no mode bits to check.
#[cfg(not(unix))]
fn file_mode(path: &Path) -> std::io::Result<u32> {
    std::fs::metadata(path).map(|_| 0o600)
}

/// The places (`tokens[2]`) of entries with a plain `token`, in a file that parsed.
fn plain_token_entries(text: &str) -> Vec<String> {
    let Ok(raw) = serde_yaml::from_str::<RawTokensFile>(text) else { return Vec::new() };
    raw.tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| t.get("token").is_some())
        .map(|(i, _)| format!("tokens[{i}]"))
        .collect()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Hex sha256 of a token, as a tokens file's `tokenSha256` wants it.
pub fn token_sha256_hex(token: &str) -> String {
    sha256(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// `what` for denial records: method and full path (a nested router sees only its part).
pub(crate) fn request_line(request: &Request) -> String {
    let uri = request.extensions().get::<OriginalUri>().map_or(request.uri(), |o| &o.0);
    format!("{} {}", request.method(), uri.path())
}

/// Middleware for `/api/v1`: 401 without a valid token (the denial recorded), otherwise the
/// caller's `Identity` goes into the request's extensions.
pub(crate) async fn require_token(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let header = request.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("?"));
    match state.auth.authenticate(header) {
        Ok(identity) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(failure) => {
            let (who, error) = match failure {
                AuthFailure::Missing => ("anonymous", "missing bearer token"),
                AuthFailure::Malformed => ("anonymous", "malformed Authorization header"),
                AuthFailure::Unknown => ("unknown token", "invalid token"),
            };
            let what = format!("{} (401 {error})", request_line(&request));
            state.control.record_denial(who, &what, state.control.now());
            ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                error,
                "send Authorization: Bearer <token> with a token from the server's tokens file",
            )
            .into_response()
        }
    }
}

impl AppState {
    /// Check `action` for `identity`; a refusal is recorded and becomes a 403.
    pub(crate) fn authorize(&self, identity: &Identity, action: Action<'_>, what: &str) -> Result<(), ApiError> {
        identity.allows(action).map_err(|why| {
            self.control.record_denial(&identity.name, &format!("{what} (403 {why})"), self.control.now());
            ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                why,
                "ask for a token with that role or flag; GET /api/v1/whoami shows this token's",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(yaml: &str) -> Auth {
        Auth::from_yaml("tokens.yaml", yaml).unwrap()
    }

    #[test]
    fn plain_and_hashed_tokens_authenticate() {
        let hash = token_sha256_hex("alice-secret-token-0001");
        let a = auth(&format!(
            "tokens:\n- {{name: ci, token: ci-secret-token-00001, role: ci}}\n- {{name: alice, tokenSha256: \"{hash}\", role: approver, flags: [jp]}}\n"
        ));
        assert_eq!(a.authenticate(Some("Bearer ci-secret-token-00001")).unwrap().name, "ci");
        let alice = a.authenticate(Some("bearer  alice-secret-token-0001")).unwrap();
        assert_eq!(
            (alice.name.as_str(), alice.role, alice.flags.as_slice()),
            ("alice", Some(Role::Approver), &["jp".to_string()][..])
        );
        assert_eq!(a.authenticate(None), Err(AuthFailure::Missing));
        assert_eq!(a.authenticate(Some("Basic abc")), Err(AuthFailure::Malformed));
        assert_eq!(a.authenticate(Some("Bearer ci-secret-token-00002")), Err(AuthFailure::Unknown));
    }

    #[test]
    fn every_problem_of_a_tokens_file_is_reported() {
        let err = Auth::from_yaml(
            "t.yaml",
            "tokens:\n- {name: a, token: short, role: viewer}\n- {name: a, token: x, tokenSha256: ab, role: operator}\n\
             - {name: b, tokenSha256: zz, role: viewer, flags: [f]}\n- {name: c, token: long-enough-token-123, role: approver}\n\
             - {name: d, token: long-enough-token-123, role: ci}\n",
        )
        .unwrap_err();
        let AuthError::Invalid { problems, .. } = err else { panic!("{err}") };
        let text = problems.join("\n");
        for needle in [
            "tokens[0].token: shorter than 16",
            "tokens[1].name: \"a\" is listed twice",
            "tokens[1]: give token or tokenSha256, not both",
            "tokens[2].tokenSha256: not 64 hex digits",
            "tokens[2].flags: role viewer grants no approvals",
            "tokens[3].flags: an approver needs the list of flags",
            "tokens[4]: same token as \"c\"",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert!(Auth::from_yaml("t.yaml", "tokens: []").is_err());
        assert!(Auth::from_yaml("t.yaml", "tokens:\n- {name: a, token: long-enough-token-123, role: root}").is_err());
        assert!(
            Auth::from_yaml("t.yaml", "tokens:\n- {name: a, token: long-enough-token-123, role: viewer, x: 1}")
                .is_err()
        );
    }

    #[test]
    fn an_unknown_role_and_broken_entries_are_reported_together() {
        let err = Auth::from_yaml(
            "t.yaml",
            "tokens:\n- {name: a, token: long-enough-token-123, role: root}\n\
             - {name: b, token: long-enough-token-456, role: viewer, colour: red}\n\
             - {name: c, token: short, role: admin}\n",
        )
        .unwrap_err();
        let AuthError::Invalid { problems, .. } = err else { panic!("{err}") };
        let text = problems.join("\n");
        for needle in [
            "tokens[0].role: unknown role \"root\"; use viewer, operator, approver or ci",
            "tokens[1]: unknown field `colour`",
            "tokens[2].token: shorter than 16",
            "tokens[2].role: unknown role \"admin\"",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn a_plain_token_no_header_can_carry_is_refused() {
        for token in ["\" long-enough-token-123\"", "\"long-enough-token-123\\t\"", "long-enough-tökén-123"] {
            let yaml = format!("tokens:\n- {{name: a, token: {token}, role: viewer}}\n");
            let err = Auth::from_yaml("t.yaml", &yaml).unwrap_err();
            assert!(err.to_string().contains("tokens[0].token: starts or ends with whitespace"), "{token}: {err}");
        }
        let a = auth("tokens:\n- {name: a, token: \"long enough token 123\", role: viewer}\n");
        assert_eq!(a.authenticate(Some("Bearer long enough token 123")).unwrap().name, "a");
    }

    fn tokens_file(mode: u32, yaml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        std::fs::write(&path, yaml).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    const PLAIN: &str = "tokens:\n- {name: oncall, token: long-enough-token-123, role: operator}\n";

    #[test]
    fn a_world_writable_tokens_file_is_refused() {
        let (_dir, path) = tokens_file(0o666, PLAIN);
        let err = Auth::from_file(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, AuthError::Insecure { .. }), "{err:?}");
        assert!(msg.contains(&path.display().to_string()) && msg.contains("writable by every user"), "{msg}");
        assert!(msg.contains("chmod o-w"), "{msg}");
    }

    #[test]
    fn a_world_readable_tokens_file_with_plain_tokens_is_warned_about() {
        let (_dir, path) = tokens_file(0o644, PLAIN);
        let auth = Auth::from_file(&path).unwrap();
        let warnings = auth.warnings().join("\n");
        assert!(
            warnings.contains(&path.display().to_string()) && warnings.contains("readable by every user"),
            "{warnings}"
        );
        assert!(warnings.contains("tokens[0]") && warnings.contains("tokenSha256"), "{warnings}");
        let (_dir, path) = tokens_file(0o600, PLAIN);
        assert!(Auth::from_file(&path).unwrap().warnings().is_empty());
        let hashed = format!(
            "tokens:\n- {{name: oncall, tokenSha256: \"{}\", role: operator}}\n",
            token_sha256_hex("long-enough-token-123")
        );
        let (_dir, path) = tokens_file(0o644, &hashed);
        assert!(Auth::from_file(&path).unwrap().warnings().is_empty(), "hashes are no secret");
    }

    #[test]
    fn role_matrix() {
        use CommandKind::*;
        let who = |role, flags: &[&str]| Identity {
            name: "t".into(),
            role: Some(role),
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        let viewer = who(Role::Viewer, &[]);
        let operator = who(Role::Operator, &[]);
        let approver = who(Role::Approver, &["jp"]);
        let ci = who(Role::Ci, &["ops-go"]);
        let everyone = Identity { name: "anonymous".into(), role: None, flags: vec![] };
        for kind in [Pause, Resume, Abort, Promote, Retry, Freeze, Unfreeze] {
            let c = Action::Command(kind);
            assert!(viewer.allows(c).is_err());
            assert!(operator.allows(c).is_ok());
            assert!(approver.allows(c).is_err());
            assert_eq!(ci.allows(c).is_ok(), matches!(kind, Promote | Resume), "{kind}");
            assert!(everyone.allows(c).is_ok());
        }
        for id in [&viewer, &operator, &approver, &ci, &everyone] {
            assert!(id.allows(Action::Read).is_ok());
        }
        assert!(approver.allows(Action::Grant { flag: "jp" }).is_ok());
        assert!(approver.allows(Action::Revoke { flag: "jp" }).is_ok());
        assert!(approver.allows(Action::Grant { flag: "ops-go" }).is_err());
        assert!(ci.allows(Action::Grant { flag: "ops-go" }).is_ok());
        assert!(ci.allows(Action::Revoke { flag: "jp" }).is_err());
        assert!(operator.allows(Action::GrantAny).is_err());
        assert!(operator.allows(Action::Revoke { flag: "jp" }).is_err());
        assert!(viewer.allows(Action::GrantAny).is_err());
        assert!(everyone.allows(Action::Grant { flag: "anything" }).is_ok());
    }
}
