//! `newc` cpio archives (the initramfs format): the one writer of the workspace, for the node
//! VMs' initramfs and the lab's tiny guest (`maguey_lab::guest::cpio_newc`). Entries may include
//! character devices (`/dev/console`); output is streamed.

use anyhow::Result;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A character device node to add to an archive.
pub struct CharDev<'a> {
    pub path: &'a str,
    pub major: u32,
    pub minor: u32,
}

/// Writes the tree under `root` (plus `devs`) as an uncompressed `newc` archive to `out`.
/// Entries are sorted, so parents come before children and the output is reproducible.
pub fn write_tree(root: &Path, devs: &[CharDev], out: &mut impl Write) -> Result<()> {
    let mut entries = Vec::new();
    walk(root, root, &mut entries)?;
    entries.sort();
    let mut ino = 1u32;
    for rel in &entries {
        let path = root.join(rel);
        let meta = std::fs::symlink_metadata(&path)?;
        let (mode, data) = if meta.file_type().is_symlink() {
            let t = std::fs::read_link(&path)?;
            (0o120777, t.to_string_lossy().into_owned().into_bytes())
        } else if meta.is_dir() {
            (0o040755, Vec::new())
        } else {
            let exec = meta.permissions().mode() & 0o111 != 0;
            (
                if exec { 0o100755 } else { 0o100644 },
                std::fs::read(&path)?,
            )
        };
        entry(out, ino, mode, (0, 0), &rel.to_string_lossy(), &data)?;
        ino += 1;
    }
    for d in devs {
        entry(out, ino, 0o020600, (d.major, d.minor), d.path, &[])?;
        ino += 1;
    }
    entry(out, 0, 0, (0, 0), "TRAILER!!!", &[])?;
    Ok(())
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        out.push(p.strip_prefix(root)?.to_path_buf());
        if std::fs::symlink_metadata(&p)?.is_dir() {
            walk(root, &p, out)?;
        }
    }
    Ok(())
}

fn pad4(out: &mut impl Write, len: usize) -> std::io::Result<()> {
    let pad = (4 - len % 4) % 4;
    out.write_all(&[0u8; 3][..pad])
}

fn entry(
    out: &mut impl Write,
    ino: u32,
    mode: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) -> Result<()> {
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    let size = u32::try_from(data.len())?;
    let namesize = u32::try_from(name.len() + 1)?;
    let fields = [
        ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
    ];
    let mut header = Vec::with_capacity(110 + name.len() + 4);
    header.extend_from_slice(b"070701");
    for f in fields {
        header.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    header.extend_from_slice(name.as_bytes());
    header.push(0);
    out.write_all(&header)?;
    pad4(out, header.len())?;
    out.write_all(data)?;
    pad4(out, data.len())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("bin")).expect("mkdir");
        std::fs::write(t.path().join("bin/x"), b"hello").expect("write");
        std::os::unix::fs::symlink("x", t.path().join("bin/y")).expect("symlink");
        let mut c = Vec::new();
        let devs = [CharDev {
            path: "dev/console",
            major: 5,
            minor: 1,
        }];
        write_tree(t.path(), &devs, &mut c).expect("cpio");
        assert!(c.starts_with(b"070701"));
        assert_eq!(c.len() % 4, 0);
        let s = String::from_utf8_lossy(&c);
        assert!(s.contains("bin/x\0"));
        assert!(s.contains("hello"));
        assert!(s.contains("dev/console\0"));
        assert!(s.contains("TRAILER!!!"));
    }
}
