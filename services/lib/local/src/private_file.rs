//! Files that may hold secrets (passwords, keys): written fresh, readable by the owner only.

use std::io;
use std::path::{Path, PathBuf};

/// Writes `text` to `path`, readable by the owner only (it may hold passwords).
pub fn write_private(path: &Path, text: &str) -> io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // A new file (never one that exists, with whatever mode it has, nor a symlink's
    // target), renamed over `path`: a config left 0644 by hand, or a planted symlink, must
    // not receive fresh passwords (the outside probe read them from a 0644 leftover).
    let fresh = path.with_extension(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_file(&fresh);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&fresh)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&fresh, path)?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::write_private;

    /// An existing 0644 file, or a symlink, at the path gets replaced by a fresh 0600 file;
    /// the symlink's target is left alone.
    #[test]
    fn private_files_are_fresh_and_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nats-server.conf");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private(&path, "secret").expect("write_private");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "secret");

        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "theirs").expect("write");
        let link = dir.path().join("linked.conf");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        write_private(&link, "secret").expect("write_private");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "theirs");
        assert!(
            !std::fs::symlink_metadata(&link)
                .expect("meta")
                .file_type()
                .is_symlink()
        );
    }
}
