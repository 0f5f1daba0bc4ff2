//! Sync IPIs: `on_each_cpu(do_sync_core, NULL, 1)` (reference/kernel-protocol.md §1.3).
//!
//! The patcher broadcasts; each vCPU takes the IPI at a guest instruction boundary — never
//! inside the INT3 handler, which runs with interrupts off (Masami's 2019 fix relies on this)
//! — runs `sync_core()` (its view becomes exact) and acknowledges; the patcher waits for all.
//! The patching CPU itself is not one of the simulated vCPUs: its own `sync_core()` has no
//! view to refresh.

/// Pending IPIs and outstanding acknowledgements.
#[derive(Debug)]
pub struct Ipi {
    pending: Vec<bool>,
    outstanding: usize,
    delivered: u64,
    /// Broadcasts so far: the current sync's number.
    generation: u64,
}

/// `clone_from` reuses the buffer (the search restores a state per transition).
impl Clone for Ipi {
    fn clone(&self) -> Self {
        let Self { pending, outstanding, delivered, generation } = self;
        Self { pending: pending.clone(), outstanding: *outstanding, delivered: *delivered, generation: *generation }
    }

    fn clone_from(&mut self, source: &Self) {
        let Self { pending, outstanding, delivered, generation } = self;
        pending.clone_from(&source.pending);
        (*outstanding, *delivered, *generation) = (source.outstanding, source.delivered, source.generation);
    }
}

impl Ipi {
    /// No IPI pending on `cpus` vCPUs.
    pub fn new(cpus: usize) -> Self {
        Self { pending: vec![false; cpus], outstanding: 0, delivered: 0, generation: 0 }
    }

    /// Sends the IPI to every vCPU.
    pub fn broadcast(&mut self) {
        assert_eq!(self.outstanding, 0, "on_each_cpu() calls do not nest");
        self.pending.iter_mut().for_each(|p| *p = true);
        self.outstanding = self.pending.len();
        self.generation += 1;
    }

    /// True if vCPU `cpu` has an IPI waiting.
    pub fn pending(&self, cpu: usize) -> bool {
        self.pending[cpu]
    }

    /// vCPU `cpu` took the IPI and acknowledged.
    pub fn acknowledge(&mut self, cpu: usize) {
        assert!(self.pending[cpu], "acknowledging an IPI that is not pending");
        self.pending[cpu] = false;
        self.outstanding -= 1;
        self.delivered += 1;
    }

    /// Acknowledgements still missing.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Acknowledgements outstanding and the IPIs delivered, as saved by state-space search.
    pub fn counts(&self) -> (usize, u64) {
        (self.outstanding, self.delivered)
    }

    /// The number of the latest broadcast (1-based; 0 before any).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// IPIs delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The vCPUs that still owe an acknowledgement.
    pub fn waiting_for(&self) -> Vec<usize> {
        (0..self.pending.len()).filter(|&i| self.pending[i]).collect()
    }
}
