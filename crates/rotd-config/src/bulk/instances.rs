//! Instances files: the fields each rendering of a template gets, from TOML (`[[instance]]` tables) or
//! CSV (a header row of field names, then one row per instance), chosen by the file's extension.

use std::collections::BTreeMap;

use toml::de::{DeTable, DeValue};

use super::template::is_field_name;
use crate::error::{ConfigError, Source};

/// One instance: its fields and where it is declared.
pub(crate) struct Instance {
    /// 1-based line and column of the instance: its `[[instance]]` header or the start of its CSV row.
    pub(crate) at: (usize, usize),
    pub(crate) fields: BTreeMap<String, Field>,
}

pub(crate) struct Field {
    pub(crate) value: String,
    /// 1-based line and column of the field: its key in TOML, its cell in CSV.
    pub(crate) at: (usize, usize),
}

/// The instances of a `.toml` or `.csv` file, or every problem found in it.
pub(crate) fn parse(src: &Source) -> Result<Vec<Instance>, Vec<ConfigError>> {
    let instances =
        match src.path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("toml") => parse_toml(src)?,
            Some(e) if e.eq_ignore_ascii_case("csv") => parse_csv(src)?,
            _ => {
                return Err(vec![src.error_at(
                0..0,
                "(file)",
                "an instances file is TOML ([[instance]] tables) or CSV (a header row of field names); \
                 its name ends in .toml or .csv"
                    .to_owned(),
            )]);
            }
        };
    if instances.is_empty() {
        return Err(vec![src.error_at(0..0, "instance", "no instances".to_owned())]);
    }
    Ok(instances)
}

fn parse_toml(src: &Source) -> Result<Vec<Instance>, Vec<ConfigError>> {
    let doc = src.parse_document()?;
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (k, v) in doc.get_ref().iter() {
        if k.get_ref() != "instance" {
            errors.push(src.error_at(
                k.span(),
                k.get_ref(),
                "unknown key; an instances file holds only [[instance]] tables".to_owned(),
            ));
            continue;
        }
        let DeValue::Array(items) = v.get_ref() else {
            errors.push(src.error_at(
                v.span(),
                "instance",
                "instances are an array of tables: write [[instance]] before each one".to_owned(),
            ));
            continue;
        };
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(t) => out.push(toml_instance(
                    src,
                    t,
                    src.position(item.span().start),
                    &mut errors,
                )),
                _ => errors.push(src.error_at(
                    item.span(),
                    "instance",
                    "each instance is a table of fields".to_owned(),
                )),
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        // A document's tables iterate in key order, not file order.
        errors.sort_by_key(|e| (e.line, e.col));
        Err(errors)
    }
}

fn toml_instance(
    src: &Source,
    table: &DeTable<'_>,
    at: (usize, usize),
    errors: &mut Vec<ConfigError>,
) -> Instance {
    let mut fields = BTreeMap::new();
    for (k, v) in table.iter() {
        let name = k.get_ref().as_ref();
        let key = format!("instance.{name}");
        if !is_field_name(name) {
            errors.push(src.error_at(
                k.span(),
                &key,
                "a field name is letters, digits and `_`, not starting with a digit".to_owned(),
            ));
            continue;
        }
        // Numbers and booleans are taken as the text they are written as, so `port = 6380` works with
        // `{port:int}` as `port = "6380"` does.
        let value = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => n.to_string(),
                Err(_) => {
                    errors.push(src.error_at(v.span(), &key, "integer out of range".to_owned()));
                    continue;
                }
            },
            DeValue::Boolean(b) => b.to_string(),
            DeValue::Array(_) => {
                errors.push(
                    src.error_at(
                        v.span(),
                        &key,
                        "a field is a string; for a list write its items separated by spaces and use \
                     [\"{field:list}\"] in the template"
                            .to_owned(),
                    ),
                );
                continue;
            }
            DeValue::Float(_) | DeValue::Datetime(_) | DeValue::Table(_) => {
                errors.push(src.error_at(
                    v.span(),
                    &key,
                    "a field is a string, an integer or a boolean".to_owned(),
                ));
                continue;
            }
        };
        fields.insert(
            name.to_owned(),
            Field {
                value,
                at: src.position(k.span().start),
            },
        );
    }
    Instance { at, fields }
}

/// One CSV cell: its text and the byte offset it starts at.
type Cell = (String, usize);

/// One CSV row: the byte offset it starts at and its cells.
type Row = (usize, Vec<Cell>);

fn parse_csv(src: &Source) -> Result<Vec<Instance>, Vec<ConfigError>> {
    let rows = csv_rows(&src.text)
        .map_err(|(offset, message)| vec![src.error_at(offset..offset, "(csv)", message)])?;
    let mut rows = rows.into_iter();
    let Some((_, header)) = rows.next() else {
        return Ok(Vec::new());
    };
    let mut errors = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (name, offset) in &header {
        let name = name.trim();
        if !is_field_name(name) {
            errors.push(
                src.error_at(
                    *offset..*offset,
                    "(header)",
                    "a column name is a field name: letters, digits and `_`, not starting with a digit"
                        .to_owned(),
                ),
            );
        } else if names.iter().any(|n| n == name) {
            errors.push(src.error_at(
                *offset..*offset,
                name,
                "this column name appears twice in the header".to_owned(),
            ));
        }
        names.push(name.to_owned());
    }
    let mut out = Vec::new();
    for (start, cells) in rows {
        if cells.len() != names.len() {
            errors.push(src.error_at(
                start..start,
                "(row)",
                format!(
                    "the row has {} fields and the header {}",
                    cells.len(),
                    names.len()
                ),
            ));
            continue;
        }
        let fields = names
            .iter()
            .zip(cells)
            .map(|(name, (value, offset))| {
                (
                    name.clone(),
                    Field {
                        value,
                        at: src.position(offset),
                    },
                )
            })
            .collect();
        out.push(Instance {
            at: src.position(start),
            fields,
        });
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// The rows of a CSV text (RFC 4180: `,` between cells, `"` around a cell that holds a comma, a quote
/// or a line break, `""` for a quote inside one; lines end in LF or CRLF), each with the byte offset it
/// starts at. A leading byte-order mark and empty lines are skipped. Spaces around a cell are removed,
/// except inside quotes. On error: the offset and the problem, never the cell's text.
fn csv_rows(text: &str) -> Result<Vec<Row>, (usize, String)> {
    let bom = if text.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    };
    let bytes = text.as_bytes();
    let mut i = bom;
    let mut rows = Vec::new();
    let is_space = |b: u8| b == b' ' || b == b'\t';
    while i < bytes.len() {
        // An empty line is not a row.
        if bytes[i] == b'\n' || bytes[i..].starts_with(b"\r\n") {
            i += if bytes[i] == b'\n' { 1 } else { 2 };
            continue;
        }
        let row_start = i;
        let mut cells = Vec::new();
        loop {
            while i < bytes.len() && is_space(bytes[i]) {
                i += 1;
            }
            let cell_start = i;
            let mut cell = String::new();
            if bytes.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    let Some(q) = text[i..].find('"') else {
                        return Err((cell_start, "a quoted cell has no closing quote".to_owned()));
                    };
                    cell.push_str(&text[i..i + q]);
                    i += q + 1;
                    if bytes.get(i) == Some(&b'"') {
                        cell.push('"');
                        i += 1;
                    } else {
                        break;
                    }
                }
                while i < bytes.len() && is_space(bytes[i]) {
                    i += 1;
                }
                if i < bytes.len() && !matches!(bytes[i], b',' | b'\n') && !bytes[i..].starts_with(b"\r\n") {
                    return Err((
                        i,
                        "a quoted cell ends at its closing quote; write `\"\"` for a quote inside it"
                            .to_owned(),
                    ));
                }
            } else {
                let end = text[i..].find([',', '\n']).map_or(bytes.len(), |e| i + e);
                let raw = text[i..end].strip_suffix('\r').unwrap_or(&text[i..end]);
                if raw.contains('"') {
                    return Err((
                        cell_start,
                        "a `\"` inside an unquoted cell; quote the cell and write `\"\"` for the quote"
                            .to_owned(),
                    ));
                }
                cell.push_str(raw.trim_end_matches([' ', '\t']));
                i = end;
            }
            cells.push((cell, cell_start));
            match bytes.get(i) {
                Some(b',') => i += 1,
                Some(b'\r') => {
                    i += 2;
                    break;
                }
                Some(b'\n') => {
                    i += 1;
                    break;
                }
                _ => break,
            }
        }
        rows.push((row_start, cells));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<Vec<String>> {
        csv_rows(text)
            .unwrap_or_else(|(o, m)| panic!("{o}: {m}"))
            .into_iter()
            .map(|(_, cells)| cells.into_iter().map(|(c, _)| c).collect())
            .collect()
    }

    #[test]
    fn csv_follows_rfc_4180() {
        assert_eq!(
            rows("a,b\r\n1, two ,\"x, \"\"y\"\"\nz\"\n\n"),
            vec![vec!["a", "b"], vec!["1", "two", "x, \"y\"\nz"]]
        );
        assert_eq!(rows("\u{feff}a\n\"\"\n"), vec![vec!["a"], vec![""]]);
        assert_eq!(rows("a,b"), vec![vec!["a", "b"]]);
        assert_eq!(rows("a,\n"), vec![vec!["a", ""]]);
    }

    #[test]
    fn malformed_csv_is_refused_without_echoing_it() {
        for bad in ["a\n\"secret", "a\n\"secret\"x", "a\nsec\"ret"] {
            let (_, message) = csv_rows(bad).err().unwrap_or_else(|| panic!("{bad:?} parses"));
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn csv_positions_are_rows_and_cells() {
        let src = Source::new("i.csv".into(), "instance,host\na,\"h\nh\"\nb,h2\n".to_owned());
        let instances = parse(&src).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(instances.len(), 2);
        assert_eq!(instances[0].at, (2, 1));
        assert_eq!(instances[0].fields["host"].at, (2, 3));
        assert_eq!(instances[0].fields["host"].value, "h\nh");
        assert_eq!(instances[1].at, (4, 1));
    }

    #[test]
    fn csv_rows_must_match_the_header() {
        let src = Source::new("i.csv".into(), "instance,host\na\nb,h,x\n1bad\n".to_owned());
        let errors = parse(&src).err().expect("refused");
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4], "{errors:?}");
        let src = Source::new("i.csv".into(), "instance,1x,instance\n".to_owned());
        let errors = parse(&src).err().expect("refused");
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn toml_instances_take_strings_numbers_and_booleans() {
        let src = Source::new(
            "i.toml".into(),
            "[[instance]]\ninstance = \"a\"\nport = 6380\ntls = true\n\n[[instance]]\ninstance = \"b\"\n"
                .to_owned(),
        );
        let instances = parse(&src).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(instances.len(), 2);
        assert_eq!(instances[0].at, (1, 1));
        assert_eq!(instances[0].fields["port"].value, "6380");
        assert_eq!(instances[0].fields["tls"].value, "true");
        assert_eq!(instances[0].fields["port"].at, (3, 1));
        assert_eq!(instances[1].at, (6, 1));
    }

    #[test]
    fn toml_instances_refuse_other_shapes() {
        let src = Source::new(
            "i.toml".into(),
            "other = 1\n[[instance]]\nnodes = [\"a\"]\nx-y = \"1\"\nf = 1.5\n".to_owned(),
        );
        let errors = parse(&src).err().expect("refused");
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 3, 4, 5], "{errors:?}");
        let src = Source::new("i.json".into(), "{}".to_owned());
        assert!(parse(&src).is_err());
        let src = Source::new("i.toml".into(), "# nothing\n".to_owned());
        assert_eq!(parse(&src).err().expect("refused")[0].message, "no instances");
    }
}
