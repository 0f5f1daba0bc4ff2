//! The raw Unicorn baseline of `pokesim bench`: K engines stepped round-robin with count=1 on
//! the 7-instruction loop of reference/unicorn.md §1 (`nop5; inc rax; call f; add rbx,rax;
//! jmp` with `f: inc rcx; ret`), with nothing of pokesim around them. Its steps per second are
//! the ceiling pokesim's own throughput is compared against.

use std::time::{Duration, Instant};

use unicorn_engine::unicorn_const::Prot;
use unicorn_engine::RegisterX86;

use crate::engine::new_engine;
use crate::error::UcContext;
use crate::CpuError;

const CODE: u64 = 0x1000;
const STACK: u64 = 0x10000;

/// The loop: 0x1000 nop5; inc rax; call 0x1020; add rbx, rax; jmp 0x1000; 0x1020: inc rcx; ret.
fn code() -> Vec<u8> {
    let mut c = vec![0x0f, 0x1f, 0x44, 0x00, 0x00]; // nop5            @0x1000
    c.extend([0x48, 0xff, 0xc0]); // inc rax                               @0x1005
    c.extend([0xe8, 0x13, 0x00, 0x00, 0x00]); // call 0x1020               @0x1008
    c.extend([0x48, 0x01, 0xc3]); // add rbx, rax                          @0x100d
    c.extend([0xeb, 0xee]); // jmp 0x1000                                  @0x1010
    c.resize(0x20, 0xcc);
    c.extend([0x48, 0xff, 0xc1, 0xc3]); // inc rcx; ret                    @0x1020
    c
}

/// Steps `engines` engines round-robin for `steps` steps in total; returns the wall time and
/// the sum of RAX (which must equal the number of completed loop iterations).
pub fn raw_round_robin(engines: usize, steps: u64) -> Result<(Duration, u64), CpuError> {
    let tscs: Vec<_> = (0..engines).map(|_| Box::new(std::cell::Cell::new(0))).collect();
    let mut ucs = Vec::with_capacity(engines);
    for tsc in &tscs {
        let mut uc = new_engine(tsc)?;
        uc.mem_map(CODE, 0x1000, Prot::READ | Prot::EXEC).ctx("mem_map")?;
        uc.mem_map(STACK, 0x1000, Prot::READ | Prot::WRITE).ctx("mem_map")?;
        uc.mem_write(CODE, &code()).ctx("mem_write")?;
        uc.reg_write(RegisterX86::RSP, STACK + 0x800).ctx("reg_write")?;
        uc.reg_write(RegisterX86::RIP, CODE).ctx("reg_write")?;
        ucs.push(uc);
    }
    let start = Instant::now();
    for s in 0..steps {
        let uc = &mut ucs[(s % engines as u64) as usize];
        let pc = uc.reg_read(RegisterX86::RIP).ctx("reg_read")?;
        uc.emu_start(pc, 0, 0, 1).ctx("emu_start")?;
    }
    let elapsed = start.elapsed();
    let mut sum = 0;
    for uc in &ucs {
        sum += uc.reg_read(RegisterX86::RAX).ctx("reg_read")?;
    }
    Ok((elapsed, sum))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_baseline_loop_runs_correctly() {
        // 7 instructions per iteration: 7000 steps on 4 engines = 1000 iterations in all.
        let (_, rax_sum) = super::raw_round_robin(4, 7000).unwrap();
        assert_eq!(rax_sum, 1000);
    }
}
