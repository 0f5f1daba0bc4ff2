//! The patching state shared by the patcher and the INT3 handlers (DESIGN.md §2.3): the
//! seed's global `bp_patching { vec, nr_entries }` and the `text_poke_loc` arrays it points
//! to. Every load and store of it by the patcher or a handler is its own event, so a handler
//! can read `nr_entries != 0` and then find `vec == NULL` (bug B3).
//!
//! An array lives for one batch: in the kernel it is the caller's (often on its stack), so a
//! handler that dereferences it after the batch returned reads freed memory.

use crate::protocol::TextPokeLoc;

/// One batch's `struct text_poke_loc tp[]`.
#[derive(Clone, Debug)]
pub struct PokeArray {
    /// The entries, sorted by address as `bsearch` requires.
    pub locs: Vec<TextPokeLoc>,
    /// The bytes each entry replaced, captured when its first store was issued.
    pub old: Vec<Vec<u8>>,
    /// False before the batch starts and after it returned.
    pub live: bool,
}

/// Why a handler's access to the patching state is invalid — the handler faults (an oops).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessFault {
    /// `bp_patching.vec` was NULL.
    NullVec,
    /// The array belongs to a batch that already returned.
    UseAfterFree(usize),
    /// Index past the end of the array.
    PastEnd { index: usize, len: usize },
}

impl std::fmt::Display for AccessFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessFault::NullVec => f.write_str("NULL pointer dereference of bp_patching.vec"),
            AccessFault::UseAfterFree(b) => write!(f, "use after free of the text_poke_loc array of batch {b}"),
            AccessFault::PastEnd { index, len } => {
                write!(f, "read of vec[{index}] past the end of a {len}-entry vector")
            }
        }
    }
}

/// `bp_patching` plus the arrays.
#[derive(Clone, Debug, Default)]
pub struct PatchState {
    /// `bp_patching.vec`: the array id, or NULL.
    pub vec: Option<usize>,
    /// `bp_patching.nr_entries`.
    pub nr_entries: usize,
    /// Every batch's array, by batch id.
    pub arrays: Vec<PokeArray>,
}

impl PatchState {
    /// Dereferences `vec[index]` as a handler would.
    pub fn entry(&self, vec: Option<usize>, index: usize) -> Result<&TextPokeLoc, AccessFault> {
        let id = vec.ok_or(AccessFault::NullVec)?;
        let array = &self.arrays[id];
        if !array.live {
            return Err(AccessFault::UseAfterFree(id));
        }
        array.locs.get(index).ok_or(AccessFault::PastEnd { index, len: array.locs.len() })
    }
}
