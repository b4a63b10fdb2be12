//! What the SQLite tests share: a fresh database file per test.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use evt_sqlite::SqliteProvider;

/// A new file name in `evt-sqlite-tests` in the temporary directory.
///
/// The tests cannot delete their files (a provider outlives the test body in the conformance
/// suite), so the first call of each test process deletes what earlier runs left there over an
/// hour ago.
pub fn fresh_path() -> PathBuf {
    static DIRECTORY: OnceLock<PathBuf> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let directory = DIRECTORY.get_or_init(|| {
        let directory = std::env::temp_dir().join("evt-sqlite-tests");
        std::fs::create_dir_all(&directory)
            .unwrap_or_else(|e| panic!("create {}: {e}", directory.display()));
        sweep(&directory, Duration::from_secs(3600));
        directory
    });
    directory.join(format!(
        "evt-test-{}-{}-{}.db",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros()
    ))
}

/// Deletes the test databases (and their `-wal` and `-shm` files) older than `age`.
fn sweep(directory: &Path, age: Duration) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if old && entry.file_name().to_string_lossy().starts_with("evt-test-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A migrated provider over a fresh file.
#[allow(dead_code)] // not every test file uses it
pub async fn fresh(limit: usize) -> SqliteProvider {
    let provider = SqliteProvider::open(fresh_path())
        .await
        .unwrap()
        .limit(limit);
    provider.migrate().await.unwrap();
    provider
}
