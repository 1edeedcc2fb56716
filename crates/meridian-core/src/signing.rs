//! Signed approvals: the one canonical content an approval's Ed25519 signature covers, the
//! key and signature text forms, and verification against a flag's keys.
//!
//! ```text
//!  ApprovalRecord ──> canonical_content ──> Ed25519 sign (SecretKey, `meridian approval sign`)
//!                            │                     │
//!                            └──> verify <── ApprovalSignature {key, value} + the flag's Signers
//! ```
//!
//! Owns what is signed and how it is checked. It generates no keys (that needs randomness,
//! which the CLI brings) and reads no files; which flags require a signature is the plan's
//! (`plan::ApprovalPolicy`), and what an unverified approval means is `approval::Judged`'s.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::Serialize;

use crate::approval::{ApprovalRecord, ApprovalSignature};

/// How a public key is written in a plan: `ed25519:` and the 32 key bytes in base64.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";
/// How a private key is written in its file: `ed25519-secret:` and the 32-byte seed in base64.
pub const SECRET_KEY_PREFIX: &str = "ed25519-secret:";
/// Marks the canonical content, so a signature over it cannot be mistaken for one over
/// anything else (and a later format would say so).
pub const CANONICAL_VERSION: &str = "meridian.dev/v1alpha1 Approval signature v1";

/// A key that signs approvals for a flag, by the name approvals refer to it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub name: String,
    pub key: PublicKey,
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// An Ed25519 private key (its seed). Never printed by `Debug`.
pub struct SecretKey(SigningKey);

/// Why a key's text form is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("does not start with {0:?}")]
    Prefix(&'static str),
    #[error("is not valid base64")]
    Base64,
    #[error("is {0} bytes long, not 32")]
    Length(usize),
    #[error("is not a valid Ed25519 public key")]
    NotOnCurve,
}

/// Why an approval's signature does not make it count for a flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureProblem {
    #[error("it is not signed, and flag {flag:?} requires a signature by one of: {known}")]
    Unsigned { flag: String, known: String },
    #[error("it is signed with key {key:?}, which is not one of flag {flag:?}'s keys ({known})")]
    UnknownKey { flag: String, key: String, known: String },
    #[error("its signature is not base64 of a 64-byte Ed25519 signature")]
    Malformed,
    #[error(
        "its signature by key {key:?} does not match its content (changed after signing, or signed under another name)"
    )]
    Mismatch { key: String },
}

impl SignatureProblem {
    /// The validator's diagnostic code for it.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureProblem::Unsigned { .. } => "approval-unsigned",
            SignatureProblem::UnknownKey { .. } => "unknown-signing-key",
            SignatureProblem::Malformed | SignatureProblem::Mismatch { .. } => "bad-signature",
        }
    }

    /// The field it is about, under the approval's `spec`.
    pub fn path(&self) -> &'static str {
        match self {
            SignatureProblem::Unsigned { .. } => "spec",
            SignatureProblem::UnknownKey { .. } => "spec.signature.key",
            SignatureProblem::Malformed | SignatureProblem::Mismatch { .. } => "spec.signature.value",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            SignatureProblem::Unsigned { .. } => {
                "sign it with one of those keys: meridian approval sign --key FILE APPROVAL.yaml".into()
            }
            SignatureProblem::UnknownKey { known, .. } => {
                format!("sign it with one of the keys the plan lists ({known}), or add this key to the plan")
            }
            SignatureProblem::Malformed | SignatureProblem::Mismatch { .. } => {
                "a signature covers name, flag, grantedBy, reference, grantedAt, expires and scope; \
                 sign the approval again as it is now: meridian approval sign --key FILE APPROVAL.yaml"
                    .into()
            }
        }
    }
}

impl PublicKey {
    /// `ed25519:BASE64`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes = decode_32(text.trim(), PUBLIC_KEY_PREFIX)?;
        VerifyingKey::from_bytes(&bytes).map(PublicKey).map_err(|_| KeyError::NotOnCurve)
    }

    pub fn to_text(&self) -> String {
        format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl SecretKey {
    /// The key of a 32-byte seed (from a good random source: the CLI's `keygen`).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// `ed25519-secret:BASE64`, as `to_text` writes it.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        decode_32(text.trim(), SECRET_KEY_PREFIX).map(Self::from_seed)
    }

    pub fn to_text(&self) -> String {
        format!("{SECRET_KEY_PREFIX}{}", STANDARD.encode(self.0.to_bytes()))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public_key())
    }
}

fn decode_32(text: &str, prefix: &'static str) -> Result<[u8; 32], KeyError> {
    let body = text.strip_prefix(prefix).ok_or(KeyError::Prefix(prefix))?;
    let bytes = STANDARD.decode(body).map_err(|_| KeyError::Base64)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length(bytes.len()))
}

/// The signature in an approval's `signature.value`, if it is one.
pub fn decode_signature(value: &str) -> Option<Signature> {
    let bytes = STANDARD.decode(value.trim()).ok()?;
    Signature::from_slice(&bytes).ok()
}

/// What a signature covers: the approval's meaning, serialized one way only. A compact JSON
/// object with its keys in this order, absent values as `null`, times in UTC as RFC 3339 with
/// a `Z` (fractions only where there are some), each scope list sorted and without repeats:
///
/// ```text
/// {"v":"meridian.dev/v1alpha1 Approval signature v1","name":"jp-regulator-2026-05",
///  "flag":"jp-regulator","grantedBy":"Ministry liaison office","reference":"letter 17",
///  "grantedAt":"2026-05-28T00:00:00Z","expires":null,
///  "scope":{"plans":["network-restoration"],"regions":["jp"],"services":[]}}
/// ```
///
/// (one line). The name is in it, so a signed approval replayed under another name does not
/// verify; a revocation and the signature itself are not.
pub fn canonical_content(a: &ApprovalRecord) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Canonical<'a> {
        v: &'static str,
        name: &'a str,
        flag: &'a str,
        granted_by: &'a str,
        reference: Option<&'a str>,
        granted_at: Option<String>,
        expires: Option<String>,
        scope: Scope,
    }
    #[derive(Serialize)]
    struct Scope {
        plans: Vec<String>,
        regions: Vec<String>,
        services: Vec<String>,
    }
    fn set(list: &[String]) -> Vec<String> {
        let mut list = list.to_vec();
        list.sort();
        list.dedup();
        list
    }
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    let canonical = Canonical {
        v: CANONICAL_VERSION,
        name: &a.name,
        flag: &a.flag,
        granted_by: &a.granted_by,
        reference: a.reference.as_deref(),
        granted_at: time(a.granted_at),
        expires: time(a.expires),
        scope: Scope { plans: set(&a.scope.plans), regions: set(&a.scope.regions), services: set(&a.scope.services) },
    };
    // Serializing strings, options and lists of strings into a String cannot fail.
    serde_json::to_string(&canonical).unwrap_or_default()
}

/// Sign `a`'s canonical content with `key`, known to plans as `key_name`.
pub fn sign(a: &ApprovalRecord, key_name: &str, key: &SecretKey) -> ApprovalSignature {
    let signature = key.0.sign(canonical_content(a).as_bytes());
    ApprovalSignature { key: key_name.to_string(), value: STANDARD.encode(signature.to_bytes()) }
}

/// The signer among `signers` whose valid signature `a` carries.
pub fn verify<'s>(a: &ApprovalRecord, signers: &'s [Signer]) -> Result<&'s Signer, SignatureProblem> {
    let known = || signers.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
    let Some(signature) = &a.signature else {
        return Err(SignatureProblem::Unsigned { flag: a.flag.clone(), known: known() });
    };
    let Some(signer) = signers.iter().find(|s| s.name == signature.key) else {
        return Err(SignatureProblem::UnknownKey { flag: a.flag.clone(), key: signature.key.clone(), known: known() });
    };
    let value = decode_signature(&signature.value).ok_or(SignatureProblem::Malformed)?;
    signer
        .key
        .0
        .verify_strict(canonical_content(a).as_bytes(), &value)
        .map(|()| signer)
        .map_err(|_| SignatureProblem::Mismatch { key: signature.key.clone() })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::approval::ApprovalScopeSet;

    /// A real key from a fixed seed (the CLI draws seeds from the OS).
    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed([seed; 32])
    }

    fn approval() -> ApprovalRecord {
        ApprovalRecord {
            name: "jp-regulator-2026-05".into(),
            flag: "jp-regulator".into(),
            granted_by: "Ministry liaison office".into(),
            reference: Some("letter 17".into()),
            granted_at: Some(Utc.with_ymd_and_hms(2026, 5, 28, 0, 0, 0).unwrap()),
            expires: None,
            scope: ApprovalScopeSet {
                plans: vec!["network-restoration".into()],
                regions: vec!["jp".into()],
                services: vec![],
                confined_to_plans: None,
            },
            revoked: None,
            signature: None,
        }
    }

    fn signers() -> Vec<Signer> {
        vec![Signer { name: "liaison".into(), key: key(1).public_key() }]
    }

    #[test]
    fn canonical_content_is_the_documented_line() {
        assert_eq!(
            canonical_content(&approval()),
            r#"{"v":"meridian.dev/v1alpha1 Approval signature v1","name":"jp-regulator-2026-05","flag":"jp-regulator","grantedBy":"Ministry liaison office","reference":"letter 17","grantedAt":"2026-05-28T00:00:00Z","expires":null,"scope":{"plans":["network-restoration"],"regions":["jp"],"services":[]}}"#
        );
    }

    #[test]
    fn canonical_content_ignores_scope_order_repeats_revocation_and_signature() {
        let a = approval();
        let mut b = approval();
        b.scope.regions = vec!["jp".into(), "jp".into()];
        b.revoked = Some(crate::approval::RevokedInfo {
            at: Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap(),
            by: "x".into(),
            reason: None,
        });
        b.signature = Some(sign(&a, "liaison", &key(1)));
        assert_eq!(canonical_content(&a), canonical_content(&b));
    }

    #[test]
    fn a_signature_verifies_with_its_key() {
        let mut a = approval();
        a.signature = Some(sign(&a, "liaison", &key(1)));
        assert_eq!(verify(&a, &signers()).map(|s| s.name.as_str()), Ok("liaison"));
    }

    #[test]
    fn altered_content_does_not_verify() {
        let mut a = approval();
        a.signature = Some(sign(&a, "liaison", &key(1)));
        a.scope.regions.push("kr".into());
        assert_eq!(verify(&a, &signers()), Err(SignatureProblem::Mismatch { key: "liaison".into() }));
    }

    #[test]
    fn a_replay_under_another_name_does_not_verify() {
        let mut a = approval();
        a.signature = Some(sign(&a, "liaison", &key(1)));
        let replay = ApprovalRecord { name: "jp-regulator-2026-06".into(), ..a };
        assert!(matches!(verify(&replay, &signers()), Err(SignatureProblem::Mismatch { .. })));
    }

    #[test]
    fn unknown_keys_other_keys_and_unsigned_approvals_do_not_verify() {
        let mut a = approval();
        assert!(matches!(verify(&a, &signers()), Err(SignatureProblem::Unsigned { .. })));
        a.signature = Some(sign(&a, "someone", &key(2)));
        let err = verify(&a, &signers()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"it is signed with key "someone", which is not one of flag "jp-regulator"'s keys (liaison)"#
        );
        // Claiming a trusted key's name does not help a signature made with another key.
        a.signature = Some(sign(&a, "liaison", &key(2)));
        assert!(matches!(verify(&a, &signers()), Err(SignatureProblem::Mismatch { .. })));
        a.signature = Some(ApprovalSignature { key: "liaison".into(), value: "bm90IGEgc2lnbmF0dXJl".into() });
        assert_eq!(verify(&a, &signers()), Err(SignatureProblem::Malformed));
    }

    #[test]
    fn keys_round_trip_through_their_text_forms() {
        let secret = key(7);
        let again = SecretKey::parse(&secret.to_text()).unwrap();
        assert_eq!(again.public_key(), secret.public_key());
        assert_eq!(PublicKey::parse(&secret.public_key().to_text()).unwrap(), secret.public_key());
        assert_eq!(PublicKey::parse("ed25519:AAAA"), Err(KeyError::Length(3)));
        assert_eq!(PublicKey::parse("rsa:AAAA"), Err(KeyError::Prefix(PUBLIC_KEY_PREFIX)));
        assert_eq!(PublicKey::parse("ed25519:!!"), Err(KeyError::Base64));
        assert!(!format!("{secret:?}").contains(&secret.to_text()), "Debug never shows the secret");
    }

    proptest! {
        /// Any change to any covered field breaks the signature; the unchanged approval verifies.
        #[test]
        fn any_covered_change_breaks_the_signature(field in 0usize..7, text in "[a-z0-9 ]{1,12}", hours in 1i64..10_000) {
            let mut a = approval();
            a.signature = Some(sign(&a, "liaison", &key(1)));
            prop_assert!(verify(&a, &signers()).is_ok());
            let shift = chrono::TimeDelta::hours(hours);
            match field {
                0 => a.name.push_str(&text),
                1 => a.flag.push_str(&text),
                2 => a.granted_by.push_str(&text),
                3 => a.reference = Some(format!("letter 17{text}")),
                4 => a.granted_at = a.granted_at.map(|t| t + shift),
                5 => a.expires = Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap() + shift),
                _ => a.scope.services.push(text),
            }
            prop_assert!(verify(&a, &signers()).is_err());
        }
    }
}
