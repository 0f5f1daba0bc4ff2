//! The guest text on real CPUs: one `memfd` mapped twice — read+execute at the guest's own
//! base address (code assembled for `TEXT_BASE` runs unchanged), and read+write at an address
//! the kernel picks — so no page is ever writable and executable. A poke is a store through
//! the writable alias, as the kernel's `text_poke()` stores through a temporary mm's alias of
//! the text page; SDM Vol. 3A §11.6 (docs/reference/hardware.md §2) is why a store through an
//! alias needs the serialization [`crate::sync_core`] gives before the new bytes are executed.

use std::ptr::NonNull;

use crate::Refusal;

/// The text, mapped executable at its guest address and writable at an alias.
#[derive(Debug)]
pub struct TextMapping {
    fd: libc::c_int,
    base: u64,
    len: usize,
    exec: NonNull<u8>,
    write: NonNull<u8>,
}

fn os_error(addr: u64, what: &str) -> Refusal {
    Refusal::Mapping { addr, reason: format!("{what}: {}", std::io::Error::last_os_error()) }
}

impl TextMapping {
    /// Maps `initial` (a whole number of pages) executable at `base` (page aligned, and free
    /// in this process: `MAP_FIXED_NOREPLACE`) and writable elsewhere.
    pub fn new(base: u64, initial: &[u8]) -> Result<Self, Refusal> {
        let page = 4096;
        let len = initial.len();
        if len == 0 || !len.is_multiple_of(page) || !base.is_multiple_of(page as u64) {
            return Err(Refusal::Mapping {
                addr: base,
                reason: format!("{len} bytes at {base:#x} are not whole pages"),
            });
        }
        // SAFETY: a NUL-terminated name and valid flags; the fd is owned by the result.
        let fd = unsafe { libc::memfd_create(c"pokesim-text".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_error(base, "memfd_create"));
        }
        let mut text = TextMapping { fd, base, len, exec: NonNull::dangling(), write: NonNull::dangling() };
        // SAFETY: `fd` is ours; the length is the mapping's.
        if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
            return Err(os_error(base, "ftruncate"));
        }
        text.write =
            map(fd, len, None, libc::PROT_READ | libc::PROT_WRITE).ok_or_else(|| os_error(base, "mmap(rw)"))?;
        let exec =
            map(fd, len, Some(base), libc::PROT_READ | libc::PROT_EXEC).ok_or_else(|| os_error(base, "mmap(rx)"))?;
        text.exec = exec;
        if exec.as_ptr() as u64 != base {
            return Err(Refusal::Mapping {
                addr: base,
                reason: format!("the kernel placed it at {:p}", exec.as_ptr()),
            });
        }
        text.poke(base, initial);
        Ok(text)
    }

    /// The guest address of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Stores `bytes` at guest address `addr` through the writable alias, one byte store each,
    /// in order (a program that splits a poke differently calls this once per part).
    ///
    /// # Panics
    /// If the range is not inside the text (a caller's bug: pokes come from a validated plan).
    pub fn poke(&self, addr: u64, bytes: &[u8]) {
        let off = self.offset(addr, bytes.len());
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: `off + i` is inside the writable mapping (checked above), which lives as
            // long as `self`; volatile, so each store happens, in order, as one byte store.
            unsafe { self.write.as_ptr().add(off + i).write_volatile(b) };
        }
    }

    /// Stores `bytes` at `addr` as the parts `granularity` splits them into, each part one
    /// store of its width (1, 2, 4 or 8 bytes, naturally aligned: single-copy atomic on x86,
    /// SDM Vol. 3A §9.1.1). A part the hardware cannot store at once — `whole` over more than
    /// one aligned word — is stored as `aligned8` would split it. Returns the number of stores.
    ///
    /// # Panics
    /// If the range is not inside the text.
    pub fn poke_as(&self, addr: u64, bytes: &[u8], granularity: cpu_model::StoreGranularity) -> usize {
        use cpu_model::StoreGranularity::Aligned8;
        let mut stores = 0;
        for (a, l) in granularity.split(addr, bytes.len() as u64) {
            let part = &bytes[(a - addr) as usize..(a - addr + l) as usize];
            let one = matches!(l, 1 | 2 | 4 | 8) && a % l == 0;
            if one {
                self.store(a, part);
                stores += 1;
            } else {
                for (b, m) in Aligned8.split(a, l) {
                    self.store(b, &part[(b - a) as usize..(b - a + m) as usize]);
                    stores += 1;
                }
            }
        }
        stores
    }

    /// One naturally aligned store of 1, 2, 4 or 8 bytes through the writable alias.
    fn store(&self, addr: u64, part: &[u8]) {
        let off = self.offset(addr, part.len());
        // SAFETY: `off..off + len` is inside the writable mapping (checked), which lives as long
        // as `self`, and is naturally aligned for its width (the callers split it so), so each
        // arm is one aligned volatile store.
        unsafe {
            let p = self.write.as_ptr().add(off);
            match *part {
                [a] => p.write_volatile(a),
                [a, b] => p.cast::<u16>().write_volatile(u16::from_le_bytes([a, b])),
                [a, b, c, d] => p.cast::<u32>().write_volatile(u32::from_le_bytes([a, b, c, d])),
                _ => {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(part);
                    p.cast::<u64>().write_volatile(u64::from_le_bytes(w));
                }
            }
        }
    }

    /// Reads the byte at guest address `addr` through the executable view.
    ///
    /// # Panics
    /// If `addr` is not inside the text.
    pub fn read(&self, addr: u64) -> u8 {
        let off = self.offset(addr, 1);
        // SAFETY: inside the readable executable mapping, alive as long as `self`.
        unsafe { self.exec.as_ptr().add(off).read_volatile() }
    }

    fn offset(&self, addr: u64, n: usize) -> usize {
        let off = addr.checked_sub(self.base).map(|o| o as usize);
        match off {
            Some(o) if o.checked_add(n).is_some_and(|end| end <= self.len) => o,
            _ => panic!("{n} bytes at {addr:#x} are outside the text at {:#x}+{:#x}", self.base, self.len),
        }
    }
}

/// `mmap(fd)` shared, at `at` with `MAP_FIXED_NOREPLACE` (or anywhere).
fn map(fd: libc::c_int, len: usize, at: Option<u64>, prot: libc::c_int) -> Option<NonNull<u8>> {
    let (hint, fixed) = match at {
        Some(a) => (a as *mut libc::c_void, libc::MAP_FIXED_NOREPLACE),
        None => (std::ptr::null_mut(), 0),
    };
    // SAFETY: a new shared mapping of our own fd; MAP_FIXED_NOREPLACE never replaces an
    // existing mapping (it fails with EEXIST instead).
    let p = unsafe { libc::mmap(hint, len, prot, libc::MAP_SHARED | fixed, fd, 0) };
    if p == libc::MAP_FAILED {
        return None;
    }
    NonNull::new(p.cast())
}

// SAFETY: the mappings and the fd are owned by this value until it is dropped. Reads are
// volatile reads of bytes other threads may be storing (a torn read is only a number); stores
// are volatile stores of plain bytes into memory only guest machine code executes, and a
// session makes them from one thread at a time (under its lock).
unsafe impl Send for TextMapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for TextMapping {}

impl Drop for TextMapping {
    fn drop(&mut self) {
        // SAFETY: the mappings and the fd were made by `new` (a dangling pointer marks a
        // mapping that was never made) and nothing borrows them past `self`.
        unsafe {
            for p in [self.exec, self.write] {
                if p != NonNull::dangling() {
                    libc::munmap(p.as_ptr().cast(), self.len);
                }
            }
            libc::close(self.fd);
        }
    }
}
