//! The disk as a service sees it: whole-file reads, appends, fsync and atomic replacement.
//!
//! Owns the `Storage` trait and `TokioStorage`, its implementation over `tokio::fs` under a root
//! directory for real runs. It does not own any file format (each service encodes its own state)
//! or the simulated disk with its faults (that is in `sim`).
//!
//! Crash semantics are POSIX's: bytes written by `append` may be lost by a crash until `sync`
//! returns; `replace` is atomic and durable when it returns (write a temporary file, fsync it,
//! rename it over the old one, fsync the directory). A service that must not lose a decision
//! writes it with `replace` (or `append` + `sync`) before it acts on it.
//!
//! `TokioStorage` uses `tokio::fs`, which runs blocking calls on tokio's blocking pool: fine for
//! real runs, never reached by the simulation (which uses its own `Storage`).

use std::future::Future;
use std::io;
use std::path::{Component, Path, PathBuf};

use tokio::io::AsyncWriteExt;

/// Longest accepted relative path, in bytes: a limit, like every other input.
pub const PATH_LENGTH_MAX: usize = 255;

/// Durable bytes addressed by relative paths such as `"motion/state"`.
pub trait Storage: Clone + 'static {
    /// The whole file, or `None` if it does not exist.
    fn read(&self, path: &str) -> impl Future<Output = io::Result<Option<Vec<u8>>>>;

    /// Appends `bytes`, creating the file if needed. Not durable until `sync`.
    fn append(&self, path: &str, bytes: &[u8]) -> impl Future<Output = io::Result<()>>;

    /// Makes every byte appended so far durable (fsync).
    fn sync(&self, path: &str) -> impl Future<Output = io::Result<()>>;

    /// Replaces the whole file with `bytes`, atomically and durably: after a crash the file
    /// holds either the old or the new contents, and the new once this returns `Ok`.
    fn replace(&self, path: &str, bytes: &[u8]) -> impl Future<Output = io::Result<()>>;
}

/// `Storage` over `tokio::fs`, every path relative to `root`.
#[derive(Clone, Debug)]
pub struct TokioStorage {
    root: PathBuf,
}

impl TokioStorage {
    /// Storage rooted at `root` (created on first write if absent).
    pub fn new(root: impl Into<PathBuf>) -> TokioStorage {
        TokioStorage { root: root.into() }
    }

    /// The directory every path is relative to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps a relative path to a file under the root, refusing anything that could leave it.
    fn resolve(&self, path: &str) -> io::Result<PathBuf> {
        let invalid =
            |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{why}: {path:?}"));
        if path.is_empty() {
            return Err(invalid("empty storage path"));
        }
        if path.len() > PATH_LENGTH_MAX {
            return Err(invalid("storage path too long"));
        }
        let relative = Path::new(path);
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(invalid(
                "storage path must be relative, without `.` or `..`",
            ));
        }
        Ok(self.root.join(relative))
    }
}

/// Creates the parent directory of `file` if it is missing.
async fn ensure_parent(file: &Path) -> io::Result<()> {
    if let Some(parent) = file.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    Ok(())
}

/// fsyncs the directory holding `file`, so a create or rename in it survives a crash.
async fn sync_parent(file: &Path) -> io::Result<()> {
    if let Some(parent) = file.parent() {
        tokio::fs::File::open(parent).await?.sync_all().await?;
    }
    Ok(())
}

impl Storage for TokioStorage {
    async fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let file = self.resolve(path)?;
        match tokio::fs::read(&file).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn append(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let file = self.resolve(path)?;
        ensure_parent(&file).await?;
        let mut handle = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .await?;
        handle.write_all(bytes).await?;
        // tokio's File buffers in its blocking-pool task; flush hands the bytes to the OS.
        handle.flush().await
    }

    async fn sync(&self, path: &str) -> io::Result<()> {
        let file = self.resolve(path)?;
        // fsync through a fresh handle flushes the inode, whichever handle wrote the bytes; the
        // directory fsync makes a file created by `append` itself survive.
        tokio::fs::File::open(&file).await?.sync_all().await?;
        sync_parent(&file).await
    }

    async fn replace(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let file = self.resolve(path)?;
        ensure_parent(&file).await?;
        let mut temporary_name = file.clone().into_os_string();
        temporary_name.push(".tmp");
        let temporary = PathBuf::from(temporary_name);
        let mut handle = tokio::fs::File::create(&temporary).await?;
        handle.write_all(bytes).await?;
        handle.flush().await?;
        handle.sync_all().await?;
        drop(handle);
        tokio::fs::rename(&temporary, &file).await?;
        sync_parent(&file).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempRoot(PathBuf);

    impl TempRoot {
        fn new(test: &str) -> TempRoot {
            let path = std::env::temp_dir()
                .join(format!("servocell-storage-{test}-{}", std::process::id()));
            // A leftover from a killed earlier run with the same pid must not leak into this one.
            let _ = std::fs::remove_dir_all(&path);
            TempRoot(path)
        }
    }

    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn append_sync_replace_read_round_trip() {
        // Goal: TokioStorage keeps the trait's contract on a real disk. Method: read an absent
        // file, append twice and sync, replace, and read back after each step.
        let root = TempRoot::new("round-trip");
        let storage = TokioStorage::new(&root.0);

        assert_eq!(storage.read("motion/state").await.unwrap(), None);

        storage.append("motion/log", b"abc").await.unwrap();
        storage.append("motion/log", b"def").await.unwrap();
        storage.sync("motion/log").await.unwrap();
        assert_eq!(
            storage.read("motion/log").await.unwrap().as_deref(),
            Some(&b"abcdef"[..])
        );

        storage.replace("motion/state", b"first").await.unwrap();
        storage.replace("motion/state", b"second").await.unwrap();
        assert_eq!(
            storage.read("motion/state").await.unwrap().as_deref(),
            Some(&b"second"[..])
        );
        // The temporary file of the replace is gone: only the two real files remain.
        let mut names: Vec<String> = std::fs::read_dir(root.0.join("motion"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["log", "state"]);
    }

    #[tokio::test]
    async fn paths_that_escape_the_root_are_refused() {
        // Goal: a path can never reach outside the root. Method: try absolute, parent, empty and
        // over-long paths and expect InvalidInput without touching the disk.
        let root = TempRoot::new("escape");
        let storage = TokioStorage::new(&root.0);
        let too_long = "a".repeat(PATH_LENGTH_MAX + 1);
        for path in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./x",
            "",
            too_long.as_str(),
        ] {
            let error = storage.replace(path, b"x").await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "path {path:?}");
        }
        assert!(!root.0.exists(), "nothing may be created for refused paths");
    }

    #[tokio::test]
    async fn sync_of_a_missing_file_is_an_error() {
        // Goal: syncing what was never written is reported, not silently accepted. Method: sync
        // an absent path and expect NotFound.
        let root = TempRoot::new("missing");
        let storage = TokioStorage::new(&root.0);
        let error = storage.sync("never-written").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
