//! A process's scratch space in the temporary directory, and the clean-up of
//! what killed processes left there. Each process works in a folder of its
//! own, `<tmp>/<prefix>-XXXXXX/`, whose `.owner` file it holds locked
//! (`flock`) for its whole life; the kernel drops the lock when the process
//! dies, however it dies. At start a process removes every folder of its
//! kind whose lock it can take — those of processes killed with SIGKILL, an
//! OOM kill or a node restart, which never ran their destructors — and leaves
//! the live ones (other workers on the same host) alone.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// The lock file of a scratch folder; a folder without one is not judged.
const OWNER: &str = ".owner";

/// This process's scratch folder, removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    /// Held open (and locked) for the process's life.
    _owner: File,
}

/// What [`Scratch::open`] found of dead processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Folders removed, with the bytes they held.
    pub folders: usize,
    pub bytes: u64,
}

impl Scratch {
    /// A new scratch folder `<parent>/<prefix>-XXXXXX` (`parent`: the system's
    /// temporary directory by default), after removing those of dead
    /// processes with the same prefix.
    pub fn open(parent: Option<&Path>, prefix: &str) -> std::io::Result<(Scratch, Swept)> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let swept = sweep(&parent, prefix);
        let dir = tempfile::Builder::new().prefix(&format!("{prefix}-")).tempdir_in(&parent)?;
        // Locked under another name first, so that a sweeper never sees an
        // `.owner` that is not locked yet.
        let staging = dir.path().join(".owner.new");
        let owner = File::create(&staging)?;
        owner.try_lock().map_err(std::io::Error::other)?;
        fs::rename(&staging, dir.path().join(OWNER))?;
        Ok((Scratch { dir, _owner: owner }, swept))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A temporary folder for one piece of work, removed when dropped.
    pub fn tempdir(&self, prefix: &str) -> std::io::Result<tempfile::TempDir> {
        tempfile::Builder::new().prefix(prefix).tempdir_in(self.dir.path())
    }
}

/// Removes the folders `<parent>/<prefix>-*` whose owner is gone. Errors
/// (a folder another sweeper removed first, one not ours to remove) skip
/// that folder: a sweep never stops a process from starting.
fn sweep(parent: &Path, prefix: &str) -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = fs::read_dir(parent) else { return swept };
    let start = format!("{prefix}-");
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| n.starts_with(&start)) {
            continue;
        }
        let dir = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(owner) = File::open(dir.join(OWNER)) else { continue };
        if owner.try_lock().is_err() {
            continue; // a live process holds it
        }
        let bytes = size_of(&dir);
        if fs::remove_dir_all(&dir).is_ok() {
            tracing::info!(folder = %dir.display(), bytes, "removed the scratch folder of a process that died");
            swept.folders += 1;
            swept.bytes += bytes;
        }
    }
    swept
}

/// Bytes of the files under `dir` (symlinks not followed).
fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_processs_folder_is_removed_and_a_live_ones_kept() {
        let parent = tempfile::tempdir().expect("tempdir");
        let (live, swept) = Scratch::open(Some(parent.path()), "nb-test").expect("open");
        assert_eq!(swept, Swept::default());
        let job = live.tempdir("job-").expect("job folder");
        fs::write(job.path().join("scan.nii"), vec![0u8; 1000]).expect("write");
        // A process killed with SIGKILL: its folder and `.owner` stay, unlocked.
        let dead = parent.path().join("nb-test-dead01");
        fs::create_dir_all(dead.join("job-x")).expect("mkdir");
        fs::write(dead.join(OWNER), b"").expect("owner");
        fs::write(dead.join("job-x/mask.nii.gz"), vec![0u8; 4096]).expect("write");
        // Not ours: another prefix, and a folder without an owner file.
        fs::create_dir_all(parent.path().join("other-dead01")).expect("mkdir");
        fs::write(parent.path().join("other-dead01").join(OWNER), b"").expect("owner");
        fs::create_dir_all(parent.path().join("nb-test-noowner")).expect("mkdir");

        let (second, swept) = Scratch::open(Some(parent.path()), "nb-test").expect("open");
        assert_eq!(swept, Swept { folders: 1, bytes: 4096 });
        assert!(!dead.exists());
        assert!(live.path().exists() && job.path().join("scan.nii").exists(), "a live process's work is kept");
        assert!(parent.path().join("other-dead01").exists());
        assert!(parent.path().join("nb-test-noowner").exists());
        assert!(second.path().join(OWNER).exists());

        // Once a process is gone (here: its Scratch dropped without removing the folder), the next start removes it.
        let kept = live.path().to_path_buf();
        let Scratch { dir, _owner } = live;
        let _ = dir.keep();
        drop(_owner);
        drop(job);
        let (_third, swept) = Scratch::open(Some(parent.path()), "nb-test").expect("open");
        assert_eq!(swept.folders, 1);
        assert!(!kept.exists());
        assert!(second.path().exists());
    }
}
