//! `pokesim`: the command line (DESIGN.md §2.11). Every command parses its arguments into the
//! library's types, builds its scenario through the one validating path
//! (`scenarios::spec`), runs through the one campaign primitive (`scenarios::campaign`),
//! prints its result (text, or JSON lines with a `format` version) before writing any
//! artifact, and ends with one of the documented exit statuses ([`EXIT_STATUS`]).

mod args;
mod cmd;
mod out;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The exit statuses, as every `--help` shows them.
pub const EXIT_STATUS: &str = "\
Exit status:
  0    as expected (the scenario's `expect` met, replay reproduced, shrink succeeded)
  1    an unexpected outcome (a violation where a pass was expected, or the reverse)
  2    bad input: usage, a scenario file or artifact (named with its line and field), or a
       recording that no longer reproduces
  3    a pokesim bug (the simulator failed or contradicted itself)
  4    a run spent its tick budget before reaching a verdict (raise --ticks), or no verdict
       otherwise: no run finished, or a search was cut (its limit, executions out of ticks)
  141  stdout was closed (a pipe reader went away)";

const EXAMPLES: &str = "\
Examples:
  pokesim check                                    # every built-in scenario, as CI runs it
  pokesim run --workload ftrace --protocol seed --cpus 4 --seed 7
  pokesim run --mutant no-sync-after-int3 --cpus 2 --json
  pokesim run examples/race.toml --cpus 8          # a file, one field overridden
  pokesim explore examples/race.toml --runs 10000 --strategy pct
  pokesim explore race.toml --runs 100000 --shard 3/8 --artifact-dir out   # one of 8 machines
  pokesim merge out/*.json                         # the 8 shards: what one machine would report
  pokesim replay pokesim-artifacts/A.json          # reproduce a failure bit for bit
  pokesim shrink A.json -o small.json && pokesim trace small.json
  pokesim trace small.json --format html -o race.html   # a zoomable timeline in a browser
  pokesim corpus                                   # the regression corpus shipped with pokesim
  pokesim hw --protocol linux-6.16 --site cross16 --rounds 1000000   # on this machine's real CPUs
  pokesim hw --matrix                              # mutants on hardware vs the fetch presets
  pokesim litmus tests/litmus/x86/SB.litmus --model sc   # a litmus test, every outcome";

#[derive(Parser)]
#[command(
    name = "pokesim",
    version,
    about = "Deterministic multi-CPU x86-64 simulator for live code patching",
    after_help = format!("{EXAMPLES}\n\n{EXIT_STATUS}"),
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario (a file, flags, or flags over a file) over its seeds.
    #[command(after_help = EXIT_STATUS)]
    Run(Box<cmd::run::RunArgs>),
    /// Run a campaign of many seeds in parallel (random or PCT), sharded if asked.
    #[command(after_help = EXIT_STATUS)]
    Explore(Box<cmd::run::ExploreArgs>),
    /// Merge the shard results of `explore --shard I/N` into the whole campaign's report.
    ///
    /// `pokesim merge out/*.json` prints the report, writes the artifact and exits with the
    /// status that `explore` would have given for the whole campaign on one machine.
    #[command(after_help = EXIT_STATUS)]
    Merge(cmd::merge::MergeArgs),
    /// Explore every interleaving and stale view of a small scenario within a bound.
    #[command(after_help = EXIT_STATUS)]
    Exhaust(Box<cmd::exhaust::ExhaustArgs>),
    /// Replay a failure artifact or a recorded corpus entry from its decisions.
    #[command(after_help = EXIT_STATUS)]
    Replay(cmd::replay::ReplayArgs),
    /// Shrink a failure artifact to a smaller failing run.
    #[command(after_help = EXIT_STATUS)]
    Shrink(cmd::replay::ShrinkArgs),
    /// Show a recorded run: text around its violation, Perfetto JSON, an SVG or an HTML report.
    #[command(after_help = EXIT_STATUS)]
    Trace(cmd::trace::TraceArgs),
    /// Print the kernel statement each patcher operation and handler step mirrors, per version.
    #[command(after_help = EXIT_STATUS)]
    Kernel(cmd::version::KernelArgs),
    /// Print a version's patcher program (mutants applied) as an editable scenario `program`.
    Program(cmd::version::ProgramArgs),
    /// Run the regression corpus (the shipped one, or a directory), or add an artifact to it.
    #[command(after_help = EXIT_STATUS)]
    Corpus(cmd::corpus::CorpusArgs),
    /// The sync-necessity matrix: every mutant x protocol x workload x fetch preset.
    #[command(after_help = EXIT_STATUS)]
    Mutants(cmd::check::MutantsArgs),
    /// Run the built-in scenarios and print a verdict table (the main job).
    #[command(after_help = EXIT_STATUS)]
    Check(cmd::check::CheckArgs),
    /// Run a scenario's protocol on this machine's real CPUs (ground truth), or with --matrix
    /// the mutants next to what each fetch preset predicts.
    #[command(after_help = EXIT_STATUS)]
    Hw(Box<cmd::hw::HwArgs>),
    /// Measure throughput: raw Unicorn vs pokesim, quiet and while patching.
    #[command(after_help = EXIT_STATUS)]
    Bench(cmd::list::BenchArgs),
    /// Run an x86 litmus test (herdtools7's format) by complete search under x86-TSO or SC,
    /// and print every reachable final state and the verdict as herd7 does.
    #[command(after_help = EXIT_STATUS)]
    Litmus(cmd::litmus::LitmusArgs),
    /// List workloads, protocols, mutants, fetch presets, program operations and violation kinds.
    List(cmd::list::ListArgs),
}

fn main() -> ExitCode {
    // A panic anywhere — a failed always-on invariant of the machine, say — is a pokesim bug:
    // exit status 3 (as the help's exit-status table says), never Rust's 101 and never a verdict.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("pokesim: internal error (a pokesim bug; please report it with the command line)");
        std::process::exit(3);
    }));
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Explore(a) => cmd::run::explore(a),
        Command::Merge(a) => cmd::merge::merge(a),
        Command::Exhaust(a) => cmd::exhaust::exhaust(a),
        Command::Replay(a) => cmd::replay::replay(a),
        Command::Shrink(a) => cmd::replay::shrink(a),
        Command::Trace(a) => cmd::trace::trace(a),
        Command::Kernel(a) => cmd::version::kernel(a),
        Command::Program(a) => cmd::version::program(a),
        Command::Corpus(a) => cmd::corpus::corpus(a),
        Command::Mutants(a) => cmd::check::mutants(a),
        Command::Check(a) => cmd::check::check(a),
        Command::Hw(a) => cmd::hw::hw(a),
        Command::Bench(a) => cmd::list::bench(a),
        Command::Litmus(a) => cmd::litmus::litmus(a),
        Command::List(a) => cmd::list::list(a),
    };
    match result {
        Ok(status) => status.code(),
        Err(failure) => failure.exit(),
    }
}
