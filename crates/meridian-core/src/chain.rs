//! The tamper-evident audit chain: every record a store keeps for the record (audit records,
//! actuation intents and their results, approval events, controller events such as denials
//! and configuration reloads) is linked to the one before it by a SHA-256 hash.
//!
//! ```text
//!  entry n:  hash_n = SHA-256( "meridian-chain-v1" | hash_{n-1} | n | kind | reference | fields )
//!            (hash_0 = GENESIS; each field length-prefixed, absent fields marked apart from "")
//! ```
//!
//! A store appends one [`ChainEntry`] per record in the same transaction as the record, and
//! hashes the record's stored form (the very column values or JSON it keeps), so that editing
//! a record, deleting one, moving one or reordering two changes a hash that later entries
//! depend on. [`verify`] walks a chain and names the first entry that does not hold. The
//! head (`entries`, `hash`) is the anchor: kept elsewhere (printed into the evidence report,
//! exported by `meridian audit verify`), it makes truncation of the tail detectable too.
//!
//! Pure: stores and the CLI hand entries in; nothing here reads a file or a clock.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain separation: a chain hash is never a hash of anything else.
const DOMAIN: &[u8] = b"meridian-chain-v1";

/// One link of the chain as a store keeps it, with the record's content it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainEntry {
    /// Gapless, starting at 1.
    pub n: u64,
    /// What the record is: `audit`, `intent`, `intent-closed`, `approval`, `event`.
    pub kind: String,
    /// Where the record lives in its store (a row id, `PLAN#SEQ`).
    pub reference: String,
    /// The record's stored content, field by field; `None` when the store no longer has
    /// the record at all (it was deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<Option<String>>>,
    /// The hash the store recorded for this entry.
    pub hash: String,
}

/// The last entry of a chain: kept elsewhere, it anchors the chain against truncation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainHead {
    /// How many entries the chain has (the last entry's `n`; 0 for an empty chain).
    pub entries: u64,
    pub hash: String,
}

impl ChainHead {
    pub fn empty() -> Self {
        ChainHead { entries: 0, hash: GENESIS.to_string() }
    }
}

impl fmt::Display for ChainHead {
    /// `N:HASH`, the form `meridian audit verify --anchor` takes back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.entries, self.hash)
    }
}

impl std::str::FromStr for ChainHead {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, hash) = s.split_once(':').ok_or_else(|| format!("`{s}` is not N:HASH (as `audit verify` prints)"))?;
        let entries = n.trim().parse().map_err(|_| format!("`{n}` is not an entry count"))?;
        let hash = hash.trim().to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{hash}` is not a SHA-256 hash (64 hex digits)"));
        }
        Ok(ChainHead { entries, hash })
    }
}

/// The hash of entry `n` following `prev`.
pub fn link(prev: &str, n: u64, kind: &str, reference: &str, fields: &[Option<&str>]) -> String {
    let mut h = Sha256::new();
    let mut put = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    put(DOMAIN);
    put(prev.as_bytes());
    put(&n.to_be_bytes());
    put(kind.as_bytes());
    put(reference.as_bytes());
    for field in fields {
        match field {
            None => h.update([0u8]),
            Some(v) => {
                h.update([1u8]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v.as_bytes());
            }
        }
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One page of a chain as a store or the API hands it out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainPage {
    /// What the chain covers: `store` (every record of a standalone state dir) or
    /// `plan NAME` (one plan's records, in the Kubernetes mode).
    pub scope: String,
    /// Entries after the requested one, in order.
    pub entries: Vec<ChainEntry>,
    /// On the page that reaches the end of the chain: records no entry covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchained: Vec<ChainBreak>,
}

/// Why a chain does not hold, at its first bad entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "problem")]
pub enum ChainBreak {
    /// The record's content no longer hashes to what was recorded: it was edited, or
    /// another record was moved into its place.
    Altered { n: u64, kind: String, reference: String },
    /// The entry names a record the store no longer has.
    Missing { n: u64, kind: String, reference: String },
    /// Entry `n` is absent (the chain jumps from `n - 1` to `found`).
    Gap { n: u64, found: u64 },
    /// The chain is shorter than the anchor says it was: entries were cut off the tail.
    Truncated { entries: u64, anchor: u64 },
    /// The anchor's entry exists but has another hash: the chain was rewritten.
    AnchorMismatch { n: u64, expected: String, found: String },
    /// Records the store holds that no entry covers (inserted around the chain).
    Unchained { kind: String, references: Vec<String> },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainBreak::Altered { n, kind, reference } => write!(
                f,
                "entry {n} ({kind} {reference}) does not match its hash: the record was edited, or another was moved into its place"
            ),
            ChainBreak::Missing { n, kind, reference } => {
                write!(f, "entry {n} ({kind} {reference}) names a record that is gone: it was deleted")
            }
            ChainBreak::Gap { n, found } => {
                write!(f, "entry {n} is missing (the chain goes on at entry {found}): an entry was deleted")
            }
            ChainBreak::Truncated { entries, anchor } => write!(
                f,
                "the chain has {entries} entries but the anchor names entry {anchor}: entries were removed from its end"
            ),
            ChainBreak::AnchorMismatch { n, expected, found } => {
                write!(f, "entry {n} has hash {found}, the anchor says {expected}: the chain was rewritten")
            }
            ChainBreak::Unchained { kind, references } => write!(
                f,
                "{} {kind} record(s) are not in the chain (first: {}): they were inserted around it",
                references.len(),
                references.first().map(String::as_str).unwrap_or("?")
            ),
        }
    }
}

/// Walks a chain page by page (entries in order), keeping only the running head.
#[derive(Debug, Clone)]
pub struct Verifier {
    head: ChainHead,
    anchor: Option<ChainHead>,
    anchor_seen: bool,
}

impl Verifier {
    /// `anchor`: a head recorded earlier; the chain must still contain it, unchanged.
    pub fn new(anchor: Option<ChainHead>) -> Self {
        Verifier { head: ChainHead::empty(), anchor, anchor_seen: false }
    }

    /// The next entry; the first break ends the walk (later entries prove nothing).
    pub fn push(&mut self, entry: &ChainEntry) -> Result<(), ChainBreak> {
        let n = self.head.entries + 1;
        if entry.n != n {
            return Err(ChainBreak::Gap { n, found: entry.n });
        }
        let Some(fields) = &entry.fields else {
            return Err(ChainBreak::Missing { n, kind: entry.kind.clone(), reference: entry.reference.clone() });
        };
        let fields: Vec<Option<&str>> = fields.iter().map(Option::as_deref).collect();
        let hash = link(&self.head.hash, n, &entry.kind, &entry.reference, &fields);
        if hash != entry.hash.to_ascii_lowercase() {
            return Err(ChainBreak::Altered { n, kind: entry.kind.clone(), reference: entry.reference.clone() });
        }
        if let Some(anchor) = &self.anchor
            && anchor.entries == n
        {
            if anchor.hash != hash {
                return Err(ChainBreak::AnchorMismatch { n, expected: anchor.hash.clone(), found: hash });
            }
            self.anchor_seen = true;
        }
        self.head = ChainHead { entries: n, hash };
        Ok(())
    }

    /// The chain's head once every entry was pushed.
    pub fn finish(self) -> Result<ChainHead, ChainBreak> {
        match &self.anchor {
            Some(anchor) if anchor.entries > 0 && !self.anchor_seen => {
                Err(ChainBreak::Truncated { entries: self.head.entries, anchor: anchor.entries })
            }
            _ => Ok(self.head),
        }
    }

    pub fn head(&self) -> &ChainHead {
        &self.head
    }
}

/// Verify a whole chain held in memory.
pub fn verify(entries: &[ChainEntry], anchor: Option<ChainHead>) -> Result<ChainHead, ChainBreak> {
    let mut v = Verifier::new(anchor);
    for e in entries {
        v.push(e)?;
    }
    v.finish()
}

/// Build the next entry of a chain whose head is `head` (what a store calls on append).
pub fn append(head: &ChainHead, kind: &str, reference: &str, fields: Vec<Option<String>>) -> ChainEntry {
    let n = head.entries + 1;
    let refs: Vec<Option<&str>> = fields.iter().map(Option::as_deref).collect();
    let hash = link(&head.hash, n, kind, reference, &refs);
    ChainEntry { n, kind: kind.to_string(), reference: reference.to_string(), fields: Some(fields), hash }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(records: &[&str]) -> Vec<ChainEntry> {
        let mut head = ChainHead::empty();
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let e = append(&head, "audit", &format!("p#{}", i + 1), vec![Some(r.to_string()), None]);
            head = ChainHead { entries: e.n, hash: e.hash.clone() };
            out.push(e);
        }
        out
    }

    #[test]
    fn an_untouched_chain_verifies_to_its_head() {
        let c = chain(&["a", "b", "c"]);
        let head = verify(&c, None).unwrap();
        assert_eq!(head, ChainHead { entries: 3, hash: c[2].hash.clone() });
        assert_eq!(verify(&[], None).unwrap(), ChainHead::empty());
    }

    #[test]
    fn an_edited_record_breaks_at_that_entry() {
        let mut c = chain(&["a", "b", "c"]);
        c[1].fields = Some(vec![Some("B".into()), None]);
        assert!(matches!(verify(&c, None), Err(ChainBreak::Altered { n: 2, .. })));
        // An absent field differs from an empty one.
        let mut c = chain(&["a", "b"]);
        c[1].fields = Some(vec![Some("b".into()), Some(String::new())]);
        assert!(matches!(verify(&c, None), Err(ChainBreak::Altered { n: 2, .. })));
    }

    #[test]
    fn a_deleted_record_or_entry_and_a_reordering_break_where_they_happen() {
        let mut c = chain(&["a", "b", "c"]);
        c[1].fields = None;
        assert!(matches!(verify(&c, None), Err(ChainBreak::Missing { n: 2, .. })));
        let mut c = chain(&["a", "b", "c"]);
        c.remove(1);
        assert_eq!(verify(&c, None), Err(ChainBreak::Gap { n: 2, found: 3 }));
        let mut c = chain(&["a", "b", "c"]);
        let (b, cc) = (c[1].fields.clone(), c[2].fields.clone());
        c[1].fields = cc;
        c[2].fields = b;
        assert!(matches!(verify(&c, None), Err(ChainBreak::Altered { n: 2, .. })));
    }

    #[test]
    fn an_anchor_detects_truncation_and_rewriting() {
        let c = chain(&["a", "b", "c"]);
        let anchor = verify(&c, None).unwrap();
        assert_eq!(verify(&c[..2], Some(anchor.clone())), Err(ChainBreak::Truncated { entries: 2, anchor: 3 }));
        let rewritten = chain(&["a", "b", "x"]);
        assert!(matches!(verify(&rewritten, Some(anchor.clone())), Err(ChainBreak::AnchorMismatch { n: 3, .. })));
        // A chain that grew past its anchor still holds.
        let longer = chain(&["a", "b", "c", "d"]);
        assert_eq!(verify(&longer, Some(anchor)).unwrap().entries, 4);
    }

    #[test]
    fn heads_print_and_parse_as_n_colon_hash() {
        let head = verify(&chain(&["a"]), None).unwrap();
        assert_eq!(head.to_string().parse::<ChainHead>().unwrap(), head);
        assert!("3".parse::<ChainHead>().is_err());
        assert!("3:abc".parse::<ChainHead>().is_err());
        assert!("x:".parse::<ChainHead>().is_err());
    }
}
