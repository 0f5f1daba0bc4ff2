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
        // One contiguous record per event: xxh3's streaming update has a fixed cost per call,
        // and this runs on every tick.
        let mut buf = [0u8; 128];
        let mut n = 0;
        let mut put = |bytes: &[u8]| {
            let end = (n + bytes.len()).min(buf.len());
            buf[n..end].copy_from_slice(&bytes[..end - n]);
            n = end;
        };
        put(&tick.to_le_bytes());
        put(&[tag]);
        put(&who.to_le_bytes());
        put(&rip.unwrap_or(u64::MAX).to_le_bytes());
        put(&[bytes.len() as u8, what.len() as u8]);
        put(bytes);
        for e in epochs {
            put(&e.to_le_bytes());
        }
        self.hasher.update(&buf[..n]);
        self.hasher.update(what.as_bytes());
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
