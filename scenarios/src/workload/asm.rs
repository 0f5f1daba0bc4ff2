//! Assembling guest code at its final address with iced-x86's `CodeAssembler`, and placing it
//! in a text image. Canonical NOPs are written as exact bytes (`db`), never left to the
//! assembler's choice of encoding.

use iced_x86::code_asm::CodeAssembler;
use sim_core::{SimError, Subject};

fn asm_error(e: iced_x86::IcedError) -> SimError {
    SimError::invalid(Subject::Workload, format!("assembling guest code: {e}"))
}

/// A text image being filled.
pub(crate) struct Text {
    base: u64,
    bytes: Vec<u8>,
    /// Where code was placed, `(start, len)`.
    code: Vec<(u64, u64)>,
}

impl Text {
    /// `len` bytes of INT3 at `base` (padding that traps if ever executed).
    pub(crate) fn new(base: u64, len: u64) -> Self {
        Self { base, bytes: vec![0xcc; len as usize], code: Vec::new() }
    }

    /// Assembles `build`'s code at `addr` and copies it into the image.
    pub(crate) fn place(
        &mut self,
        addr: u64,
        build: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>,
    ) -> Result<u64, SimError> {
        let mut a = CodeAssembler::new(64).map_err(asm_error)?;
        build(&mut a).map_err(asm_error)?;
        let code = a.assemble(addr).map_err(asm_error)?;
        let off =
            addr.checked_sub(self.base).map(|o| o as usize).filter(|o| o + code.len() <= self.bytes.len()).ok_or_else(
                || SimError::invalid(Subject::Workload, format!("guest code at {addr:#x} does not fit the text")),
            )?;
        self.bytes[off..off + code.len()].copy_from_slice(&code);
        self.code.push((addr, code.len() as u64));
        Ok(addr + code.len() as u64)
    }

    /// The finished image and where its code is.
    pub(crate) fn finish(self) -> (Vec<u8>, Vec<(u64, u64)>) {
        (self.bytes, self.code)
    }
}
