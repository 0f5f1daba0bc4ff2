//! A vCPU's private instruction view: the text bytes it would fetch right now
//! (DESIGN.md §2.4, reference/x86-cmc.md §5.1).
//!
//! The view is a host buffer that the vCPU's engine maps at the text address. For every refresh
//! unit `u` the view shows the truth as of a snapshot epoch `s(u)`; a serialization sets every
//! `s(u)` to now. Before a fetch, each unit the instruction needs whose truth changed after
//! `s(u)` asks the [`Chooser`] which store boundary it now shows: staying put is always one of
//! the options, so a unit can stay stale for as long as the model allows.
//!
//! Representation: the effective snapshot of unit `u` is `max(snap[u], last_sync)`, so a
//! serialization is O(changed bytes), not O(units).

use std::collections::VecDeque;

use crate::fetch::{FetchModel, Staleness};
use crate::memory::PageBuf;

/// Position in the text store order: the number of store events applied to the truth.
/// Epoch 0 is the initial image; store number `k` (1-based) produces epoch `k`.
pub type Epoch = u32;

/// The text truth as the fetch model needs it (implemented by the machine's text memory).
pub trait Truth {
    /// The current epoch (number of stores so far).
    fn now(&self) -> Epoch;
    /// The address range `(addr, len)` written by store `epoch` (1-based).
    fn store_range(&self, epoch: Epoch) -> (u64, u64);
    /// The value of byte `addr` as of `epoch`, and the epoch of the store that wrote it
    /// (0 for the initial image).
    fn byte_at(&self, addr: u64, epoch: Epoch) -> (u8, Epoch);
}

/// The decision interface: pick one of `n >= 2` options. Every choice the fetch model makes
/// goes through it, so a recorded list of answers replays a run exactly.
pub trait Chooser {
    /// Returns a value in `0..n`.
    fn choose(&mut self, n: usize) -> usize;
}

/// What a view's future depends on, for the units that hold patched bytes (every other byte
/// is never written, so it always shows the initial text): saved and restored by state-space
/// search.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ViewState {
    /// Epoch of the last serialization.
    pub last_sync: Epoch,
    /// The raw snapshot epoch of each saved unit, in the order of the units asked for.
    pub snap: Vec<Epoch>,
    /// Truth epochs at the start of the last own steps (bounded staleness only).
    pub recent: Vec<Epoch>,
}

/// A private, possibly stale copy of the text.
#[derive(Debug)]
pub struct View {
    base: u64,
    buf: PageBuf,
    model: FetchModel,
    unit_shift: Option<u32>,
    /// Raw per-unit snapshot epochs; the effective one is `max(snap[u], last_sync)`.
    snap: Vec<Epoch>,
    /// Epoch of the last serialization: every unit shows at least this.
    last_sync: Epoch,
    /// For each byte, the epoch of the store whose value the view shows.
    shown: Vec<Epoch>,
    /// Truth epochs at the start of the last `k` own steps (bounded staleness only).
    recent: VecDeque<Epoch>,
    /// Scratch buffer of candidate epochs, reused across fetches.
    candidates: Vec<Epoch>,
    /// Per byte: whether any store can ever write it (the patched sites). Every other byte
    /// shows the initial text forever, so a fetch of such bytes needs no refresh.
    patchable: Vec<bool>,
    /// Bumped whenever a shown byte or its epoch may change: a decode of the view made at one
    /// generation stays right while the generation does ([`View::generation`]).
    generation: u64,
}

impl View {
    /// A view of `initial` (the text at epoch 0) mapped at guest address `base`.
    pub fn new(base: u64, initial: &[u8], model: FetchModel) -> Self {
        let buf = PageBuf::new(initial.len());
        buf.write(0, initial);
        let unit_shift = model.fetch.size().map(|s| s.trailing_zeros());
        let units = match unit_shift {
            Some(shift) => initial.len().div_ceil(1 << shift),
            None => 1,
        };
        Self {
            base,
            buf,
            model,
            unit_shift,
            snap: vec![0; units],
            last_sync: 0,
            shown: vec![0; initial.len()],
            recent: VecDeque::new(),
            candidates: Vec::new(),
            patchable: vec![true; initial.len()],
            generation: 0,
        }
    }

    /// The view's generation: unchanged generation, unchanged bytes and epochs everywhere.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Declares which bytes stores can ever write (`(addr, len)` ranges): the view then leaves
    /// a unit alone when an instruction reads none of its patchable bytes. Refreshing it would
    /// only advance the unit's snapshot, and a later fetch of a patchable byte can still choose
    /// any epoch the earlier refresh could have shown (views are monotone or floored at the
    /// last serialization), so no behaviour is lost — the "lazy view" argument of the SPIN
    /// anchor model. Without a declaration every byte counts as patchable.
    pub fn set_patchable(&mut self, ranges: &[(u64, u64)]) {
        self.patchable.iter_mut().for_each(|p| *p = false);
        for &(a, l) in ranges {
            for addr in a..a + l {
                if let Some(p) = self.patchable.get_mut((addr - self.base) as usize) {
                    *p = true;
                }
            }
        }
    }

    /// True if a store can ever write the byte at `addr`.
    pub fn is_patchable(&self, addr: u64) -> bool {
        addr.checked_sub(self.base).and_then(|o| self.patchable.get(o as usize)).is_some_and(|&p| p)
    }

    /// The refresh unit holding `addr`, as an index.
    pub(crate) fn unit_index(&self, addr: u64) -> usize {
        self.unit_of(addr)
    }

    /// Guest address of the first text byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Text length in bytes.
    pub fn len(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Never true: the text has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The fetch model this view follows.
    pub fn model(&self) -> &FetchModel {
        &self.model
    }

    pub(crate) fn host_ptr(&self) -> *mut u8 {
        self.buf.as_ptr()
    }

    /// The byte the view shows at `addr` and the epoch of the store it came from.
    pub fn shown(&self, addr: u64) -> (u8, Epoch) {
        let off = (addr - self.base) as usize;
        (self.buf.byte(off), self.shown[off])
    }

    /// Copies the view bytes `[addr, addr + out.len())`, clipped to the text; returns how many.
    pub fn read(&self, addr: u64, out: &mut [u8]) -> usize {
        let off = (addr - self.base) as usize;
        let n = out.len().min(self.buf.len() - off);
        self.buf.read(off, &mut out[..n]);
        n
    }

    /// Epoch of the last serialization.
    pub fn last_sync(&self) -> Epoch {
        self.last_sync
    }

    /// The effective snapshot epoch of the unit holding `addr` (the tests' view of it).
    #[cfg(test)]
    fn snapshot_of(&self, addr: u64) -> Epoch {
        self.snap[self.unit_of(addr)].max(self.last_sync)
    }

    fn unit_of(&self, addr: u64) -> usize {
        match self.unit_shift {
            Some(shift) => ((addr - self.base) >> shift) as usize,
            None => 0,
        }
    }

    fn unit_range(&self, unit: usize) -> (u64, u64) {
        match self.unit_shift {
            Some(shift) => {
                let start = self.base + ((unit as u64) << shift);
                (start, (start + (1 << shift)).min(self.base + self.len()))
            }
            None => (self.base, self.base + self.len()),
        }
    }

    /// Marks the start of one own guest step (for bounded staleness).
    pub(crate) fn note_step(&mut self, now: Epoch) {
        if let Staleness::Bounded(k) = self.model.staleness {
            self.recent.push_back(now);
            while self.recent.len() > k as usize {
                self.recent.pop_front();
            }
        }
    }

    /// Marks `n` own guest steps at once, all at epoch `now` (a local run: nothing is stored
    /// while it runs), exactly as `n` calls of [`View::note_step`] would.
    pub(crate) fn note_steps(&mut self, now: Epoch, n: u64) {
        if let Staleness::Bounded(k) = self.model.staleness {
            for _ in 0..n.min(k as u64) {
                self.note_step(now);
            }
        }
    }

    /// The oldest epoch a unit may still show.
    fn floor(&self, unit: usize) -> Epoch {
        let mut floor = if self.model.monotone { self.snap[unit].max(self.last_sync) } else { self.last_sync };
        if let Staleness::Bounded(k) = self.model.staleness {
            // Stores older than k own steps must be visible.
            if self.recent.len() == k as usize {
                floor = floor.max(self.recent[0]);
            }
        }
        floor
    }

    /// True if nothing was stored since the last serialization: the view is exact.
    pub fn is_exact(&self, truth: &dyn Truth) -> bool {
        self.last_sync == truth.now()
    }

    /// Brings the unit holding `addr` forward (or, non-monotone, anywhere in
    /// `[last_sync, now]`), asking `chooser` when more than one epoch is possible. Pushes the
    /// address ranges whose view bytes changed onto `changed`. Returns the unit's end address.
    pub fn refresh_unit(
        &mut self,
        addr: u64,
        truth: &dyn Truth,
        chooser: &mut dyn Chooser,
        changed: &mut Vec<(u64, u64)>,
    ) -> u64 {
        let unit = self.unit_of(addr);
        let (start, end) = self.unit_range(unit);
        let current = self.snap[unit].max(self.last_sync);
        let floor = self.floor(unit);
        let now = truth.now();
        // Candidates: the floor itself, and every later store that touches this unit. Stores
        // that do not touch the unit show the same bytes, so they are not separate options.
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        candidates.push(floor);
        for e in floor + 1..=now {
            let (a, l) = truth.store_range(e);
            if a < end && a + l > start {
                candidates.push(e);
            }
        }
        let pick = if candidates.len() == 1 { candidates[0] } else { candidates[chooser.choose(candidates.len())] };
        self.candidates = candidates;
        debug_assert!(pick >= self.last_sync && pick <= now);
        debug_assert!(!self.model.monotone || pick >= current, "monotone unit went back");
        if pick != current {
            self.show(start, end, current, pick, truth, changed);
        }
        self.snap[unit] = pick;
        end
    }

    /// Rewrites the bytes of `[start, end)` that stores between `from` and `to` touched so
    /// that they show the truth as of `to`.
    fn show(&mut self, start: u64, end: u64, from: Epoch, to: Epoch, truth: &dyn Truth, changed: &mut Vec<(u64, u64)>) {
        let (lo, hi) = (from.min(to), from.max(to));
        for e in lo + 1..=hi {
            let (a, l) = truth.store_range(e);
            let (s, t) = (a.max(start), (a + l).min(end));
            if s < t {
                self.sync_bytes(s, t, to, truth, changed);
            }
        }
    }

    fn sync_bytes(&mut self, s: u64, t: u64, epoch: Epoch, truth: &dyn Truth, changed: &mut Vec<(u64, u64)>) {
        self.generation += 1;
        for addr in s..t {
            let off = (addr - self.base) as usize;
            let (value, writer) = truth.byte_at(addr, epoch);
            self.shown[off] = writer;
            if self.buf.byte(off) != value {
                self.buf.write(off, &[value]);
                match changed.last_mut() {
                    Some(last) if last.1 == addr => last.1 = addr + 1,
                    _ => changed.push((addr, addr + 1)),
                }
            }
        }
    }

    /// The refresh units that hold any byte of `ranges` (`(addr, len)`), sorted, each once.
    pub fn units_of(&self, ranges: &[(u64, u64)]) -> Vec<usize> {
        let mut units: Vec<usize> = ranges.iter().flat_map(|&(a, l)| (a..a + l).map(|x| self.unit_of(x))).collect();
        units.sort_unstable();
        units.dedup();
        units
    }

    /// The state of `units` (from [`View::units_of`]).
    pub fn save(&self, units: &[usize]) -> ViewState {
        ViewState {
            last_sync: self.last_sync,
            snap: units.iter().map(|&u| self.snap[u]).collect(),
            recent: self.recent.iter().copied().collect(),
        }
    }

    /// The effective snapshot epoch of each of `units`: with the last serialization (and,
    /// for a non-monotone view, the floor), all a view's future depends on.
    pub fn effective<'a>(&'a self, units: &'a [usize]) -> impl Iterator<Item = Epoch> + 'a {
        units.iter().map(move |&u| self.snap[u].max(self.last_sync))
    }

    /// Restores a saved state of `units`, rewriting the bytes of `ranges` (the patched bytes
    /// those units hold) to show the truth as of each unit's snapshot; pushes the changed
    /// ranges. The truth must be at or past every epoch in `state`.
    pub fn restore(
        &mut self,
        state: &ViewState,
        units: &[usize],
        ranges: &[(u64, u64)],
        truth: &dyn Truth,
        changed: &mut Vec<(u64, u64)>,
    ) {
        self.last_sync = state.last_sync;
        for (&u, &e) in units.iter().zip(&state.snap) {
            self.snap[u] = e;
        }
        self.recent.clear();
        self.recent.extend(state.recent.iter().copied());
        for &(a, l) in ranges {
            for addr in a..a + l {
                let eff = self.snap[self.unit_of(addr)].max(self.last_sync);
                self.sync_bytes(addr, addr + 1, eff, truth, changed);
            }
        }
    }

    /// Serializes: every unit shows the truth as of now (SDM §8.3: nothing passes a
    /// serializing instruction, instruction fetch included). Pushes changed ranges.
    pub fn serialize(&mut self, truth: &dyn Truth, changed: &mut Vec<(u64, u64)>) {
        let now = truth.now();
        if self.last_sync == now {
            return;
        }
        // Only bytes written after the last serialization can differ from the truth; units may
        // have advanced past last_sync individually, which sync_bytes handles by comparing.
        for e in self.last_sync + 1..=now {
            let (a, l) = truth.store_range(e);
            self.sync_bytes(a, a + l, now, truth, changed);
        }
        self.last_sync = now;
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{FetchModel, StoreGranularity};
    use crate::testing::{LogTruth, Pick};

    fn truth() -> LogTruth {
        let mut init = vec![0x90; 4096];
        init[0x10..0x15].copy_from_slice(&[0x0f, 0x1f, 0x44, 0x00, 0x00]);
        let mut log = LogTruth { base: 0x1000, init, stores: Vec::new() };
        log.stores.push((0x1010, vec![0xcc]));
        for (a, _) in StoreGranularity::Byte.split(0x1011, 4) {
            log.stores.push((a, vec![0x11]));
        }
        log
    }

    #[test]
    fn stale_byte_units_can_mix_epochs() {
        let t = truth();
        let mut v = View::new(0x1000, &t.init, FetchModel::PESSIMISTIC);
        let mut changed = Vec::new();
        // Unit 0x1010 stays at epoch 0 (choice 0 = floor), unit 0x1011 jumps to the newest.
        v.refresh_unit(0x1010, &t, &mut Pick(0), &mut changed);
        v.refresh_unit(0x1011, &t, &mut Pick(9), &mut changed);
        assert_eq!(v.shown(0x1010), (0x0f, 0));
        assert_eq!(v.shown(0x1011), (0x11, 2));
        assert_eq!(changed, vec![(0x1011, 0x1012)]);
        // Monotone: once shown, the new byte never goes back.
        v.refresh_unit(0x1011, &t, &mut Pick(0), &mut changed);
        assert_eq!(v.shown(0x1011), (0x11, 2));
    }

    #[test]
    fn serialize_makes_the_view_exact() {
        let t = truth();
        let mut v = View::new(0x1000, &t.init, FetchModel::PESSIMISTIC);
        let mut changed = Vec::new();
        v.refresh_unit(0x1012, &t, &mut Pick(1), &mut changed);
        v.serialize(&t, &mut changed);
        assert!(v.is_exact(&t));
        for addr in 0x1010..0x1015 {
            assert_eq!(v.shown(addr).0, t.byte_at(addr, t.now()).0);
        }
        assert_eq!(v.snapshot_of(0x1010), t.now());
    }

    #[test]
    fn snapshot_unit_shows_a_prefix_of_the_store_order() {
        let t = truth();
        let model = FetchModel::preset("snapshot").unwrap();
        for pick in 0..6 {
            let mut v = View::new(0x1000, &t.init, model);
            v.refresh_unit(0x1010, &t, &mut Pick(pick), &mut Vec::new());
            // Epoch `pick` shows exactly the first `pick` stores.
            for addr in 0x1010..0x1015 {
                assert_eq!(v.shown(addr).0, t.byte_at(addr, pick as Epoch).0, "pick {pick} addr {addr:#x}");
            }
        }
    }

    #[test]
    fn bounded_staleness_forces_old_stores_visible() {
        let t = truth();
        let model = FetchModel { staleness: Staleness::Bounded(2), ..FetchModel::PESSIMISTIC };
        let mut v = View::new(0x1000, &t.init, model);
        // Two own steps ago the truth was already at epoch 5: the unit may not show less.
        v.note_step(5);
        v.note_step(5);
        v.refresh_unit(0x1010, &t, &mut Pick(0), &mut Vec::new());
        assert_eq!(v.shown(0x1010), (0xcc, 1));
    }
}
