//! The catalogue as data: the workload variants every version is run against, which of them a
//! version supports, and the historic bugs with their buggy and fixed versions. The
//! mutant-detection matrix over it is [`crate::matrix`].

use cpu_model::FetchModel;
use sim_core::sched::Strategy;
use sim_core::{Mutant, Protocol, RunConfig, SimError, Subject, ViolationKind};

use crate::scenario::Scenario;
use crate::workload::{ForeignKprobe, SiteOrder, SitePlacement, WorkloadKind, WorkloadSpec};

/// A named workload configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Name in tables: the workload name plus its options.
    pub name: &'static str,
    /// The workload.
    pub spec: WorkloadSpec,
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name)
    }
}

fn spec(kind: WorkloadKind) -> WorkloadSpec {
    WorkloadSpec::new(kind)
}

/// The variants of the catalogue: every workload, plus the ones that matter for a version's
/// history (static_call without its RET trampoline, which pre-2020 handlers can emulate;
/// ftrace with a foreign kprobe; batch queued out of order).
pub fn variants() -> Vec<Variant> {
    vec![
        Variant { name: "ftrace", spec: spec(WorkloadKind::Ftrace) },
        Variant {
            name: "ftrace+kprobe",
            spec: WorkloadSpec { kprobe: ForeignKprobe::Armed, ..spec(WorkloadKind::Ftrace) },
        },
        Variant {
            name: "ftrace+kprobe-cycling",
            spec: WorkloadSpec { kprobe: ForeignKprobe::Cycling, ..spec(WorkloadKind::Ftrace) },
        },
        Variant {
            name: "ftrace+kprobe-entry",
            spec: WorkloadSpec { kprobe: ForeignKprobe::Entry, ..spec(WorkloadKind::Ftrace) },
        },
        Variant { name: "static_call", spec: spec(WorkloadKind::StaticCall) },
        Variant { name: "static_call-no-tail", spec: WorkloadSpec { tail: false, ..spec(WorkloadKind::StaticCall) } },
        Variant { name: "jump_label", spec: spec(WorkloadKind::JumpLabel) },
        Variant { name: "jcc", spec: spec(WorkloadKind::Jcc) },
        Variant { name: "optprobe", spec: spec(WorkloadKind::Optprobe) },
        Variant { name: "batch", spec: spec(WorkloadKind::Batch) },
        Variant {
            name: "batch-interleaved",
            spec: WorkloadSpec { order: SiteOrder::Interleaved, ..spec(WorkloadKind::Batch) },
        },
    ]
}

/// A workload by name: a variant of [`variants`] (`ftrace+kprobe`, `static_call-no-tail`,
/// `batch-interleaved`, ...) or any plain workload (`multi_insn`).
pub fn variant(name: &str) -> Result<Variant, String> {
    if let Some(v) = variants().into_iter().find(|v| v.name == name) {
        return Ok(v);
    }
    match name.parse::<WorkloadKind>() {
        Ok(kind) => Ok(Variant { name: kind.name(), spec: spec(kind) }),
        Err(_) => {
            let mut names: Vec<&str> = variants().iter().map(|v| v.name).collect();
            for k in WorkloadKind::ALL {
                if !names.contains(&k.name()) {
                    names.push(k.name());
                }
            }
            Err(format!("unknown workload '{name}' (valid: {})", names.join(", ")))
        }
    }
}

/// The scenario for seed index `k` of a campaign: vCPUs cycle 2, 4, 8 and the site placement
/// cycles aligned, crossing 16, crossing 64, crossing a page.
pub fn scenario(protocol: Protocol, mutants: &[Mutant], spec: WorkloadSpec, preset: &str, k: u64) -> Scenario {
    Scenario {
        workload: WorkloadSpec { site: SitePlacement::NAMED[((k / 3) % 4) as usize], ..spec },
        config: RunConfig {
            cpus: [2, 4, 8][(k % 3) as usize],
            protocol,
            mutants: mutants.to_vec(),
            fetch: FetchModel::preset(preset).expect("known preset"),
            ..RunConfig::default()
        },
        strategy: Strategy::Random,
        seed: k,
        kprobes: Vec::new(),
        custom: None,
    }
}

/// Why a mutant of `scenario` cannot act on it (the reason [`sim_core::applicability`] refuses
/// it with), or `None` if every mutant acts; any other invalid input is an error.
pub fn vacuous(scenario: &Scenario) -> Result<Option<String>, SimError> {
    match scenario.plan() {
        Ok(_) => Ok(None),
        Err(SimError::Invalid { subject: Subject::Mutants, message }) => Ok(Some(message)),
        Err(e) => Err(e),
    }
}

/// Whether `protocol` can run `spec` at all: `Err` with the kernel's reason if not.
pub fn supported(protocol: Protocol, spec: WorkloadSpec) -> Result<(), SimError> {
    scenario(protocol, &[], spec, "pessimistic", 0).plan().map(|_| ())
}

/// A historic bug: which one, the violation kinds it shows as, and why it happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownBug {
    /// The reference's name for it (`B1`, `B3`, `B5`, ...; reference/kernel-protocol.md).
    pub id: &'static str,
    /// The violation kinds a run that hits it reports.
    pub kinds: &'static [ViolationKind],
    /// What goes wrong and which commit fixed it.
    pub why: &'static str,
}

/// B5 (and B3 behind it) on the versions without the kprobe arm/disarm sync.
const B5_B3: KnownBug = KnownBug {
    id: "B5+B3",
    kinds: &[ViolationKind::UnclaimedInt3, ViolationKind::HandlerFault],
    why: "B5 and B3: arch_disarm_kprobe() without text_poke_sync() (fixed by 5c02ece81848d); a stale INT3 \
          outlives unregister_kprobe() and the re-arm hides it from the vanished-INT3 check — or the \
          kprobe's INT3 meets B3's NULL vector",
};
/// B5 alone (5.5 has B3's fix).
const B5: KnownBug = KnownBug {
    id: "B5",
    kinds: &[ViolationKind::UnclaimedInt3, ViolationKind::HandlerFault],
    why: "B5: arch_disarm_kprobe() without text_poke_sync() (fixed by 5c02ece81848d); a stale INT3 outlives \
          unregister_kprobe(), and when the kprobe is re-armed before kprobe_int3_handler() looks, the \
          INT3 is back in memory: unclaimed",
};
/// B1: the detour handler and a CALL.
const B1: KnownBug = KnownBug {
    id: "B1",
    kinds: &[ViolationKind::EmulationMismatch, ViolationKind::WorkloadInvariant],
    why: "B1: the detour handler cannot emulate a CALL",
};
/// B3: the seed's teardown order.
const B3: KnownBug = KnownBug {
    id: "B3",
    kinds: &[ViolationKind::HandlerFault],
    why: "B3: vec cleared before nr_entries without a sync; a foreign INT3's handler reads NULL",
};
/// The 5.6 `try_get_desc()` use after free.
const TRY_GET_DESC: KnownBug = KnownBug {
    id: "try_get_desc",
    kinds: &[ViolationKind::UseAfterFree],
    why: "try_get_desc() race (fixed by efd608fa7403): a foreign INT3's handler increments freed stack memory",
};

/// Whether a version is known to fail a variant even unmutated, and why (its historic bug).
pub fn known_bug(protocol: Protocol, variant: &Variant) -> Option<KnownBug> {
    // A kprobe at ftrace's entry becomes ftrace-based (no INT3) unless a mutant drops the check.
    let foreign_int3 = matches!(variant.spec.kprobe, ForeignKprobe::Armed | ForeignKprobe::Cycling)
        || variant.spec.kind == WorkloadKind::Optprobe;
    let cycling = variant.spec.kprobe == ForeignKprobe::Cycling;
    match protocol {
        Protocol::Linux54 | Protocol::Seed if cycling => Some(B5_B3),
        Protocol::Linux55 if cycling => Some(B5),
        Protocol::Linux54 if variant.spec.kind == WorkloadKind::StaticCall => Some(B1),
        Protocol::Linux54 | Protocol::Seed if foreign_int3 => Some(B3),
        Protocol::Linux56 if foreign_int3 => Some(TRY_GET_DESC),
        _ => None,
    }
}
