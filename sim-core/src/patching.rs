//! The patching state shared by the patcher and the INT3 handlers (DESIGN.md §2.3). Every
//! load, store or atomic on it by the patcher or a handler is its own event, so a handler can
//! read `nr_entries != 0` and then find `vec == NULL` (bug B3), or take a reference just as
//! the patcher drops its own.
//!
//! Three generations of kernel data live here side by side; each protocol uses its own:
//! - `bp_patching { vec, nr_entries }` (linux-5.4, the seed, linux-5.5): a global pointing
//!   at the caller's `text_poke_loc` array, which lives for one `text_poke_bp_batch()` call;
//! - `bp_desc` (linux-5.6, 1f676247f36a): a global pointing at a descriptor
//!   `{ vec, nr_entries, refs }` on the patcher's stack, freed when the batch returns;
//! - `text_poke_array { vec[TEXT_POKE_ARRAY_MAX], nr_entries }` and per-CPU
//!   `text_poke_array_refs` (linux-6.16): static, so stale entries stay readable.
//!
//! Beside them, what every version shares: `text_mutex` (which patching client holds it) and
//! the registered kprobes (`kprobe_table`, what `get_kprobe()` finds; `kernel/kprobes.c`).

use crate::oracle::ViolationKind;
use crate::protocol::TextPokeLoc;

/// `TEXT_POKE_ARRAY_MAX = PAGE_SIZE / sizeof(struct smp_text_poke_loc)` (also the 5.x
/// callers' `TP_VEC_MAX`).
pub const TEXT_POKE_ARRAY_MAX: usize = 256;

/// One batch's `struct text_poke_loc tp[]` (and, for linux-5.6, the descriptor around it).
#[derive(Clone, Debug)]
pub struct PokeArray {
    /// The entries, sorted by address as `bsearch` requires (unless a mutant dropped
    /// `smp_text_poke_batch_add()`'s order check).
    pub locs: std::rc::Rc<[TextPokeLoc]>,
    /// The bytes each entry replaces: the text as the patcher's earlier batches left it (the
    /// patcher's program is fixed, so this is known before the run).
    pub old: std::rc::Rc<[Vec<u8>]>,
    /// False before the batch starts and after it returned (stack memory gone).
    pub live: bool,
    /// `desc.refs` (linux-5.6).
    pub refs: i32,
}

impl PokeArray {
    /// A not-yet-live array of `locs`, replacing `old`.
    pub fn new(locs: Vec<TextPokeLoc>, old: Vec<Vec<u8>>) -> Self {
        Self { locs: locs.into(), old: old.into(), live: false, refs: 0 }
    }
}

/// One kprobe (`struct kprobe`) as `kprobe_int3_handler()` and the oracles see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KprobeState {
    /// `p->addr`: the probed instruction.
    pub addr: u64,
    /// `p->ainsn.insn`: where its out-of-line copy starts.
    pub ool: u64,
    /// The probed instruction as `arch_prepare_kprobe()` copied it; its first byte is
    /// `p->opcode`, what `arch_disarm_kprobe()` writes back.
    pub insn: std::rc::Rc<[u8]>,
    /// In `kprobe_table`: `get_kprobe(addr)` finds it (`hlist_add_head_rcu()` in
    /// `register_kprobe()` until `hlist_del_rcu()` in `__unregister_kprobe_top()`).
    pub registered: bool,
    /// Its INT3 belongs in the text: from `arch_arm_kprobe()` until `arch_disarm_kprobe()`.
    pub armed: bool,
}

/// Why a handler's access to the patching state is invalid — the handler faults (an oops).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessFault {
    /// A NULL pointer (`bp_patching.vec`, `bp_desc`).
    Null(&'static str),
    /// Memory of a batch that already returned.
    UseAfterFree(usize),
    /// Index past the end of the vector.
    PastEnd {
        /// Index read.
        index: usize,
        /// Vector length.
        len: usize,
    },
}

impl AccessFault {
    /// The violation this access is: a read of a returned batch's memory is a use after free,
    /// which the model tells from a NULL or an out-of-range read.
    pub fn kind(&self) -> ViolationKind {
        match self {
            AccessFault::UseAfterFree(_) => ViolationKind::UseAfterFree,
            AccessFault::Null(_) | AccessFault::PastEnd { .. } => ViolationKind::HandlerFault,
        }
    }
}

impl std::fmt::Display for AccessFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessFault::Null(what) => write!(f, "NULL pointer dereference of {what}"),
            AccessFault::UseAfterFree(b) => write!(f, "use after free of the patch array of batch {b}"),
            AccessFault::PastEnd { index, len } => {
                write!(f, "read of vec[{index}] past the end of a {len}-entry vector")
            }
        }
    }
}

/// Where a handler found its vector: which memory it reads entries from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VecRef {
    /// A batch's own array (5.4/seed/5.5 `vec`, 5.6 `desc->vec`).
    Array(usize),
    /// The static `text_poke_array.vec` (6.16).
    Static,
}

/// All patching state.
#[derive(Debug, Default)]
pub struct PatchState {
    /// `bp_patching.vec`: the array id, or NULL.
    pub vec: Option<usize>,
    /// `bp_patching.nr_entries` (5.x) or `text_poke_array.nr_entries` (6.16).
    pub nr_entries: usize,
    /// `bp_desc` (5.6): the array id of the descriptor, or NULL.
    pub desc: Option<usize>,
    /// Every batch's array, by batch id.
    pub arrays: Vec<PokeArray>,
    /// `text_poke_array.vec` (6.16): slots keep whatever was last written to them; slots never
    /// written (past the end of this vector, up to [`TEXT_POKE_ARRAY_MAX`]) are zeroed static
    /// memory.
    pub static_vec: Vec<Option<(usize, usize)>>,
    /// Per-CPU `text_poke_array_refs` (6.16).
    pub percpu_refs: Vec<i32>,
    /// The static `bp_desc.refs` (6.0; its `vec` and `nr_entries` are the fields above).
    pub global_refs: i32,
    /// `text_mutex`: the patching client holding it, if any.
    pub text_mutex: Option<usize>,
    /// Every kprobe of the run, registered or not, by index.
    pub kprobes: Vec<KprobeState>,
    /// Per vCPU, the RCU read-side section it is in: the INT3 handler runs with preemption
    /// disabled (from 5.9 as an NMI-like entry), so `synchronize_rcu()` waits for it. 0 = none;
    /// otherwise the serial of the handler activation. Not part of a state's hash: only a
    /// waiting patcher reads it, and it hashes what it waits for.
    pub rcu_readers: Vec<u64>,
    rcu_serial: u64,
    /// Whether a reference count has gone below zero (`PatchState::put_ref`); not part of
    /// the state's hash (a run that sets it stops).
    pub below_zero: bool,
}

/// `clone_from` reuses the vectors' buffers (the search restores a state per transition).
impl Clone for PatchState {
    fn clone(&self) -> Self {
        let mut copy = Self::default();
        copy.clone_from(self);
        copy
    }

    fn clone_from(&mut self, source: &Self) {
        let Self {
            vec,
            nr_entries,
            desc,
            arrays,
            static_vec,
            percpu_refs,
            global_refs,
            text_mutex,
            kprobes,
            rcu_readers,
            rcu_serial,
            below_zero,
        } = self;
        (*vec, *nr_entries, *desc) = (source.vec, source.nr_entries, source.desc);
        arrays.clone_from(&source.arrays);
        static_vec.clone_from(&source.static_vec);
        percpu_refs.clone_from(&source.percpu_refs);
        (*global_refs, *text_mutex) = (source.global_refs, source.text_mutex);
        kprobes.clone_from(&source.kprobes);
        rcu_readers.clone_from(&source.rcu_readers);
        (*rcu_serial, *below_zero) = (source.rcu_serial, source.below_zero);
    }
}

impl PatchState {
    /// Empty state for `arrays`, `cpus` vCPUs and `kprobes` in their initial state.
    pub fn new(arrays: Vec<PokeArray>, cpus: usize, kprobes: Vec<KprobeState>) -> Self {
        Self { arrays, percpu_refs: vec![0; cpus], kprobes, rcu_readers: vec![0; cpus], ..Self::default() }
    }

    /// vCPU `cpu` took a trap: its handler is an RCU reader until the IRET.
    pub(crate) fn rcu_read_lock(&mut self, cpu: usize) {
        self.rcu_serial += 1;
        self.rcu_readers[cpu] = self.rcu_serial;
    }

    /// Drops one reference from `count` (one of this state's counts, borrowed by the caller),
    /// noting in `below_zero` whether it went negative — the machine asserts it never does on
    /// the kernel's own protocols, in O(1) per tick ([`PatchState::below_zero`]).
    pub(crate) fn put_ref(count: &mut i32, below_zero: &mut bool) {
        *count -= 1;
        *below_zero |= *count < 0;
    }

    /// vCPU `cpu` left its handler.
    pub(crate) fn rcu_read_unlock(&mut self, cpu: usize) {
        self.rcu_readers[cpu] = 0;
    }

    /// Dereferences `vec[index]` as a handler would; returns the entry and where it lives
    /// (`(array, entry)`).
    pub fn entry(&self, vec: Option<VecRef>, index: usize) -> Result<(&TextPokeLoc, (usize, usize)), AccessFault> {
        match vec.ok_or(AccessFault::Null("bp_patching.vec"))? {
            VecRef::Array(id) => {
                let array = &self.arrays[id];
                if !array.live {
                    return Err(AccessFault::UseAfterFree(id));
                }
                let loc = array.locs.get(index).ok_or(AccessFault::PastEnd { index, len: array.locs.len() })?;
                Ok((loc, (id, index)))
            }
            VecRef::Static => {
                if index >= TEXT_POKE_ARRAY_MAX {
                    return Err(AccessFault::PastEnd { index, len: TEXT_POKE_ARRAY_MAX });
                }
                // A never-written slot is zeroed static memory: address 0 matches nothing.
                match self.static_vec.get(index).copied().flatten() {
                    Some((a, e)) => Ok((&self.arrays[a].locs[e], (a, e))),
                    None => Err(AccessFault::PastEnd { index, len: 0 }),
                }
            }
        }
    }

    /// Feeds the shared patching state into `h` — all but the per-CPU reference counts, which
    /// belong to each vCPU's part of a state (the arrays' entries and old bytes follow from
    /// the patcher's position).
    pub(crate) fn hash_shared(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        (self.vec, self.nr_entries, self.desc, self.global_refs, &self.static_vec).hash(h);
        for a in &self.arrays {
            (a.live, a.refs).hash(h);
        }
        self.text_mutex.hash(h);
        for k in &self.kprobes {
            // The saved instruction too: `register_kprobe()` copies it from the text as it is
            // then, which with another client storing there depends on the order of the two.
            (k.registered, k.armed, &k.insn).hash(h);
        }
    }

    /// The desc a 5.6 handler holds: `Err` if it was freed.
    pub(crate) fn desc_array(&self, id: usize) -> Result<&PokeArray, AccessFault> {
        let array = &self.arrays[id];
        if array.live {
            Ok(array)
        } else {
            Err(AccessFault::UseAfterFree(id))
        }
    }
}
