//! `batch`: many sites in one batch — jump_label's `arch_jump_label_transform_apply()` with a
//! full vector, or a module load — so the handler's bsearch runs, and (6.16) the vector
//! bound of 256 and the out-of-order flush of `smp_text_poke_batch_add()` are exercised.
//!
//! Site i (16-byte stride from the first site, which sits at [`BASE`] plus the placement's
//! line offset — so `cross16` makes every site cross a 16-byte fetch block — or straddles the
//! page boundary for `cross-page`):
//!
//! ```text
//! site_i:   nop5                       ; NOP5 <-> JMP32 taken_i
//!           inc qword [rbx + 8+16i]    ; not taken
//!           jmp site_{i+1}
//! taken_i:  inc qword [rbx + 16+16i]   ; taken
//!           jmp site_{i+1}
//! ```
//!
//! after the last site: `jmp loop_head`. Invariant: every pass takes exactly one side of
//! every site.

use iced_x86::code_asm::{qword_ptr, rbx};
use sim_core::protocol::loc::{JMP32, NOP5};
use sim_core::{GuestImage, PatchAction, PokeRequest, SimError};

use cpu_model::PAGE_SIZE;

use super::{Guest, SiteOrder, SitePlacement, WorkloadKind, WorkloadSpec, TEXT_BASE};

/// One-line description.
pub(crate) const DESCRIPTION: &str = "N NOP5 <-> JMP32 sites (default 16, up to 300) in one batch, queued in \
     ascending, descending or interleaved order; each pass takes one side of every site";

/// Where the first site is when aligned.
pub const BASE: u64 = TEXT_BASE + 0x100;
const STRIDE: u64 = 16;

/// Builds the batch guest.
pub fn build(spec: &WorkloadSpec, cpus: usize) -> Result<GuestImage, SimError> {
    let n = spec.sites as u64;
    let (g, sites) = Sites::build(spec, cpus, n)?;
    let order: Vec<u64> = match spec.order {
        SiteOrder::Ascending => (0..n).collect(),
        SiteOrder::Descending => (0..n).rev().collect(),
        SiteOrder::Interleaved => (0..n).step_by(2).chain((1..n).step_by(2)).collect(),
    };
    let actions =
        (0..spec.rounds).map(|r| PatchAction::Batch(order.iter().map(|&i| sites.request(i, r)).collect())).collect();
    let invariant = sites.invariant(&g, cpus);
    Ok(g.image(WorkloadKind::Batch, cpus, actions, Vec::new(), invariant))
}

/// N NOP5 ⇄ JMP32 sites in a row, each with its two counters (the layout above).
#[derive(Clone, Copy)]
pub(crate) struct Sites {
    first: u64,
    taken_base: u64,
    n: u64,
}

impl Sites {
    /// Assembles `n` sites for `cpus` vCPUs, the first where `spec` places it.
    pub(crate) fn build(spec: &WorkloadSpec, cpus: usize, n: u64) -> Result<(Guest, Self), SimError> {
        let first = match spec.site {
            SitePlacement::LineOffset(off) => BASE + off as u64,
            SitePlacement::CrossPage => TEXT_BASE + PAGE_SIZE - 2,
        };
        let taken_base = (first + n * STRIDE + 5).next_multiple_of(0x100);
        let text_len = (taken_base + n * STRIDE + 0x100 - TEXT_BASE).next_multiple_of(0x1000).max(0x2000);
        let mut g = Guest::new(cpus, text_len, 1 + 2 * n);
        g.loop_head(first)?;
        let sites = Self { first, taken_base, n };
        for i in 0..n {
            let next = sites.site(i + 1);
            // The jump ends the translation block: straight-line code through every site would
            // make Unicorn retranslate one long block each time any site's bytes change in a view.
            g.text.place(sites.site(i), |a| {
                a.db(&NOP5)?;
                a.inc(qword_ptr(rbx + (8 + 16 * i) as i32))?;
                a.jmp(next)
            })?;
            g.text.place(sites.taken(i), |a| {
                a.inc(qword_ptr(rbx + (16 + 16 * i) as i32))?;
                a.jmp(next)
            })?;
        }
        g.text.place(sites.site(n), |a| a.jmp(TEXT_BASE))?;
        Ok((g, sites))
    }

    /// Site `i`'s address.
    pub(crate) fn site(self, i: u64) -> u64 {
        self.first + i * STRIDE
    }

    fn taken(self, i: u64) -> u64 {
        self.taken_base + i * STRIDE
    }

    /// Round `r`'s request for site `i`: JMP32 to its taken side in even rounds, NOP5 in odd.
    pub(crate) fn request(self, i: u64, r: u32) -> PokeRequest {
        let rel = (self.taken(i) as i64 - (self.site(i) as i64 + 5)) as i32;
        let jmp = [&[JMP32][..], &rel.to_le_bytes()].concat();
        PokeRequest::new(self.site(i), if r.is_multiple_of(2) { jmp } else { NOP5.to_vec() })
    }

    /// Every pass takes exactly one side of every site.
    pub(crate) fn invariant(self, g: &Guest, cpus: usize) -> Box<dyn sim_core::Invariant + Send> {
        let n = self.n as usize;
        // [0] iterations, then per site [1+2i] not taken, [2+2i] taken.
        g.invariant(cpus, 1 + 2 * n, move |c, _| {
            for i in 0..n {
                if c[1 + 2 * i] + c[2 + 2 * i] != c[0] {
                    return Err(format!(
                        "site {i} ({:#x}): {} passes but {} not taken + {} taken",
                        self.site(i as u64),
                        c[0],
                        c[1 + 2 * i],
                        c[2 + 2 * i]
                    ));
                }
            }
            Ok(())
        })
    }
}
