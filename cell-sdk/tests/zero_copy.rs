//! Zero-copy arguments: a handler that borrows its argument as an archive (`&Archived<T>`)
//! reads a large request where the server received it — no allocation the size of the
//! argument happens on the server — while an owned argument costs one (the deserialized
//! value), which shows the counter sees such allocations. A counting global allocator watches
//! the server's thread only (its own binary, so it counts nothing else).

#![allow(clippy::unwrap_used, reason = "test: a panic is a failure")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use cell_sdk::{Archived, Endpoint, Membrane, MembraneConfig, handler, service, testkit};

/// Counts fresh allocations (not reallocations: a read buffer growing is not a copy) of about
/// `WATCH` bytes made on the thread that set `WATCH`.
struct Counting;

thread_local! {
    static WATCH: Cell<usize> = const { Cell::new(0) };
    static HITS: Cell<u64> = const { Cell::new(0) };
}

fn note(size: usize) {
    let watch = WATCH.with(Cell::get);
    if watch != 0 && (watch..watch + 4096).contains(&size) {
        HITS.with(|h| h.set(h.get() + 1));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[expect(
    unsafe_code,
    reason = "a counting global allocator: the only way to see a copy the test must not make"
)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SIZE: usize = 4 << 20;

#[service]
struct Docs;

#[handler]
impl Docs {
    /// Reads the archive in place.
    async fn borrowed(&self, doc: &Archived<Vec<u8>>) -> u64 {
        doc.iter().map(|b| u64::from(*b)).sum()
    }

    /// Borrows one argument of several; the others arrive owned.
    async fn mixed(&self, weight: u64, doc: &Archived<Vec<u8>>, label: String) -> u64 {
        weight * doc.iter().map(|b| u64::from(*b)).sum::<u64>() + label.len() as u64
    }

    /// Borrows two arguments of three.
    async fn pair(&self, a: &Archived<Vec<u8>>, b: &Archived<String>, c: u32) -> u64 {
        a.len() as u64 + b.len() as u64 + u64::from(c)
    }

    /// Receives a deserialized copy.
    async fn owned(&self, doc: Vec<u8>) -> u64 {
        doc.iter().map(|b| u64::from(*b)).sum()
    }

    /// Argument-sized allocations on the server's thread so far.
    async fn hits(&self) -> u64 {
        HITS.with(Cell::get)
    }
}

#[test]
fn a_borrowed_argument_is_never_copied_on_the_server() {
    let dir = testkit::temp_socket_dir().unwrap();
    let endpoint = Endpoint::unix(dir.path().join("docs.sock"));
    let config = MembraneConfig {
        max_frame_len: 2 * SIZE as u32,
        ..MembraneConfig::default()
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server_endpoint = endpoint.clone();
    std::thread::spawn(move || {
        // The archive of a `Vec<u8>` of SIZE bytes is SIZE bytes plus a small root.
        WATCH.with(|w| w.set(SIZE));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let membrane = Membrane::bind(server_endpoint, Docs, config).unwrap();
            ready_tx.send(()).unwrap();
            membrane.serve().await.unwrap();
        });
    });
    ready_rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let docs = DocsClient::connect_to(endpoint).await.unwrap();
        let doc = vec![1u8; SIZE];
        let before = docs.hits().await.unwrap();
        for _ in 0..3 {
            assert_eq!(docs.borrowed(doc.clone()).await.unwrap(), SIZE as u64);
        }
        let borrowed = docs.hits().await.unwrap() - before;
        assert_eq!(
            borrowed, 0,
            "the server allocated {borrowed} argument-sized buffers for 3 borrowed calls"
        );
        // Any argument may be borrowed, next to owned ones: still no copy of the large one.
        let before = docs.hits().await.unwrap();
        for _ in 0..3 {
            let sum = docs.mixed(2, doc.clone(), "abc".into()).await.unwrap();
            assert_eq!(sum, 2 * SIZE as u64 + 3);
            let len = docs.pair(doc.clone(), "xy".into(), 5).await.unwrap();
            assert_eq!(len, SIZE as u64 + 2 + 5);
        }
        let mixed = docs.hits().await.unwrap() - before;
        assert_eq!(
            mixed, 0,
            "the server allocated {mixed} argument-sized buffers for 6 calls borrowing one \
             argument of several"
        );
        let before = docs.hits().await.unwrap();
        assert_eq!(docs.owned(doc.clone()).await.unwrap(), SIZE as u64);
        let owned = docs.hits().await.unwrap() - before;
        assert!(owned >= 1, "the counter must see the owned argument's copy");
    });
}
