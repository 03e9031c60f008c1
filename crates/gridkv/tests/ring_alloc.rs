//! Placing a key allocates nothing: `SharedRing::load`, `preference_list`,
//! `primary` and walking the replicas run without touching the heap.
//!
//! A separate test binary because it installs a counting global allocator.
//! Both the switch and the count are per thread, so the harness's threads
//! and the other test, running in parallel, cannot disturb a count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use gridkv::NodeId;
use gridkv::keyspace::key_hash;
use gridkv::ring::{Ring, SharedRing};

struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: an allocation during thread teardown must not panic.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter touches no memory the allocator hands out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe {
            count();
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe {
            count();
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            count();
            System.realloc(ptr, layout, new_size)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Allocations made by this thread while `f` runs.
fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn the_counter_sees_allocations() {
    let allocated = allocations_during(|| {
        std::hint::black_box(vec![1u8; 16]);
    });
    assert_eq!(allocated, 1);
}

#[test]
fn placing_keys_does_not_allocate() {
    let nodes = (1..=10).map(|i| NodeId::new(&format!("node-{i}")).unwrap());
    let shared = SharedRing::new(Ring::new(1, nodes).unwrap());
    let hashes: Vec<u64> = (0..100_000u32)
        .map(|i| key_hash(&i.to_le_bytes()))
        .collect();
    // arc-swap sets up a per-thread slot on a thread's first load.
    drop(shared.load());

    let mut checksum = 0u64;
    let allocated = allocations_during(|| {
        for &h in &hashes {
            let ring = shared.load();
            let replicas = ring.preference_list(h, 3);
            for node in replicas {
                checksum = checksum.wrapping_add(node.tag());
            }
            let primary = ring.primary(h).unwrap();
            assert!(replicas.contains(primary));
        }
    });
    std::hint::black_box(checksum);
    assert_eq!(allocated, 0, "allocations while placing 100k keys");
}
