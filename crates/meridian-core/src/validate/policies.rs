//! A plan's `approvalPolicies`: per flag, how many distinct grantors and which signing keys.
//!
//! Owns the policy as written (flags, counts, key text). Whether an approval satisfies a
//! policy is `approval::Judged`'s; whether an approval file is refused for its signature is
//! `approvals`'s, against the policies resolved here.

use std::collections::{HashMap, HashSet};

use super::PlanChecker;
use crate::diagnostics::did_you_mean;
use crate::manifest::ApprovalPolicySpec;
use crate::plan::ApprovalPolicy;
use crate::signing::{PublicKey, Signer};

impl PlanChecker<'_, '_> {
    /// `required` is every flag a region or wave of the plan lists.
    pub(super) fn approval_policies(
        &mut self,
        specs: &[ApprovalPolicySpec],
        required: &HashSet<&str>,
    ) -> Vec<ApprovalPolicy> {
        let mut policies = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            let at = format!("spec.approvalPolicies[{i}]");
            let flag = spec.flag.trim();
            if flag.is_empty() {
                self.error(
                    &format!("{at}.flag"),
                    "empty-flag",
                    "approval policy flag is empty".into(),
                    Some("name a flag a region or wave lists under approvals, e.g. jp-regulator".into()),
                );
            } else if let Some(first) = seen.get(flag) {
                let line = self.line_of(&format!("spec.approvalPolicies[{first}].flag"));
                self.error(
                    &format!("{at}.flag"),
                    "duplicate-policy",
                    format!("flag {flag:?} has two approval policies"),
                    Some(format!("the first is on line {line}; merge them into one")),
                );
            } else {
                seen.insert(flag, i);
                if !required.contains(flag) {
                    self.warn(
                        &format!("{at}.flag"),
                        "unused-policy",
                        format!("no region or wave requires flag {flag:?}; this policy applies to nothing"),
                        did_you_mean(flag, required.iter().copied())
                            .or_else(|| Some("list the flag under a region's or wave's approvals".into())),
                    );
                }
            }
            let signers = self.signers(&at, spec);
            let requires = match spec.requires {
                None => 1,
                Some(n) if n < 1 => {
                    self.error(
                        &format!("{at}.requires"),
                        "invalid-requires",
                        format!("requires is {n}; it must be at least 1"),
                        Some("1 (the default) is one approval; 2 is the two-person rule".into()),
                    );
                    1
                }
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            };
            if !signers.is_empty() && requires > signers.len() {
                self.error(
                    &format!("{at}.requires"),
                    "requires-more-than-keys",
                    format!(
                        "requires {requires} distinct grantors but signedBy lists {} key{}",
                        signers.len(),
                        if signers.len() == 1 { "" } else { "s" }
                    ),
                    Some("grantors of a signed flag are told apart by key: list a key per grantor".into()),
                );
            }
            policies.push(ApprovalPolicy { flag: flag.to_string(), requires, signers });
        }
        policies
    }

    fn signers(&mut self, at: &str, spec: &ApprovalPolicySpec) -> Vec<Signer> {
        let mut signers: Vec<Signer> = Vec::new();
        for (j, s) in spec.signed_by.iter().enumerate() {
            let path = format!("{at}.signedBy[{j}]");
            let name = s.name.trim();
            if name.is_empty() {
                self.error(
                    &format!("{path}.name"),
                    "empty-name",
                    "signing key name is empty".into(),
                    Some("name the key as approvals will refer to it, e.g. liaison".into()),
                );
                continue;
            }
            if signers.iter().any(|k| k.name == name) {
                self.error(
                    &format!("{path}.name"),
                    "duplicate-name",
                    format!("signing key {name:?} is listed twice"),
                    Some("give each key its own name".into()),
                );
                continue;
            }
            let key = match PublicKey::parse(&s.public_key) {
                Ok(key) => key,
                Err(e) => {
                    self.error(
                        &format!("{path}.publicKey"),
                        "invalid-public-key",
                        format!("public key of {name:?} {e}"),
                        Some(
                            "paste the publicKey that meridian approval keygen printed: ed25519: and 44 base64 characters"
                                .into(),
                        ),
                    );
                    continue;
                }
            };
            if let Some(other) = signers.iter().find(|k| k.key == key) {
                self.error(
                    &format!("{path}.publicKey"),
                    "duplicate-key",
                    format!("keys {:?} and {name:?} are the same key", other.name),
                    Some("one key is one grantor; give each person or body its own key".into()),
                );
                continue;
            }
            signers.push(Signer { name: name.to_string(), key });
        }
        signers
    }
}
