//! Building a scenario in code. [`ScenarioBuilder`] fills the same [`ScenarioSpec`] a scenario
//! file or the command line fills, so a scenario built here is validated by the one path every
//! input goes through (`ScenarioSpec::build`): a value the command line would refuse is
//! refused here too, with the builder method that gave it named in the error.

use scenarios::catalogue;
use scenarios::entry::{Expectation, ScenarioFile};
use scenarios::input::{InputError, Origin};
use scenarios::spec::{Given, ScenarioSpec};
use scenarios::workload::{ForeignKprobe, SiteOrder, SitePlacement};
use scenarios::Scenario;
use sim_core::sched::Strategy;
use sim_core::{Kprobe, Mutant, Protocol};

use crate::{Error, FetchModel, FetchUnit, StoreGranularity};

/// A scenario under construction; start one with [`scenario`](crate::scenario).
///
/// Every method sets one field; [`ScenarioBuilder::build`] validates them together (a
/// workload option the workload does not have, a vCPU count out of range, a mutant the
/// protocol cannot take, a site the protocol cannot patch are all errors).
///
/// ```
/// use pokesim::{FetchModel, Mutant, Protocol, SitePlacement, Strategy};
///
/// let s = pokesim::scenario("ftrace+kprobe")
///     .protocol(Protocol::Linux56)
///     .mutant(Mutant::NoSyncAfterInt3)
///     .cpus(4)
///     .site(SitePlacement::CROSS16)
///     .fetch(FetchModel::preset("block16").unwrap())
///     .kernel("CONFIG_KPROBES", true)
///     .strategy(Strategy::Pct { depth: 3 })
///     .seed(7)
///     .rounds(4)
///     .build()?;
/// assert_eq!(s.config.cpus, 4);
///
/// // Refused with the method that gave the value:
/// let e = pokesim::scenario("ftrace").cpus(0).build().unwrap_err();
/// assert!(e.to_string().contains(".cpus()"), "{e}");
/// # Ok::<(), pokesim::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ScenarioBuilder {
    spec: ScenarioSpec,
    /// The first value that could not even be stored (an unknown workload name).
    refused: Option<InputError>,
}

fn by<T>(value: T, method: &'static str) -> Option<Given<T>> {
    Some(Given::new(value, Origin::Flag(method)))
}

/// Where builder errors point when no method is at fault.
const INPUT: &str = "scenario builder";

impl ScenarioBuilder {
    /// A scenario of `workload` — a workload (`ftrace`, `static_call`, `jump_label`, `batch`,
    /// `optprobe`, `jcc`, `multi_insn`, `custom`) or a named variant (`ftrace+kprobe`,
    /// `ftrace+kprobe-cycling`, …; `pokesim list` shows them all) — with every other field at
    /// its default (2 vCPUs, the seed protocol, pessimistic fetch, random strategy, seed 0).
    pub fn new(workload: &str) -> Self {
        let mut b = ScenarioBuilder { spec: ScenarioSpec::default(), refused: None };
        match catalogue::variant(workload) {
            Ok(v) => b.spec.workload.kind = by(v, "pokesim::scenario()"),
            Err(m) => b.refused = Some(InputError::at(INPUT, &Origin::Flag("pokesim::scenario()"), "workload", m)),
        }
        b
    }

    /// Starts from a scenario file's fields (as `pokesim run FILE`): methods called afterwards
    /// override them, like flags over a file.
    ///
    /// ```
    /// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/small.toml");
    /// let s = pokesim::ScenarioBuilder::from_file(path)?.cpus(3).build()?;
    /// assert_eq!((s.config.cpus, s.config.protocol), (3, pokesim::Protocol::Linux55));
    /// # Ok::<(), pokesim::Error>(())
    /// ```
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let spec = scenarios::file::read_spec(path.as_ref())?;
        Ok(ScenarioBuilder { spec, refused: None })
    }

    /// The protocol version of the patcher and the INT3 handler.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.spec.protocol = by(protocol, ".protocol()");
        self
    }

    /// Adds a mutant (a deliberate deviation from the protocol).
    pub fn mutant(mut self, mutant: Mutant) -> Self {
        self.spec.mutants.push(Given::new(mutant, Origin::Flag(".mutant()")));
        self.spec.mutants_origin = Some(Origin::Flag(".mutant()"));
        self
    }

    /// The number of vCPUs running the guest.
    pub fn cpus(mut self, cpus: usize) -> Self {
        self.spec.cpus = by(i64::try_from(cpus).unwrap_or(i64::MAX), ".cpus()");
        self
    }

    /// The seed of the run (the first seed of a campaign).
    pub fn seed(mut self, seed: u64) -> Self {
        self.spec.seed = by(i64::try_from(seed).unwrap_or(-1), ".seed()");
        self
    }

    /// The scheduling strategy (random, or PCT with a bug depth).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.spec.strategy = by(strategy, ".strategy()");
        self
    }

    /// Patch rounds of the workload.
    pub fn rounds(mut self, rounds: u32) -> Self {
        self.spec.workload.rounds = by(i64::from(rounds), ".rounds()");
        self
    }

    /// `batch`: the number of sites patched as one batch.
    pub fn sites(mut self, sites: u32) -> Self {
        self.spec.workload.sites = by(i64::from(sites), ".sites()");
        self
    }

    /// `batch`: the order the sites are queued in.
    pub fn order(mut self, order: SiteOrder) -> Self {
        self.spec.workload.order = by(order, ".order()");
        self
    }

    /// Where the (first) patched site lies relative to 16-byte blocks, lines and pages.
    pub fn site(mut self, site: SitePlacement) -> Self {
        self.spec.workload.site = by(site, ".site()");
        self
    }

    /// `static_call`: also retarget the tail-call trampoline (JMP ⇄ RET).
    pub fn tail(mut self, tail: bool) -> Self {
        self.spec.workload.tail = by(tail, ".tail()");
        self
    }

    /// A foreign kprobe the workload registers besides its own patching.
    pub fn kprobe(mut self, kprobe: ForeignKprobe) -> Self {
        self.spec.workload.kprobe = by(kprobe, ".kprobe()");
        self
    }

    /// Registers a kprobe at this instruction address (armed for the whole run).
    pub fn kprobe_at(mut self, addr: u64) -> Self {
        self.spec.kprobes.push(Given::new(Kprobe::armed(addr), Origin::Flag(".kprobe_at()")));
        self
    }

    /// The instruction-fetch model (a preset: `FetchModel::preset("line64")`, or refined).
    pub fn fetch(mut self, fetch: FetchModel) -> Self {
        self.spec.fetch.preset = by(fetch, ".fetch()");
        self
    }

    /// Refines the fetch model's refresh unit.
    pub fn fetch_unit(mut self, unit: FetchUnit) -> Self {
        self.spec.fetch.unit = by(unit, ".fetch_unit()");
        self
    }

    /// Refines the store granularity of `text_poke()`.
    pub fn stores(mut self, stores: StoreGranularity) -> Self {
        self.spec.fetch.stores = by(stores, ".stores()");
        self
    }

    /// Sets a kernel option (`CONFIG_KPROBES`, …) to `y` (`true`) or `n`.
    pub fn kernel(mut self, option: &str, value: bool) -> Self {
        let given = Given::new((option.to_string(), value), Origin::Flag(".kernel()"));
        self.spec.kernel.options.push(given);
        self
    }

    /// The tick budget (default: one that grows with vCPUs, sites and rounds).
    pub fn ticks(mut self, max_ticks: u64) -> Self {
        self.spec.ticks = by(i64::try_from(max_ticks).unwrap_or(-1), ".ticks()");
        self
    }

    /// Each vCPU stops after this many passes through its loop (a finite guest).
    pub fn iterations(mut self, iterations: u64) -> Self {
        self.spec.iterations = by(i64::try_from(iterations).unwrap_or(-1), ".iterations()");
        self
    }

    /// Guest steps each vCPU runs after the patcher finished (the final-image check).
    pub fn drain(mut self, steps: u64) -> Self {
        self.spec.drain = by(i64::try_from(steps).unwrap_or(-1), ".drain()");
        self
    }

    /// What the scenario's campaign is expected to show (default: a pass); read by
    /// [`check_expect`](crate::check_expect) through [`ScenarioBuilder::build_file`].
    pub fn expect(mut self, expect: Expectation) -> Self {
        self.spec.expect = by(expect, ".expect()");
        self
    }

    /// Validates every field together into a scenario.
    pub fn build(self) -> Result<Scenario, Error> {
        Ok(self.build_file()?.scenario)
    }

    /// Validates every field together into a scenario with its name, `expect` and `runs`.
    pub fn build_file(self) -> Result<ScenarioFile, Error> {
        if let Some(e) = self.refused {
            return Err(e.into());
        }
        Ok(self.spec.build(INPUT, "scenario")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21: a mutant that cannot act on the scenario is an error from `build()`, naming
    /// the mutant and the `.mutant()` call, not a run identical to the unmutated one.
    #[test]
    fn build_refuses_a_mutant_that_cannot_act() {
        let refused = ScenarioBuilder::new("optprobe").protocol(Protocol::Linux616).mutant(Mutant::KprobeDisarmNoSync);
        let e = refused.build().expect_err("kprobe-disarm-no-sync cannot act on optprobe").to_string();
        assert!(e.contains(".mutant()") && e.contains("kprobe-disarm-no-sync"), "{e}");
        let acts = ScenarioBuilder::new("ftrace+kprobe-cycling")
            .protocol(Protocol::Linux616)
            .mutant(Mutant::KprobeDisarmNoSync);
        acts.build().expect("it acts on a kprobe client");
    }
}
