//! Chrome trace-event JSON (the format ui.perfetto.dev and chrome://tracing open): one process,
//! one track per vCPU (tid = vCPU index) and one for the patcher (tid = vCPUs); slices for
//! guest steps, handler micro-steps (inside a slice for the whole handler run) and patcher
//! operations (inside a slice per phase, named as in `text_poke_bp_batch()`); each IPI as two
//! flow arrows, from the broadcast to the vCPU's delivery (`sync_core()` and acknowledge) and
//! from there to the sync's completion; instant events for traps, serializations (IPI, IRET)
//! and the violation; an instant event (category `removed`) on the patcher's track where an
//! operation a mutant removed would have run. Every slice's arguments carry the bytes, their store epochs, the decoded
//! instruction and the kernel statement. The clock is simulated time, one tick per
//! microsecond, so the same artifact gives a byte-identical file.

use serde_json::{json, Value};
use sim_core::trace::{TraceEvent, TraceKind};

use super::{bytes_with_epochs, handler_spans, irq_spans, label, phases, Run};

const PID: u64 = 1;

/// The trace-event JSON of `run`.
pub fn render(run: &Run) -> String {
    let patcher = run.cpus as u64;
    let mut events: Vec<Value> = Vec::new();
    events.push(json!({"ph": "M", "ts": 0, "pid": PID, "tid": 0, "name": "process_name", "args": {"name": run.title}}));
    for cpu in 0..run.cpus {
        let tid = cpu as u64;
        events.push(
            json!({"ph": "M", "ts": 0, "pid": PID, "tid": tid, "name": "thread_name", "args": {"name": format!("cpu{cpu}")}}),
        );
        events.push(
            json!({"ph": "M", "ts": 0, "pid": PID, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid + 1}}),
        );
    }
    events.push(
        json!({"ph": "M", "ts": 0, "pid": PID, "tid": patcher, "name": "thread_name", "args": {"name": "patcher"}}),
    );
    events.push(
        json!({"ph": "M", "ts": 0, "pid": PID, "tid": patcher, "name": "thread_sort_index", "args": {"sort_index": 0}}),
    );
    events.extend(spans(run, patcher));
    let completed: Vec<u64> =
        run.events.iter().filter(|e| e.kind == TraceKind::SyncDone).filter_map(|e| e.sync).collect();
    for e in &run.events {
        events.extend(event(run, e, patcher, &completed));
    }
    for g in run.gaps() {
        let Some(c) = run.changes.get(g.change) else { continue };
        events.push(json!({
            "ph": "i", "s": "t", "pid": PID, "tid": patcher, "ts": g.tick, "name": c.marker(),
            "cat": "removed", "args": {"change": c.describe(), "round": g.round}
        }));
    }
    if let Some(v) = &run.violation {
        let tid = v.cpu.map_or(patcher, |c| c as u64);
        events.push(json!({
            "ph": "i", "s": "g", "pid": PID, "tid": tid, "ts": v.tick, "name": format!("VIOLATION {}", v.kind),
            "cat": "violation", "args": {"message": v.message, "phase": v.moment}
        }));
    }
    let doc = json!({"traceEvents": events, "otherData": {"pokesim": run.title}});
    let mut s = serde_json::to_string(&doc).unwrap_or_default();
    s.push('\n');
    s
}

fn args(e: &TraceEvent) -> Value {
    json!({
        "event": label(e),
        "rip": e.rip.map(|r| format!("{r:#x}")),
        "instruction": e.insn,
        "bytes": bytes_with_epochs(e),
        "epochs": e.epochs,
        "round": e.round,
        "phase": e.op_name(),
        "kernel": e.kernel,
    })
}

/// The records of one event: a slice, plus instants and flow points where they belong.
fn event(run: &Run, e: &TraceEvent, patcher: u64, completed: &[u64]) -> Vec<Value> {
    let tid = e.cpu.map_or(patcher, |c| c as u64);
    let name = match (&e.insn, e.kind) {
        (Some(i), _) => i.clone(),
        (None, TraceKind::Handler) => format!("handler {}", e.event),
        (None, _) => label(e),
    };
    let cat = match e.kind {
        TraceKind::Step if run.touches_site(e) => "site-fetch",
        k => kind_name(k),
    };
    let mut out = vec![
        json!({"ph": "X", "pid": PID, "tid": tid, "ts": e.tick, "dur": 1, "name": name, "cat": cat, "args": args(e)}),
    ];
    let instant = |label: &str| json!({"ph": "i", "s": "t", "pid": PID, "tid": tid, "ts": e.tick, "name": label, "cat": kind_name(e.kind)});
    let flow = |ph: &str, id: u64| json!({"ph": ph, "bp": "e", "pid": PID, "tid": tid, "ts": e.tick, "id": id, "name": "IPI", "cat": "ipi"});
    let sync = e.sync.unwrap_or(0);
    match e.kind {
        TraceKind::Trap => out.push(instant("INT3 trap")),
        TraceKind::Handler if e.event == "iret" => out.push(instant("IRET (serializes)")),
        TraceKind::Ipi => {
            out.push(instant("serialize (sync_core)"));
            if let (Some(sync), Some(cpu)) = (e.sync, e.cpu) {
                out.push(flow("f", flow_id(sync, cpu, run.cpus, Leg::Deliver)));
                if completed.contains(&sync) {
                    out.push(flow("s", flow_id(sync, cpu, run.cpus, Leg::Acknowledge)));
                }
            }
        }
        TraceKind::Broadcast => out.extend((0..run.cpus).map(|c| flow("s", flow_id(sync, c, run.cpus, Leg::Deliver)))),
        TraceKind::SyncDone => {
            out.extend((0..run.cpus).map(|c| flow("f", flow_id(sync, c, run.cpus, Leg::Acknowledge))))
        }
        _ => {}
    }
    out
}

/// The two arrows of an IPI.
#[derive(Clone, Copy)]
enum Leg {
    /// From the broadcast to the vCPU's delivery.
    Deliver,
    /// From the vCPU's acknowledgement to the sync's completion.
    Acknowledge,
}

/// One arrow per (sync, vCPU, leg).
fn flow_id(sync: u64, cpu: usize, cpus: usize, leg: Leg) -> u64 {
    (sync * cpus as u64 + cpu as u64) * 2 + leg as u64
}

fn kind_name(k: TraceKind) -> &'static str {
    match k {
        TraceKind::Step => "step",
        TraceKind::Trap => "trap",
        TraceKind::Fault => "fault",
        TraceKind::Finished => "finished",
        TraceKind::Handler => "handler",
        TraceKind::Ipi => "ipi",
        TraceKind::Patcher => "patcher",
        TraceKind::Store => "store",
        TraceKind::Broadcast => "broadcast",
        TraceKind::SyncDone => "sync-done",
        TraceKind::IrqEnter => "irq-enter",
        TraceKind::Iret => "iret",
        TraceKind::Drain => "drain",
    }
}

/// Enclosing slices: each interrupt handler run (delivery to IRET) and each INT3 handler run
/// (trap to IRET) on its vCPU, and each patcher phase on the patcher's track.
fn spans(run: &Run, patcher: u64) -> Vec<Value> {
    let mut out = Vec::new();
    for (c, start, stop) in irq_spans(run) {
        out.push(json!({"ph": "X", "pid": PID, "tid": c, "ts": start, "dur": stop - start, "name": "interrupt handler", "cat": "irq-run"}));
    }
    for (c, start, stop) in handler_spans(run) {
        out.push(json!({"ph": "X", "pid": PID, "tid": c, "ts": start, "dur": stop - start, "name": "INT3 handler", "cat": "handler-run"}));
    }
    for (phase, round, lo, hi) in phases(run) {
        out.push(json!({"ph": "X", "pid": PID, "tid": patcher, "ts": lo, "dur": hi - lo, "name": phase.name(), "cat": "phase", "args": {"round": round}}));
    }
    out
}
