//! What `qemu-img` may be asked about an image given by a parameter (docs/security.md): its
//! format is always explicit (`-f`, from the `image_format` parameter or from the file's
//! magic here, never qemu's probing), and an image naming other files (a qcow2 backing file
//! or external data file, which qemu would open as root) is refused.

use crate::error::{NodeError, NodeResult};
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// The format of an image from its first bytes: `qcow2` (magic `QFI\xfb`), the names of
/// other formats qemu knows (refused by the caller, never handed to qemu), else `raw`.
pub fn sniff_format(image: &Path) -> NodeResult<String> {
    let mut head = [0u8; 64];
    let mut f = std::fs::File::open(image)
        .map_err(|e| NodeError::io(format!("cannot open {}: {e}", image.display())))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => {
                return Err(NodeError::io(format!(
                    "cannot read {}: {e}",
                    image.display()
                )))
            }
        }
    }
    let head = &head[..n];
    let magics: &[(&[u8], &str)] = &[
        (b"QFI\xfb", "qcow2"),
        (b"QFI\0", "qed"),
        (b"KDMV", "vmdk"),
        (b"# Disk DescriptorFile", "vmdk"),
        (b"COWD", "vmdk"),
        (b"vhdxfile", "vhdx"),
        (b"conectix", "vpc"),
        (b"WithoutFreeSpace", "dmg"),
    ];
    Ok(magics
        .iter()
        .find(|(m, _)| head.starts_with(m))
        .map(|(_, f)| *f)
        .unwrap_or("raw")
        .to_string())
}

/// Refuses an image whose `qemu-img info --output=json` names other files.
pub fn refuse_external_files(image: &Path, info: &Value) -> NodeResult<()> {
    for key in ["backing-filename", "full-backing-filename"] {
        if let Some(b) = info.get(key).and_then(Value::as_str) {
            return Err(NodeError::bad_request(format!(
                "image {} refused: it has a backing file ({b}); flatten it first (qemu-img \
                 convert -O qcow2)",
                image.display()
            )));
        }
    }
    if let Some(d) = info
        .pointer("/format-specific/data/data-file")
        .and_then(Value::as_str)
    {
        return Err(NodeError::bad_request(format!(
            "image {} refused: it has an external data file ({d})",
            image.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_and_external_files() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path().join("a.qcow2");
        std::fs::write(&q, b"QFI\xfb\0\0\0\x03rest").unwrap();
        assert_eq!(sniff_format(&q).unwrap(), "qcow2");
        let v = tmp.path().join("a.vmdk");
        std::fs::write(&v, b"KDMV\x01").unwrap();
        assert_eq!(sniff_format(&v).unwrap(), "vmdk");
        let r = tmp.path().join("a.raw");
        std::fs::write(&r, b"QF").unwrap();
        assert_eq!(sniff_format(&r).unwrap(), "raw");
        assert!(refuse_external_files(&q, &json!({"format": "qcow2"})).is_ok());
        let e = refuse_external_files(
            &q,
            &json!({"format": "qcow2", "backing-filename": "/etc/shadow"}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("backing file (/etc/shadow)"), "{e}");
        let e = refuse_external_files(
            &q,
            &json!({"format-specific": {"type": "qcow2", "data": {"data-file": "/x"}}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("external data file"), "{e}");
    }
}
