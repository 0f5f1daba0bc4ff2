//! What a protocol version is, printed: `pokesim kernel` (the kernel statement each patcher
//! operation and handler micro-step mirrors; `sim_core::protocol::kernel`) and `pokesim
//! program` (a version's patcher program, mutants applied, as an editable scenario `program`;
//! `sim_core::program`).

use clap::Args;
use serde::Serialize;
use sim_core::protocol::kernel;
use sim_core::{Mutant, Protocol};

use crate::args::OutputOpts;
use crate::out::{self, Failure, Status};

/// `pokesim kernel`.
#[derive(Args)]
pub struct KernelArgs {
    /// Only this protocol version [default: every version].
    #[arg(long, alias = "version", value_parser = |s: &str| s.parse::<Protocol>(), value_name = "P")]
    protocol: Option<Protocol>,
    #[command(flatten)]
    output: OutputOpts,
}

#[derive(Serialize)]
struct KernelRow<'a> {
    command: &'static str,
    protocol: &'a str,
    step: &'a str,
    function: &'a str,
    code: &'a str,
}

/// `pokesim kernel`: each version's table of what its steps mirror.
pub fn kernel(a: &KernelArgs) -> Result<Status, Failure> {
    let protocols: Vec<Protocol> = a.protocol.map_or_else(|| Protocol::ALL.to_vec(), |p| vec![p]);
    for p in protocols {
        let rows = kernel::table(p);
        if !a.output.json {
            out::line(format!("{} ({})", p.name(), p.description()))?;
        }
        for (step, st) in &rows {
            if a.output.json {
                out::json(&KernelRow {
                    command: "kernel",
                    protocol: p.name(),
                    step,
                    function: st.function,
                    code: st.code,
                })?;
            } else {
                out::line(format!("  {step:<22} {:<30} {}", st.function, st.code))?;
            }
        }
        if !a.output.json {
            out::line("")?;
        }
    }
    Ok(Status::Expected)
}

/// `pokesim program`.
#[derive(Args)]
pub struct ProgramArgs {
    /// The protocol version.
    #[arg(long, alias = "version", value_parser = |s: &str| s.parse::<Protocol>(), value_name = "P")]
    protocol: Protocol,
    /// A mutant to apply first (repeatable; only mutants that edit the program).
    #[arg(long = "mutant", value_parser = |s: &str| s.parse::<Mutant>(), value_name = "M")]
    mutants: Vec<Mutant>,
    /// Print the version's built-in C file instead (the patcher and the INT3 handler as C, with
    /// every mutant as an `#ifdef POKESIM_MUTANT_*` switch): a starting point to edit and run
    /// with `--protocol-source FILE`.
    #[arg(long, conflicts_with = "mutants")]
    c: bool,
    /// With --c: print pokesim.h, the header the file includes, instead.
    #[arg(long, requires = "c")]
    header: bool,
    #[command(flatten)]
    output: OutputOpts,
}

#[derive(Serialize)]
struct ProgramLine<'a> {
    command: &'static str,
    protocol: &'a str,
    mutants: Vec<&'a str>,
    program: Vec<&'static str>,
}

/// `pokesim program`: the version's program as TOML for a scenario file (or a JSON line).
pub fn program(a: &ProgramArgs) -> Result<Status, Failure> {
    if a.c {
        if a.output.json {
            return Err(Failure::Bad("--c prints a C file; --json cannot describe it".into()));
        }
        let text = match a.header {
            true => scenarios::csource::HEADER,
            false => scenarios::csource::builtin(a.protocol).ok_or_else(|| {
                Failure::Bad(format!(
                    "--c: {} has no built-in C file (built in: {})",
                    a.protocol,
                    scenarios::csource::names()
                ))
            })?,
        };
        out::raw(text)?;
        return Ok(Status::Expected);
    }
    let ops = a.protocol.program_template(&a.mutants).map_err(|e| match e {
        sim_core::SimError::Invalid { message, .. } => Failure::Bad(format!("--mutant: {message}")),
        other => Failure::from(other),
    })?;
    let names: Vec<&'static str> = ops.iter().map(|o| o.name()).collect();
    if a.output.json {
        out::json(&ProgramLine {
            command: "program",
            protocol: a.protocol.name(),
            mutants: a.mutants.iter().map(|m| m.name()).collect(),
            program: names,
        })?;
        return Ok(Status::Expected);
    }
    let edits: Vec<&str> = a.mutants.iter().map(|m| m.name()).collect();
    let with = if edits.is_empty() { String::new() } else { format!(" with {}", edits.join(", ")) };
    out::line(format!("# {}{with}: {}", a.protocol, a.protocol.description()))?;
    out::line("# One batch; per-entry steps expand over the batch, per-CPU steps over the vCPUs (docs/programs.md).")?;
    out::line(format!("protocol = \"{}\"", a.protocol.name()))?;
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    out::line(format!("program = [{}]", quoted.join(", ")))?;
    Ok(Status::Expected)
}
