//! Whether KVM really runs guests on this host.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Whether KVM can really run a guest here: creates a VM with one vCPU whose reset vector
/// holds a short loop then `hlt`, runs it, and expects a HLT exit at native speed. Cached for
/// the process's life.
pub fn kvm_can_run() -> bool {
    static CACHE: OnceLock<bool> = OnceLock::new();
    *CACHE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(probe_kvm());
        });
        rx.recv_timeout(Duration::from_secs(3)).unwrap_or(false)
    })
}

fn probe_kvm() -> bool {
    const KVM_GET_VCPU_MMAP_SIZE: libc::c_ulong = 0xAE04;
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
    const KVM_CREATE_VCPU: libc::c_ulong = 0xAE41;
    const KVM_SET_USER_MEMORY_REGION: libc::c_ulong = 0x4020_AE46;
    const KVM_RUN: libc::c_ulong = 0xAE80;
    const KVM_EXIT_HLT: u32 = 5;
    #[repr(C)]
    struct Region {
        slot: u32,
        flags: u32,
        guest_phys_addr: u64,
        memory_size: u64,
        userspace_addr: u64,
    }
    // SAFETY: plain ioctls on descriptors we open and close here; the guest memory and the
    // kvm_run area are mappings we create and unmap; the kernel only reads the `Region`.
    unsafe {
        let kvm = libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if kvm < 0 {
            return false;
        }
        let mut ok = false;
        let vm = libc::ioctl(kvm, KVM_CREATE_VM, 0);
        if vm >= 0 {
            let mem = libc::mmap(
                std::ptr::null_mut(),
                0x1000,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if mem != libc::MAP_FAILED {
                // At the reset vector (0xfffffff0): `mov ecx, 1000000; l: dec ecx; jnz l;
                // hlt`. A KVM that really runs guests does this in about a millisecond; one
                // that emulates every instruction (seen on some nested hosts) takes seconds.
                let code: [u8; 11] = [
                    0x66, 0xb9, 0x40, 0x42, 0x0f, 0x00, 0x66, 0x49, 0x75, 0xfc, 0xf4,
                ];
                std::ptr::copy_nonoverlapping(code.as_ptr(), (mem as *mut u8).add(0xff0), 11);
                let region = Region {
                    slot: 0,
                    flags: 0,
                    guest_phys_addr: 0xffff_f000,
                    memory_size: 0x1000,
                    userspace_addr: mem as u64,
                };
                let vcpu = if libc::ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) == 0 {
                    libc::ioctl(vm, KVM_CREATE_VCPU, 0)
                } else {
                    -1
                };
                let size = libc::ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
                if vcpu >= 0 && size > 0 {
                    let run = libc::mmap(
                        std::ptr::null_mut(),
                        size as usize,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        vcpu,
                        0,
                    );
                    if run != libc::MAP_FAILED {
                        let t = Instant::now();
                        if libc::ioctl(vcpu, KVM_RUN, 0) == 0 {
                            let reason = *((run as *const u8).add(8) as *const u32);
                            ok = reason == KVM_EXIT_HLT && t.elapsed() < Duration::from_millis(250);
                            tracing::info!("KVM probe: exit {reason} after {:?}", t.elapsed());
                        }
                        libc::munmap(run, size as usize);
                    }
                }
                if vcpu >= 0 {
                    libc::close(vcpu);
                }
                libc::munmap(mem, 0x1000);
            }
            libc::close(vm);
        }
        libc::close(kvm);
        ok
    }
}
