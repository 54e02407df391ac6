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
//! A service reads its durable state at start-up through [`read_durable`], which rides out a
//! disk that fails for a while (an I/O error is a fault that ends; a service that gave up on it
//! would stay down after the disk healed): it retries with backoff within [`ReadRetry`]'s named
//! limit. Only state that reads but does not decode (damage) keeps a service down, and that is
//! each service's own decision.
//!
//! `TokioStorage` uses `tokio::fs`, which runs blocking calls on tokio's blocking pool: fine for
//! real runs, never reached by the simulation (which uses its own `Storage`).

use std::future::Future;
use std::io;
use std::path::{Component, Path, PathBuf};

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::resilience::retry::exponential_backoff;

/// Longest accepted relative path, in bytes: a limit, like every other input.
pub const PATH_LENGTH_MAX: usize = 255;

/// Upper bound of `ReadRetry::attempts_max`.
pub const READ_ATTEMPTS_MAX_LIMIT: u32 = 100_000;

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

/// How a service retries reading its durable state while its disk fails: exponential backoff
/// without jitter (a service retrying its own disk contends with no one, so there is no herd to
/// spread and no random stream to spend), within `attempts_max` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRetry {
    /// Wait after the first failed read.
    pub backoff_initial: Duration,
    /// Longest wait between reads: how late, at most, a service starts after its disk healed.
    pub backoff_max: Duration,
    /// Reads, the first included, before the service gives up: 1..=`READ_ATTEMPTS_MAX_LIMIT`.
    pub attempts_max: u32,
}

impl Default for ReadRetry {
    /// 10 ms doubling up to 1 s, 600 reads: a service starts within a second of its disk
    /// healing, and gives up only on a disk that failed every read for about ten minutes (no
    /// longer a transient fault; no shipped storm's fault lasts more than seconds).
    fn default() -> ReadRetry {
        ReadRetry {
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            attempts_max: 600,
        }
    }
}

impl ReadRetry {
    /// Panics on numbers that cannot work: a retry is configuration, checked once.
    pub fn validate(&self) {
        assert!(
            (1..=READ_ATTEMPTS_MAX_LIMIT).contains(&self.attempts_max),
            "read attempts_max must be in 1..={READ_ATTEMPTS_MAX_LIMIT}, got {}",
            self.attempts_max
        );
        assert!(
            !self.backoff_initial.is_zero() && self.backoff_initial <= self.backoff_max,
            "read backoff_initial {:?} must be positive and at most backoff_max {:?}",
            self.backoff_initial,
            self.backoff_max
        );
    }

    /// The wait after failed read `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        exponential_backoff(self.backoff_initial, self.backoff_max, attempt)
    }
}

/// A service's durable state could not be read: the disk failed every read within the limit, or
/// failed in a way no retry mends (a path the storage refuses).
#[derive(Debug, thiserror::Error)]
#[error("{attempts} reads of `{path}` failed over {waited_ms} ms, the last with: {last}")]
pub struct ReadGaveUp {
    pub path: String,
    pub attempts: u32,
    /// Time spent waiting between the reads.
    pub waited_ms: u64,
    #[source]
    pub last: io::Error,
}

/// Reads `path` for `service`'s start-up, retrying a failing disk per `retry` (see the module
/// docs). Each failed read is traced `durable_read_failed` (service, attempt, error_kind,
/// retry_in_ms, absent on the last); a read that succeeds after failures is traced
/// `durable_read_recovered` (service, attempts). Errors of kind `InvalidInput` (a path the
/// storage refuses) are not retried: no healing disk mends them.
pub async fn read_durable<S: Storage>(
    storage: &S,
    path: &str,
    retry: ReadRetry,
    service: &'static str,
) -> Result<Option<Vec<u8>>, ReadGaveUp> {
    retry.validate();
    let mut waited = Duration::ZERO;
    let mut attempt = 1;
    loop {
        match storage.read(path).await {
            Ok(bytes) => {
                if attempt > 1 {
                    tracing::info!(
                        event = "durable_read_recovered",
                        service,
                        attempts = attempt
                    );
                }
                return Ok(bytes);
            }
            Err(error) => {
                let last =
                    attempt >= retry.attempts_max || error.kind() == io::ErrorKind::InvalidInput;
                if last {
                    tracing::warn!(
                        event = "durable_read_failed",
                        service,
                        attempt,
                        error_kind = ?error.kind(),
                    );
                    return Err(ReadGaveUp {
                        path: path.to_owned(),
                        attempts: attempt,
                        waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                        last: error,
                    });
                }
                let delay = retry.backoff(attempt);
                tracing::warn!(
                    event = "durable_read_failed",
                    service,
                    attempt,
                    error_kind = ?error.kind(),
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                );
                tokio::time::sleep(delay).await;
                waited += delay;
                attempt += 1;
            }
        }
    }
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
    async fn a_start_up_read_rides_out_a_disk_that_heals() {
        // Goal: a service reading its state while the disk fails gets the state once the disk
        // heals, not an error. Method: a disk failing from the start over a real file; heal it
        // after three failed reads; the read returns the file, with each failure and the
        // recovery traced.
        let root = TempRoot::new("read-heals");
        let real = TokioStorage::new(&root.0);
        real.replace("svc/state", b"state").await.unwrap();
        let disk = crate::testing::FailingDisk::failing(real);
        let (trace, _guard) = crate::testing::record_trace();
        let healer = async {
            while disk.failures() < 3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            disk.heal();
        };
        let (read, ()) = tokio::join!(
            read_durable(
                &disk,
                "svc/state",
                crate::testing::quick_read_retry(50),
                "svc"
            ),
            healer
        );
        assert_eq!(read.unwrap().as_deref(), Some(&b"state"[..]));
        let failed = trace.named("durable_read_failed");
        assert!(failed.len() >= 3, "{failed:?}");
        assert!(failed.iter().all(|e| e.field("retry_in_ms").is_some()));
        let recovered = trace.named("durable_read_recovered");
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].u64("attempts"), failed.len() as u64 + 1);
    }

    #[tokio::test]
    async fn a_start_up_read_gives_up_at_its_limit_and_says_so() {
        // Goal: the retry loop is bounded, and its error says how many reads failed and why.
        // Method: a disk that never heals, four attempts allowed.
        let root = TempRoot::new("read-gives-up");
        let disk = crate::testing::FailingDisk::failing(TokioStorage::new(&root.0));
        let error = read_durable(
            &disk,
            "svc/state",
            crate::testing::quick_read_retry(4),
            "svc",
        )
        .await
        .unwrap_err();
        assert_eq!(error.attempts, 4);
        assert_eq!(disk.failures(), 4);
        let text = error.to_string();
        assert!(
            text.contains("4 reads of `svc/state` failed") && text.contains("I/O error"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_refused_path_is_not_retried() {
        // Goal: an error no healing disk mends ends the loop at once. Method: an escaping path.
        let root = TempRoot::new("read-refused");
        let storage = TokioStorage::new(&root.0);
        let error = read_durable(&storage, "../x", ReadRetry::default(), "svc")
            .await
            .unwrap_err();
        assert_eq!(error.attempts, 1);
        assert_eq!(error.last.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn the_default_read_retry_starts_within_a_second_and_gives_up_after_about_ten_minutes() {
        // Goal: the default's documented numbers hold. Method: sum its waits.
        let retry = ReadRetry::default();
        retry.validate();
        assert_eq!(retry.backoff(1), Duration::from_millis(10));
        assert_eq!(retry.backoff(7), Duration::from_millis(640));
        assert_eq!(retry.backoff(8), Duration::from_secs(1));
        assert!((1..retry.attempts_max).all(|n| retry.backoff(n) <= Duration::from_secs(1)));
        let window: Duration = (1..retry.attempts_max).map(|n| retry.backoff(n)).sum();
        assert!(
            (Duration::from_secs(540)..=Duration::from_secs(660)).contains(&window),
            "{window:?}"
        );
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
