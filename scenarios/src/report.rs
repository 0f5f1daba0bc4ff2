//! Human-readable output shared by the commands: the fixed-column trace of `pokesim trace`
//! (DESIGN.md §2.12: tick, actor, event, RIP, bytes, store epochs, protocol phase).

use std::fmt::Write;

use sim_core::trace::TraceEvent;
use sim_core::Violation;

/// Formats trace events in fixed columns; `around` limits the output to `window` ticks either
/// side of a tick; the violation's tick is marked.
pub fn trace_table(events: &[TraceEvent], violation: Option<&Violation>, around: Option<(u64, u64)>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8} {:<8} {:<20} {:>10} {:<32} {:<28} phase",
        "tick", "actor", "event", "rip", "bytes", "epochs"
    );
    let bad = violation.map(|v| v.tick);
    for e in events {
        if let Some((t, w)) = around {
            if e.tick + w < t || e.tick > t + w {
                continue;
            }
        }
        let rip = e.rip.map_or("-".to_string(), |r| format!("{r:#x}"));
        let bytes: Vec<String> = e.bytes.iter().map(|b| format!("{b:02x}")).collect();
        let epochs: Vec<String> = e.epochs.iter().map(|x| x.to_string()).collect();
        let mark = if Some(e.tick) == bad { ">>" } else { "  " };
        let _ = writeln!(
            out,
            "{mark}{:>6} {:<8} {:<20} {:>10} {:<32} {:<28} {}",
            e.tick,
            e.actor,
            e.event,
            rip,
            bytes.join(" "),
            epochs.join(" "),
            e.phase
        );
    }
    if let Some(v) = violation {
        let _ = writeln!(out, "\n>> {v}");
    }
    out
}
