//! Just enough ELF64 (little-endian) parsing to find what a dynamic executable or library needs:
//! its `DT_NEEDED` sonames and its `PT_INTERP` loader. Used to copy the library closure of the
//! node image's binaries out of the extracted Debian packages (no host `ldd`, nothing run).

use anyhow::{bail, Context, Result};
use std::path::Path;

/// What a dynamic ELF file needs at run time.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Needs {
    /// `DT_NEEDED` entries (sonames), in file order.
    pub needed: Vec<String>,
    /// The `PT_INTERP` path (e.g. `/lib64/ld-linux-x86-64.so.2`), if any.
    pub interp: Option<String>,
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

/// True if the file starts with the ELF magic.
pub fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"\x7fELF"
}

/// Reads the needs of the ELF file at `path`. Static executables and relocatable objects give
/// empty needs.
pub fn needs(path: &Path) -> Result<Needs> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&data).with_context(|| format!("parsing the ELF file {}", path.display()))
}

fn bytes(d: &[u8], off: u64, len: u64) -> Result<&[u8]> {
    let start = usize::try_from(off)?;
    let end = start
        .checked_add(usize::try_from(len)?)
        .context("offset overflow")?;
    d.get(start..end).context("truncated ELF file")
}

fn u16_at(d: &[u8], off: u64) -> Result<u16> {
    let b = bytes(d, off, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(d: &[u8], off: u64) -> Result<u32> {
    let b = bytes(d, off, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(d: &[u8], off: u64) -> Result<u64> {
    let b = bytes(d, off, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

fn cstr_at(d: &[u8], off: u64) -> Result<String> {
    let start = usize::try_from(off)?;
    let rest = d.get(start..).context("string outside the file")?;
    let end = rest
        .iter()
        .position(|&c| c == 0)
        .context("unterminated string")?;
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Parses an ELF64 little-endian image.
pub fn parse(d: &[u8]) -> Result<Needs> {
    if d.len() < 64 || &d[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    if d[4] != 2 || d[5] != 1 {
        bail!("not a 64-bit little-endian ELF file");
    }
    let phoff = u64_at(d, 0x20)?;
    let phentsize = u64::from(u16_at(d, 0x36)?);
    let phnum = u64::from(u16_at(d, 0x38)?);
    let mut phdrs = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        phdrs.push(Phdr {
            kind: u32_at(d, p)?,
            offset: u64_at(d, p + 8)?,
            vaddr: u64_at(d, p + 16)?,
            filesz: u64_at(d, p + 32)?,
        });
    }
    let mut out = Needs::default();
    if let Some(ph) = phdrs.iter().find(|p| p.kind == PT_INTERP) {
        let s = bytes(d, ph.offset, ph.filesz)?;
        let s = s.split(|&c| c == 0).next().unwrap_or_default();
        out.interp = Some(String::from_utf8_lossy(s).into_owned());
    }
    let Some(dynamic) = phdrs.iter().find(|p| p.kind == PT_DYNAMIC) else {
        return Ok(out);
    };
    let mut needed_offsets = Vec::new();
    let mut strtab = None;
    let mut off = dynamic.offset;
    while off + 16 <= dynamic.offset + dynamic.filesz {
        let (tag, val) = (u64_at(d, off)?, u64_at(d, off + 8)?);
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed_offsets.push(val),
            DT_STRTAB => strtab = Some(val),
            _ => {}
        }
        off += 16;
    }
    if needed_offsets.is_empty() {
        return Ok(out);
    }
    let strtab = strtab.context("DT_NEEDED without DT_STRTAB")?;
    // DT_STRTAB is a virtual address: map it to a file offset through the PT_LOAD segments.
    let load = phdrs
        .iter()
        .find(|p| p.kind == PT_LOAD && strtab >= p.vaddr && strtab < p.vaddr + p.filesz)
        .context("DT_STRTAB outside every PT_LOAD segment")?;
    let strtab_off = strtab - load.vaddr + load.offset;
    for n in needed_offsets {
        out.needed.push(cstr_at(d, strtab_off + n)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_test_binary_itself() {
        let exe = std::env::current_exe().expect("current exe");
        let n = needs(&exe).expect("parse");
        assert!(n.needed.iter().any(|s| s.starts_with("libc.so")), "{n:?}");
        assert!(n.interp.as_deref().is_some_and(|i| i.contains("ld-linux")));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(
            b"not an elf at all, clearly not one, no, not at all........................"
        )
        .is_err());
        assert!(parse(b"\x7fELF").is_err());
    }
}
