//! What a step reads and writes of the memory the actors share — the patching state of
//! `arch/x86/kernel/alternative.c` (`bp_patching`, `bp_desc`, `text_poke_array`, their
//! reference counts), the kprobe table, `text_mutex`, the RCU readers, the IPIs and the text —
//! for partial-order reduction in state-space search (DESIGN.md §2.9). Two steps of different
//! actors commute when neither writes what the other reads or writes (Godefroid's
//! independence, *Partial-Order Methods for the Verification of Concurrent Systems*, 1996,
//! §3.1). The locations are coarse — a field or a table, not an address — so two footprints
//! overlap whenever the steps could touch the same memory.

/// A set of shared locations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shared(u16);

impl Shared {
    /// Nothing shared.
    pub const NONE: Shared = Shared(0);
    /// `bp_patching.nr_entries` / `text_poke_array.nr_entries`.
    pub const NR_ENTRIES: Shared = Shared(1);
    /// The published pointers: `bp_patching.vec` (5.x), `bp_desc` (5.6).
    pub const VEC: Shared = Shared(1 << 1);
    /// Every batch's array — its entries, its old bytes, whether it is live — and the static
    /// `text_poke_array.vec` (6.16).
    pub const ARRAYS: Shared = Shared(1 << 2);
    /// The reference counts every vCPU's handler takes: 5.6's `desc->refs`, 6.0's
    /// `bp_desc.refs`.
    pub const REFS: Shared = Shared(1 << 3);
    /// 6.16's per-CPU `text_poke_array_refs` (a vCPU's handler touches only its own; the
    /// patcher any).
    pub const PERCPU_REFS: Shared = Shared(1 << 4);
    /// The text as stores leave it (what a serialising vCPU's view becomes, what `*addr`
    /// loads).
    pub const TEXT: Shared = Shared(1 << 5);
    /// The kprobe table (`get_kprobe()`'s hash list, each kprobe's saved opcode).
    pub const KPROBES: Shared = Shared(1 << 6);
    /// `text_mutex`.
    pub const TEXT_MUTEX: Shared = Shared(1 << 7);
    /// Which vCPU is inside an RCU read-side section (what `synchronize_rcu()` waits for).
    pub const RCU: Shared = Shared(1 << 8);
    /// The sync IPIs: pending deliveries and acknowledgements.
    pub const IPI: Shared = Shared(1 << 9);
    /// Everything (a step whose footprint is not modelled).
    pub const ALL: Shared = Shared(u16::MAX);

    /// Both sets.
    pub const fn or(self, other: Shared) -> Shared {
        Shared(self.0 | other.0)
    }

    /// True if the sets share a location.
    pub const fn meets(self, other: Shared) -> bool {
        self.0 & other.0 != 0
    }
}

/// What one step (or a sequence of steps) reads and writes of the shared memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// What it reads.
    pub reads: Shared,
    /// What it writes.
    pub writes: Shared,
}

impl Footprint {
    /// A step that touches nothing shared.
    pub const NONE: Footprint = Footprint { reads: Shared::NONE, writes: Shared::NONE };
    /// A step that may touch anything.
    pub const ALL: Footprint = Footprint { reads: Shared::ALL, writes: Shared::ALL };

    /// A step that reads `reads` and writes `writes`.
    pub const fn new(reads: Shared, writes: Shared) -> Footprint {
        Footprint { reads, writes }
    }

    /// A step that only reads `reads`.
    pub const fn reading(reads: Shared) -> Footprint {
        Footprint { reads, writes: Shared::NONE }
    }

    /// A step that only writes `writes`.
    pub const fn writing(writes: Shared) -> Footprint {
        Footprint { reads: Shared::NONE, writes }
    }

    /// What both steps touch, as one.
    pub const fn and(self, other: Footprint) -> Footprint {
        Footprint { reads: self.reads.or(other.reads), writes: self.writes.or(other.writes) }
    }

    /// True if the two may not commute: one writes what the other reads or writes.
    pub const fn conflicts(self, other: Footprint) -> bool {
        self.writes.meets(other.reads.or(other.writes)) || other.writes.meets(self.reads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_readers_commute_and_a_writer_conflicts_with_both_kinds_of_access() {
        let read_nr = Footprint::reading(Shared::NR_ENTRIES);
        let write_nr = Footprint::writing(Shared::NR_ENTRIES);
        let write_text = Footprint::writing(Shared::TEXT);
        assert!(!read_nr.conflicts(read_nr));
        assert!(read_nr.conflicts(write_nr) && write_nr.conflicts(read_nr));
        assert!(write_nr.conflicts(write_nr));
        assert!(!read_nr.conflicts(write_text) && !write_text.conflicts(read_nr));
        assert!(Footprint::ALL.conflicts(read_nr) && !Footprint::NONE.conflicts(Footprint::ALL));
        assert!(read_nr.and(write_text).conflicts(Footprint::reading(Shared::TEXT)));
    }
}
