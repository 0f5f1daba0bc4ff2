//! Oracle 5, handler fault (DESIGN.md §2.7): the INT3 handler dereferences a cleared vector
//! (bug B3: `bp_patching.vec` NULL while `nr_entries != 0`), a descriptor freed by a returned
//! `text_poke_bp()` (the 5.6 `try_get_desc()` race), reads past the vector, or hits one of the
//! kernel's `BUG()` cases in `poke_int3_handler()`. The handler's micro-steps detect the access
//! itself ([`crate::handler`]); this oracle also covers the machine-side effects of an
//! emulation, such as `int3_emulate_push()` writing outside the stack.

/// The message of an emulated push that lands outside the data region.
pub(crate) fn push_outside_stack(addr: u64) -> String {
    format!("int3_emulate_push to {addr:#x}, outside the stack")
}
