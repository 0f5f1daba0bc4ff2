//! The guest address-space layout: one text region (patched, privately viewed by each vCPU)
//! and one data region (stacks and counters, shared by all vCPUs).

use crate::CpuError;

/// x86-64 base page size; Unicorn maps in whole pages.
pub const PAGE_SIZE: u64 = 0x1000;

/// Where text and data live in every engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// First byte of the text region (page aligned).
    pub text_base: u64,
    /// Text size in bytes (a multiple of [`PAGE_SIZE`]).
    pub text_len: u64,
    /// First byte of the data region (page aligned).
    pub data_base: u64,
    /// Data size in bytes (a multiple of [`PAGE_SIZE`]).
    pub data_len: u64,
}

impl Layout {
    /// Checks alignment, sizes and that the regions are disjoint and within the low 2 GiB
    /// (so that rel32 branches and sign-extended imm32 addresses reach everything).
    pub fn validate(&self) -> Result<(), CpuError> {
        let aligned = |v: u64| v.is_multiple_of(PAGE_SIZE);
        if !aligned(self.text_base) || !aligned(self.data_base) {
            return Err(CpuError::Layout("region bases must be page aligned".into()));
        }
        if self.text_len == 0 || !aligned(self.text_len) || self.data_len == 0 || !aligned(self.data_len) {
            return Err(CpuError::Layout("region sizes must be non-zero multiples of 4 KiB".into()));
        }
        let text_end = self.text_base + self.text_len;
        let data_end = self.data_base + self.data_len;
        if self.text_base < data_end && self.data_base < text_end {
            return Err(CpuError::Layout("text and data regions overlap".into()));
        }
        if text_end.max(data_end) > 0x8000_0000 {
            return Err(CpuError::Layout("regions must lie below 2 GiB".into()));
        }
        Ok(())
    }

    /// True if `addr` lies in the text region.
    pub fn in_text(&self, addr: u64) -> bool {
        addr >= self.text_base && addr < self.text_base + self.text_len
    }

    /// True if `[addr, addr+len)` lies in the data region.
    pub fn in_data(&self, addr: u64, len: u64) -> bool {
        addr >= self.data_base && addr + len <= self.data_base + self.data_len
    }
}
