//! The services' `Transport` and `Storage` inside turmoil, with the disk faults the world injects.
//!
//! `TurmoilTransport` is turmoil's simulated TCP: the world's partitions, holds, latencies and
//! losses act on it. `TurmoilStorage` is turmoil's simulated file system (`unstable-fs`), which
//! loses unsynced writes when its host crashes; on top of it this module injects the disk faults
//! a scenario asks for ([`DiskFaults`]): I/O errors, corrupted reads, and a write cache that
//! drops what was not synced. It owns the per-host fault switches; the world flips them.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use services::storage::Storage;
use services::transport::{Listener, Transport};
use turmoil::fs::shim::std::fs as simfs;

/// `Transport` over turmoil's simulated TCP. Host names are turmoil host names.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilTransport;

impl Transport for TurmoilTransport {
    type Stream = turmoil::net::TcpStream;
    type Listener = TurmoilListener;

    async fn bind(&self, port: u16) -> io::Result<TurmoilListener> {
        let inner = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
        Ok(TurmoilListener { inner })
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<turmoil::net::TcpStream> {
        turmoil::net::TcpStream::connect((host, port)).await
    }
}

pub struct TurmoilListener {
    inner: turmoil::net::TcpListener,
}

impl std::fmt::Debug for TurmoilListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurmoilListener")
            .field("local_addr", &self.inner.local_addr().ok())
            .finish()
    }
}

impl Listener for TurmoilListener {
    type Stream = turmoil::net::TcpStream;

    async fn accept(&mut self) -> io::Result<turmoil::net::TcpStream> {
        let (stream, _peer) = self.inner.accept().await?;
        Ok(stream)
    }
}

/// The disk faults of one host, switched by the world on simulated time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiskFaults {
    pub io_error: bool,
    pub corruption: bool,
}

/// One host's disk: its fault switches and, per file, how many bytes are durable.
#[derive(Debug, Default)]
pub struct Disk {
    pub faults: DiskFaults,
    /// path → (length, synced length), for the files written through `append`.
    lengths: BTreeMap<String, (u64, u64)>,
    /// The write cache lost its unsynced bytes; applied at the host's next disk access
    /// (file operations need the host's context, which only the host's own code runs in).
    lost_writes_pending: bool,
    /// Files that lost bytes to the write cache: their next `sync` reports it, once, as Linux's
    /// fsync reports a writeback error (EIO) to the next caller.
    lost_paths: BTreeSet<String>,
    /// Counters for the report.
    pub io_errors: u64,
    pub corrupted_reads: u64,
}

impl Disk {
    /// The host crashed: turmoil dropped every unsynced write, so only synced bytes remain.
    pub fn on_crash(&mut self) {
        for (length, synced) in self.lengths.values_mut() {
            *length = *synced;
        }
        self.lost_writes_pending = false;
        self.lost_paths.clear();
    }

    /// The `disk-lost-writes` fault: every byte appended and not yet synced is gone.
    pub fn lose_unsynced_writes(&mut self) {
        self.lost_writes_pending = true;
    }
}

pub type SharedDisk = Rc<RefCell<Disk>>;

/// `Storage` over turmoil's simulated file system, under `/data` of the current host.
#[derive(Debug, Clone)]
pub struct TurmoilStorage {
    disk: SharedDisk,
}

const ROOT: &str = "/data";

impl TurmoilStorage {
    pub fn new(disk: SharedDisk) -> TurmoilStorage {
        TurmoilStorage { disk }
    }

    fn resolve(path: &str) -> io::Result<PathBuf> {
        if path.is_empty()
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad storage path {path:?}"),
            ));
        }
        Ok(Path::new(ROOT).join(path))
    }

    fn check_io(&self) -> io::Result<()> {
        self.apply_lost_writes()?;
        let mut disk = self.disk.borrow_mut();
        if disk.faults.io_error {
            disk.io_errors += 1;
            return Err(io::Error::other("injected disk I/O error"));
        }
        Ok(())
    }

    /// Creates the parent directories of `file` and makes their entries durable.
    fn ensure_parent(file: &Path) -> io::Result<()> {
        let mut dir = PathBuf::from("/");
        let Some(parent) = file.parent() else {
            return Ok(());
        };
        for component in parent.components().skip(1) {
            let child = dir.join(component);
            if !simfs::exists(&child) {
                simfs::create_dir(&child)?;
                simfs::sync_dir(&dir)?;
            }
            dir = child;
        }
        Ok(())
    }

    /// Truncates every file back to its synced length if the write cache was lost.
    fn apply_lost_writes(&self) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        if !std::mem::take(&mut disk.lost_writes_pending) {
            return Ok(());
        }
        let Disk {
            lengths,
            lost_paths,
            ..
        } = &mut *disk;
        for (path, (length, synced)) in lengths.iter_mut() {
            if *length > *synced {
                let file = simfs::OpenOptions::new()
                    .write(true)
                    .open(Self::resolve(path)?)?;
                file.set_len(*synced)?;
                file.sync_all()?;
                *length = *synced;
                lost_paths.insert(path.clone());
            }
        }
        Ok(())
    }
}

impl Storage for TurmoilStorage {
    async fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        self.check_io()?;
        let file = Self::resolve(path)?;
        if !simfs::exists(&file) {
            return Ok(None);
        }
        let mut bytes = simfs::read(&file)?;
        let mut disk = self.disk.borrow_mut();
        if disk.faults.corruption && !bytes.is_empty() {
            // Flip one bit in the middle: enough for any checksum to notice, deterministic.
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x10;
            disk.corrupted_reads += 1;
        }
        disk.lengths
            .entry(path.to_owned())
            .or_insert((bytes.len() as u64, bytes.len() as u64));
        Ok(Some(bytes))
    }

    async fn append(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.check_io()?;
        let file = Self::resolve(path)?;
        let created = !simfs::exists(&file);
        if created {
            Self::ensure_parent(&file)?;
        }
        let mut handle = simfs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)?;
        handle.write_all(bytes)?;
        if created {
            // The file is there after a crash only once its directory entry is synced.
            handle.sync_all()?;
            simfs::sync_dir(file.parent().expect("resolved paths have a parent"))?;
        }
        let mut disk = self.disk.borrow_mut();
        let entry = disk.lengths.entry(path.to_owned()).or_insert((0, 0));
        entry.0 += bytes.len() as u64;
        Ok(())
    }

    async fn sync(&self, path: &str) -> io::Result<()> {
        self.check_io()?;
        if self.disk.borrow_mut().lost_paths.remove(path) {
            return Err(io::Error::other(
                "injected: unsynced writes were lost (writeback error)",
            ));
        }
        let file = Self::resolve(path)?;
        simfs::OpenOptions::new()
            .write(true)
            .open(&file)?
            .sync_all()?;
        let mut disk = self.disk.borrow_mut();
        if let Some((length, synced)) = disk.lengths.get_mut(path) {
            *synced = *length;
        }
        Ok(())
    }

    async fn replace(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.check_io()?;
        let file = Self::resolve(path)?;
        Self::ensure_parent(&file)?;
        let temporary = file.with_extension("tmp");
        {
            let mut handle = simfs::File::create(&temporary)?;
            handle.write_all(bytes)?;
            handle.sync_all()?;
        }
        simfs::rename(&temporary, &file)?;
        simfs::sync_dir(file.parent().expect("resolved paths have a parent"))?;
        let mut disk = self.disk.borrow_mut();
        disk.lengths
            .insert(path.to_owned(), (bytes.len() as u64, bytes.len() as u64));
        Ok(())
    }
}
