//! Host buffers that Unicorn engines map with `mem_map_ptr`: the shared data region, and each
//! vCPU's private text view page(s) (reference/unicorn.md §2 and §4).
//!
//! Aliasing: an engine writes these buffers through the raw pointer while it runs, and Rust
//! reads and writes them between steps. Everything runs on one thread (`Unicorn` is `!Send`)
//! and no engine runs while Rust touches a buffer, so accesses never overlap in time; all Rust
//! accesses go through raw pointers so no `&mut` reference ever aliases the engine's view.

use std::alloc::{alloc_zeroed, dealloc, Layout as AllocLayout};
use std::cell::Cell;
use std::ptr::NonNull;

use crate::PAGE_SIZE;

/// A zeroed, page-aligned host allocation — or memory someone else mapped
/// ([`SharedRegion::over`]), which it does not free.
#[derive(Debug)]
pub(crate) struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
    owned: bool,
}

impl PageBuf {
    pub(crate) fn new(len: usize) -> Self {
        assert!(len > 0 && (len as u64).is_multiple_of(PAGE_SIZE), "PageBuf length must be whole pages");
        let layout = AllocLayout::from_size_align(len, PAGE_SIZE as usize).expect("valid page layout");
        // SAFETY: the layout has non-zero size; a null return is handled below.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Self { ptr, len, owned: true }
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn read(&self, off: usize, out: &mut [u8]) {
        assert!(off + out.len() <= self.len, "PageBuf read out of bounds");
        // SAFETY: bounds checked above; no engine runs concurrently (module note).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), out.as_mut_ptr(), out.len()) }
    }

    pub(crate) fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.len, "PageBuf write out of bounds");
        // SAFETY: bounds checked above; no engine runs concurrently (module note).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(off), bytes.len()) }
    }

    pub(crate) fn byte(&self, off: usize) -> u8 {
        assert!(off < self.len, "PageBuf byte out of bounds");
        // SAFETY: bounds checked above; no engine runs concurrently (module note).
        unsafe { self.ptr.as_ptr().add(off).read() }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let layout = AllocLayout::from_size_align(self.len, PAGE_SIZE as usize).expect("valid page layout");
        // SAFETY: allocated in `new` with exactly this layout, and freed once.
        unsafe { dealloc(self.ptr.as_ptr(), layout) }
    }
}

// SAFETY: a region owns its buffer (or, from `over`, has the caller's promise that the memory
// stays valid for its life); moving it to another thread moves that ownership with it. It is not
// `Sync` (the write counter is a `Cell`): one thread at a time uses it.
unsafe impl Send for SharedRegion {}

/// The data region every vCPU maps read-write at the same guest address: stacks and guest
/// counters. Sequentially consistent (DESIGN.md §2.3): a store by one engine is visible to the
/// next load of any other. Handlers emulating `push` write here too.
#[derive(Debug)]
pub struct SharedRegion {
    base: u64,
    buf: PageBuf,
    /// Number of writes done from Rust; part of nothing but debugging.
    host_writes: Cell<u64>,
}

impl SharedRegion {
    /// A zeroed region of `len` bytes (whole pages) at guest address `base`.
    pub fn new(base: u64, len: u64) -> Self {
        Self { base, buf: PageBuf::new(len as usize), host_writes: Cell::new(0) }
    }

    /// The region over `len` bytes (whole pages) that someone else mapped at `ptr`, for guest
    /// address `base` — the hardware run's data, mapped at the guest's own address — which the
    /// region reads and writes but never frees.
    ///
    /// # Safety
    /// `ptr..ptr + len` must stay mapped readable and writable for as long as the region
    /// lives, and nothing may access it while the region does, except code that — like guest
    /// machine code — Rust never sees.
    pub unsafe fn over(base: u64, ptr: NonNull<u8>, len: u64) -> Self {
        assert!(len > 0 && len.is_multiple_of(PAGE_SIZE), "a region is whole pages");
        let buf = PageBuf { ptr, len: len as usize, owned: false };
        Self { base, buf, host_writes: Cell::new(0) }
    }

    /// Guest address of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Never true: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub(crate) fn host_ptr(&self) -> *mut u8 {
        self.buf.as_ptr()
    }

    fn offset(&self, addr: u64, len: usize) -> Option<usize> {
        let off = addr.checked_sub(self.base)?;
        (off + len as u64 <= self.len()).then_some(off as usize)
    }

    /// Reads a little-endian u64 at guest address `addr`; `None` if outside the region.
    pub fn read_u64(&self, addr: u64) -> Option<u64> {
        let off = self.offset(addr, 8)?;
        let mut b = [0u8; 8];
        self.buf.read(off, &mut b);
        Some(u64::from_le_bytes(b))
    }

    /// Writes a little-endian u64 at guest address `addr`; `None` if outside the region.
    pub fn write_u64(&self, addr: u64, value: u64) -> Option<()> {
        let off = self.offset(addr, 8)?;
        self.buf.write(off, &value.to_le_bytes());
        self.host_writes.set(self.host_writes.get() + 1);
        Some(())
    }

    /// Copies `out.len()` bytes from guest address `addr`; `None` if outside the region.
    pub fn read(&self, addr: u64, out: &mut [u8]) -> Option<()> {
        let off = self.offset(addr, out.len())?;
        self.buf.read(off, out);
        Some(())
    }

    /// Copies `bytes` to guest address `addr`; `None` if outside the region.
    pub fn write(&self, addr: u64, bytes: &[u8]) -> Option<()> {
        let off = self.offset(addr, bytes.len())?;
        self.buf.write(off, bytes);
        self.host_writes.set(self.host_writes.get() + 1);
        Some(())
    }
}
