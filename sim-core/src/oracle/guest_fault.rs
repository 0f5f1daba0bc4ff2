//! Oracle 4, guest fault (DESIGN.md §2.7): any fault of guest code — an invalid opcode, an
//! interrupt other than the INT3 trap, a fetch outside the text, an unmapped access — is a
//! violation. The workloads are correct programs; only a torn or misplaced instruction (or a
//! handler that resumed a vCPU somewhere wrong) makes them fault.

use cpu_model::{ExecutedInsn, StepOutcome};

/// `Some(message)` if the step faulted.
pub fn check(insn: &ExecutedInsn, outcome: &StepOutcome) -> Option<String> {
    match outcome {
        StepOutcome::Fault(fault) => Some(format!("{fault} executing {:02x?}", insn.bytes())),
        _ => None,
    }
}
