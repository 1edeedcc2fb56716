//! The file source of configuration: plans, regions and approvals read from the files and
//! directories `meridian run` was given, validated by the same code path as `meridian
//! validate`, and watched for changes (file events, with a poll as a safety net).
//!
//! Owns reading and fingerprinting files and the [`FileSource`] implementation of the core's
//! `ConfigSource` port. It must not decide what an edit does to a rollout: the runtime applies
//! a loaded configuration whole or not at all, by the port's rules.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian_core::diagnostics::Report;
use meridian_core::ports::BoxFuture;
pub use meridian_core::ports::config::{Config, ConfigError, ConfigSource, LastSeen, vanished_in_flight};
use meridian_core::source::decode;
use meridian_core::validate::{Bundle, load};
use tokio::sync::{Mutex, mpsc};

/// Read and validate every manifest under `paths`, as generation 1 (the runtime numbers the
/// generations it applies).
pub fn load_config(paths: &[PathBuf], now: DateTime<Utc>) -> Result<Config, ConfigError> {
    let sources = read_sources(paths)?;
    let fingerprint = fingerprint(&sources);
    let bundle = sources.load(Some(now));
    if bundle.report.has_errors() {
        return Err(ConfigError::Invalid(bundle.report));
    }
    if bundle.plans.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(ConfigError::NoPlans(names.join(", ")));
    }
    let approval_sources = bundle
        .documents
        .iter()
        .filter_map(|d| match &d.manifest {
            meridian_core::source::Manifest::Approval(a) => {
                let path = PathBuf::from(&d.file);
                let path = path.canonicalize().unwrap_or(path);
                Some((a.metadata.name.clone(), format!("file:{}", path.display())))
            }
            _ => None,
        })
        .collect();
    Ok(Config {
        generation: 1,
        plans: bundle.plans.into_iter().map(Arc::new).collect(),
        approvals: bundle.approvals,
        approval_sources,
        warnings: bundle.report,
        loaded_at: now,
        fingerprint,
    })
}

/// Plans and approvals from files and directories, watched.
pub struct FileSource {
    paths: Vec<PathBuf>,
    /// The paths, canonical where they can be: approvals stored from files under them are
    /// this source's.
    canonical: Vec<PathBuf>,
    poll: Duration,
    watch: Mutex<FileWatch>,
}

struct FileWatch {
    events: mpsc::UnboundedReceiver<()>,
    /// What the files were when last loaded or looked at.
    last_seen: LastSeen,
    /// Names, sizes and modification times of the files at the last poll: a poll that finds
    /// them unchanged reads nothing.
    polled: Option<u64>,
}

impl FileSource {
    /// Watch `paths`; `poll` is the safety net for missed file events.
    pub fn new(paths: Vec<PathBuf>, poll: Duration) -> Self {
        let canonical = paths.iter().map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).collect();
        let events = spawn_fs_watch(&paths);
        FileSource {
            paths,
            canonical,
            poll,
            watch: Mutex::new(FileWatch { events, last_seen: LastSeen::default(), polled: None }),
        }
    }
}

impl ConfigSource for FileSource {
    fn load(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<Config, ConfigError>> {
        Box::pin(async move {
            let paths = self.paths.clone();
            let loaded = tokio::task::spawn_blocking(move || load_config(&paths, now))
                .await
                .unwrap_or_else(|e| Err(ConfigError::Read { path: "config".into(), reason: e.to_string() }));
            self.watch.lock().await.last_seen.record(loaded.as_ref().map(|c| c.fingerprint).map_err(|e| e.to_string()));
            loaded
        })
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut watch = self.watch.lock().await;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(self.poll) => {
                        // The safety net: read the files only when a name, size or time changed.
                        let paths = self.paths.clone();
                        let stat = tokio::task::spawn_blocking(move || stat_signature(&paths)).await.ok().flatten();
                        if stat.is_some() && stat == watch.polled {
                            continue;
                        }
                        watch.polled = stat;
                    }
                    Some(()) = watch.events.recv() => {
                        // Let a burst of writes (an editor's save) settle.
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        while watch.events.try_recv().is_ok() {}
                    }
                }
                let paths = self.paths.clone();
                let seen = tokio::task::spawn_blocking(move || current_fingerprint(&paths).map_err(|e| e.to_string()))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                if watch.last_seen.record(seen) {
                    return;
                }
            }
        })
    }

    fn owns(&self, source: &str) -> bool {
        match source.strip_prefix("file:") {
            Some(path) => self.canonical.iter().any(|w| Path::new(path).starts_with(w)),
            // Stored before paths were kept: assume ours, as before.
            None => source == "file",
        }
    }

    fn describe(&self) -> String {
        "the watched paths".to_string()
    }
}

/// File events under `paths`, one `()` per event (coalesced by the reader).
fn spawn_fs_watch(paths: &[PathBuf]) -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    let paths = paths.to_vec();
    std::thread::Builder::new()
        .name("meridian-fs-watch".into())
        .spawn(move || {
            use notify::{RecursiveMode, Watcher};
            let sender = tx.clone();
            let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if res.is_ok_and(|event| is_change(&event.kind)) {
                    let _ = sender.send(());
                }
            });
            let Ok(mut watcher) = watcher else { return };
            for p in &paths {
                let _ = watcher.watch(p, RecursiveMode::Recursive);
            }
            // Keep the watcher alive for as long as someone listens.
            while !tx.is_closed() {
                std::thread::sleep(Duration::from_millis(500));
            }
        })
        .ok();
    rx
}

/// Does a file event say something may have changed? Opening and reading a file does not:
/// the watcher's own reads (and the poll's) must not wake it again, or a large configuration
/// is read over and over while nothing changes.
fn is_change(kind: &notify::EventKind) -> bool {
    !matches!(kind, notify::EventKind::Access(_))
}

/// A hash of the names, sizes and modification times of the files under `paths`; `None` when
/// one cannot be read (the full read then reports it).
fn stat_signature(paths: &[PathBuf]) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut names = Vec::new();
    for path in paths {
        collect(path, true, &mut names).ok()?;
    }
    names.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for name in names {
        let meta = fs::metadata(&name).ok()?;
        (name, meta.len(), meta.modified().ok()).hash(&mut h);
    }
    Some(h.finish())
}

/// The fingerprint of what is on disk now, to skip reloads when nothing changed.
pub fn current_fingerprint(paths: &[PathBuf]) -> Result<u64, ConfigError> {
    read_sources(paths).map(|sources| fingerprint(&sources))
}

fn fingerprint(sources: &Sources) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sources.files.hash(&mut h);
    // A file that is not UTF-8 counts by its error, which is all a load makes of it.
    sources.not_utf8.diagnostics.iter().for_each(|d| d.to_string().hash(&mut h));
    h.finish()
}

/// Every `*.yaml`/`*.yml` under `paths`, as [`read_sources`] found them.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// (name, text) of every file that is UTF-8, sorted by name.
    pub files: Vec<(String, String)>,
    /// One located error (at 1:1) per file that is not UTF-8: it is counted and reported,
    /// never parsed.
    pub not_utf8: Report,
}

impl Sources {
    /// How many files were read, UTF-8 or not.
    pub fn count(&self) -> usize {
        self.files.len() + self.not_utf8.diagnostics.len()
    }

    /// Validate the files, with the error of every file that is not UTF-8 in the report.
    pub fn load(&self, now: Option<DateTime<Utc>>) -> Bundle {
        let mut bundle = load(&self.files, now);
        if !self.not_utf8.diagnostics.is_empty() {
            bundle.report.extend(self.not_utf8.clone());
            bundle.report.sort();
        }
        bundle
    }
}

/// Read every `*.yaml`/`*.yml` under `paths` (and every file named explicitly), sorted. A
/// file that cannot be read is an error; one that is not UTF-8 is a diagnostic in
/// [`Sources::not_utf8`], so that it is reported, located, with the other problems.
pub fn read_sources(paths: &[PathBuf]) -> Result<Sources, ConfigError> {
    let mut names = Vec::new();
    for path in paths {
        collect(path, true, &mut names)?;
    }
    names.sort();
    names.dedup();
    let mut sources = Sources::default();
    for p in names {
        let name = p.display().to_string();
        let bytes = fs::read(&p).map_err(|e| ConfigError::Read { path: name.clone(), reason: io_reason(&e) })?;
        match decode(&name, bytes) {
            Ok(text) => sources.files.push((name, text)),
            Err(d) => sources.not_utf8.push(*d),
        }
    }
    Ok(sources)
}

fn collect(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> Result<(), ConfigError> {
    let err = |e: std::io::Error| ConfigError::Read { path: path.display().to_string(), reason: io_reason(&e) };
    let meta = fs::metadata(path).map_err(err)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(err)? {
            collect(&entry.map_err(err)?.path(), false, out)?;
        }
    } else if explicit || matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// An I/O error in words a user acts on, without the OS error number.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_a_file_is_no_change_writing_or_removing_one_is() {
        use notify::event::{AccessKind, CreateKind, ModifyKind, RemoveKind};
        assert!(!is_change(&notify::EventKind::Access(AccessKind::Any)));
        assert!(is_change(&notify::EventKind::Modify(ModifyKind::Any)));
        assert!(is_change(&notify::EventKind::Create(CreateKind::File)));
        assert!(is_change(&notify::EventKind::Remove(RemoveKind::File)));
    }

    #[test]
    fn the_stat_signature_changes_with_a_file_added_or_grown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "a").unwrap();
        let paths = vec![dir.path().to_path_buf()];
        let first = stat_signature(&paths).unwrap();
        assert_eq!(stat_signature(&paths), Some(first));
        std::fs::write(dir.path().join("a.yaml"), "ab").unwrap();
        let grown = stat_signature(&paths).unwrap();
        assert_ne!(grown, first);
        std::fs::write(dir.path().join("b.yaml"), "b").unwrap();
        assert_ne!(stat_signature(&paths), Some(grown));
    }
}
