//! Reading manifest files from the paths a user names: files as given, directories
//! recursively (`*.yaml`, `*.yml`), in a stable order so output is reproducible.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// (display name, text) for every manifest file under `paths`.
pub fn read_manifests(paths: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for path in paths {
        if !path.exists() {
            bail!("{}: no such file or directory", path.display());
        }
        collect(path, true, &mut files)?;
    }
    files.sort();
    files.dedup();
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let text = fs::read_to_string(&file).with_context(|| format!("failed to read {}", file.display()))?;
        out.push((file.display().to_string(), text));
    }
    Ok(out)
}

fn collect(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_dir() {
        let entries = fs::read_dir(path).with_context(|| format!("failed to list {}", path.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to list {}", path.display()))?;
            collect(&entry.path(), false, out)?;
        }
    } else if explicit || is_manifest(path) {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}
