//! x86 litmus tests in herdtools7's format, run by complete search under x86-TSO or SC
//! (`pokesim litmus`, issue 25).
//!
//! What it mirrors: herd7's `X86` litmus tests (herdtools7 `lib/X86Parser.mly` for the
//! instructions, `catalogue/x86/tests/` for the catalogue) and herd7's report (its `States`,
//! `Ok`/`No`, `Condition`, `Observation` lines); the memory is [`cpu_model::tso`], the CPUs
//! Unicorn engines ([`cpu_model::TsoCpu`]), so every instruction runs as real x86-64 code.
//!
//! - [`parse`]: the file, into a [`LitmusTest`] (bad input names its line);
//! - [`assemble`]: each thread's instructions into machine code with iced-x86;
//! - [`run`]: the complete search over instruction steps and store-buffer drains;
//! - [`report`]: the result as herd7 prints it, and as JSON.

pub mod assemble;
pub mod parse;
pub mod report;
pub mod run;

use std::fmt;

use iced_x86::Register;

/// A parsed litmus test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LitmusTest {
    /// The name after `X86`.
    pub name: String,
    /// Initial values (everything else starts at 0).
    pub init: Vec<(Target, i64)>,
    /// Each thread's instructions, in program order.
    pub threads: Vec<Vec<Insn>>,
    /// The final condition.
    pub condition: Condition,
    /// Extra locations to show (`locations [x; y;]`).
    pub shown: Vec<Target>,
    /// Every memory location the test names, in order of first appearance.
    pub locations: Vec<String>,
}

impl LitmusTest {
    /// What a final state shows: the registers and locations of the condition and of
    /// `locations`, sorted as herd7 prints them (by name: registers `P:REG` first).
    pub fn observed(&self) -> Vec<Target> {
        let mut out = Vec::new();
        self.condition.prop.targets(&mut out);
        out.extend(self.shown.iter().cloned());
        out.sort_by_key(|t| t.to_string());
        out.dedup();
        out
    }
}

/// A register of a thread, or a memory location (shown `[x]`, as herd7 does).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Thread `.0`'s 32-bit register `.1`.
    Reg(usize, Register),
    /// The memory location of that name.
    Loc(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Reg(t, r) => write!(f, "{t}:{}", reg_name(*r)),
            Target::Loc(l) => write!(f, "[{l}]"),
        }
    }
}

/// The supported registers and their names (32-bit; ESP is the stack pointer, refused).
pub const REGISTERS: [(&str, Register); 7] = [
    ("EAX", Register::EAX),
    ("EBX", Register::EBX),
    ("ECX", Register::ECX),
    ("EDX", Register::EDX),
    ("ESI", Register::ESI),
    ("EDI", Register::EDI),
    ("EBP", Register::EBP),
];

/// The litmus name of a supported register.
pub fn reg_name(r: Register) -> &'static str {
    REGISTERS.iter().find(|(_, x)| *x == r).map_or("?", |(n, _)| n)
}

/// An instruction operand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operand {
    /// A 32-bit register.
    Reg(Register),
    /// The 32-bit memory location of that name (`[x]`).
    Mem(String),
    /// An immediate (`$1`).
    Imm(i64),
}

/// The operations the runner supports (herd7's X86 instruction set, less branches, labels,
/// sized moves, `CMOVC`, `SETNB` and `MOVSD`, which are refused by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `MOV`.
    Mov,
    /// `ADD`.
    Add,
    /// `OR`.
    Or,
    /// `XOR`.
    Xor,
    /// `CMP`.
    Cmp,
    /// `INC`.
    Inc,
    /// `DEC`.
    Dec,
    /// `XCHG` (locked when an operand is memory).
    Xchg,
    /// `CMPXCHG`.
    Cmpxchg,
    /// `MFENCE`.
    Mfence,
    /// `LFENCE`.
    Lfence,
    /// `SFENCE`.
    Sfence,
}

/// One instruction of a thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Line in the file.
    pub line: usize,
    /// The instruction as written.
    pub text: String,
    /// With a `LOCK` prefix.
    pub lock: bool,
    /// The operation.
    pub op: Op,
    /// Its operands, destination first.
    pub operands: Vec<Operand>,
}

/// `exists`, `~exists` or `forall`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantifier {
    /// Some final state satisfies the proposition.
    Exists,
    /// No final state does.
    NotExists,
    /// Every final state does.
    Forall,
}

/// The final condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The quantifier.
    pub quantifier: Quantifier,
    /// The proposition over final states.
    pub prop: Prop,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = match self.quantifier {
            Quantifier::Exists => "exists",
            Quantifier::NotExists => "~exists",
            Quantifier::Forall => "forall",
        };
        match &self.prop {
            p @ (Prop::And(..) | Prop::Or(..)) => write!(f, "{q} ({p})"),
            p => write!(f, "{q} {p}"),
        }
    }
}

/// A proposition over a final state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prop {
    /// `true`.
    True,
    /// `false`.
    False,
    /// `target = value` (compared as 32-bit values).
    Atom(Target, i64),
    /// `~p`.
    Not(Box<Prop>),
    /// `p /\ q`.
    And(Box<Prop>, Box<Prop>),
    /// `p \/ q`.
    Or(Box<Prop>, Box<Prop>),
}

impl Prop {
    /// Adds the targets the proposition names to `out`.
    pub fn targets(&self, out: &mut Vec<Target>) {
        match self {
            Prop::True | Prop::False => {}
            Prop::Atom(t, _) => out.push(t.clone()),
            Prop::Not(p) => p.targets(out),
            Prop::And(p, q) | Prop::Or(p, q) => {
                p.targets(out);
                q.targets(out);
            }
        }
    }

    /// The proposition's value where `value` gives each target's final 32-bit value.
    pub fn eval(&self, value: &dyn Fn(&Target) -> u32) -> bool {
        match self {
            Prop::True => true,
            Prop::False => false,
            Prop::Atom(t, v) => value(t) == *v as u32,
            Prop::Not(p) => !p.eval(value),
            Prop::And(p, q) => p.eval(value) && q.eval(value),
            Prop::Or(p, q) => p.eval(value) || q.eval(value),
        }
    }
}

impl fmt::Display for Prop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As herd7 prints: `/\` binds tighter than `\/`, so a child is parenthesised only
        // where precedence needs it.
        let sub = |f: &mut fmt::Formatter<'_>, p: &Prop| {
            let flat = matches!(
                (self, p),
                (_, Prop::True | Prop::False | Prop::Atom(..) | Prop::Not(_))
                    | (Prop::And(..), Prop::And(..))
                    | (Prop::Or(..), Prop::Or(..) | Prop::And(..))
            );
            if flat {
                write!(f, "{p}")
            } else {
                write!(f, "({p})")
            }
        };
        match self {
            Prop::True => f.write_str("true"),
            Prop::False => f.write_str("false"),
            Prop::Atom(t, v) => write!(f, "{t}={v}"),
            Prop::Not(p) => {
                f.write_str("~")?;
                sub(f, p)
            }
            Prop::And(p, q) | Prop::Or(p, q) => {
                sub(f, p)?;
                f.write_str(if matches!(self, Prop::And(..)) { " /\\ " } else { " \\/ " })?;
                sub(f, q)
            }
        }
    }
}
