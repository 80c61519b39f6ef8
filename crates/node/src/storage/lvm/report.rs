//! Parsing of LVM 2.03 JSON reports (`lvs`/`vgs --reportformat json --units m --nosuffix`):
//! `{"report":[{"lv":[{"lv_name":"...", ...}]}], "log":[...]}`, every value a string.

use crate::storage::runner::StorageError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One logical volume as `lvs` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvInfo {
    pub vg: String,
    pub name: String,
    /// Size in MiB (rounded down; LVM sizes are whole extents).
    pub size_mib: u64,
    /// The 10-character `lv_attr` (`-wi-ao----`).
    pub attr: String,
    pub tags: Vec<String>,
}

impl LvInfo {
    /// `vg/lv`: the name Ganeti's orphan check and `reserved_lvs` use.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.vg, self.name)
    }

    fn attr_char(&self, i: usize) -> char {
        self.attr.chars().nth(i).unwrap_or('-')
    }

    /// The LV is activated (attr state `a`).
    pub fn is_active(&self) -> bool {
        self.attr_char(4) == 'a'
    }

    /// Something holds the device open (attr `o`): a running instance or DRBD.
    pub fn is_open(&self) -> bool {
        self.attr_char(5) == 'o'
    }

    /// A snapshot LV (attr type `s`, or `S` when invalid).
    pub fn is_snapshot(&self) -> bool {
        matches!(self.attr_char(0), 's' | 'S')
    }
}

/// Size and free space of a volume group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgInfo {
    pub name: String,
    pub size_mib: u64,
    pub free_mib: u64,
}

/// `"1024.00"` (MiB, `--units m --nosuffix`) → 1024, rounding down.
pub fn parse_mib(what: &str, s: &str) -> Result<u64, StorageError> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(StorageError::parse(what, format!("bad size '{s}'")));
    }
    int.parse::<u64>()
        .map_err(|_| StorageError::parse(what, format!("size '{s}' out of range")))
}

/// The rows of every `report[*].<kind>` array.
fn rows<'a>(what: &str, doc: &'a Value, kind: &str) -> Result<Vec<&'a Value>, StorageError> {
    let report = doc
        .get("report")
        .and_then(Value::as_array)
        .ok_or_else(|| StorageError::parse(what, "no \"report\" array"))?;
    let mut out = Vec::new();
    for entry in report {
        match entry.get(kind) {
            Some(Value::Array(items)) => out.extend(items.iter()),
            Some(_) => {
                return Err(StorageError::parse(
                    what,
                    format!("\"{kind}\" is not a list"),
                ))
            }
            None => {}
        }
    }
    Ok(out)
}

fn field<'a>(what: &str, row: &'a Value, key: &str) -> Result<&'a str, StorageError> {
    row.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| StorageError::parse(what, format!("row without string field \"{key}\"")))
}

fn document(what: &str, out: &str) -> Result<Value, StorageError> {
    serde_json::from_str(out).map_err(|e| StorageError::parse(what, e.to_string()))
}

/// Parses `lvs --reportformat json -o lv_name,vg_name,lv_size,lv_attr,lv_tags`.
pub fn parse_lvs(out: &str) -> Result<Vec<LvInfo>, StorageError> {
    let what = "lvs report";
    let doc = document(what, out)?;
    rows(what, &doc, "lv")?
        .into_iter()
        .map(|row| {
            let tags = field(what, row, "lv_tags")?;
            Ok(LvInfo {
                vg: field(what, row, "vg_name")?.to_string(),
                name: field(what, row, "lv_name")?.to_string(),
                size_mib: parse_mib(what, field(what, row, "lv_size")?)?,
                attr: field(what, row, "lv_attr")?.to_string(),
                tags: tags
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// Parses `vgs --reportformat json -o vg_name,vg_size,vg_free`.
pub fn parse_vgs(out: &str) -> Result<Vec<VgInfo>, StorageError> {
    let what = "vgs report";
    let doc = document(what, out)?;
    rows(what, &doc, "vg")?
        .into_iter()
        .map(|row| {
            Ok(VgInfo {
                name: field(what, row, "vg_name")?.to_string(),
                size_mib: parse_mib(what, field(what, row, "vg_size")?)?,
                free_mib: parse_mib(what, field(what, row, "vg_free")?)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LVS_ONE: &str = include_str!("../../../tests/data/storage/lvm/lvs_one.json");
    const LVS_VG: &str = include_str!("../../../tests/data/storage/lvm/lvs_vg.json");
    const LVS_EMPTY: &str = include_str!("../../../tests/data/storage/lvm/lvs_empty.json");
    const VGS: &str = include_str!("../../../tests/data/storage/lvm/vgs_xenvg.json");

    #[test]
    fn parses_one_lv() {
        let lvs = parse_lvs(LVS_ONE).expect("parses");
        assert_eq!(
            lvs,
            vec![LvInfo {
                vg: "xenvg".into(),
                name: "3f2b8c1e-5d4a-4c61-9a0e-2b7f6d1c9e44.disk0".into(),
                size_mib: 1024,
                attr: "-wi-a-----".into(),
                tags: vec!["originstname+web1.example.com".into()],
            }]
        );
        assert!(lvs[0].is_active());
        assert!(!lvs[0].is_open());
        assert!(!lvs[0].is_snapshot());
    }

    #[test]
    fn parses_a_whole_vg_with_log_section() {
        let lvs = parse_lvs(LVS_VG).expect("parses");
        assert_eq!(lvs.len(), 7);
        let names: Vec<String> = lvs.iter().map(LvInfo::full_name).collect();
        assert!(names.contains(&"xenvg/root".to_string()));
        let snap = &lvs[1];
        assert!(snap.is_snapshot());
        assert_eq!(snap.size_mib, 256);
        let meta = &lvs[3];
        assert_eq!(meta.size_mib, 128);
        assert!(meta.is_open());
        let leftover = &lvs[6];
        assert_eq!(leftover.tags, vec!["originstname+gone", "maguey-test"]);
        assert!(!leftover.is_active());
    }

    #[test]
    fn parses_an_empty_vg_and_vgs() {
        assert_eq!(parse_lvs(LVS_EMPTY).expect("parses"), vec![]);
        assert_eq!(
            parse_vgs(VGS).expect("parses"),
            vec![VgInfo {
                name: "xenvg".into(),
                size_mib: 4092,
                free_mib: 2939,
            }]
        );
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            "",
            "not json",
            "{}",
            r#"{"report": {}}"#,
            r#"{"report": [{"lv": {}}]}"#,
            r#"{"report": [{"lv": [{"lv_name": "a"}]}]}"#,
            r#"{"report": [{"lv": [{"lv_name":"a","vg_name":"v","lv_size":"-1","lv_attr":"","lv_tags":""}]}]}"#,
            r#"{"report": [{"lv": [{"lv_name":"a","vg_name":"v","lv_size":"1e3","lv_attr":"","lv_tags":""}]}]}"#,
            r#"{"report": [{"lv": [{"lv_name":"a","vg_name":"v","lv_size":"99999999999999999999999","lv_attr":"","lv_tags":""}]}]}"#,
        ] {
            assert!(parse_lvs(bad).is_err(), "{bad}");
        }
        assert!(parse_vgs(r#"{"report": [{"vg": [{"vg_name": "x", "vg_size": 5}]}]}"#).is_err());
    }
}
