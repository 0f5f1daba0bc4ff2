//! # scenarios — what pokesim runs, and the `pokesim` program
//!
//! - [`workload`]: guest workloads, real x86-64 machine code assembled with iced-x86, each
//!   with its invariant and patch rounds (DESIGN.md §2.8);
//! - [`scenario`]: a complete run description (workload, vCPUs, protocol, mutants, fetch
//!   model, strategy, seed, budget) and the function that runs it;
//! - [`check`]: the built-in scenarios behind `pokesim check`, with their expected verdicts;
//! - [`bench`](mod@bench): the throughput benchmark behind `pokesim bench`;
//! - [`campaign`] and [`shard`]: a campaign over many seeds, split into shards and merged;
//! - [`render`]: a run as text, Perfetto JSON, SVG or an HTML report (`pokesim trace`);
//! - [`hardware`]: a scenario's protocol on the host's real CPUs through the `hw` crate, and
//!   the matrix of mutants next to each fetch preset's prediction (`pokesim hw`);
//! - [`litmus`]: x86 litmus tests in herdtools7's format, by complete search under x86-TSO
//!   or SC (`pokesim litmus`);
//! - [`output`] and [`terminal`]: what pokesim writes to files and to the terminal, safely.
//!
//! The command line itself is `src/bin/pokesim/`.

pub mod artifact;
pub mod artifact_format;
pub mod bench;
pub mod campaign;
pub mod catalogue;
pub mod check;
pub mod corpus;
pub mod csource;
pub mod entry;
pub mod exhaust;
pub mod file;
pub mod hardware;
pub mod input;
pub mod litmus;
pub mod matrix;
pub mod output;
pub mod render;
pub mod scenario;
pub mod search_shard;
pub mod shard;
pub mod shrink;
pub mod spec;
pub mod stream;
pub mod terminal;
pub mod workload;

pub use scenario::Scenario;
pub use workload::{SitePlacement, WorkloadKind, WorkloadSpec};
