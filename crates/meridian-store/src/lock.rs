//! The state dir's exclusive lock: one `meridian run` per state dir.
//!
//! An advisory `flock` on `<dir>/meridian.lock`, held for the `Store`'s lifetime and released
//! by the kernel when the process dies (even by SIGKILL), so a crash never leaves a stale
//! lock behind. The holder writes its pid into the file so that a refused second process
//! can say who holds it. The file is never deleted: deleting it would let two processes
//! lock two different inodes of the same name.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use fs4::{FileExt, TryLockError};

use crate::StoreError;

pub(crate) const LOCK_FILE: &str = "meridian.lock";

#[derive(Debug)]
pub(crate) struct StateDirLock {
    _file: File,
}

impl StateDirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(LOCK_FILE);
        let lock_err = |source| StoreError::LockFile { path: path.clone(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(lock_err)?;
        // Called through the trait: on newer toolchains `File` has an inherent `try_lock` too.
        match FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked { dir: dir.to_path_buf(), pid: holder_pid(&path) });
            }
            Err(TryLockError::Error(source)) => return Err(lock_err(source)),
        }
        file.set_len(0).map_err(lock_err)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_err)?;
        file.sync_all().map_err(lock_err)?;
        Ok(StateDirLock { _file: file })
    }
}

/// The pid the current holder wrote, if it has written one yet.
fn holder_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
