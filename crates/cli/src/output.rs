//! Tables and JSON output of list commands.

use crate::args::{Format, ListOpts};
use comfy_table::{presets::NOTHING, Cell, CellAlignment, Table};
use serde_json::{Map, Value};

/// Renders one value the way Ganeti's list commands do.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "?".to_string(),
        Value::Bool(true) => "Y".to_string(),
        Value::Bool(false) => "N".to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(_) => v.to_string(),
    }
}

/// Prints rows under the field names as headers, or as JSON objects keyed by field name.
pub fn print_rows(fields: &[String], rows: &[Vec<Value>], opts: &ListOpts) {
    if opts.output == Format::Json {
        let out: Vec<Value> = rows
            .iter()
            .map(|r| {
                Value::Object(
                    fields
                        .iter()
                        .cloned()
                        .zip(r.iter().cloned())
                        .collect::<Map<String, Value>>(),
                )
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    if let Some(sep) = &opts.separator {
        if !opts.no_headers {
            println!("{}", fields.join(sep));
        }
        for r in rows {
            println!("{}", r.iter().map(cell).collect::<Vec<_>>().join(sep));
        }
        return;
    }
    let mut t = Table::new();
    t.load_preset(NOTHING);
    if !opts.no_headers {
        t.set_header(fields.iter().map(Cell::new));
    }
    for r in rows {
        t.add_row(r.iter().map(|v| {
            let c = Cell::new(cell(v));
            if v.is_number() {
                c.set_alignment(CellAlignment::Right)
            } else {
                c
            }
        }));
    }
    for line in t.to_string().lines() {
        println!(
            "{}",
            line.trim_end().strip_prefix(' ').unwrap_or(line.trim_end())
        );
    }
}

/// Resolves `-o` against the defaults: `a,b` replaces them, `+a,b` adds to them.
pub fn fields(spec: &Option<String>, defaults: &[&str]) -> Vec<String> {
    match spec {
        None => defaults.iter().map(|s| s.to_string()).collect(),
        Some(s) => {
            let (mut base, rest) = match s.strip_prefix('+') {
                Some(r) => (
                    defaults.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    r,
                ),
                None => (Vec::new(), s.as_str()),
            };
            base.extend(
                rest.split(',')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(String::from),
            );
            base
        }
    }
}

/// Prints `key: value` lines, nested objects indented.
pub fn print_info(v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                match val {
                    Value::Object(_) => {
                        println!("{pad}{k}:");
                        print_info(val, indent + 2);
                    }
                    Value::Array(a) if a.iter().any(|x| x.is_object()) => {
                        println!("{pad}{k}:");
                        for (i, x) in a.iter().enumerate() {
                            println!("{pad}  - #{i}");
                            print_info(x, indent + 4);
                        }
                    }
                    // Lines of text (`disk.status`): one a line, not joined by commas.
                    Value::Array(a)
                        if a.iter()
                            .any(|x| x.as_str().is_some_and(|s| s.contains(' '))) =>
                    {
                        println!("{pad}{k}:");
                        for x in a {
                            println!("{pad}  {}", cell(x));
                        }
                    }
                    _ => println!("{pad}{k}: {}", cell(val)),
                }
            }
        }
        other => println!("{pad}{}", cell(other)),
    }
}
