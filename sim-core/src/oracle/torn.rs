//! Oracle 1, torn fetch (DESIGN.md §2.7, reference/x86-cmc.md §5.3).
//!
//! The executed bytes E at address x are legitimate iff some legitimate image of the text has
//! an instruction boundary at x and holds exactly E there. For a site with old instruction O
//! and new N the images are O, CC·O[1..], CC·N[1..] and N; boundaries come from decoding each
//! image from the site's start (an image that starts with INT3 has only that boundary: the
//! trap never falls through). Anything else — mixed bytes, a different length, execution
//! starting inside a replaced instruction — is torn. A fetch that does not decode is torn only
//! if a site's bytes are why: not when the bytes in front of the site are no instruction
//! whichever image follows, nor when it is the initial image, untouched by any store.
//!
//! Every round of every site contributes its images, so a vCPU that was preempted inside a
//! multi-instruction range (bug B2) is legitimate exactly as long as it resumes into bytes of
//! an image that has a boundary there.

use iced_x86::{Decoder, DecoderOptions, FlowControl};

use cpu_model::{ExecutedInsn, Layout};

use crate::error::Subject;
use crate::protocol::loc::INT3;
use crate::workload::PatchAction;
use crate::SimError;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Image {
    bytes: Vec<u8>,
    /// Offsets (from the site start) where an instruction of this image begins.
    boundaries: Vec<usize>,
}

#[derive(Clone, Debug)]
struct Site {
    addr: u64,
    len: usize,
    images: Vec<Image>,
    /// The bytes after the last batch: the only image allowed after the final sync.
    last: Vec<u8>,
}

/// The legitimate images of every patched site.
#[derive(Clone, Debug)]
pub struct TornOracle {
    base: u64,
    sites: Vec<Site>,
    /// Per text byte: index into `sites` + 1, or 0 if the byte is never patched.
    site_of: Vec<u16>,
}

fn boundaries(addr: u64, bytes: &[u8]) -> Vec<usize> {
    let mut decoder = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE);
    let mut out = Vec::new();
    let mut off = 0;
    while off < bytes.len() {
        out.push(off);
        let insn = decoder.decode();
        // Nothing after an instruction that does not fall through is reachable from the
        // site's start: not the tail behind an INT3, not the INT3 padding after a RET/JMP.
        let falls_through = matches!(
            insn.flow_control(),
            FlowControl::Next | FlowControl::ConditionalBranch | FlowControl::Call | FlowControl::IndirectCall
        );
        if insn.is_invalid() || insn.code() == iced_x86::Code::Int3 || !falls_through {
            break;
        }
        off += insn.len();
    }
    out
}

/// True if `insn` starts in front of `site` and its bytes there (never written) make no
/// instruction whatever legitimate image of the site follows them: the site's bytes cannot be
/// why the fetch does not decode.
fn invalid_in_every_image(site: &Site, insn: &ExecutedInsn) -> bool {
    let Some(n) = site.addr.checked_sub(insn.addr).map(|n| n as usize).filter(|&n| n > 0) else { return false };
    let fetched = insn.bytes();
    site.images.iter().all(|img| {
        let mut bytes = fetched.to_vec();
        let end = (n + img.bytes.len()).min(bytes.len());
        bytes[n..end].copy_from_slice(&img.bytes[..end - n]);
        Decoder::with_ip(64, &bytes, insn.addr, DecoderOptions::NONE).decode().is_invalid()
    })
}

fn text_offset(base: u64, text_len: usize, addr: u64, len: usize) -> Result<usize, SimError> {
    addr.checked_sub(base)
        .map(|o| o as usize)
        .filter(|o| o + len <= text_len && len > 0)
        .ok_or_else(|| SimError::invalid(Subject::Workload, format!("site {addr:#x}+{len} does not fit the text")))
}

/// Registers site `[addr, addr+len)` unless it exists with the same length.
fn add_site(
    base: u64,
    text_len: usize,
    addr: u64,
    len: usize,
    sites: &mut Vec<Site>,
    site_of: &mut [u16],
) -> Result<(), SimError> {
    let off = text_offset(base, text_len, addr, len)?;
    if let Some(s) = sites.iter().find(|s| s.addr == addr) {
        if s.len != len {
            return Err(SimError::invalid(
                Subject::Workload,
                format!("site {addr:#x} is patched with lengths {} and {len}", s.len),
            ));
        }
        return Ok(());
    }
    if site_of[off..off + len].iter().any(|&s| s != 0) {
        return Err(SimError::invalid(Subject::Workload, format!("site {addr:#x}+{len} overlaps another site")));
    }
    sites.push(Site { addr, len, images: Vec::new(), last: Vec::new() });
    let id = sites.len() as u16;
    site_of[off..off + len].iter_mut().for_each(|s| *s = id);
    Ok(())
}

impl TornOracle {
    /// Collects the images of every site the script writes, starting from `text`. Sites are
    /// the ranges of batch requests; a plain poke inside a site adds its before/after images
    /// to that site, one outside every site becomes a site of its own.
    pub fn new(layout: &Layout, text: &[u8], actions: &[PatchAction]) -> Result<Self, SimError> {
        let base = layout.text_base;
        let mut sites: Vec<Site> = Vec::new();
        let mut site_of = vec![0u16; text.len()];
        for r in actions.iter().flat_map(PatchAction::requests) {
            add_site(base, text.len(), r.addr, r.new.len(), &mut sites, &mut site_of)?;
        }
        for action in actions {
            if let PatchAction::Poke { addr, bytes } | PatchAction::Early { addr, bytes } = action {
                let off = text_offset(base, text.len(), *addr, bytes.len())?;
                match site_of[off] {
                    0 => add_site(base, text.len(), *addr, bytes.len(), &mut sites, &mut site_of)?,
                    id => {
                        let s = &sites[id as usize - 1];
                        if *addr + bytes.len() as u64 > s.addr + s.len as u64 {
                            return Err(SimError::invalid(
                                Subject::Workload,
                                format!("text_poke at {addr:#x} runs past site {:#x}", s.addr),
                            ));
                        }
                    }
                }
            }
        }
        let mut oracle = Self { base, sites, site_of };
        oracle.collect_images(text, actions);
        Ok(oracle)
    }

    fn collect_images(&mut self, text: &[u8], actions: &[PatchAction]) {
        let base = self.base;
        let mut copy = text.to_vec();
        let add = |site: &mut Site, bytes: Vec<u8>| {
            let image = Image { boundaries: boundaries(site.addr, &bytes), bytes };
            if !site.images.contains(&image) {
                site.images.push(image);
            }
        };
        for action in actions {
            match action {
                PatchAction::Batch(_) | PatchAction::Queue(_) | PatchAction::Single(_) => {
                    for r in action.requests() {
                        let site = self.sites.iter_mut().find(|s| s.addr == r.addr).expect("batch sites collected");
                        let off = (r.addr - base) as usize;
                        let old = copy[off..off + site.len].to_vec();
                        let mut cc_old = old.clone();
                        cc_old[0] = INT3;
                        let mut cc_new = r.new.clone();
                        cc_new[0] = INT3;
                        for bytes in [old, cc_old, cc_new, r.new.clone()] {
                            add(site, bytes);
                        }
                        copy[off..off + site.len].copy_from_slice(&r.new);
                        site.last = r.new.clone();
                    }
                }
                PatchAction::Poke { addr, bytes } | PatchAction::Early { addr, bytes } => {
                    let id = self.site_of[(*addr - base) as usize] as usize;
                    let site = &mut self.sites[id - 1];
                    let (s, p) = ((site.addr - base) as usize, (*addr - base) as usize);
                    add(site, copy[s..s + site.len].to_vec());
                    copy[p..p + bytes.len()].copy_from_slice(bytes);
                    let after = copy[s..s + site.len].to_vec();
                    add(site, after.clone());
                    site.last = after;
                }
                PatchAction::Sync | PatchAction::Apply => {}
            }
        }
    }

    fn site_touched(&self, insn: &ExecutedInsn) -> Option<&Site> {
        let start = insn.addr.checked_sub(self.base)? as usize;
        let n = insn.bytes().len().max(1);
        let end = (start + n).min(self.site_of.len());
        (start..end).find_map(|o| match self.site_of[o] {
            0 => None,
            id => Some(&self.sites[id as usize - 1]),
        })
    }

    /// Every site as `(address, length)`.
    pub fn site_ranges(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.sites.iter().map(|s| (s.addr, s.len))
    }

    /// True if `addr` lies inside a patched site.
    pub fn in_site(&self, addr: u64) -> bool {
        addr.checked_sub(self.base).and_then(|o| self.site_of.get(o as usize)).is_some_and(|&s| s != 0)
    }

    /// `Err(explanation)` if the executed instruction is torn. Only a fetch that a site's
    /// stale or mixed bytes are part of can be: bytes in front of a site that decode to no
    /// instruction whichever image of the site follows, or a site's initial image fetched as
    /// it is (no store involved) at one of its boundaries, are what the program holds there —
    /// a guest fault, never a tear.
    pub fn check(&self, insn: &ExecutedInsn) -> Result<(), String> {
        let Some(site) = self.site_touched(insn) else { return Ok(()) };
        let e = insn.bytes();
        if !insn.is_valid() && (invalid_in_every_image(site, insn) || self.initial_at_boundary(site, insn)) {
            return Ok(());
        }
        if !insn.is_valid() {
            return Err(format!("bytes {e:02x?} at {:#x} do not decode (site {:#x})", insn.addr, site.addr));
        }
        if insn.addr < site.addr {
            return Err(format!("instruction at {:#x} runs into site {:#x}", insn.addr, site.addr));
        }
        let off = (insn.addr - site.addr) as usize;
        let legit =
            site.images.iter().any(|img| img.boundaries.contains(&off) && img.bytes.get(off..off + e.len()) == Some(e));
        if legit {
            Ok(())
        } else {
            Err(format!(
                "bytes {e:02x?} at site {:#x}+{off} match no legitimate image (images: {})",
                site.addr,
                site.images.iter().map(|i| format!("{:02x?}", i.bytes)).collect::<Vec<_>>().join(" ")
            ))
        }
    }

    /// True if `insn` is the site's initial image, fetched with no store involved (every byte
    /// from epoch 0), at an instruction boundary of it.
    fn initial_at_boundary(&self, site: &Site, insn: &ExecutedInsn) -> bool {
        let initial = site.images.first().map(|img| img.boundaries.as_slice()).unwrap_or_default();
        insn.epochs().iter().all(|&e| e == 0)
            && insn.addr >= site.addr
            && initial.contains(&((insn.addr - site.addr) as usize))
    }

    /// `Err(explanation)` if, after the final sync, the instruction shows anything but the
    /// final image of the site it touches.
    pub(crate) fn check_final(&self, insn: &ExecutedInsn) -> Result<(), String> {
        let Some(site) = self.site_touched(insn) else { return Ok(()) };
        let off = insn.addr.saturating_sub(site.addr) as usize;
        let e = insn.bytes();
        if site.last.get(off..off + e.len()) == Some(e) {
            Ok(())
        } else {
            Err(format!(
                "after the final sync, site {:#x} still executes {e:02x?} instead of {:02x?}",
                site.addr, site.last
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::PokeRequest;
    use cpu_model::{Epoch, MAX_INSN_LEN};

    const BASE: u64 = 0x40_0000;

    /// A text of NOP1s with one 5-byte site at `BASE + 8` holding `old`, that becomes a JMP32.
    fn oracle(text: &mut [u8], old: &[u8; 5]) -> TornOracle {
        text[8..13].copy_from_slice(old);
        let layout = Layout { text_base: BASE, text_len: text.len() as u64, data_base: 0x60_0000, data_len: 4096 };
        let batch = PatchAction::Batch(vec![PokeRequest::new(BASE + 8, vec![0xe9, 0, 0, 0, 0])]);
        TornOracle::new(&layout, text, &[batch]).unwrap()
    }

    /// What a vCPU fetching `text` at `addr` executes, with byte `i` from store `epoch`.
    fn fetched(text: &[u8], addr: u64, epochs: &[(usize, Epoch)]) -> ExecutedInsn {
        let off = (addr - BASE) as usize;
        let window = (text.len() - off).min(MAX_INSN_LEN);
        let mut bytes = [0; MAX_INSN_LEN];
        bytes[..window].copy_from_slice(&text[off..off + window]);
        let mut e = [0; MAX_INSN_LEN];
        epochs.iter().for_each(|&(i, epoch)| e[i] = epoch);
        let insn = Decoder::with_ip(64, &bytes[..window], addr, DecoderOptions::NONE).decode();
        let len = if insn.is_invalid() { 0 } else { insn.len() as u8 };
        ExecutedInsn { addr, len, window: window as u8, bytes, epochs: e, code: insn.code() }
    }

    const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];

    #[test]
    fn an_invalid_byte_in_front_of_a_site_is_the_programs_not_a_tear() {
        let mut text = vec![0x90; 64];
        let torn = oracle(&mut text, &NOP5);
        text[7] = 0x17; // `db 17`: no instruction in 64-bit mode, decided by its own byte
        assert_eq!(torn.check(&fetched(&text, BASE + 7, &[])), Ok(()));
        // Even when the site's bytes in the window came from a store: they are not fetched.
        assert_eq!(torn.check(&fetched(&text, BASE + 7, &[(1, 3), (2, 3)])), Ok(()));
    }

    #[test]
    fn the_initial_image_fetched_as_it_is_is_never_torn() {
        let mut text = vec![0x90; 64];
        let torn = oracle(&mut text, &[0x17; 5]);
        assert_eq!(torn.check(&fetched(&text, BASE + 8, &[])), Ok(()));
        // A store is part of the fetch: judged as before.
        assert!(torn.check(&fetched(&text, BASE + 8, &[(1, 2)])).is_err());
    }

    #[test]
    fn a_mixed_fetch_is_still_torn() {
        let mut text = vec![0x90; 64];
        let torn = oracle(&mut text, &NOP5);
        text[9..13].copy_from_slice(&[0, 0, 0, 0]); // the JMP32's tail written, its first byte not
        let e = torn.check(&fetched(&text, BASE + 8, &[(1, 2), (2, 2), (3, 2), (4, 2)])).unwrap_err();
        assert!(e.contains("match no legitimate image"), "{e}");
        // An instruction in front of the site that needs the site's bytes still runs into it.
        text[9..13].copy_from_slice(&NOP5[1..]);
        text[7] = 0x48; // REX.W: a prefix, decided only with the site's bytes
        assert!(torn.check(&fetched(&text, BASE + 7, &[])).is_err());
    }
}
