//! The complete search of a litmus test: every interleaving of the threads' instruction steps
//! and of the store-buffer drains ([`cpu_model::tso`]), over a set of visited states.
//!
//! A state is everything the future depends on: each thread's register file (RIP included)
//! and the memory's [`TsoState`] (the locations' bytes in memory and every buffer, in order).
//! From a state the enabled events are: a step of each thread that has not reached the end of
//! its code, and a drain of each thread whose buffer is not empty. A state with no enabled
//! event is final: every thread has finished and every store is in memory, where herd7 reads
//! the final values of locations. The search restores the engines to a state, runs one event
//! and keeps the new state if it was not visited; it is complete when no unexpanded state is
//! left, and *incomplete* (no verdict) if it stops at its state limit first. Order is fixed
//! (threads by index, each thread's step before its drain; a stack), so the counts are
//! deterministic; the visited set is only ever asked for membership.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::rc::Rc;

use cpu_model::{CpuError, Fault, MemoryModel, Regs, TsoCpu, TsoMemory, TsoState, PAGE_SIZE};

use super::assemble::{assemble, AsmError, DataLayout};
use super::{LitmusTest, Target};

/// Where thread 0's code starts; thread `t`'s is `CODE_STRIDE * t` above.
pub const CODE_BASE: u64 = 0x10_0000;
/// Address space per thread's code.
pub const CODE_STRIDE: u64 = 0x1_0000;
/// Where the locations start.
pub const DATA_BASE: u64 = 0x80_0000;

/// What the search may use.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The memory model.
    pub model: MemoryModel,
    /// Stop (incomplete, no verdict) after this many distinct states.
    pub max_states: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { model: MemoryModel::Tso, max_states: 2_000_000 }
    }
}

/// What the search established.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The registers and locations a final state shows, in print order.
    pub observed: Vec<Target>,
    /// Every reachable final state: the observed values, in the order of `observed`.
    pub finals: BTreeSet<Vec<u32>>,
    /// Distinct states visited.
    pub states: u64,
    /// Events run (transitions explored).
    pub transitions: u64,
    /// True if every reachable state was expanded.
    pub complete: bool,
}

/// Why a test could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An instruction did not assemble.
    #[error(transparent)]
    Asm(#[from] AsmError),
    /// An instruction faulted (a litmus test has no exception handler).
    #[error("line {line}: thread P{thread} faulted: {fault}")]
    Fault {
        /// The thread.
        thread: usize,
        /// The instruction's line.
        line: usize,
        /// The fault.
        fault: Fault,
    },
    /// The emulator failed (a pokesim bug).
    #[error(transparent)]
    Cpu(#[from] CpuError),
}

/// A state of the search.
#[derive(Clone, PartialEq, Eq, Hash)]
struct State {
    regs: Vec<Regs>,
    mem: TsoState,
}

/// The threads on their engines over one TSO memory.
struct Machine {
    cpus: Vec<TsoCpu>,
    mem: Rc<RefCell<TsoMemory>>,
    /// Per thread: the address after its last instruction, and each instruction's address
    /// and line.
    ends: Vec<u64>,
    lines: Vec<Vec<(u64, usize)>>,
    data: DataLayout,
}

impl Machine {
    fn new(test: &LitmusTest, model: MemoryModel) -> Result<Self, RunError> {
        let data = DataLayout { base: DATA_BASE, names: test.locations.clone() };
        let data_len = data.len().next_multiple_of(PAGE_SIZE);
        let n = test.threads.len();
        let mut mem = TsoMemory::new(model, DATA_BASE, data_len, n);
        mem.set_windows(&[(DATA_BASE, data.len())]).map_err(CpuError::from)?;
        for (target, v) in &test.init {
            if let Target::Loc(l) = target {
                mem.init(data.addr(l), &(*v as u32).to_le_bytes()).map_err(CpuError::from)?;
            }
        }
        let mem = Rc::new(RefCell::new(mem));
        let (mut cpus, mut ends, mut lines) = (Vec::new(), Vec::new(), Vec::new());
        for (t, insns) in test.threads.iter().enumerate() {
            let base = CODE_BASE + CODE_STRIDE * t as u64;
            let (code, addrs) = assemble(insns, base, &data)?;
            let mut regs = Regs { rip: base, rflags: 0x2, ..Regs::default() };
            for (target, v) in &test.init {
                if let Target::Reg(rt, r) = target {
                    if *rt == t {
                        regs.gpr[r.full_register().number()] = u64::from(*v as u32);
                    }
                }
            }
            cpus.push(TsoCpu::new(t, base, &code, &mem, &regs)?);
            ends.push(base + code.len() as u64);
            lines.push(addrs.into_iter().zip(insns.iter().map(|i| i.line)).collect());
        }
        Ok(Machine { cpus, mem, ends, lines, data })
    }

    fn save(&self) -> Result<State, CpuError> {
        let regs = self.cpus.iter().map(|c| c.regs()).collect::<Result<_, _>>()?;
        Ok(State { regs, mem: self.mem.borrow().save() })
    }

    fn restore(&mut self, s: &State) -> Result<(), CpuError> {
        for (c, r) in self.cpus.iter_mut().zip(&s.regs) {
            c.set_regs(r)?;
        }
        self.mem.borrow_mut().restore(&s.mem);
        Ok(())
    }

    /// Runs thread `t`'s next instruction.
    fn step(&mut self, t: usize) -> Result<(), RunError> {
        let rip = self.cpus[t].rip();
        let step = self.cpus[t].step()?;
        if let Some(fault) = step.fault {
            let line = self.lines[t].iter().find(|(a, _)| *a == rip).map_or(0, |(_, l)| *l);
            return Err(RunError::Fault { thread: t, line, fault });
        }
        Ok(())
    }

    /// The observed values in a final state.
    fn observe(&self, s: &State, observed: &[Target]) -> Vec<u32> {
        observed
            .iter()
            .map(|t| match t {
                Target::Reg(th, r) => s.regs.get(*th).map_or(0, |regs| regs.gpr[r.full_register().number()] as u32),
                Target::Loc(l) => {
                    let off = (self.data.addr(l) - self.data.base) as usize;
                    u32::from_le_bytes(s.mem.memory[off..off + 4].try_into().expect("4 bytes"))
                }
            })
            .collect()
    }
}

/// Runs the complete search of `test`.
pub fn run(test: &LitmusTest, opts: &Options) -> Result<Outcome, RunError> {
    let mut m = Machine::new(test, opts.model)?;
    let observed = test.observed();
    let mut out = Outcome { observed, finals: BTreeSet::new(), states: 1, transitions: 0, complete: true };
    let init = m.save()?;
    let mut visited: HashSet<State> = HashSet::new();
    visited.insert(init.clone());
    let mut stack = vec![init];
    while let Some(s) = stack.pop() {
        let mut successors = 0;
        for t in 0..m.cpus.len() {
            let runs = s.regs[t].rip != m.ends[t];
            let drains = !s.mem.buffers[t].is_empty();
            for drain in [false, true] {
                if (drain && !drains) || (!drain && !runs) {
                    continue;
                }
                successors += 1;
                m.restore(&s)?;
                if drain {
                    m.mem.borrow_mut().drain_oldest(t);
                } else {
                    m.step(t)?;
                }
                out.transitions += 1;
                let next = m.save()?;
                if !visited.contains(&next) {
                    visited.insert(next.clone());
                    stack.push(next);
                }
            }
        }
        if successors == 0 {
            out.finals.insert(m.observe(&s, &out.observed));
        }
        if visited.len() as u64 > opts.max_states {
            out.complete = false;
            break;
        }
    }
    out.states = visited.len() as u64;
    Ok(out)
}
