//! Small stand-ins for the machine, for tests of the CPU model on its own: a text truth that
//! is a base image plus a store log (the machine's `TextMemory` without its per-byte index),
//! and a chooser that always answers the same option (clamped).

use crate::view::{Chooser, Epoch, Truth};

/// The initial text at `base` plus stores `(addr, bytes)` in order; store `k` is epoch `k+1`.
#[derive(Clone, Debug, Default)]
pub struct LogTruth {
    /// Guest address of `init[0]`.
    pub base: u64,
    /// The text at epoch 0.
    pub init: Vec<u8>,
    /// The stores, in order.
    pub stores: Vec<(u64, Vec<u8>)>,
}

impl Truth for LogTruth {
    fn now(&self) -> Epoch {
        self.stores.len() as Epoch
    }

    fn store_range(&self, e: Epoch) -> (u64, u64) {
        let (a, b) = &self.stores[e as usize - 1];
        (*a, b.len() as u64)
    }

    fn byte_at(&self, addr: u64, epoch: Epoch) -> (u8, Epoch) {
        let mut v = (self.init[(addr - self.base) as usize], 0);
        for (i, (a, b)) in self.stores.iter().enumerate().take(epoch as usize) {
            if addr >= *a && addr < a + b.len() as u64 {
                v = (b[(addr - a) as usize], i as Epoch + 1);
            }
        }
        v
    }
}

/// Always picks option `.0`, clamped to the options offered.
#[derive(Clone, Copy, Debug)]
pub struct Pick(pub usize);

impl Chooser for Pick {
    fn choose(&mut self, n: usize) -> usize {
        self.0.min(n - 1)
    }
}
