//! `meridian approval keygen` and `meridian approval sign`: the signer's side of signed
//! approvals. What is signed and how it is verified is the core's (`meridian_core::signing`);
//! this module draws the key's seed from the OS, reads and writes the files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use meridian_core::diagnostics::Severity;
use meridian_core::manifest::{Approval, SignatureSpec};
use meridian_core::signing::{self, SecretKey};
use meridian_core::source::Manifest;
use serde::{Deserialize, Serialize};

use crate::exit;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make an Ed25519 signing key: the private key goes to --out (mode 0600), the line to put
    /// under the plan's approvalPolicies[].signedBy is printed.
    Keygen(KeygenArgs),
    /// Sign an approval file with a private key: print it with its signature (or rewrite it).
    Sign(SignArgs),
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key; an existing file is never overwritten.
    #[arg(long)]
    pub out: PathBuf,
    /// The key's name in plans and signatures (default: the file name without extension).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The private key file `keygen` wrote.
    #[arg(long)]
    pub key: PathBuf,
    /// The approval to sign (one Approval document).
    pub approval: PathBuf,
    /// Rewrite the approval file instead of printing the signed approval.
    #[arg(long)]
    pub in_place: bool,
}

/// A private key file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyFile {
    /// The name plans list the public key under, and approvals' `signature.key`.
    name: String,
    /// `ed25519-secret:BASE64`.
    secret_key: String,
}

pub fn run(command: &Command) -> i32 {
    let outcome = match command {
        Command::Keygen(args) => keygen(args),
        Command::Sign(args) => sign(args),
    };
    match outcome {
        Ok(()) => exit::OK,
        Err(Failure { code, message }) => {
            eprintln!("{message}");
            code
        }
    }
}

pub(crate) struct Failure {
    pub code: i32,
    pub message: String,
}

fn usage(message: String) -> Failure {
    Failure { code: exit::USAGE, message }
}

fn keygen(args: &KeygenArgs) -> Result<(), Failure> {
    let name = match &args.name {
        Some(name) => name.trim().to_string(),
        None => args.out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default(),
    };
    if name.is_empty() {
        return Err(usage("meridian approval keygen: give the key a name with --name".into()));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Failure {
        code: exit::FAILED,
        message: format!("meridian approval keygen: no randomness: {e}"),
    })?;
    let key = SecretKey::from_seed(seed);
    let file = KeyFile { name: name.clone(), secret_key: key.to_text() };
    let text = format!(
        "# meridian approval signing key {name:?}: keep it secret; plans list its public key\n{}",
        serde_yaml::to_string(&file).unwrap_or_default()
    );
    write_private(&args.out, text.as_bytes())
        .map_err(|e| usage(format!("meridian approval keygen: cannot create {}: {e}", args.out.display())))?;
    eprintln!(
        "wrote the private key to {} (mode 0600); put this under the flag's approvalPolicies[].signedBy:",
        args.out.display()
    );
    println!("- {{name: {name}, publicKey: \"{}\"}}", key.public_key());
    Ok(())
}

/// Create `path` for its owner only; never replace an existing file (a key lost that way
/// cannot be recovered).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn read_key(path: &Path, command: &str) -> Result<(String, SecretKey), Failure> {
    let what = |e: String| usage(format!("{command}: {}: {e}", path.display()));
    let text = fs::read_to_string(path).map_err(|e| what(e.to_string()))?;
    let file: KeyFile = serde_yaml::from_str(&text)
        .map_err(|e| what(format!("not a key file from `meridian approval keygen` ({e})")))?;
    let key = SecretKey::parse(&file.secret_key).map_err(|e| what(format!("secretKey {e}")))?;
    Ok((file.name, key))
}

fn sign(args: &SignArgs) -> Result<(), Failure> {
    let file = args.approval.display().to_string();
    let text = fs::read_to_string(&args.approval)
        .map_err(|e| usage(format!("meridian approval sign: cannot read {file}: {e}")))?;
    let (key_name, raw) = sign_text(&file, &text, &args.key, "meridian approval sign")?;
    let signed = serde_yaml::to_string(&raw).unwrap_or_default();
    if args.in_place {
        fs::write(&args.approval, &signed).map_err(|e| Failure {
            code: exit::FAILED,
            message: format!("meridian approval sign: cannot write {file}: {e}"),
        })?;
        eprintln!("signed {file} with key {key_name:?}");
    } else {
        print!("{signed}");
    }
    Ok(())
}

/// Sign the one approval `text` (named `file` in messages) holds with the key in `key_path`:
/// the key's name and the approval with its signature. `command` prefixes the messages.
pub(crate) fn sign_text(file: &str, text: &str, key_path: &Path, command: &str) -> Result<(String, Approval), Failure> {
    let (key_name, key) = read_key(key_path, command)?;
    let file = file.to_string();
    let invalid = |lines: Vec<String>| Failure {
        code: exit::FAILED,
        message: format!("{}\n{command}: {file} is not a valid approval; nothing was signed", lines.join("\n")),
    };
    let bundle = meridian_core::validate::load(&[(file.clone(), text.to_string())], None);
    let approvals: Vec<&Approval> = bundle
        .documents
        .iter()
        .filter_map(|d| match &d.manifest {
            Manifest::Approval(a) => Some(a.as_ref()),
            _ => None,
        })
        .collect();
    let [raw] = approvals.as_slice() else {
        return Err(usage(format!(
            "{command}: {file} holds {} Approval documents; sign one approval per file",
            approvals.len()
        )));
    };
    if bundle.documents.len() > 1 {
        return Err(usage(format!("{command}: {file} holds more than the approval; sign one approval per file")));
    }
    // A signature already there is replaced: judge the approval without it.
    let mut raw = (*raw).clone();
    raw.spec.signature = None;
    let unsigned = serde_yaml::to_string(&raw).unwrap_or_default();
    let bundle = meridian_core::validate::load(&[(file.clone(), unsigned)], None);
    let errors: Vec<String> =
        bundle.report.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(ToString::to_string).collect();
    let Some(record) = bundle.approvals.first().filter(|_| errors.is_empty()) else {
        return Err(invalid(errors));
    };
    let signature = signing::sign(record, &key_name, &key);
    raw.spec.signature = Some(SignatureSpec { key: signature.key, value: signature.value });
    Ok((key_name, raw))
}
