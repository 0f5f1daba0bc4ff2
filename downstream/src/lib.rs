//! A stand-in for a user's crate: it has no code of its own. Its tests (`tests/`) use pokesim
//! only through the documented API of the `pokesim` crate — a proptest property over
//! `pokesim::arbitrary::scenarios()` and the `check`-style helpers catching a mutant — so a
//! change that breaks what a user's crate relies on breaks them.
