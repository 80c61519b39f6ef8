//! Reading RAPI request bodies and query arguments: which fields a resource accepts, and a
//! typed reader that fills an opcode's fields from them (bad values answer 400 before a job
//! exists).

use super::not_implemented;
use crate::{ApiError, Req};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Ganeti's opcode defaults the RAPI fills in when a request leaves a field out (the same
/// values as the opcodes' own wire defaults; `tests::defaults_match_the_wire` checks it).
pub(super) mod defaults {
    /// Seconds to wait for a clean shutdown.
    pub const SHUTDOWN_TIMEOUT: u64 = 120;
    /// Jobs of a node-wide migration or evacuation that run at once.
    pub const MAX_PARALLEL: u32 = 4;
}

/// Fields every Ganeti opcode accepts: harmless ones are ignored; `dry_run` and `depends`
/// are not supported.
pub(super) const OPCODE_COMMON: &[&str] = &["comment", "debug_level", "priority", "reason"];

/// 501 for `?dry-run=1`.
pub(super) fn no_dry_run(req: &Req) -> Result<(), ApiError> {
    if req.flag("dry-run", false)? {
        return Err(not_implemented("dry-run"));
    }
    Ok(())
}

/// Is this value "not given" (for fields Maguey does not support: those are refused only
/// when they carry something)?
pub(super) fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// The request's fields for one opcode, read into its typed fields.
pub(super) struct Body {
    /// The opcode's `OP_ID`, for error messages.
    op: &'static str,
    fields: Map<String, Value>,
}

impl Body {
    /// The body as an object with only `allowed` keys (plus the common opcode fields,
    /// ignored). Keys in `unsupported` with a non-empty value answer 501; other keys 400.
    pub fn parse(
        req: &Req,
        op: &'static str,
        allowed: &[&str],
        unsupported: &[&str],
    ) -> Result<Self, ApiError> {
        let obj = match &req.body {
            Value::Null => Map::new(),
            Value::Object(m) => m.clone(),
            _ => {
                return Err(ApiError::bad_request(
                    "the request body must be a JSON object",
                ))
            }
        };
        let mut fields = Map::new();
        for (k, v) in obj {
            if allowed.contains(&k.as_str()) {
                fields.insert(k, v);
            } else if OPCODE_COMMON.contains(&k.as_str()) {
                continue;
            } else if k == "dry_run" || k == "depends" || unsupported.contains(&k.as_str()) {
                if is_empty(&v) {
                    continue;
                }
                return Err(not_implemented(&format!("the field '{k}'")));
            } else {
                return Err(ApiError::bad_request(format!("unknown field '{k}'")));
            }
        }
        Ok(Body { op, fields })
    }

    /// No fields: every opcode field takes its default.
    #[cfg(test)]
    pub fn empty(op: &'static str) -> Self {
        Self::from_map(op, Map::new())
    }

    /// Fields already checked by the caller.
    pub fn from_map(op: &'static str, fields: Map<String, Value>) -> Self {
        Body { op, fields }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }

    /// Sets a field the body did not give (older clients send some as query arguments).
    pub fn insert_if_absent(&mut self, key: &str, v: Value) {
        self.fields.entry(key).or_insert(v);
    }

    /// Replaces a field's value (after normalising it).
    pub fn set(&mut self, key: &str, v: Value) {
        self.fields.insert(key.to_string(), v);
    }

    /// Takes a field out (to give it under another name).
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.fields.remove(key)
    }

    fn invalid(&self, e: impl std::fmt::Display) -> ApiError {
        ApiError::bad_request(format!("invalid parameters for {}: {e}", self.op))
    }

    fn decode<T: DeserializeOwned>(&self, v: &Value) -> Result<T, ApiError> {
        T::deserialize(v).map_err(|e| self.invalid(e))
    }

    /// An optional opcode field: absent or null is `None`.
    pub fn opt<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ApiError> {
        match self.fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => self.decode(v).map(Some),
        }
    }

    /// A field with a default: absent takes `default`; a given value (null too) must decode.
    pub fn or<T: DeserializeOwned>(&self, key: &str, default: T) -> Result<T, ApiError> {
        match self.fields.get(key) {
            None => Ok(default),
            Some(v) => self.decode(v),
        }
    }

    /// As [`Body::or`] with the type's default.
    pub fn or_default<T: DeserializeOwned + Default>(&self, key: &str) -> Result<T, ApiError> {
        self.or(key, T::default())
    }

    /// A required field.
    pub fn req<T: DeserializeOwned>(&self, key: &str) -> Result<T, ApiError> {
        match self.fields.get(key) {
            None => Err(self.invalid(format_args!("missing field `{key}`"))),
            Some(v) => self.decode(v),
        }
    }
}

/// A list of disk indices as Ganeti's clients send it: a JSON list of integers, or a string
/// `"0,1"` (query arguments). Recreate-disks' list of `[index, {params}]` pairs keeps only the
/// indices (new parameters are not supported). Absent: `None`.
pub(super) fn disk_list(b: &Body, key: &str) -> Result<Option<Vec<usize>>, ApiError> {
    let bad = |v: &Value| ApiError::bad_request(format!("invalid '{key}': {v} (disk indices)"));
    let index = |x: &Value, v: &Value| {
        x.as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| bad(v))
    };
    let Some(v) = b.get(key) else {
        return Ok(None);
    };
    let list = match v {
        Value::Null => Vec::new(),
        Value::String(s) if s.trim().is_empty() => Vec::new(),
        Value::String(s) => s
            .split(',')
            .map(|p| p.trim().parse::<usize>().map_err(|_| bad(v)))
            .collect::<Result<_, _>>()?,
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::Array(pair) if pair.len() == 2 => match &pair[1] {
                    Value::Object(m) if !m.is_empty() => {
                        Err(not_implemented("new disk parameters in recreate-disks"))
                    }
                    _ => index(&pair[0], v),
                },
                _ => index(x, v),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad(v)),
    };
    Ok(Some(list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(v: Value) -> Result<Option<Vec<usize>>, ApiError> {
        let mut m = Map::new();
        m.insert("disks".into(), v);
        disk_list(&Body::from_map("OP_X", m), "disks")
    }

    #[test]
    fn disk_lists_as_ganeti_clients_send_them() {
        assert_eq!(norm(json!("0,2")).ok(), Some(Some(vec![0, 2])));
        assert_eq!(norm(json!([1])).ok(), Some(Some(vec![1])));
        assert_eq!(norm(json!("")).ok(), Some(Some(vec![])));
        assert_eq!(norm(json!([[0, {}], [1, {}]])).ok(), Some(Some(vec![0, 1])));
        assert!(norm(json!("a")).is_err());
        assert!(norm(json!([-1])).is_err());
        assert!(norm(json!([[0, {"size": 5}]])).is_err());
        assert_eq!(disk_list(&Body::empty("OP_X"), "disks").ok(), Some(None));
    }

    #[test]
    fn typed_fields_refuse_bad_values() {
        let mut m = Map::new();
        m.insert("drained".into(), json!("maybe"));
        m.insert("offline".into(), Value::Null);
        m.insert("force".into(), Value::Null);
        let b = Body::from_map("OP_NODE_SET_PARAMS", m);
        let e = b.opt::<bool>("drained").unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e
            .explain
            .starts_with("invalid parameters for OP_NODE_SET_PARAMS: "));
        assert_eq!(b.opt::<bool>("offline").ok(), Some(None));
        assert_eq!(b.opt::<bool>("vm_capable").ok(), Some(None));
        // A field with a default must not be null (as the opcode's own decoding).
        assert!(b.or("force", false).is_err());
        assert_eq!(b.or("absent", true).ok(), Some(true));
        assert!(b
            .req::<String>("absent")
            .unwrap_err()
            .explain
            .contains("missing field"));
    }
}

/// Requests and wire opcodes for the resources' unit tests.
#[cfg(test)]
pub(super) mod tests_support {
    use crate::Req;
    use axum::http::Method;
    use maguey_model::OpCode;
    use serde_json::Value;

    pub fn req(method: Method, body: Value, query: &[(&str, &str)]) -> Req {
        Req {
            method,
            segs: Vec::new(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
        }
    }

    /// The opcode `op_id` with `fields` as the master API would decode it (every other field
    /// at its wire default).
    pub fn wire(op_id: &str, fields: &Value) -> OpCode {
        let mut v = fields.clone();
        v["OP_ID"] = Value::String(op_id.to_string());
        serde_json::from_value(v).expect("a valid wire opcode")
    }
}
