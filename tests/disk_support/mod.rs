//! A small real file system to fill: `mount -t tmpfs -o size=…` (root; CI runs as root),
//! unmounted when dropped. For the storage-fault tests (SPEC §9 Durability).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap().keep();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(ok.success(), "mount -t tmpfs needs root (CI runs as root)");
        Tmpfs(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Fill the file system to the last byte; returns the file to remove to free it.
    pub fn fill(&self) -> PathBuf {
        fill(&self.0)
    }
}

/// [`Tmpfs::fill`] for code that holds only the path (another thread).
pub fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("fill");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[0]).is_ok() {}
    let _ = f.sync_all();
    path
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}
