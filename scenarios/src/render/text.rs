//! The text trace: one line per event in fixed columns, for a reader who knows
//! `arch/x86/kernel/alternative.c` — each guest step with its decoded instruction and the
//! store epoch of every byte it fetched, sites by name, each patcher operation and handler
//! micro-step with the kernel statement it mirrors; then the violating fetch decoded byte by
//! byte, each byte with the store it came from; then a legend.

use std::fmt::Write;

use sim_core::trace::TraceEvent;

use sim_core::protocol::change::Change;

use super::{bytes_with_epochs, label, Gap, Run};

/// The trace of `run`, limited to the ticks in `window` (inclusive) if given.
pub fn render(run: &Run, window: Option<(u64, u64)>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}", run.title);
    let _ = writeln!(out, "# sites: {}", sites(run));
    let _ = writeln!(
        out,
        "{:>7} {:<8} {:<18} {:<9} {:<30} {:<26} {:<24} kernel",
        "tick", "actor", "event", "where", "instruction", "bytes@epoch", "round/phase"
    );
    let bad = run.violation.as_ref().map(|v| v.tick);
    let inside = |tick: u64| window.is_none_or(|(lo, hi)| tick >= lo && tick <= hi);
    let mut gaps = run.gaps().into_iter().filter(|g| inside(g.tick)).peekable();
    let mut shown = 0;
    for e in run.events.iter().filter(|e| inside(e.tick)) {
        while let Some(g) = gaps.next_if(|g| g.tick <= e.tick) {
            let _ = writeln!(out, "{}", gap_line(run, &g));
        }
        let mark = if Some(e.tick) == bad { ">>" } else { "  " };
        let _ = writeln!(out, "{mark}{}", line(run, e));
        shown += 1;
    }
    for g in gaps {
        let _ = writeln!(out, "{}", gap_line(run, &g));
    }
    if let Some((lo, hi)) = window {
        let total = run.events.len();
        let _ = writeln!(out, "   ({shown} of {total} events: ticks {lo}..={hi}; --all shows every tick)");
    }
    if run.violation.is_some() {
        out.push_str(&violation(run));
    }
    if !run.changes.is_empty() {
        out.push_str("\nwhat the mutants changed (-- lines above mark where a removed operation would have run):\n");
        for (l, _) in run.change_lines() {
            let _ = writeln!(out, "-- {l}");
        }
    }
    out.push_str(LEGEND);
    out
}

/// A line where an operation a mutant removed (moved, replaced) would have run, before the
/// event of the same tick: `-- tick 22 (round 1) patcher: sync-if-do-sync removed by
/// no-sync-after-tail — text_poke_bp_batch(): if (do_sync) text_poke_sync();`. (Its tick is
/// not in the event rows' column: a reader counting events by that column skips it.)
fn gap_line(run: &Run, g: &Gap) -> String {
    match run.changes.get(g.change) {
        Some(Change::Op { mutant, op, edit, statement, .. }) => {
            format!("-- tick {} ({}) patcher: {} {} by {mutant} — {statement}", g.tick, g.round, op.name(), edit.word())
        }
        _ => String::new(),
    }
}

fn sites(run: &Run) -> String {
    let parts: Vec<String> = run.sites.iter().map(|s| format!("{} = {:#x}+{}", s.name, s.addr, s.len)).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn line(run: &Run, e: &TraceEvent) -> String {
    let place = e.rip.map_or("-".to_string(), |r| run.place(r));
    let insn = e.insn.as_deref().unwrap_or("");
    let bytes = bytes_with_epochs(e);
    let phase = format!("{} {}", e.round.short(), e.op_name());
    let kernel = e.kernel.as_deref().unwrap_or("");
    format!(
        "{:>5} {:<8} {:<18} {:<9} {:<30} {:<26} {:<24} {kernel}",
        e.tick,
        e.actor,
        label(e),
        place,
        clip(insn, 30),
        clip(&bytes, 26),
        clip(&phase, 24)
    )
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// The violating fetch decoded as the CPU saw it, each byte with the store it came from.
fn violation(run: &Run) -> String {
    let Some(v) = &run.violation else { return String::new() };
    let mut out = String::new();
    let _ = writeln!(out, "\n>> {v}");
    let (bytes, decoded) = run.torn();
    if let Some(&(addr, _, _)) = bytes.first() {
        let cpu = v.cpu.map_or("a vCPU".to_string(), |c| format!("cpu{c}"));
        let _ = writeln!(out, ">> {cpu} fetched at {} ({addr:#x}): `{decoded}`", run.place(addr));
        for (at, byte, epoch) in bytes {
            let _ = writeln!(out, ">>   {:<9} {byte:02x}  from {}", run.place(at), run.origin(epoch));
        }
    }
    out
}

const LEGEND: &str = "
legend:
  tick         simulated time: one scheduled event per tick
  actor        cpuN (a vCPU) or patcher; >> marks the tick of the violation
  where        siteN+k = byte k of patched site N; other addresses in hex
  instruction  the instruction as the vCPU fetched it (Intel syntax)
  bytes@epoch  each byte fetched (or stored) and the store epoch it came from: 0 = the initial
               text, n = the n-th store of the run (a patcher store line shows its own epoch);
               a vCPU may see an older epoch of a byte until it serializes (IPI, IRET, CPUID)
  round/phase  the patch round in progress (rN) or the drain after the last, and the patcher's
               next operation
  kernel       the function and statement of arch/x86/kernel/alternative.c the event mirrors
  --           where an operation of the unmutated program that a mutant removed, moved or
               replaced would have run (before the event of that tick)
";
