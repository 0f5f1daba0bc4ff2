//! Traces (DESIGN.md §2.12): every event of a run is folded into an xxh3 hash (the
//! `trace_hash` of an outcome, which two runs share iff they did the same thing) and, on
//! request, kept as fixed-column records for `pokesim trace`.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::event::Event;

/// One event as the trace shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Tick.
    pub tick: u64,
    /// `cpuN` or `patcher`.
    pub actor: String,
    /// What happened.
    pub event: String,
    /// Guest RIP, if a vCPU acted.
    pub rip: Option<u64>,
    /// Bytes executed or stored.
    pub bytes: Vec<u8>,
    /// Store epoch of each byte.
    pub epochs: Vec<u32>,
    /// The patcher's protocol phase.
    pub phase: String,
}

/// The running hash and optional event log.
pub struct Trace {
    hasher: Xxh3,
    keep: bool,
    events: Vec<TraceEvent>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace").field("kept", &self.events.len()).finish()
    }
}

impl Trace {
    /// A trace that keeps events iff `keep`.
    pub fn new(keep: bool) -> Self {
        Self { hasher: Xxh3::new(), keep, events: Vec::new() }
    }

    /// Folds one event in. `what` names the outcome; `rip`, `bytes` and `epochs` describe it.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        tick: u64,
        event: Event,
        what: &str,
        rip: Option<u64>,
        bytes: &[u8],
        epochs: &[u32],
        phase: &str,
    ) {
        let (tag, who) = match event {
            Event::GuestStep(i) => (0u8, i as u64),
            Event::HandlerStep(i) => (1, i as u64),
            Event::IpiDeliver(i) => (2, i as u64),
            Event::Patcher => (3, u64::MAX),
        };
        let h = &mut self.hasher;
        h.update(&tick.to_le_bytes());
        h.update(&[tag]);
        h.update(&who.to_le_bytes());
        h.update(what.as_bytes());
        h.update(&rip.unwrap_or(u64::MAX).to_le_bytes());
        h.update(&[bytes.len() as u8]);
        h.update(bytes);
        for e in epochs {
            h.update(&e.to_le_bytes());
        }
        if self.keep {
            let actor = match event.cpu() {
                Some(i) => format!("cpu{i}"),
                None => "patcher".to_string(),
            };
            self.events.push(TraceEvent {
                tick,
                actor,
                event: what.to_string(),
                rip,
                bytes: bytes.to_vec(),
                epochs: epochs.to_vec(),
                phase: phase.to_string(),
            });
        }
    }

    /// The hash so far.
    pub fn digest(&self) -> u64 {
        self.hasher.digest()
    }

    /// The hash so far, as 16 hex digits.
    pub fn hash(&self) -> String {
        format!("{:016x}", self.hasher.digest())
    }

    /// The kept events.
    pub fn into_events(self) -> Vec<TraceEvent> {
        self.events
    }
}
