//! An append-only log kept in ConfigMaps: segments `PREFIX-000001`, `PREFIX-000002`, ... each
//! holding at most [`SEGMENT_RECORDS`] entries and about [`SEGMENT_BYTES`], so no object comes
//! near the API server's 1 MiB limit however long the log grows. Entries are keyed by an
//! increasing number; a segment's annotations say which keys it holds, so a reader lists the
//! segments' metadata and fetches only the ones it needs.
//!
//! The log is a tamper-evident chain (`meridian_core::chain`): beside entry `KEY` a segment
//! holds `KEY.sha256`, the hash linking it to the entry before, and each segment's
//! `meridian.dev/chain-head` annotation is the hash of its last entry, from which the next
//! segment continues. Entry `n` of the chain is the entry with key `n` (keys are gapless from 1).
//!
//! Appends are conditional writes (the segment's resourceVersion, or a create that fails if
//! another writer created it first) and idempotent: an entry whose key the log already holds
//! is not written again, so a writer that crashed after appending and before recording that
//! it did repeats nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use meridian_core::chain::{self, ChainEntry};

/// Entries per segment.
pub const SEGMENT_RECORDS: usize = 500;
/// Bytes of entries per segment before the next one starts (well under the 1 MiB limit).
pub const SEGMENT_BYTES: usize = 512 * 1024;

const FIRST: &str = "meridian.dev/first";
const LAST: &str = "meridian.dev/last";
const BYTES: &str = "meridian.dev/bytes";
const CHAIN_HEAD: &str = "meridian.dev/chain-head";
const LOG_LABEL: &str = "meridian.dev/log";

/// One log (a plan's audit trail, the controller's history).
#[derive(Clone)]
pub struct SegmentLog {
    api: Api<ConfigMap>,
    prefix: String,
    /// The value of the `meridian.dev/log` label its segments carry.
    label: String,
    /// The chain kind of its entries (`audit`, `event`).
    kind: &'static str,
}

#[derive(Debug, Clone)]
struct Segment {
    name: String,
    index: u64,
    first: u64,
    last: u64,
    count: usize,
    bytes: usize,
    /// The chain hash of its last entry.
    head: Option<String>,
}

impl SegmentLog {
    /// `prefix` is already a valid object name (see `super::object_name`); `kind` names its
    /// entries in the chain.
    pub fn new(api: Api<ConfigMap>, prefix: String, kind: &'static str) -> Self {
        let label = format!("{:016x}", super::record::intent_id(&prefix));
        SegmentLog { api, prefix, label, kind }
    }

    /// The chain reference of entry `key`.
    fn reference(&self, key: u64) -> String {
        format!("{}#{key}", self.prefix)
    }

    /// Put `entries` into `data` after the entry whose hash is `prev`, within the segment's
    /// limits; returns the last key written, the bytes now held and the new chain head.
    fn fill(
        &self,
        data: &mut BTreeMap<String, String>,
        mut bytes: usize,
        mut prev: String,
        pending: &[&(u64, String)],
    ) -> (u64, usize, String) {
        let mut last = 0;
        for (key, value) in pending {
            if data.len() / 2 >= SEGMENT_RECORDS || bytes >= SEGMENT_BYTES {
                break;
            }
            prev = chain::link(&prev, *key, self.kind, &self.reference(*key), &[Some(value)]);
            data.insert(entry_key(*key), value.clone());
            data.insert(hash_key(*key), prev.clone());
            bytes += value.len() + prev.len();
            last = *key;
        }
        (last, bytes, prev)
    }

    async fn segments(&self) -> Result<Vec<Segment>, kube::Error> {
        let lp = ListParams::default().labels(&format!("{LOG_LABEL}={}", self.label));
        let list = self.api.list_metadata(&lp).await?;
        let mut segments: Vec<Segment> = list
            .items
            .into_iter()
            .filter_map(|m| {
                let name = m.metadata.name?;
                let index = name.strip_prefix(&format!("{}-", self.prefix))?.parse().ok()?;
                let note =
                    |k: &str| m.metadata.annotations.as_ref().and_then(|a| a.get(k)).and_then(|v| v.parse().ok());
                Some(Segment {
                    index,
                    first: note(FIRST).unwrap_or(0),
                    last: note(LAST).unwrap_or(0),
                    count: 0,
                    bytes: note(BYTES).unwrap_or(0) as usize,
                    head: m.metadata.annotations.as_ref().and_then(|a| a.get(CHAIN_HEAD)).cloned(),
                    name,
                })
            })
            .collect();
        segments.sort_by_key(|s| s.index);
        for s in &mut segments {
            s.count = usize::try_from(if s.last >= s.first && s.last > 0 { s.last - s.first + 1 } else { 0 })
                .unwrap_or(usize::MAX);
        }
        Ok(segments)
    }

    /// The key of the last entry (0 when empty).
    pub async fn last_key(&self) -> Result<u64, kube::Error> {
        Ok(self.segments().await?.last().map_or(0, |s| s.last))
    }

    /// Append `entries` (increasing keys); those the log holds already are skipped.
    pub async fn append(&self, entries: &[(u64, String)]) -> Result<(), kube::Error> {
        loop {
            let segments = self.segments().await?;
            let last = segments.last().map_or(0, |s| s.last);
            let pending: Vec<&(u64, String)> = entries.iter().filter(|(k, _)| *k > last).collect();
            if pending.is_empty() {
                return Ok(());
            }
            self.write_some(segments.last(), &pending).await?;
        }
    }

    /// Append one entry under the next key; returns the key.
    pub async fn push(&self, value: &str) -> Result<u64, kube::Error> {
        loop {
            let segments = self.segments().await?;
            let key = segments.last().map_or(0, |s| s.last) + 1;
            let entry = (key, value.to_string());
            if self.write_some(segments.last(), &[&entry]).await? {
                return Ok(key);
            }
        }
    }

    /// Write a prefix of `pending` into the head segment, or into a new one when the head is
    /// full. False when another writer came first (the caller looks again).
    async fn write_some(&self, head: Option<&Segment>, pending: &[&(u64, String)]) -> Result<bool, kube::Error> {
        match head {
            Some(h) if h.count < SEGMENT_RECORDS && h.bytes < SEGMENT_BYTES => {
                let mut cm = self.api.get(&h.name).await?;
                let data = cm.data.get_or_insert_with(BTreeMap::new);
                if data.keys().any(|k| k.parse::<u64>().is_ok_and(|k| k > h.last)) {
                    return Ok(false); // it grew since it was listed: look again
                }
                let prev = h.head.clone().unwrap_or_else(|| chain::GENESIS.to_string());
                let (last, bytes, head) = self.fill(data, h.bytes, prev, pending);
                let first = if h.first == 0 { pending[0].0 } else { h.first };
                cm.metadata.annotations = Some(notes(first, last.max(h.last), bytes, &head));
                match self.api.replace(&h.name, &PostParams::default(), &cm).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            _ => {
                let index = head.map_or(1, |h| h.index + 1);
                let prev = head.and_then(|h| h.head.clone()).unwrap_or_else(|| chain::GENESIS.to_string());
                let mut data = BTreeMap::new();
                let (last, bytes, chain_head) = self.fill(&mut data, 0, prev, pending);
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("{}-{index:06}", self.prefix)),
                        labels: Some(BTreeMap::from([
                            (LOG_LABEL.to_string(), self.label.clone()),
                            ("app.kubernetes.io/managed-by".to_string(), "meridian".to_string()),
                        ])),
                        annotations: Some(notes(pending[0].0, last, bytes, &chain_head)),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                };
                match self.api.create(&PostParams::default(), &cm).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Chain entries with `n > after`, oldest first, at most `limit`, each with the entry's
    /// stored value (`None` when its value is gone but its hash is not).
    pub async fn chain(&self, after: u64, limit: usize) -> Result<Vec<ChainEntry>, kube::Error> {
        let mut out = Vec::new();
        for segment in self.segments().await?.into_iter().filter(|s| s.last > after) {
            if out.len() >= limit {
                break;
            }
            let data = self.api.get(&segment.name).await?.data.unwrap_or_default();
            let mut keys: Vec<u64> =
                data.keys().filter_map(|k| k.strip_suffix(".sha256").unwrap_or(k).parse().ok()).collect();
            keys.dedup();
            for key in keys.into_iter().filter(|k| *k > after) {
                if out.len() >= limit {
                    break;
                }
                out.push(ChainEntry {
                    n: key,
                    kind: self.kind.to_string(),
                    reference: self.reference(key),
                    fields: data.get(&entry_key(key)).map(|v| vec![Some(v.clone())]),
                    hash: data.get(&hash_key(key)).cloned().unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    /// Entries with key > `after`, oldest first, at most `limit`.
    pub async fn read(&self, after: u64, limit: usize) -> Result<Vec<(u64, String)>, kube::Error> {
        let mut out = Vec::new();
        for segment in self.segments().await?.into_iter().filter(|s| s.last > after) {
            if out.len() >= limit {
                break;
            }
            let cm = self.api.get(&segment.name).await?;
            for (key, value) in cm.data.unwrap_or_default() {
                let Ok(key) = key.parse::<u64>() else { continue };
                if key > after && out.len() < limit {
                    out.push((key, value));
                }
            }
        }
        Ok(out)
    }
}

fn entry_key(key: u64) -> String {
    format!("{key:012}")
}

fn hash_key(key: u64) -> String {
    format!("{key:012}.sha256")
}

fn notes(first: u64, last: u64, bytes: usize, chain_head: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (FIRST.to_string(), first.to_string()),
        (LAST.to_string(), last.to_string()),
        (BYTES.to_string(), bytes.to_string()),
        (CHAIN_HEAD.to_string(), chain_head.to_string()),
    ])
}
