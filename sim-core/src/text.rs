//! The text truth (DESIGN.md §2.3): the code as the patcher last wrote it, and the log of
//! store events that produced it. `text_poke(addr, bytes)` reaches here already split into
//! store events by the fetch model's `stores` parameter; each store is one epoch.
//!
//! Per byte, the truth keeps its history `(epoch, value)`, so the fetch model can show any
//! byte as of any epoch (`View::refresh_unit`) without replaying the log.

use cpu_model::{Epoch, Layout, Truth};

/// One store event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Store {
    /// First byte written.
    pub addr: u64,
    /// Bytes written.
    pub bytes: Vec<u8>,
}

/// The text as the patcher wrote it.
#[derive(Clone, Debug)]
pub struct TextMemory {
    base: u64,
    initial: Vec<u8>,
    current: Vec<u8>,
    log: Vec<Store>,
    /// Stores undone by [`TextMemory::set_epoch`], newest last popped first: the patcher's
    /// stores are the same on every path, so going forward again re-applies them.
    redo: Vec<Store>,
    /// Per byte offset: the stores to it, `(epoch, value)` in epoch order. Empty = never
    /// written (the initial value, epoch 0).
    history: Vec<Vec<(Epoch, u8)>>,
}

impl TextMemory {
    /// The initial text of `layout`.
    pub fn new(layout: &Layout, initial: Vec<u8>) -> Self {
        assert_eq!(initial.len() as u64, layout.text_len, "text image must fill the text region");
        let n = initial.len();
        Self {
            base: layout.text_base,
            current: initial.clone(),
            initial,
            log: Vec::new(),
            redo: Vec::new(),
            history: vec![Vec::new(); n],
        }
    }

    /// The initial image.
    pub fn initial(&self) -> &[u8] {
        &self.initial
    }

    /// The address just past the text.
    pub fn end(&self) -> u64 {
        self.base + self.current.len() as u64
    }

    /// The whole text as it is now.
    pub fn current(&self) -> &[u8] {
        &self.current
    }

    /// True if `[addr, addr + len)` lies inside the text.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.base && addr.checked_add(len).is_some_and(|end| end <= self.end())
    }

    /// `len` bytes of the text as it is now, from `addr`.
    pub fn read(&self, addr: u64, len: usize) -> &[u8] {
        let off = (addr - self.base) as usize;
        &self.current[off..off + len]
    }

    /// Applies one store event; returns its epoch.
    pub fn store(&mut self, addr: u64, bytes: &[u8]) -> Epoch {
        let off = (addr - self.base) as usize;
        assert!(off + bytes.len() <= self.current.len(), "store outside the text");
        match self.redo.last() {
            Some(r) if r.addr == addr && r.bytes == bytes => {
                self.redo.pop();
            }
            Some(_) => self.redo.clear(),
            None => {}
        }
        self.log.push(Store { addr, bytes: bytes.to_vec() });
        let epoch = self.log.len() as Epoch;
        for (i, &b) in bytes.iter().enumerate() {
            self.current[off + i] = b;
            let history = &mut self.history[off + i];
            assert!(history.last().is_none_or(|&(e, _)| e < epoch), "a store's epoch must increase");
            history.push((epoch, b));
        }
        epoch
    }

    /// Moves the truth to `epoch` (state-space search restores saved states): later stores
    /// are undone, and stores undone before are re-applied. Returns false if `epoch` lies
    /// beyond every store ever made.
    pub(crate) fn set_epoch(&mut self, epoch: Epoch) -> bool {
        while self.log.len() as Epoch > epoch {
            let s = self.undo_last();
            self.redo.push(s);
        }
        while (self.log.len() as Epoch) < epoch {
            let Some(s) = self.redo.last().cloned() else { return false };
            self.store(s.addr, &s.bytes);
        }
        true
    }

    /// Undoes the newest store and returns it.
    fn undo_last(&mut self) -> Store {
        let s = self.log.pop().expect("a store to undo");
        let off = (s.addr - self.base) as usize;
        for i in 0..s.bytes.len() {
            let h = &mut self.history[off + i];
            h.pop();
            self.current[off + i] = h.last().map_or(self.initial[off + i], |&(_, v)| v);
        }
        s
    }

    /// Makes `log` the store history (state-space search restores a saved state when more than
    /// one patching client stores, so the history differs from path to path): the stores after
    /// the longest prefix both histories share are undone, and `log`'s are applied after it.
    /// The redo list is dropped (there is no one sequence to go forward on).
    pub(crate) fn set_log(&mut self, log: &[Store]) {
        let common = self.log.iter().zip(log).take_while(|(a, b)| a == b).count();
        while self.log.len() > common {
            self.undo_last();
        }
        self.redo.clear();
        for s in &log[common..] {
            self.store(s.addr, &s.bytes);
        }
    }

    /// Starts the truth over from the initial image, forgetting every store (the hardware run
    /// repeats a workload's script that returns the text to its initial image, and keeps the
    /// log to one pass).
    pub fn restart(&mut self) {
        for s in self.log.drain(..).chain(self.redo.drain(..)) {
            let off = (s.addr - self.base) as usize;
            for i in off..off + s.bytes.len() {
                self.history[i].clear();
                self.current[i] = self.initial[i];
            }
        }
    }

    /// The store log.
    pub fn log(&self) -> &[Store] {
        &self.log
    }
}

impl Truth for TextMemory {
    fn now(&self) -> Epoch {
        self.log.len() as Epoch
    }

    fn store_range(&self, epoch: Epoch) -> (u64, u64) {
        let s = &self.log[epoch as usize - 1];
        (s.addr, s.bytes.len() as u64)
    }

    fn byte_at(&self, addr: u64, epoch: Epoch) -> (u8, Epoch) {
        let off = (addr - self.base) as usize;
        let h = &self.history[off];
        // Histories are short (a few stores per patch round): scan from the newest.
        match h.iter().rev().find(|(e, _)| *e <= epoch) {
            Some(&(e, v)) => (v, e),
            None => (self.initial[off], 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_history_answers_any_epoch() {
        let layout = Layout { text_base: 0x1000, text_len: 0x1000, data_base: 0x10000, data_len: 0x1000 };
        let mut t = TextMemory::new(&layout, vec![0x90; 0x1000]);
        assert_eq!(t.store(0x1010, &[0xcc]), 1);
        assert_eq!(t.store(0x1010, &[0xe8, 1, 2]), 2);
        assert_eq!(t.byte_at(0x1010, 0), (0x90, 0));
        assert_eq!(t.byte_at(0x1010, 1), (0xcc, 1));
        assert_eq!(t.byte_at(0x1011, 1), (0x90, 0));
        assert_eq!(t.byte_at(0x1011, 2), (0x01, 2));
        assert_eq!(t.store_range(2), (0x1010, 3));
        assert_eq!(t.read(0x1010, 3), &[0xe8, 1, 2]);
        t.set_epoch(1);
        assert_eq!((t.now(), t.read(0x1010, 3)), (1, &[0xcc, 0x90, 0x90][..]));
        t.set_epoch(0);
        assert_eq!(t.read(0x1010, 1), &[0x90]);
        assert!(t.set_epoch(2), "undone stores are re-applied");
        assert_eq!(t.read(0x1010, 3), &[0xe8, 1, 2]);
        assert!(!t.set_epoch(3));
        t.set_epoch(1);
        t.restart();
        assert_eq!((t.now(), t.read(0x1010, 3), t.byte_at(0x1011, 5)), (0, &[0x90; 3][..], (0x90, 0)));
        assert!(!t.set_epoch(1), "nothing to redo after a restart");
    }

    #[test]
    fn a_log_from_another_path_replaces_the_history_after_the_shared_prefix() {
        let layout = Layout { text_base: 0x1000, text_len: 0x1000, data_base: 0x10000, data_len: 0x1000 };
        let mut t = TextMemory::new(&layout, vec![0x90; 0x1000]);
        t.store(0x1010, &[0xcc]);
        t.store(0x1020, &[0xcc]);
        let a = t.log().to_vec();
        t.set_log(&a[..1]);
        t.store(0x1030, &[0xcc]);
        t.store(0x1020, &[0xe9]);
        let b = t.log().to_vec();
        t.set_log(&a);
        assert_eq!((t.now(), t.read(0x1020, 1), t.read(0x1030, 1)), (2, &[0xcc][..], &[0x90][..]));
        assert_eq!(t.byte_at(0x1030, 2), (0x90, 0));
        t.set_log(&b);
        assert_eq!((t.now(), t.read(0x1020, 1), t.read(0x1030, 1)), (3, &[0xe9][..], &[0xcc][..]));
        assert_eq!((t.byte_at(0x1020, 2), t.byte_at(0x1020, 3)), ((0x90, 0), (0xe9, 3)));
        t.set_log(&[]);
        assert_eq!((t.now(), t.read(0x1010, 1)), (0, &[0x90][..]));
    }
}
