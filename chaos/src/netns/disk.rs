//! Full disks: each replica host's data directory (`<host>/data`) on a tmpfs of its
//! own, which the nemesis fills to the last byte and frees again. A tmpfs rather than
//! the machine's disk, so that a full one hurts nobody else; it changes nothing the
//! run checks, since a SIGKILL never tested fsync here anyway (the kernel keeps what a
//! killed process wrote).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab::ClientError;

use super::{err, run, run_quietly, Lab};

/// The file that fills a disk.
const BALLAST: &str = "ballast";

impl Lab {
    /// Mounts a tmpfs of `size_mb` MiB on the data directory of every order and
    /// catalog host; before their services first start.
    pub fn give_disks(&self, size_mb: u64) -> Result<(), ClientError> {
        for host in self.guide.hosts.keys() {
            if !(host.starts_with("order") || host.starts_with("catalog")) {
                continue;
            }
            let data = self.data_dir(host);
            std::fs::create_dir_all(&data).map_err(|e| err(format!("{}: {e}", data.display())))?;
            let size = format!("size={size_mb}m");
            run(
                "mount",
                &["-t", "tmpfs", "-o", &size, "tmpfs", &path(&data)],
            )?;
            self.disks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(data);
        }
        Ok(())
    }

    /// Fills `host`'s disk to the last byte.
    pub async fn fill_disk(&self, host: &str) -> Result<(), ClientError> {
        let ballast = self.data_dir(host).join(BALLAST);
        let filled = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::create(&ballast)?;
            let chunk = vec![0u8; 1 << 20];
            // Up to the error that says the disk is full.
            while file.write(&chunk)? > 0 {}
            Ok::<_, std::io::Error>(())
        });
        match filled.await {
            Ok(Err(e)) if e.raw_os_error() == Some(28) => Ok(()), // ENOSPC
            Ok(Err(e)) => Err(err(format!("cannot fill {host}'s disk: {e}"))),
            Ok(Ok(())) => Err(err(format!("{host}'s disk never filled"))),
            Err(e) => Err(err(format!("filling {host}'s disk: {e}"))),
        }
    }

    /// Frees `host`'s disk again. A replica whose storage failed has stopped by itself
    /// (it exits saying why); it is started again, as the README says to. Answers
    /// whether it had to be.
    pub async fn free_disk(&self, host: &str) -> Result<bool, ClientError> {
        let ballast = self.data_dir(host).join(BALLAST);
        std::fs::remove_file(&ballast).map_err(|e| err(format!("{}: {e}", ballast.display())))?;
        // Stopping takes a moment (its shutdown runs first); one that took no write
        // while the disk was full serves on.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.has_exited(host) {
                self.start(host).await?;
                return Ok(true);
            }
            if self.is_healthy(host).await {
                return Ok(false);
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "{host} neither stopped nor served after its disk was freed"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether `host`'s service has ended by itself.
    pub fn has_exited(&self, host: &str) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .get_mut(host)
            .is_none_or(|child| !matches!(child.try_wait(), Ok(None)))
    }

    fn data_dir(&self, host: &str) -> PathBuf {
        self.dir(host).join("data")
    }

    /// Unmounts the disks (lazily: a service that still runs keeps its files).
    pub(super) fn take_disks(&self) {
        let disks = std::mem::take(&mut *self.disks.lock().unwrap_or_else(|p| p.into_inner()));
        for disk in disks {
            run_quietly("umount", &["-l", &path(&disk)]);
        }
    }
}

/// Unmounts what an earlier run left mounted under `work` (one that was itself
/// killed), so that its directory can be wiped.
pub(super) fn unmount_stale(work: &Path) {
    let Ok(hosts) = std::fs::read_dir(work) else {
        return;
    };
    for host in hosts.filter_map(Result::ok) {
        let data = host.path().join("data");
        run_quietly("umount", &["-l", &path(&data)]);
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
