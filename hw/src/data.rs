//! The guest's data region on real CPUs: anonymous read-write memory at the guest's own data
//! address (`MAP_FIXED_NOREPLACE`: never over anything already mapped), zero-filled as the
//! simulator's shared region starts, holding every vCPU's stack and counters.

use std::ptr::NonNull;

use crate::Refusal;

/// The data region.
#[derive(Debug)]
pub struct DataMapping {
    base: u64,
    len: usize,
    ptr: NonNull<u8>,
}

impl DataMapping {
    /// Maps `len` zero bytes (whole pages) read-write at `base`.
    pub fn new(base: u64, len: usize) -> Result<Self, Refusal> {
        if len == 0 || !len.is_multiple_of(4096) || !base.is_multiple_of(4096) {
            return Err(Refusal::Mapping {
                addr: base,
                reason: format!("{len} bytes at {base:#x} are not whole pages"),
            });
        }
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
        // SAFETY: a new anonymous mapping that replaces nothing (MAP_FIXED_NOREPLACE).
        let p = unsafe { libc::mmap(base as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
        if p == libc::MAP_FAILED {
            let reason = format!("mmap(data): {}", std::io::Error::last_os_error());
            return Err(Refusal::Mapping { addr: base, reason });
        }
        let ptr =
            NonNull::new(p.cast()).ok_or_else(|| Refusal::Mapping { addr: base, reason: "mmap gave NULL".into() })?;
        let data = DataMapping { base, len, ptr };
        if p as u64 != base {
            return Err(Refusal::Mapping { addr: base, reason: format!("the kernel placed it at {p:p}") });
        }
        Ok(data)
    }

    /// Reads the little-endian qword at guest address `addr` (a guest may be writing it).
    ///
    /// # Panics
    /// If the qword is not inside the region.
    pub fn read_u64(&self, addr: u64) -> u64 {
        let off = addr.checked_sub(self.base).map(|o| o as usize).filter(|&o| o + 8 <= self.len);
        let Some(off) = off else {
            panic!("qword at {addr:#x} is outside the data at {:#x}+{:#x}", self.base, self.len)
        };
        // SAFETY: inside the mapping, which lives as long as `self`; a volatile unaligned read
        // of plain bytes that a guest thread may be storing to (a torn read is only a number).
        unsafe { self.ptr.as_ptr().add(off).cast::<u64>().read_unaligned() }
    }
}

impl DataMapping {
    /// The mapping as the simulator's shared region (what the INT3 handler's emulation reads
    /// and writes).
    ///
    /// # Safety
    /// The region must be dropped before this mapping.
    pub unsafe fn shared_region(&self) -> cpu_model::SharedRegion {
        // SAFETY: the mapping is `len` readable and writable bytes (whole pages), and stays so
        // for the region's life by the caller's promise.
        unsafe { cpu_model::SharedRegion::over(self.base, self.ptr, self.len as u64) }
    }
}

// SAFETY: the mapping is plain memory owned by this value until it is dropped; reads through
// `read_u64` are of bytes guest code may be writing (a torn read is only a number).
unsafe impl Send for DataMapping {}
// SAFETY: as for `Send`: `&self` methods only read.
unsafe impl Sync for DataMapping {}

impl Drop for DataMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` and nothing borrows it past `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
