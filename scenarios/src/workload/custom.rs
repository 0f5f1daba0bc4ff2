//! `custom`: the user's own code (issue 11, "the user's own code"). A scenario declares its
//! sites — where (a label or an address), the old and the new instruction as assembly text
//! ([`super::asm_text`]) or hex bytes — and either lets pokesim generate the loop around them
//! or brings its own code block with an entry point:
//!
//! ```text
//! generated:  loop_head: inc qword [rbx]         ; [0] iterations
//!             site0:     <old 0>                  ; every site, in file order
//!             ...
//!                        jmp loop_head
//!             callee:    inc qword [rbx+8]        ; [1] a callee `call callee` can reach
//!                        ret
//! own code:   the block assembled at the text base; vCPUs start at `entry`, which is also the
//!             loop head where the invariant (a balanced stack) is checked
//! ```
//!
//! Every round patches all sites in one batch, old → new on odd rounds and back on even ones, so
//! every check `text_poke_loc_init()` and the plan make (one instruction, the version's
//! opcodes, the length rules) applies to them with the kernel's reasons.
//!
//! The built program is dry-run before it is raced ([`super::dry_run`]), once per vCPU count
//! (the answer is cached on the [`CustomGuest`] a campaign's seeds share): a program broken
//! without any patching is bad input about its site, never a kernel verdict.

use std::collections::BTreeMap;
use std::sync::Mutex;

use iced_x86::{Decoder, DecoderOptions};
use sim_core::{GuestImage, PatchAction, PokeRequest, SimError, Subject};

use super::asm_text::{assemble, Assembled};
use super::dry_run::dry_run;
use super::{Guest, WorkloadKind, WorkloadSpec, MAX_REQUESTS, TEXT_BASE, TEXT_LEN};

/// One-line description.
pub(crate) const DESCRIPTION: &str =
    "the scenario's own sites ([[sites]]: old/new as assembly or hex), in a generated \
     loop or the scenario's own code block ([code]); all sites patched as one batch per round";

/// An instruction as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum InsnText {
    /// Assembly text (one instruction, [`super::asm_text`]'s forms).
    Asm(String),
    /// Hex bytes.
    Hex(Vec<u8>),
}

/// Where a site is in the user's own code block.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SiteAt {
    /// A label of the code block.
    Label(String),
    /// An address.
    Addr(u64),
}

/// One user-declared site.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserSite {
    /// Where it is (own code only; in the generated loop, sites follow each other).
    pub at: Option<SiteAt>,
    /// The instruction there before the first round (own code: checked against the block, or
    /// decoded from it when omitted).
    pub old: Option<InsnText>,
    /// The instruction the odd rounds write.
    pub new: InsnText,
}

/// The user's code block.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CodeBlock {
    /// Assembly source (labels, one instruction per line).
    pub asm: String,
    /// The label vCPUs start at (and the loop head).
    pub entry: String,
}

/// Everything a `custom` workload is made of.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CustomGuest {
    /// The sites, in file order.
    pub sites: Vec<UserSite>,
    /// The user's own code, or `None` for the generated loop.
    pub code: Option<CodeBlock>,
    /// The dry run's answer per vCPU count, so that the seeds of a campaign (which share this
    /// value) check the program once.
    pub checked: DryRunCache,
}

/// The dry run's answers ([`super::dry_run`]) by vCPU count: `Err` holds the refusal. Not
/// part of the guest's identity: two guests compare and hash equal whatever they cached.
#[derive(Debug, Default)]
pub struct DryRunCache(Mutex<BTreeMap<usize, Answer>>);

/// The dry run's answer: `Err` holds the refusal's subject and message.
type Answer = Result<(), (Subject, String)>;

impl DryRunCache {
    /// How many vCPU counts have an answer.
    pub fn answers(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The cached answer for `cpus` vCPUs, or `check`'s (then cached).
    fn get_or_check(&self, cpus: usize, check: impl FnOnce() -> Result<Answer, SimError>) -> Result<(), SimError> {
        let cached = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&cpus).cloned();
        let answer = match cached {
            Some(answer) => answer,
            None => {
                let answer = check()?;
                self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(cpus, answer.clone());
                answer
            }
        };
        answer.map_err(|(subject, msg)| SimError::invalid(subject, msg))
    }
}

impl Clone for DryRunCache {
    fn clone(&self) -> Self {
        Self(Mutex::new(self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()))
    }
}

impl PartialEq for DryRunCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DryRunCache {}

impl std::hash::Hash for DryRunCache {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

fn site_err(i: usize, msg: impl Into<String>) -> SimError {
    SimError::invalid(Subject::Site(i), msg.into())
}

/// Assembles one instruction text at `ip`: its bytes (exactly one instruction).
fn one(text: &InsnText, ip: u64, labels: &BTreeMap<String, u64>, i: usize) -> Result<Vec<u8>, SimError> {
    let bytes = match text {
        InsnText::Hex(b) => b.clone(),
        InsnText::Asm(src) => {
            if src.contains(['\n', ':']) {
                return Err(site_err(i, format!("'{src}' must be one instruction, without labels")));
            }
            assemble(src, ip, labels).map_err(|(_, e)| site_err(i, e))?.bytes
        }
    };
    if bytes.is_empty() || bytes.len() > 15 {
        return Err(site_err(i, format!("{} bytes is not an instruction", bytes.len())));
    }
    Ok(bytes)
}

/// Builds the `custom` guest for `cpus` vCPUs.
pub fn build(spec: &WorkloadSpec, custom: Option<&CustomGuest>, cpus: usize) -> Result<GuestImage, SimError> {
    let custom = custom
        .filter(|c| !c.sites.is_empty())
        .ok_or_else(|| SimError::invalid(Subject::Workload, "kind = \"custom\" needs at least one [[sites]] table"))?;
    // The script is built in full before the run. The tick budget cannot bound it: a request
    // takes at least three patcher ticks (INT3, tail, first byte), so `MAX_TICKS` (10¹¹) would
    // admit some 3·10¹⁰ requests — terabytes of script. The bound is memory, the one `batch`
    // has: `MAX_REQUESTS` (200,000 requests, a few tens of MB), checked before anything is
    // allocated (300 sites × 100,000 rounds needed 5.5 GB and aborted).
    let requests = spec.rounds as u64 * custom.sites.len() as u64;
    if requests > MAX_REQUESTS {
        let msg = format!(
            "{} rounds of {} [[sites]] are {requests} patch requests, more than {MAX_REQUESTS}",
            spec.rounds,
            custom.sites.len()
        );
        return Err(SimError::invalid(Subject::Rounds, msg));
    }
    let mut g = Guest::new(cpus, TEXT_LEN, 8);
    let (sites, entry) = match &custom.code {
        None => generated(&mut g, custom)?,
        Some(code) => own(&mut g, custom, code)?,
    };
    let actions = (0..spec.rounds)
        .map(|r| {
            let to_new = r % 2 == 0;
            let reqs = sites
                .iter()
                .map(|(addr, old, new)| PokeRequest::new(*addr, if to_new { new.clone() } else { old.clone() }));
            PatchAction::Batch(reqs.collect())
        })
        .collect();
    let invariant = g.invariant(cpus, 1, |_, _| Ok(()));
    let mut image = g.image(WorkloadKind::Custom, cpus, actions, Vec::new(), invariant);
    image.loop_head = entry;
    image.cpu_regs.iter_mut().for_each(|r| r.rip = entry);
    let fallback = if custom.code.is_some() { Subject::Code } else { Subject::Site(0) };
    custom.checked.get_or_check(cpus, || {
        Ok(dry_run(&mut image)?.map(|_| ()).map_err(|f| (f.subject(fallback), f.to_string())))
    })?;
    Ok(image)
}

type Sites = Vec<(u64, Vec<u8>, Vec<u8>)>;

/// The generated loop: the sites in file order between the loop head and its jump back.
fn generated(g: &mut Guest, custom: &CustomGuest) -> Result<(Sites, u64), SimError> {
    let callee = TEXT_BASE + 0x1800;
    let mut labels = BTreeMap::from([("loop_head".to_string(), TEXT_BASE), ("callee".to_string(), callee)]);
    let mut at = TEXT_BASE + 3; // after `inc qword [rbx]`
    let mut olds = Vec::new();
    // Lengths first (they do not depend on where labels are), then the bytes.
    let mut sizing = labels.clone();
    sizing.insert("next".into(), at);
    sizing.extend((0..custom.sites.len()).map(|i| (format!("site{i}"), at)));
    for (i, s) in custom.sites.iter().enumerate() {
        if s.at.is_some() {
            return Err(site_err(i, "`at` places a site in the scenario's own [code]; the generated loop has none"));
        }
        let old = s.old.as_ref().ok_or_else(|| site_err(i, "`old` (or `old_hex`) is missing"))?;
        labels.insert(format!("site{i}"), at);
        let bytes = one(old, at, &sizing, i)?;
        olds.push((at, bytes.len()));
        at += bytes.len() as u64;
    }
    let mut sites = Vec::new();
    let mut body = vec![0x48, 0xff, 0x03]; // inc qword [rbx]
    for (i, (s, &(addr, len))) in custom.sites.iter().zip(&olds).enumerate() {
        labels.insert("next".into(), addr + len as u64);
        let old = one(s.old.as_ref().expect("checked above"), addr, &labels, i)?;
        let new = one(&s.new, addr, &labels, i)?;
        body.extend(&old);
        sites.push((addr, old, new));
    }
    if let Some(i) = olds.iter().position(|&(addr, len)| addr + len as u64 + 5 > callee) {
        let msg = format!(
            "the generated loop's {} sites take {} bytes: from this one on they would run into its callee at \
             {callee:#x} (at most {} bytes of sites)",
            custom.sites.len(),
            at - TEXT_BASE - 3,
            callee - TEXT_BASE - 3 - 5
        );
        return Err(site_err(i, msg));
    }
    let back = TEXT_BASE.wrapping_sub(at + 5) as i32;
    body.push(0xe9);
    body.extend(back.to_le_bytes());
    g.text.place(TEXT_BASE, |a| a.db(&body))?;
    g.text.place(callee, |a| a.db(&[0x48, 0xff, 0x43, 0x08, 0xc3]))?; // inc qword [rbx+8]; ret
    Ok((sites, TEXT_BASE))
}

/// The user's own block at the text base: each site is found by label or address; its old
/// instruction is what the block holds there.
fn own(g: &mut Guest, custom: &CustomGuest, code: &CodeBlock) -> Result<(Sites, u64), SimError> {
    let code_err = |line: usize, e: String| SimError::invalid(Subject::Code, format!("line {line} of asm: {e}"));
    let Assembled { bytes, labels, lines } =
        assemble(&code.asm, TEXT_BASE, &BTreeMap::new()).map_err(|(l, e)| code_err(l, e))?;
    let entry = *labels.get(&code.entry).ok_or_else(|| {
        SimError::invalid(Subject::Code, format!("entry '{}' is not a label of the block", code.entry))
    })?;
    if bytes.len() as u64 > 0x1000 {
        return Err(SimError::invalid(Subject::Code, format!("{} bytes: at most 4096", bytes.len())));
    }
    let mut sites = Vec::new();
    for (i, s) in custom.sites.iter().enumerate() {
        let addr = match &s.at {
            None => return Err(site_err(i, "`at` (a label or an address of [code]) is missing")),
            Some(SiteAt::Label(l)) => {
                *labels.get(l).ok_or_else(|| site_err(i, format!("'{l}' is not a label of [code]")))?
            }
            Some(SiteAt::Addr(a)) => *a,
        };
        let Some(&(start, len)) = lines.iter().find(|&&(a, _)| a == addr) else {
            return Err(site_err(i, format!("{addr:#x} does not start an instruction of [code]")));
        };
        let off = (start - TEXT_BASE) as usize;
        let there = &bytes[off..off + len];
        let decoded = Decoder::with_ip(64, there, start, DecoderOptions::NONE).decode();
        let old = there[..decoded.len().max(1)].to_vec();
        let mut local = labels.clone();
        local.insert("next".into(), addr + old.len() as u64);
        if let Some(given) = &s.old {
            let want = one(given, addr, &local, i)?;
            if want != old {
                return Err(site_err(i, format!("`old` is {want:02x?}, but [code] holds {old:02x?} at {addr:#x}")));
            }
        }
        let new = one(&s.new, addr, &local, i)?;
        sites.push((addr, old, new));
    }
    g.text.place(TEXT_BASE, |a| a.db(&bytes))?;
    Ok((sites, entry))
}
