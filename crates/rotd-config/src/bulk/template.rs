//! A template: a secret file whose string values hold `{field}` placeholders, rendered once per
//! instance.
//!
//! Rendering never pastes an instance's text into TOML. The template is parsed as a TOML document that
//! keeps the byte span of every value; each string value holding a placeholder (or a `{{`/`}}` escape)
//! is a [`Slot`], and rendering replaces exactly the bytes of each slot with a value written here:
//! a TOML basic string from [`basic_string`] (every quote, backslash and control character escaped), an
//! integer or boolean the field was parsed as, or an array of such strings. Keys, comments, layout and
//! every other value are copied byte for byte. A field can therefore only ever become the content of
//! one value, never a key, a table or a second value; the caller re-parses each rendered file and
//! compares its keys with the template's ([`Template::keys`]) to hold that as a checked fact, not only
//! as a property of this code.

use std::collections::BTreeSet;
use std::ops::Range;

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{ConfigError, Source};

/// A parsed template.
pub(crate) struct Template {
    pub(crate) source: Source,
    /// Every value that rendering replaces, in file order; their spans do not overlap.
    pub(crate) slots: Vec<Slot>,
    /// Every key path of the document ([`key_paths`]), which each rendered file must have exactly.
    keys: BTreeSet<String>,
}

/// A value of the template that rendering replaces.
pub(crate) struct Slot {
    /// The bytes replaced: a string literal, or for a `{field:list}` the whole array around it.
    pub(crate) span: Range<usize>,
    /// The dotted key of the value, for messages.
    pub(crate) key: String,
    pub(crate) value: SlotValue,
}

/// What a slot becomes.
pub(crate) enum SlotValue {
    /// A string: the literal pieces and the `{field}` texts, concatenated.
    Text(Vec<Piece>),
    /// `"{field:int}"`: the field parsed as a TOML integer.
    Integer(String),
    /// `"{field:bool}"`: the field as `true` or `false`.
    Boolean(String),
    /// `["{field:list}"]`: an array of the field's whitespace-separated words, as strings.
    List(String),
}

pub(crate) enum Piece {
    Literal(String),
    Field(String),
}

/// How a placeholder asks for its field to be written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Boolean,
    List,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Text => "",
            Kind::Integer => "int",
            Kind::Boolean => "bool",
            Kind::List => "list",
        }
    }
}

/// A field whose text does not fit the type its placeholder asks for.
pub(crate) struct Mistyped {
    pub(crate) slot: usize,
    pub(crate) field: String,
    pub(crate) expected: &'static str,
}

impl Slot {
    /// The fields this slot uses, each once.
    pub(crate) fn fields(&self) -> BTreeSet<&str> {
        match &self.value {
            SlotValue::Text(pieces) => pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Field(f) => Some(f.as_str()),
                    Piece::Literal(_) => None,
                })
                .collect(),
            SlotValue::Integer(f) | SlotValue::Boolean(f) | SlotValue::List(f) => {
                BTreeSet::from([f.as_str()])
            }
        }
    }
}

/// A rendered file and where each of its bytes came from.
pub(crate) struct Rendering {
    pub(crate) text: String,
    /// Length of the comment written before the template's text.
    prefix: usize,
    /// For each slot, in order: its span in the template and in `text`.
    replaced: Vec<(Range<usize>, Range<usize>)>,
}

impl Rendering {
    /// The template offset an offset of the rendered text comes from, and the slot whose value holds
    /// it, if any.
    pub(crate) fn origin(&self, offset: usize) -> (usize, Option<usize>) {
        // Outside the slots the rendered text is the template's, shifted by the prefix and by how much
        // longer or shorter each earlier slot became.
        let (mut tpl_end, mut out_end) = (0, self.prefix);
        for (i, (tpl, out)) in self.replaced.iter().enumerate() {
            if offset < out.start {
                break;
            }
            if offset < out.end {
                return (tpl.start, Some(i));
            }
            (tpl_end, out_end) = (tpl.end, out.end);
        }
        (tpl_end + offset.saturating_sub(out_end), None)
    }
}

impl Template {
    /// Parses a template and its placeholders, reporting every malformed placeholder.
    pub(crate) fn parse(source: Source) -> Result<Template, Vec<ConfigError>> {
        let (mut slots, keys, mut errors) = {
            let doc = source.parse_document()?;
            let mut walk = Walk {
                source: &source,
                slots: Vec::new(),
                errors: Vec::new(),
            };
            walk.table(doc.get_ref(), "");
            (walk.slots, key_paths(doc.get_ref()), walk.errors)
        };
        if !errors.is_empty() {
            errors.sort_by_key(|e| (e.line, e.col));
            return Err(errors);
        }
        // A document's tables iterate in key order, not file order; rendering walks the file.
        slots.sort_by_key(|s| s.span.start);
        Ok(Template { source, slots, keys })
    }

    /// The key paths every rendering of this template must have.
    pub(crate) fn keys(&self) -> &BTreeSet<String> {
        &self.keys
    }

    /// The template with every slot filled from `field`, after the comment `prefix`. `field` is called
    /// only with names [`Slot::fields`] returns. A field that does not fit its placeholder's type is
    /// reported, never written.
    pub(crate) fn render<'v>(
        &self,
        prefix: &str,
        field: impl Fn(&str) -> &'v str,
    ) -> Result<Rendering, Vec<Mistyped>> {
        let text = &self.source.text;
        let mut out = String::with_capacity(prefix.len() + text.len() + 64);
        out.push_str(prefix);
        let mut replaced = Vec::with_capacity(self.slots.len());
        let mut mistyped = Vec::new();
        let mut copied = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            out.push_str(&text[copied..slot.span.start]);
            let start = out.len();
            match &slot.value {
                SlotValue::Text(pieces) => {
                    let mut value = String::new();
                    for p in pieces {
                        match p {
                            Piece::Literal(s) => value.push_str(s),
                            Piece::Field(f) => value.push_str(field(f)),
                        }
                    }
                    out.push_str(&basic_string(&value));
                }
                SlotValue::Integer(f) => match field(f).parse::<i64>() {
                    Ok(n) => out.push_str(&n.to_string()),
                    Err(_) => mistyped.push(Mistyped {
                        slot: i,
                        field: f.clone(),
                        expected: "an integer",
                    }),
                },
                SlotValue::Boolean(f) => match field(f) {
                    v @ ("true" | "false") => out.push_str(v),
                    _ => mistyped.push(Mistyped {
                        slot: i,
                        field: f.clone(),
                        expected: "`true` or `false`",
                    }),
                },
                SlotValue::List(f) => {
                    let items: Vec<String> = field(f).split_whitespace().map(basic_string).collect();
                    out.push('[');
                    out.push_str(&items.join(", "));
                    out.push(']');
                }
            }
            replaced.push((slot.span.clone(), start..out.len()));
            copied = slot.span.end;
        }
        out.push_str(&text[copied..]);
        if !mistyped.is_empty() {
            return Err(mistyped);
        }
        Ok(Rendering {
            text: out,
            prefix: prefix.len(),
            replaced,
        })
    }
}

/// Collects the slots of a document and the errors of its malformed placeholders.
struct Walk<'s> {
    source: &'s Source,
    slots: Vec<Slot>,
    errors: Vec<ConfigError>,
}

impl Walk<'_> {
    fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.errors.push(self.source.error_at(span, key, message.into()));
    }

    fn table(&mut self, table: &DeTable<'_>, path: &str) {
        for (k, v) in table.iter() {
            let key = join(path, k.get_ref());
            if k.get_ref().contains(['{', '}']) {
                self.error(
                    k.span(),
                    &key,
                    "placeholders are only allowed in string values, not in keys",
                );
            }
            self.value(v, &key, Position::Value);
        }
    }

    fn value(&mut self, v: &Spanned<DeValue<'_>>, key: &str, at: Position) {
        match v.get_ref() {
            DeValue::String(s) => self.string(s, v.span(), key, at),
            DeValue::Table(t) => self.table(t, key),
            DeValue::Array(items) => {
                // `["{field:list}"]`: the whole array is the slot.
                if let [only] = &items[..]
                    && let DeValue::String(s) = only.get_ref()
                    && let Ok(parts) = split(s)
                    && let [Split::Field(Kind::List, name)] = parts.as_slice()
                {
                    self.slots.push(Slot {
                        span: v.span(),
                        key: key.to_owned(),
                        value: SlotValue::List(name.clone()),
                    });
                    return;
                }
                for item in items.iter() {
                    self.value(item, key, Position::Element);
                }
            }
            DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
        }
    }

    fn string(&mut self, s: &str, span: Range<usize>, key: &str, at: Position) {
        if !s.contains(['{', '}']) {
            return;
        }
        let parts = match split(s) {
            Ok(p) => p,
            Err(message) => return self.error(span, key, message),
        };
        let typed = parts.iter().find_map(|p| match p {
            Split::Field(kind, name) if *kind != Kind::Text => Some((*kind, name.clone())),
            _ => None,
        });
        let value = match typed {
            None => SlotValue::Text(
                parts
                    .into_iter()
                    .map(|p| match p {
                        Split::Literal(s) => Piece::Literal(s),
                        Split::Field(_, name) => Piece::Field(name),
                    })
                    .collect(),
            ),
            Some((Kind::Integer, name)) if parts.len() == 1 => SlotValue::Integer(name),
            Some((Kind::Boolean, name)) if parts.len() == 1 => SlotValue::Boolean(name),
            Some((Kind::List, name)) if parts.len() == 1 => {
                let message = match at {
                    Position::Element => format!("`{{{name}:list}}` must be the only element of its array"),
                    Position::Value => {
                        format!("`{{{name}:list}}` is an array's only element: write [\"{{{name}:list}}\"]")
                    }
                };
                return self.error(span, key, message);
            }
            Some((kind, name)) => {
                return self.error(
                    span,
                    key,
                    format!(
                        "`{{{name}:{}}}` must be the whole string, with nothing around it",
                        kind.suffix()
                    ),
                );
            }
        };
        self.slots.push(Slot {
            span,
            key: key.to_owned(),
            value,
        });
    }
}

/// Where a string value sits: directly under a key, or as an element of an array.
#[derive(Clone, Copy)]
enum Position {
    Value,
    Element,
}

enum Split {
    Literal(String),
    Field(Kind, String),
}

/// The literal runs and placeholders of a template string. `{{` and `}}` are literal braces.
fn split(s: &str) -> Result<Vec<Split>, String> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().is_some_and(|&(_, n)| n == '{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek().is_some_and(|&(_, n)| n == '}') => {
                chars.next();
                literal.push('}');
            }
            '}' => return Err("unmatched `}`; write `}}` for a literal brace".to_owned()),
            '{' => {
                let rest = &s[i + 1..];
                let Some(end) = rest.find('}') else {
                    return Err("unclosed `{`; write `{{` for a literal brace".to_owned());
                };
                let inner = &rest[..end];
                let (name, kind) = match inner.split_once(':') {
                    None => (inner, Kind::Text),
                    Some((name, "int")) => (name, Kind::Integer),
                    Some((name, "bool")) => (name, Kind::Boolean),
                    Some((name, "list")) => (name, Kind::List),
                    Some((_, other)) => {
                        return Err(format!(
                            "unknown placeholder type `{other}`: use `int`, `bool` or `list`, or no type for text"
                        ));
                    }
                };
                if !is_field_name(name) {
                    return Err(format!(
                        "`{{{inner}}}` is not a placeholder: a field name is letters, digits and `_`, not \
                         starting with a digit; write `{{{{` and `}}}}` for literal braces"
                    ));
                }
                if !literal.is_empty() {
                    out.push(Split::Literal(std::mem::take(&mut literal)));
                }
                out.push(Split::Field(kind, name.to_owned()));
                // Skip the placeholder's characters and its closing brace.
                while chars.next_if(|&(j, _)| j <= i + 1 + end).is_some() {}
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        out.push(Split::Literal(literal));
    }
    Ok(out)
}

/// Whether `s` is a field name: `^[A-Za-z_][A-Za-z0-9_]*$`.
pub(crate) fn is_field_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `s` as a TOML basic string on one line: quotes, backslashes and every control character escaped,
/// so nothing in `s` can end the string or start a line.
pub(crate) fn basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            // Every other C0 and C1 control character and DEL (all below U+10000).
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Every key path of a document, with array-of-tables elements numbered (`hooks[1].command`). Two
/// documents with the same key paths have the same structure of tables and keys.
pub(crate) fn key_paths(table: &DeTable<'_>) -> BTreeSet<String> {
    fn table_paths(table: &DeTable<'_>, path: &str, out: &mut BTreeSet<String>) {
        for (k, v) in table.iter() {
            let key = join(path, &format!("{:?}", k.get_ref().as_ref()));
            out.insert(key.clone());
            value_paths(v.get_ref(), &key, out);
        }
    }
    fn value_paths(v: &DeValue<'_>, path: &str, out: &mut BTreeSet<String>) {
        match v {
            DeValue::Table(t) => table_paths(t, path, out),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        table_paths(t, &format!("{path}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    table_paths(table, "", &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
