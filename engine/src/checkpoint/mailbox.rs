//! The lock-free handoff of checkpoint results from a shard's checkpoint writer to the
//! committer: a single slot holding the latest value, swapped atomically.
//!
//! The writer publishes a boxed value with one `swap`; a value the committer has not taken yet
//! is replaced (and dropped by the writer), because a newer checkpoint supersedes an older
//! one. The committer takes the value with one `swap` to null. Neither side ever waits for
//! the other and no mutex is involved.
//!
//! Invariant: every published box is freed exactly once: by the taker, by the publisher that
//! replaced it, or by `Drop`.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;

/// An atomic pointer cell: the standard one in production, loom's in the model test.
pub trait PtrCell<T>: Send + Sync {
    fn null() -> Self;
    fn swap_ptr(&self, ptr: *mut T, order: Ordering) -> *mut T;
}

impl<T> PtrCell<T> for std::sync::atomic::AtomicPtr<T> {
    fn null() -> Self {
        std::sync::atomic::AtomicPtr::new(std::ptr::null_mut())
    }
    fn swap_ptr(&self, ptr: *mut T, order: Ordering) -> *mut T {
        self.swap(ptr, order)
    }
}

/// The latest value published by one producer, taken by one consumer.
pub struct Mailbox<T: Send, C: PtrCell<T> = std::sync::atomic::AtomicPtr<T>> {
    cell: C,
    _value: PhantomData<Box<T>>,
}

// SAFETY: values move between threads only as owned boxes through the atomic cell.
unsafe impl<T: Send, C: PtrCell<T>> Sync for Mailbox<T, C> {}

impl<T: Send, C: PtrCell<T>> Default for Mailbox<T, C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send, C: PtrCell<T>> Mailbox<T, C> {
    pub fn new() -> Self {
        Mailbox {
            cell: C::null(),
            _value: PhantomData,
        }
    }

    /// Publishes `value`, replacing one not yet taken. Returns whether one was replaced.
    pub fn publish(&self, value: T) -> bool {
        let new = Box::into_raw(Box::new(value));
        // AcqRel: the consumer's Acquire sees the box's contents; our Acquire sees the old box's.
        let old = self.cell.swap_ptr(new, Ordering::AcqRel);
        if old.is_null() {
            return false;
        }
        // SAFETY: `old` came from Box::into_raw in a publish and was swapped out by us alone.
        drop(unsafe { Box::from_raw(old) });
        true
    }

    /// Takes the latest published value, if any.
    pub fn take(&self) -> Option<T> {
        let p = self.cell.swap_ptr(std::ptr::null_mut(), Ordering::AcqRel);
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` came from Box::into_raw in a publish and was swapped out by us alone.
        Some(*unsafe { Box::from_raw(p) })
    }
}

impl<T: Send, C: PtrCell<T>> Drop for Mailbox<T, C> {
    fn drop(&mut self) {
        let _ = self.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<T> PtrCell<T> for loom::sync::atomic::AtomicPtr<T> {
        fn null() -> Self {
            loom::sync::atomic::AtomicPtr::new(std::ptr::null_mut())
        }
        fn swap_ptr(&self, ptr: *mut T, order: Ordering) -> *mut T {
            self.swap(ptr, order)
        }
    }

    /// A value that counts its live instances, to catch double frees and leaks.
    struct Tracked {
        epoch: u64,
        payload: Vec<u64>,
        live: loom::sync::Arc<loom::sync::atomic::AtomicUsize>,
    }

    impl Tracked {
        fn new(epoch: u64, live: &loom::sync::Arc<loom::sync::atomic::AtomicUsize>) -> Self {
            live.fetch_add(1, Ordering::SeqCst);
            Tracked {
                epoch,
                payload: vec![epoch; 3],
                live: live.clone(),
            }
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.live.fetch_sub(1, Ordering::SeqCst);
        }
    }

    type LoomBox = Mailbox<Tracked, loom::sync::atomic::AtomicPtr<Tracked>>;

    /// Every interleaving of a writer publishing epochs 1..=3 and a committer taking twice:
    /// the committer sees strictly increasing epochs with intact payloads, the last epoch is
    /// never lost, and every value is freed exactly once.
    #[test]
    fn loom_every_interleaving_hands_over_the_latest_epoch() {
        loom::model(|| {
            let live = loom::sync::Arc::new(loom::sync::atomic::AtomicUsize::new(0));
            let mailbox = loom::sync::Arc::new(LoomBox::new());
            let writer = {
                let mailbox = mailbox.clone();
                let live = live.clone();
                loom::thread::spawn(move || {
                    for epoch in 1..=3 {
                        mailbox.publish(Tracked::new(epoch, &live));
                    }
                })
            };
            let mut seen = Vec::new();
            for _ in 0..2 {
                if let Some(v) = mailbox.take() {
                    assert_eq!(v.payload, vec![v.epoch; 3], "torn value");
                    seen.push(v.epoch);
                }
            }
            writer.join().expect("writer");
            if let Some(v) = mailbox.take() {
                seen.push(v.epoch);
            }
            assert!(
                seen.windows(2).all(|w| w[0] < w[1]),
                "epochs went back: {seen:?}"
            );
            assert_eq!(seen.last(), Some(&3), "the last epoch was lost: {seen:?}");
            assert_eq!(
                live.load(Ordering::SeqCst),
                0,
                "a value leaked or was freed twice"
            );
        });
    }

    #[test]
    fn std_mailbox_keeps_only_the_latest() {
        let m: Mailbox<u64> = Mailbox::new();
        assert_eq!(m.take(), None);
        assert!(!m.publish(1));
        assert!(m.publish(2), "an untaken value is replaced");
        assert_eq!(m.take(), Some(2));
        assert_eq!(m.take(), None);
        m.publish(3);
        drop(m); // frees the untaken value (checked by miri-like reasoning; no panic here)
    }

    #[test]
    fn threads_hand_over_thousands_of_epochs_in_order() {
        let m = std::sync::Arc::new(Mailbox::<u64>::new());
        let w = {
            let m = m.clone();
            std::thread::spawn(move || {
                for e in 1..=20_000u64 {
                    m.publish(e);
                }
            })
        };
        let mut last = 0;
        while last < 20_000 {
            if let Some(e) = m.take() {
                assert!(e > last, "epoch {e} after {last}");
                last = e;
            }
            if w.is_finished() && last < 20_000 {
                if let Some(e) = m.take() {
                    last = e;
                }
                assert_eq!(last, 20_000);
            }
        }
        w.join().expect("writer");
    }
}
