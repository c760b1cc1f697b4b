//! Printing results as a table for people or JSON for scripts.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use rotd_store::{SecretMeta, VersionInfo};
use serde_json::{Value, json};

use crate::cli::Output;

pub fn ts(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn opt_ts(t: &Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.as_ref().map_or(Value::Null, |t| Value::String(ts(t)))
}

pub fn meta_json(m: &SecretMeta) -> Value {
    json!({
        "SecretName": m.name.as_str(),
        "SecretType": m.kind.as_str(),
        "Description": m.description,
        "EncryptionKeyId": m.cmk_id,
        "Tags": m.tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect::<Vec<_>>(),
        "ExtendedConfig": m.extended_config,
        "AutomaticRotation": match &m.rotation {
            Some(r) if r.enabled => "Enabled",
            _ => "Disabled",
        },
        "RotationInterval": m.rotation.as_ref().and_then(|r| r.interval()).map(|i| i.to_wire()),
        "CreateTime": ts(&m.created_at),
        "UpdateTime": ts(&m.updated_at),
        "PlannedDeleteTime": opt_ts(&m.planned_delete_at),
        "LastRotationDate": opt_ts(&m.last_rotation_at),
        "NextRotationDate": opt_ts(&m.next_rotation_at),
        "ManagedBy": m.managed_by,
    })
}

pub fn version_json(name: &str, v: &VersionInfo) -> Value {
    json!({
        "SecretName": name,
        "VersionId": v.version_id.as_str(),
        "CreateTime": ts(&v.created_at),
        "SecretDataType": v.data_type.as_str(),
        "VersionStages": v.stages.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    })
}

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("json serializes"));
}

/// Prints rows as a table, or as a JSON array of the given objects.
pub fn print_rows(out: Output, header: &[&str], rows: Vec<Vec<String>>, json: Vec<Value>) {
    match out {
        Output::Json => print_json(&Value::Array(json)),
        Output::Table => {
            let mut t = Table::new();
            *t.style_mut() = UTF8_FULL_CONDENSED;
            t.set_header(header.to_vec());
            for r in rows {
                t.add_row(r);
            }
            println!("{t}");
        }
    }
}

/// Prints one object as a two-column table, or as JSON.
pub fn print_object(out: Output, v: &Value) {
    match out {
        Output::Json => print_json(v),
        Output::Table => {
            let mut t = Table::new();
            *t.style_mut() = UTF8_FULL_CONDENSED;
            if let Value::Object(map) = v {
                for (k, val) in map {
                    let shown = match val {
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    t.add_row(vec![k.clone(), shown]);
                }
            }
            println!("{t}");
        }
    }
}
