//! Traces (DESIGN.md §2.12): every event of a run is folded into an xxh3 hash (the
//! `trace_hash` of an outcome, which two runs share iff they did the same thing) and, on
//! request, kept as records for `pokesim trace` — with what a reader needs and the hash does
//! not: the decoded instruction, the kernel statement a patcher operation or handler step
//! mirrors, which sync an IPI belongs to, the patch round.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::Xxh3;

use crate::event::Event;
use crate::program::Op;
use crate::round::Round;

/// What kind of event a trace record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceKind {
    /// A guest instruction executed.
    Step,
    /// A guest INT3 trapped.
    Trap,
    /// A guest instruction faulted.
    Fault,
    /// A vCPU finished its last iteration.
    Finished,
    /// One micro-step of the INT3 handler.
    Handler,
    /// An IPI delivered: `sync_core()` and acknowledge.
    Ipi,
    /// A patcher operation that neither stores nor syncs.
    Patcher,
    /// A text store.
    Store,
    /// A sync's IPI broadcast.
    Broadcast,
    /// A sync completed: every vCPU acknowledged.
    SyncDone,
    /// An interrupt delivered: the CPU enters its handler ([`crate::interrupt`]).
    IrqEnter,
    /// The interrupt handler's IRET (serialising: the CPU's view becomes exact).
    Iret,
    /// Under x86-TSO, a buffered store of the kernel data reached memory.
    Drain,
}

/// One event as the trace shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Tick.
    pub tick: u64,
    /// `cpuN` or `patcher`.
    pub actor: String,
    /// The vCPU, or `None` for the patcher.
    pub cpu: Option<usize>,
    /// What kind of event.
    pub kind: TraceKind,
    /// What happened.
    pub event: String,
    /// Guest RIP (for a store: the first byte written).
    #[serde(with = "crate::oracle::hex_addr")]
    pub rip: Option<u64>,
    /// Bytes executed or stored.
    pub bytes: Vec<u8>,
    /// Store epoch of each byte.
    pub epochs: Vec<u32>,
    /// The decoded instruction (Intel syntax), for a guest step.
    pub insn: Option<String>,
    /// The kernel function and statement the event mirrors.
    pub kernel: Option<String>,
    /// Which sync (the patcher's `n`-th broadcast, 1-based) an IPI, broadcast or completion
    /// belongs to.
    pub sync: Option<u64>,
    /// The patch round (batch) in progress, or the drain after the last.
    pub round: Round,
    /// The operation the patcher is at — for a patcher's event, that client's; otherwise the
    /// leading client's (the one holding `text_mutex`, else the first one not done) — or
    /// `None` once it is done. JSON writes its name, or `done`, under the name `phase`; read
    /// back, it is unnumbered (`Op::unnumbered`).
    #[serde(rename = "phase", serialize_with = "op_name", deserialize_with = "op_of_name")]
    pub op: Option<Op>,
}

/// What [`TraceEvent::op_name`] says once the patcher is done.
const DONE: &str = "done";

impl TraceEvent {
    /// The name of the operation the patcher is at ([`TraceEvent::op`]), or `done`.
    pub fn op_name(&self) -> &'static str {
        self.op.map_or(DONE, |op| op.name())
    }
}

fn op_name<S: Serializer>(op: &Option<Op>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(op.map_or(DONE, |op| op.name()))
}

fn op_of_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Op>, D::Error> {
    let name = String::deserialize(d)?;
    if name == DONE {
        return Ok(None);
    }
    Op::from_name(&name).map(Some).ok_or_else(|| serde::de::Error::custom(format!("no operation '{name}'")))
}

/// Decodes one instruction at `addr` (Intel syntax); `(bad)` if the bytes are no instruction.
pub fn disassemble(addr: u64, bytes: &[u8]) -> String {
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
    let insn = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE).decode();
    if insn.is_invalid() {
        return "(bad)".into();
    }
    let mut text = String::new();
    let mut f = IntelFormatter::new();
    let o = f.options_mut();
    o.set_hex_prefix("0x");
    o.set_hex_suffix("");
    o.set_uppercase_hex(false);
    o.set_branch_leading_zeros(false);
    o.set_space_after_operand_separator(true);
    f.format(&insn, &mut text);
    text
}

/// Bytes of records gathered before they go to the hasher in one update: xxh3's streaming
/// update has a fixed cost per call, and a record is about a hundred bytes.
const PENDING: usize = 4096;

/// The running hash and optional event log.
pub struct Trace {
    hasher: Xxh3,
    /// Records not yet fed to the hasher (the hash is of the concatenation, so feeding them
    /// in one update gives the same digest).
    pending: Vec<u8>,
    keep: bool,
    events: Vec<TraceEvent>,
    /// The round the next records belong to.
    round: Round,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace").field("kept", &self.events.len()).finish()
    }
}

impl Trace {
    /// A trace that keeps events iff `keep`.
    pub fn new(keep: bool) -> Self {
        Self {
            hasher: Xxh3::new(),
            pending: Vec::with_capacity(PENDING + 256),
            keep,
            events: Vec::new(),
            round: Round::In(1),
        }
    }

    /// The round the records from now on belong to (kept records only: the hash leaves it out).
    pub(crate) fn set_round(&mut self, round: Round) {
        self.round = round;
    }

    /// True if records are kept (callers compute details only then).
    pub fn keeps(&self) -> bool {
        self.keep
    }

    /// Adds details to the last kept record (a no-op unless records are kept).
    pub(crate) fn annotate(&mut self, f: impl FnOnce(&mut TraceEvent)) {
        if let Some(e) = self.events.last_mut().filter(|_| self.keep) {
            f(e);
        }
    }

    /// Folds one event in. `what` names the outcome; `rip`, `bytes` and `epochs` describe it;
    /// `op` is the operation the patcher is at ([`TraceEvent::op`]).
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        tick: u64,
        event: Event,
        kind: TraceKind,
        what: &str,
        rip: Option<u64>,
        bytes: &[u8],
        epochs: &[u32],
        op: Option<Op>,
    ) {
        let (tag, who) = match event {
            Event::GuestStep(i) => (0u8, i as u64),
            Event::HandlerStep(i) => (1, i as u64),
            Event::IpiDeliver(i) => (2, i as u64),
            // Client 0 keeps the tag of a one-patcher run, so its hashes never change.
            Event::Patcher(k) => (3, u64::MAX - k as u64),
            Event::Interrupt(i) => (4, i as u64),
            Event::PatcherInterrupt(k) => (5, u64::MAX - k as u64),
            Event::Drain(c) => (6, c as u64),
        };
        // The record: tick, tag, actor, rip, the two lengths, the bytes and their epochs (at
        // most 27 + 15 + 60 = 102 bytes), then `what`. Records were once clipped at 128 bytes;
        // none reaches that, which the assertion keeps true (the hashes depend on it).
        debug_assert!(27 + bytes.len() + 4 * epochs.len() <= 128, "a trace record over 128 bytes");
        let p = &mut self.pending;
        p.extend_from_slice(&tick.to_le_bytes());
        p.push(tag);
        p.extend_from_slice(&who.to_le_bytes());
        p.extend_from_slice(&rip.unwrap_or(u64::MAX).to_le_bytes());
        p.extend_from_slice(&[bytes.len() as u8, what.len() as u8]);
        p.extend_from_slice(bytes);
        for e in epochs {
            p.extend_from_slice(&e.to_le_bytes());
        }
        p.extend_from_slice(what.as_bytes());
        if self.pending.len() >= PENDING {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
        if self.keep {
            let actor = match event.cpu() {
                Some(i) => format!("cpu{i}"),
                None => event.to_string(),
            };
            self.events.push(TraceEvent {
                tick,
                actor,
                cpu: event.cpu(),
                kind,
                event: what.to_string(),
                rip,
                bytes: bytes.to_vec(),
                epochs: epochs.to_vec(),
                insn: None,
                kernel: None,
                sync: None,
                round: self.round,
                op,
            });
        }
    }

    /// The hash so far.
    pub(crate) fn digest(&self) -> u64 {
        if self.pending.is_empty() {
            return self.hasher.digest();
        }
        let mut h = self.hasher.clone();
        h.update(&self.pending);
        h.digest()
    }

    /// The hash so far, as 16 hex digits.
    pub fn hash(&self) -> String {
        format!("{:016x}", self.digest())
    }

    /// The kept events.
    pub(crate) fn into_events(self) -> Vec<TraceEvent> {
        self.events
    }
}
