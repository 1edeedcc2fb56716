//! The configuration in force: plans and file approvals read from the paths `meridian run`
//! was given, validated by the same code path as `meridian validate`.
//!
//! Owns loading and the all-or-nothing rule: an edit that validates is applied whole; one
//! that does not is reported and the last good configuration stays in force. It never
//! half-applies. Watching for changes is in `watch`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use meridian_core::approval::ApprovalRecord;
use meridian_core::diagnostics::Report;
use meridian_core::plan::Plan;
use meridian_core::source::decode;
use meridian_core::validate::{Bundle, load};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Increases by one with every applied edit.
    pub generation: u64,
    pub plans: Vec<Arc<Plan>>,
    /// Approvals found in the watched files (the API's live in the store).
    pub file_approvals: Vec<ApprovalRecord>,
    /// The file each of `file_approvals` is written in (canonical where it can be), by name.
    pub approval_files: std::collections::HashMap<String, PathBuf>,
    /// Warnings of the applied version.
    pub warnings: Report,
    pub loaded_at: DateTime<Utc>,
    /// Hash of the file names and contents, to tell a real change from a touch.
    pub fingerprint: u64,
}

/// Why a configuration could not be applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("configuration has {} errors; first: {}", .0.errors(), first_error(.0))]
    Invalid(Report),
    #[error("no RolloutPlan found in {0}")]
    NoPlans(String),
    /// Plans in flight that the edit would drop; each entry is one whole message.
    #[error("{}", .0.join("; "))]
    PlansVanished(Vec<String>),
}

impl ConfigError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::Invalid(_) => "invalid",
            ConfigError::NoPlans(_) => "no_plans",
            ConfigError::PlansVanished(_) => "plan_vanished",
        }
    }
}

fn first_error(report: &Report) -> String {
    report
        .diagnostics
        .iter()
        .find(|d| d.severity == meridian_core::Severity::Error)
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Plans in force with traffic in flight (`PlanState::units_in_flight`) that `next` no longer
/// defines, one message each: an edit that drops them is rejected whole, so a file emptied or
/// deleted by mistake never takes a live rollout out of control. A settled plan (complete,
/// aborted, or without traffic) may leave.
pub fn vanished_in_flight<'a>(
    in_force: impl IntoIterator<Item = (&'a str, &'a meridian_core::PlanState)>,
    next: &Config,
) -> Vec<String> {
    in_force
        .into_iter()
        .filter(|(name, _)| !next.plans.iter().any(|p| p.name == *name))
        .filter_map(|(name, state)| {
            let units = state.units_in_flight();
            (units > 0).then(|| {
                format!(
                    "plan {name:?} vanished from the files while {units} of its units serve traffic (phase {}); it \
                     stays in force; restore its file, or abort it (`meridian abort {name}`) or let it complete \
                     before removing it",
                    state.phase()
                )
            })
        })
        .collect()
}

/// Read and validate every manifest under `paths`. `previous` supplies the generation.
pub fn load_config(paths: &[PathBuf], previous: Option<&Config>, now: DateTime<Utc>) -> Result<Config, ConfigError> {
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
    let approval_files = bundle
        .documents
        .iter()
        .filter_map(|d| match &d.manifest {
            meridian_core::source::Manifest::Approval(a) => {
                let path = PathBuf::from(&d.file);
                Some((a.metadata.name.clone(), path.canonicalize().unwrap_or(path)))
            }
            _ => None,
        })
        .collect();
    Ok(Config {
        generation: previous.map_or(1, |p| p.generation + 1),
        plans: bundle.plans.into_iter().map(Arc::new).collect(),
        file_approvals: bundle.approvals,
        approval_files,
        warnings: bundle.report,
        loaded_at: now,
        fingerprint,
    })
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
mod vanished_tests {
    use super::*;
    use meridian_core::{PlanState, UnitPhase};

    fn mk_plan(name: &str) -> Plan {
        let text = format!(
            "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{name: {name}}}\nspec:\n  services: \
             [{{name: s}}]\n  regions: [{{name: a}}, {{name: b}}]\n  waves: [{{name: w, regions: [a, b]}}]\n  steps: \
             [50, 100]\n"
        );
        let bundle = load(&[(format!("{name}.yaml"), text)], None);
        assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
        bundle.plans.into_iter().next().unwrap()
    }

    fn mk_config(plans: &[&Plan]) -> Config {
        Config {
            generation: 2,
            plans: plans.iter().map(|p| Arc::new((*p).clone())).collect(),
            file_approvals: Vec::new(),
            approval_files: Default::default(),
            warnings: Report::default(),
            loaded_at: Utc::now(),
            fingerprint: 0,
        }
    }

    #[test]
    fn only_plans_with_traffic_in_flight_may_not_vanish() {
        let (keep, gone) = (mk_plan("keep"), mk_plan("gone"));
        let next = mk_config(&[&keep]);
        let fresh = PlanState::new(&gone);
        assert!(vanished_in_flight([("gone", &fresh)], &next).is_empty(), "no traffic yet: may leave");

        let mut flying = PlanState::new(&gone);
        flying.units[0].percent = 50;
        flying.units[0].phase = UnitPhase::Progressing;
        let messages = vanished_in_flight([("gone", &flying), ("keep", &PlanState::new(&keep))], &next);
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].starts_with("plan \"gone\" vanished from the files while 1 of its units serve traffic"));

        let mut aborted = flying.clone();
        aborted.aborted = true;
        assert!(vanished_in_flight([("gone", &aborted)], &next).is_empty(), "aborted: may leave");

        let mut complete = flying;
        for u in &mut complete.units {
            (u.percent, u.phase) = (100, UnitPhase::Enabled);
        }
        for w in &mut complete.waves {
            w.phase = meridian_core::WavePhase::Complete;
        }
        assert!(vanished_in_flight([("gone", &complete)], &next).is_empty(), "complete: may leave");
    }
}
