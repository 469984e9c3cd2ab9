//! openraft's own storage conformance suite (45 tests: vote, log reads, append, truncate,
//! purge, applied state, snapshot build and transfer) against celldb's fjall raft storage,
//! each on a fresh database directory.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use celldb::raft::{CellRaft, LogStore, StateMachine, open_storage};
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use std::sync::atomic::{AtomicU64, Ordering};

/// Every test gets its own directory; `transfer_snapshot` builds two stores at once.
struct FjallStores {
    next_id: AtomicU64,
    /// Without the in-memory tail of newest entries: every read decodes fjall's items
    /// (entries and groups).
    without_tail: bool,
}

impl StoreBuilder<CellRaft, LogStore, StateMachine, (tempfile::TempDir, celldb::Db)>
    for FjallStores
{
    async fn build(
        &self,
    ) -> Result<((tempfile::TempDir, celldb::Db), LogStore, StateMachine), StorageError<CellRaft>>
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = celldb::Db::open(dir.path()).expect("open celldb");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (log, sm) = open_storage(id, &db).expect("open raft storage");
        let log = if self.without_tail {
            log.without_tail()
        } else {
            log
        };
        Ok(((dir, db), log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_on_fjall() {
    suite(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_on_fjall_without_the_tail() {
    suite(true).await;
}

async fn suite(without_tail: bool) {
    let builder = FjallStores {
        next_id: AtomicU64::new(1),
        without_tail,
    };
    // The suite's append helper waits forever for a flush callback that never comes: a
    // timeout turns that bug into a failure.
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        Suite::test_all(builder),
    )
    .await
    .expect("the suite did not finish in 300 s (an append never reported flushed?)");
    result.expect("openraft's storage suite");
}
