//! A compiled protocol's linked image mapped in this process at the fixed addresses it was
//! linked for (`sim_core::kernel_image`), so that the very bytes the simulator runs on its
//! vCPUs run natively: the kernel code and read-only data read + execute at `KCODE_BASE`, the
//! file's `.data`/`.bss` read + write at `KDATA_BASE`, the call arguments (`struct
//! pokesim_poke` arrays) at `KARGS_BASE` so that every call's pointer arguments are valid
//! unchanged, the patching client's stack at `KSTACK_BASE`, and the service page at
//! `SERVICE_BASE`, each 16-byte slot a stub `mov rcx, [rsp]; movabs rax, <host function>;
//! jmp rax` into the host's implementation of that kernel service, which receives the C's
//! return address as a fourth argument (no service takes more than three) to name the line
//! that called it. Every region is mapped with
//! `MAP_FIXED_NOREPLACE` (never over anything), written while read + write, then protected:
//! no page is ever writable and executable at once.

use std::ptr::NonNull;

use sim_core::kernel_image::{
    KernelImage, Service, KARGS_BASE, KARGS_SIZE, KCODE_BASE, KCODE_MAX, KDATA_BASE, KDATA_MAX, KSTACK_BASE,
    KSTACK_SIZE, SERVICE_BASE,
};

use crate::Refusal;

const PAGE: usize = 4096;

/// The image's regions, mapped until dropped.
#[derive(Debug)]
pub struct KernelMapping {
    regions: Vec<(NonNull<u8>, usize)>,
    code_len: usize,
}

impl KernelMapping {
    /// Maps `image` with the call arguments `args` and one patching client's stack; the
    /// service page's slot `s` jumps to `services[s]` (a host function of the System V ABI
    /// with the service's C signature and the return address as one more argument). Refuses
    /// an address already taken in this process.
    pub fn new(image: &KernelImage, args: &[u8], services: &[usize; Service::ALL.len()]) -> Result<Self, Refusal> {
        let too_big = |what: &str, n: usize, max: u64| {
            Err(Refusal::Program(format!(
                "{}: its {what} ({n} bytes) exceeds the {max} bytes mapped for it",
                image.source
            )))
        };
        if image.code.len() as u64 > KCODE_MAX {
            return too_big("code", image.code.len(), KCODE_MAX);
        }
        if image.data.len() as u64 > KDATA_MAX {
            return too_big("data", image.data.len(), KDATA_MAX);
        }
        if args.len() as u64 > KARGS_SIZE {
            return too_big("call arguments", args.len(), KARGS_SIZE);
        }
        let mut map = KernelMapping { regions: Vec::new(), code_len: image.code.len() };
        let (rx, rw) = (libc::PROT_READ | libc::PROT_EXEC, libc::PROT_READ | libc::PROT_WRITE);
        map.region(SERVICE_BASE, &service_page(services), PAGE, rx)?;
        map.region(KCODE_BASE, &image.code, image.code.len(), rx)?;
        map.region(KDATA_BASE, &image.data, image.data.len(), rw)?;
        map.region(KARGS_BASE, args, args.len(), rw)?;
        map.region(KSTACK_BASE, &[], KSTACK_SIZE as usize, rw)?;
        Ok(map)
    }

    /// The top of the patching client's stack.
    pub fn stack_top(&self) -> u64 {
        KSTACK_BASE + KSTACK_SIZE
    }

    /// The kernel code's bytes from `addr` (up to `n`, fewer at its end); empty outside it.
    pub fn code(&self, addr: u64, n: usize) -> &[u8] {
        let Some(off) = addr.checked_sub(KCODE_BASE).map(|o| o as usize).filter(|&o| o < self.code_len) else {
            return &[];
        };
        // SAFETY: the code region is mapped readable for `code_len` bytes from KCODE_BASE (it
        // is the second region) as long as `self`, and never written after it was protected.
        unsafe { std::slice::from_raw_parts((KCODE_BASE as usize + off) as *const u8, n.min(self.code_len - off)) }
    }

    /// Maps `len` bytes (rounded up to whole pages, at least one) at `addr`, copies `bytes`
    /// in (the rest is zero), then protects them `prot`.
    fn region(&mut self, addr: u64, bytes: &[u8], len: usize, prot: libc::c_int) -> Result<(), Refusal> {
        let len = len.max(1).next_multiple_of(PAGE);
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a new anonymous mapping that replaces nothing (MAP_FIXED_NOREPLACE).
        let p = unsafe { libc::mmap(addr as *mut libc::c_void, len, rw, flags, -1, 0) };
        let taken = |why: String| Refusal::Mapping {
            addr,
            reason: format!("the compiled protocol is linked to run at {addr:#x} (sim_core::kernel_image), and {why}"),
        };
        if p == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            return Err(taken(match e.raw_os_error() {
                Some(libc::EEXIST) => "that address is already taken in this process".into(),
                _ => format!("mmap failed: {e}"),
            }));
        }
        let Some(ptr) = NonNull::new(p.cast::<u8>()) else { return Err(taken("mmap gave NULL".into())) };
        self.regions.push((ptr, len));
        if p as u64 != addr {
            return Err(taken(format!("the kernel placed it at {p:p} (no MAP_FIXED_NOREPLACE: Linux < 4.17)")));
        }
        // SAFETY: `len` writable bytes were just mapped at `p`, and `bytes.len() <= len`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len().min(len)) };
        // SAFETY: changing the protection of our own fresh mapping.
        if unsafe { libc::mprotect(p, len, prot) } != 0 {
            return Err(taken(format!("mprotect failed: {}", std::io::Error::last_os_error())));
        }
        Ok(())
    }
}

/// The service page: `hlt` everywhere (a fault if run in user mode), and in each service's
/// slot `mov rcx, [rsp]; movabs rax, services[s]; jmp rax` (all 16 bytes).
fn service_page(services: &[usize; Service::ALL.len()]) -> Vec<u8> {
    let mut page = vec![0xf4u8; PAGE];
    for s in Service::ALL {
        let at = (s.addr() - SERVICE_BASE) as usize;
        page[at..at + 6].copy_from_slice(&[0x48, 0x8b, 0x0c, 0x24, 0x48, 0xb8]);
        page[at + 6..at + 14].copy_from_slice(&(services[s as usize] as u64).to_le_bytes());
        page[at + 14..at + 16].copy_from_slice(&[0xff, 0xe0]);
    }
    page
}

// SAFETY: the mappings are owned by this value until it is dropped; `&self` only reads the
// code, which nothing writes after it was protected.
unsafe impl Send for KernelMapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for KernelMapping {}

impl Drop for KernelMapping {
    fn drop(&mut self) {
        for &(p, len) in &self.regions {
            // SAFETY: each region was mapped by `region` and nothing borrows it past `self`.
            unsafe { libc::munmap(p.as_ptr().cast(), len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_slot_jumps_to_its_host_function() {
        let services: [usize; Service::ALL.len()] = std::array::from_fn(|i| 0x1122_3344_5566_0000 + i);
        let page = service_page(&services);
        for s in Service::ALL {
            let at = (s.addr() - SERVICE_BASE) as usize;
            let mut want = vec![0x48, 0x8b, 0x0c, 0x24, 0x48, 0xb8];
            want.extend((0x1122_3344_5566_0000u64 + s as u64).to_le_bytes());
            want.extend([0xff, 0xe0]);
            assert_eq!(&page[at..at + 16], &want[..], "{s:?}");
        }
    }
}
