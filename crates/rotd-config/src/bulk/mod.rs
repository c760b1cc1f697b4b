//! Bulk secrets (`rotd secret create-bulk`): one secret file per instance, rendered from a template
//! and validated exactly as `rotd check` validates a file of the secrets directory.
//!
//! A template is a secret file whose string values hold `{field}` placeholders ([`template`]); an
//! instances file lists the instances and their fields ([`instances`]). Each rendering is loaded by
//! the same code as every secret file (`load_secret`), with one duplicate-name table shared by the
//! secret files already in the output and secrets directories and every instance before it, so a
//! rendered file is valid exactly when `rotd check` would accept it there. This module only reads;
//! writing the files (all or none) is the binary's.
//!
//! Errors name the instances file, the instance's line (the field's, when one field is to blame) and
//! the template's line. They name fields, never their values: a field may hold anything, and only
//! the `instance` field, a file name, is ever printed.

mod instances;
mod template;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rotd_core::SecretName;

use crate::error::{ConfigError, Source, io_error, io_message};
use crate::{ConfigErrors, DaemonConfig, SecretSpec, spec};
use instances::Instance;
use template::Template;

/// The field that names an instance and its file, `<out_dir>/<instance>.toml`.
pub const INSTANCE_FIELD: &str = "instance";

/// One rendered, valid secret file, not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The instance's `instance` field.
    pub instance: String,
    /// Where the file is to be written: `<out_dir>/<instance>.toml`.
    pub file: PathBuf,
    /// Where the instance is declared: the instances file, 1-based line and column.
    pub declared_at: (PathBuf, usize, usize),
    /// The file's text: a comment line naming the template and instance, then the template with
    /// every placeholder filled.
    pub text: String,
    /// The file as `rotd check` loads it (its `file` is [`Rendered::file`]).
    pub spec: SecretSpec,
}

impl Rendered {
    /// `file:line:col` of the instance's declaration.
    pub fn location(&self) -> String {
        let (file, line, col) = &self.declared_at;
        format!("{}:{line}:{col}", file.display())
    }
}

/// Renders `template` once for every instance in `instances` (`.toml` or `.csv`), for writing into
/// `out_dir`, and validates every rendering against the daemon configuration, the secret files
/// already in `out_dir` and in the daemon's secrets directory, and each other. Nothing is written.
/// Every problem found is returned, in one list; a target file that exists already is one of them.
pub fn render(
    daemon: &DaemonConfig,
    template: &Path,
    instances: &Path,
    out_dir: &Path,
) -> Result<Vec<Rendered>, ConfigErrors> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| io_error(path, "(file)", format!("cannot read: {}", io_message(&e))))
    };
    let (template_text, instances_text) = match (read(template), read(instances)) {
        (Ok(t), Ok(i)) => (t, i),
        (t, i) => return Err(ConfigErrors(t.err().into_iter().chain(i.err()).collect())),
    };
    let mut existing = Vec::new();
    let mut dirs = vec![out_dir.to_owned()];
    if !same_dir(out_dir, &daemon.secrets_dir) {
        dirs.push(daemon.secrets_dir.clone());
    }
    for dir in dirs {
        match crate::secret_files_in(&dir) {
            Ok(files) => existing.extend(files.into_iter().map(|f| {
                let text = read(&f);
                (f, text)
            })),
            // A secrets directory that does not exist holds no names; `rotd check` reports it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != out_dir => {}
            Err(e) => {
                return Err(ConfigErrors(vec![io_error(
                    &dir,
                    "(directory)",
                    format!("cannot read: {}", io_message(&e)),
                )]));
            }
        }
    }
    render_texts(
        daemon,
        Source::new(template.to_owned(), template_text),
        Source::new(instances.to_owned(), instances_text),
        out_dir,
        existing,
        |p| p.symlink_metadata().is_ok(),
    )
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// [`render`] on texts: `existing` are the secret files already declared, `exists` says whether a
/// target path is taken.
fn render_texts(
    daemon: &DaemonConfig,
    template: Source,
    instances: Source,
    out_dir: &Path,
    existing: Vec<(PathBuf, Result<String, ConfigError>)>,
    exists: impl Fn(&Path) -> bool,
) -> Result<Vec<Rendered>, ConfigErrors> {
    let ctx = spec::Context {
        base: daemon.config_dir(),
        default_cmk: &daemon.default_cmk,
    };
    let mut errors = Vec::new();
    let mut seen: HashMap<SecretName, PathBuf> = HashMap::new();
    for (file, text) in existing {
        if let Err(mut e) = text
            .map_err(|e| vec![e])
            .and_then(|text| crate::load_secret(&file, text, &ctx, &mut seen))
        {
            e.sort_by_key(|e| (e.line, e.col));
            errors.extend(e);
        }
    }
    let parsed_template = Template::parse(template);
    let parsed_instances = instances::parse(&instances);
    let (template, list) = match (parsed_template, parsed_instances) {
        (Ok(t), Ok(i)) => (t, i),
        (t, i) => {
            errors.extend(t.err().into_iter().flatten());
            errors.extend(i.err().into_iter().flatten());
            return Err(ConfigErrors(errors));
        }
    };
    let mut run = Run {
        template: &template,
        instances: &instances,
        errors,
        shared: BTreeMap::new(),
        count: list.len(),
    };
    let rendered = run.all(&list, out_dir, &ctx, &mut seen, exists);
    let mut errors = run.errors;
    // An error outside every placeholder that every instance has is the template's: report it once.
    for ((offset, key, message), at) in run.shared {
        if at.len() == run.count && run.count > 1 {
            let (line, col) = template.source.position(offset);
            errors.push(ConfigError {
                file: template.source.path.clone(),
                line,
                col,
                key,
                message: format!("{message} (in every instance)"),
            });
        } else {
            for (id, (line, col)) in at {
                let (tl, tc) = template.source.position(offset);
                errors.push(ConfigError {
                    file: instances.path.clone(),
                    line,
                    col,
                    key: key.clone(),
                    message: format!(
                        "instance {id}: {message} (template {}:{tl}:{tc})",
                        template.source.path.display()
                    ),
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(rendered)
    } else {
        errors.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        Err(ConfigErrors(errors))
    }
}

/// A 1-based line and column.
type At = (usize, usize);

/// One run over the instances and what it found.
struct Run<'a> {
    template: &'a Template,
    instances: &'a Source,
    errors: Vec<ConfigError>,
    /// Validation errors outside every placeholder, by (template offset, key, message), with the
    /// instances that have them: when every instance does, the template is reported instead.
    shared: BTreeMap<(usize, String, String), Vec<(String, At)>>,
    count: usize,
}

impl Run<'_> {
    fn error(&mut self, at: (usize, usize), key: &str, message: String) {
        let (line, col) = at;
        self.errors.push(ConfigError {
            file: self.instances.path.clone(),
            line,
            col,
            key: key.to_owned(),
            message,
        });
    }

    fn template_error(&mut self, offset: usize, key: &str, message: String) {
        let e = self.template.source.error_at(offset..offset, key, message);
        self.errors.push(e);
    }

    fn all(
        &mut self,
        list: &[Instance],
        out_dir: &Path,
        ctx: &spec::Context<'_>,
        seen: &mut HashMap<SecretName, PathBuf>,
        exists: impl Fn(&Path) -> bool,
    ) -> Vec<Rendered> {
        let template = self.template;
        // Which fields the template uses, and the first slot that uses each.
        let mut used: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, slot) in template.slots.iter().enumerate() {
            for f in slot.fields() {
                used.entry(f).or_insert(i);
            }
        }
        // A placeholder no instance fills is the template's mistake, reported once; one only some
        // instances lack is theirs.
        let mut unknown = false;
        for (field, &slot) in &used {
            if !list.iter().any(|inst| inst.fields.contains_key(*field)) {
                unknown = true;
                let s = &template.slots[slot];
                self.template_error(
                    s.span.start,
                    &s.key,
                    format!("placeholder {{{field}}}: no instance has a field `{field}`"),
                );
            }
        }
        // A field the template never uses is reported once, where it first appears.
        let mut unused: BTreeMap<&str, ((usize, usize), usize)> = BTreeMap::new();
        for inst in list {
            for (name, field) in &inst.fields {
                if name != INSTANCE_FIELD && !used.contains_key(name.as_str()) {
                    unused.entry(name).or_insert((field.at, 0)).1 += 1;
                }
            }
        }
        for (name, (at, n)) in unused {
            let others = match n - 1 {
                0 => String::new(),
                1 => " (and in 1 other instance)".to_owned(),
                k => format!(" (and in {k} other instances)"),
            };
            self.error(
                at,
                &format!("instance.{name}"),
                format!("the template has no placeholder {{{name}}}; remove the field or use it{others}"),
            );
        }
        if unknown {
            return Vec::new();
        }

        let template_name = template
            .source
            .path
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect()
            })
            .unwrap_or_else(|| "the template".to_owned());
        let mut files: HashMap<String, (usize, usize)> = HashMap::new();
        let mut out = Vec::new();
        for inst in list {
            let Some(id) = inst.fields.get(INSTANCE_FIELD) else {
                self.error(
                    inst.at,
                    INSTANCE_FIELD,
                    format!(
                        "missing field `{INSTANCE_FIELD}`: it names the instance and its file, <instance>.toml"
                    ),
                );
                continue;
            };
            if let Err(message) = check_file_name(&id.value) {
                self.error(id.at, INSTANCE_FIELD, message);
                continue;
            }
            let name = id.value.clone();
            if let Some(&(line, _)) = files.get(&name) {
                self.error(
                    id.at,
                    INSTANCE_FIELD,
                    format!("instance {name} is already declared on line {line}"),
                );
                continue;
            }
            files.insert(name.clone(), inst.at);
            let file = out_dir.join(format!("{name}.toml"));
            if exists(&file) {
                self.error(
                    id.at,
                    INSTANCE_FIELD,
                    format!(
                        "instance {name}: {} exists already; create-bulk never overwrites a file",
                        file.display()
                    ),
                );
                continue;
            }
            let missing: Vec<&str> = used
                .keys()
                .copied()
                .filter(|f| !inst.fields.contains_key(*f))
                .collect();
            if !missing.is_empty() {
                for f in missing {
                    let slot = &template.slots[used[&f]];
                    let (tl, tc) = template.source.position(slot.span.start);
                    self.error(
                        inst.at,
                        &format!("instance.{f}"),
                        format!(
                            "instance {name}: missing field `{f}` (template {}:{tl}:{tc} uses it)",
                            template.source.path.display()
                        ),
                    );
                }
                continue;
            }
            if let Some(r) = self.one(inst, &name, file, &template_name, ctx, seen) {
                out.push(r);
            }
        }
        out
    }

    /// Renders and validates one instance whose fields are all there.
    fn one(
        &mut self,
        inst: &Instance,
        name: &str,
        file: PathBuf,
        template_name: &str,
        ctx: &spec::Context<'_>,
        seen: &mut HashMap<SecretName, PathBuf>,
    ) -> Option<Rendered> {
        let template = self.template;
        let tpath = template.source.path.display().to_string();
        let prefix =
            format!("# Written by `rotd secret create-bulk` from {template_name}, instance {name}.\n");
        let rendering = match template.render(&prefix, |f| inst.fields[f].value.as_str()) {
            Ok(r) => r,
            Err(mistyped) => {
                for m in mistyped {
                    let slot = &template.slots[m.slot];
                    let (tl, tc) = template.source.position(slot.span.start);
                    self.error(
                        inst.fields[&m.field].at,
                        &format!("instance.{}", m.field),
                        format!(
                            "instance {name}: `{}` is not {}, which template {tpath}:{tl}:{tc} needs for {}",
                            m.field, m.expected, slot.key
                        ),
                    );
                }
                return None;
            }
        };
        // The escaping in `template` is what keeps a field inside its value; this checks the outcome.
        let rendered_keys = Source::new(file.clone(), rendering.text.clone())
            .parse_document()
            .map(|doc| template::key_paths(doc.get_ref()));
        if rendered_keys.as_ref().ok() != Some(template.keys()) {
            self.error(
                inst.at,
                INSTANCE_FIELD,
                format!("instance {name}: the rendered file does not have the template's keys (a bug in rotd; please report it)"),
            );
            return None;
        }
        match crate::load_secret(&file, rendering.text.clone(), ctx, seen) {
            Ok(spec) => {
                // Later duplicates should point at this instance, not at a file that does not exist yet.
                let (line, col) = inst.at;
                seen.insert(
                    spec.name.clone(),
                    PathBuf::from(format!(
                        "{}:{line}:{col} (instance {name})",
                        self.instances.path.display()
                    )),
                );
                Some(Rendered {
                    instance: name.to_owned(),
                    file,
                    declared_at: (self.instances.path.clone(), line, col),
                    text: rendering.text,
                    spec,
                })
            }
            Err(errors) => {
                let rendered = Source::new(file, rendering.text.clone());
                for e in errors {
                    let (offset, slot) = rendering.origin(rendered.offset(e.line, e.col));
                    match slot {
                        Some(i) => {
                            let slot = &template.slots[i];
                            // One field to blame: point at it; otherwise at the instance.
                            let fields = slot.fields();
                            let at = match fields.iter().next() {
                                Some(f) if fields.len() == 1 => inst.fields[*f].at,
                                _ => inst.at,
                            };
                            let (tl, tc) = template.source.position(offset);
                            self.error(
                                at,
                                &e.key,
                                format!("instance {name}: {} (template {tpath}:{tl}:{tc})", e.message),
                            );
                        }
                        None => self
                            .shared
                            .entry((offset, e.key, e.message))
                            .or_default()
                            .push((name.to_owned(), inst.at)),
                    }
                }
                None
            }
        }
    }
}

/// Whether an instance name is safe as a file name in the output directory: 1–128 letters, digits,
/// `.`, `_` and `-`, not starting with `.` or `-`. The message does not repeat the name.
fn check_file_name(name: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{INSTANCE_FIELD}` names the file <instance>.toml: 1–128 letters, digits, `.`, `_` and `-`, \
             not starting with `.` or `-`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Target;

    const TEMPLATE: &str = r#"# A Redis fleet.
name = "redis/{instance}"
type = "Redis"
description = "sessions on {instance}"

[redis]
host = "{host}"
port = "{port:int}"
admin = { file = "/etc/rotd/redis/{instance}.pw" }
user = "{user}"
privilege = "ReadWrite"
nodes = ["{nodes:list}"]
"#;

    fn daemon() -> DaemonConfig {
        crate::daemon::from_text("/etc/rotd/rotd.toml".into(), String::new())
            .map(|d| d.config)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn run_with(
        template: &str,
        instances: (&str, &str),
        existing: &[(&str, &str)],
        taken: &[&str],
    ) -> Result<Vec<Rendered>, ConfigErrors> {
        let existing = existing
            .iter()
            .map(|(p, t)| (PathBuf::from(p), Ok((*t).to_owned())))
            .collect();
        render_texts(
            &daemon(),
            Source::new("tpl.toml".into(), template.to_owned()),
            Source::new(instances.0.into(), instances.1.to_owned()),
            Path::new("/out"),
            existing,
            |p| taken.iter().any(|t| Path::new(t) == p),
        )
    }

    fn run(template: &str, instances: &str) -> Result<Vec<Rendered>, ConfigErrors> {
        run_with(template, ("inst.toml", instances), &[], &[])
    }

    fn errors(r: Result<Vec<Rendered>, ConfigErrors>) -> Vec<String> {
        match r {
            Ok(rendered) => panic!("accepted: {rendered:?}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    fn redis(r: &Rendered) -> &crate::RedisSpec {
        match &r.spec.target {
            Target::Redis(redis) => redis,
            other => panic!("not redis: {other:?}"),
        }
    }

    const TWO: &str = r#"
[[instance]]
instance = "cache-01"
host = "10.0.3.11"
port = 6380
user = "sessions"
nodes = "10.0.3.11:6380 10.0.3.12:6380"

[[instance]]
instance = "cache-02"
host = "10.0.4.11"
port = "6379"
user = "carts"
nodes = ""
"#;

    #[test]
    fn renders_one_valid_file_per_instance() {
        let out = run(TEMPLATE, TWO).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].file, Path::new("/out/cache-01.toml"));
        assert_eq!(out[0].spec.file, Path::new("/out/cache-01.toml"));
        assert_eq!(out[0].spec.name.as_str(), "redis/cache-01");
        assert_eq!(out[0].spec.description, "sessions on cache-01");
        assert_eq!(out[0].declared_at, (PathBuf::from("inst.toml"), 2, 1));
        let r = redis(&out[0]);
        assert_eq!(
            (r.host.as_str(), r.port, r.user.as_str()),
            ("10.0.3.11", 6380, "sessions")
        );
        assert_eq!(r.nodes.len(), 2);
        assert_eq!(
            r.admin,
            crate::SecretRef::File("/etc/rotd/redis/cache-01.pw".into())
        );
        let r = redis(&out[1]);
        assert_eq!((r.port, r.nodes.len()), (6379, 0));
        // Comments and layout are the template's; only the values changed.
        assert!(
            out[0].text.starts_with(
                "# Written by `rotd secret create-bulk` from tpl.toml, instance cache-01.\n# A Redis fleet.\n"
            ),
            "{}",
            out[0].text
        );
        assert!(out[0].text.contains("\nport = 6380\n"), "{}", out[0].text);
        assert!(
            out[0]
                .text
                .contains("\nnodes = [\"10.0.3.11:6380\", \"10.0.3.12:6380\"]\n"),
            "{}",
            out[0].text
        );
    }

    #[test]
    fn csv_instances_render_like_toml_ones() {
        let csv = "instance,host,port,user,nodes\ncache-01,10.0.3.11,6380,sessions,10.0.3.11:6380 10.0.3.12:6380\n\
                   cache-02,10.0.4.11,6379,carts,\n";
        let from_csv = run_with(TEMPLATE, ("inst.csv", csv), &[], &[]).unwrap_or_else(|e| panic!("{e}"));
        let from_toml = run(TEMPLATE, TWO).unwrap_or_else(|e| panic!("{e}"));
        let specs = |r: &[Rendered]| r.iter().map(|r| r.spec.clone()).collect::<Vec<_>>();
        assert_eq!(specs(&from_csv), specs(&from_toml));
        assert_eq!(from_csv[1].declared_at, (PathBuf::from("inst.csv"), 3, 1));
    }

    #[test]
    fn a_field_cannot_add_keys_or_tables() {
        let attacks = [
            "x\"\nadmin_user = \"evil",
            "x\\\"\n[rotation]\ninterval = \"6h",
            "x\"\"\"\n'''\nname = \"other\"\n#",
            "\u{0}\u{1b}[31m\r\u{7f}\u{85}\u{2028}",
        ];
        for attack in attacks {
            let instances = format!(
                "[[instance]]\ninstance = \"a\"\nhost = \"h\"\nport = \"1\"\nuser = \"u\"\nnodes = \"\"\ndescription = {}\n",
                template::basic_string(attack)
            );
            let tpl = TEMPLATE.replace("sessions on {instance}", "{description}");
            let out = run(&tpl, &instances).unwrap_or_else(|e| panic!("{attack:?}: {e}"));
            let spec = &out[0].spec;
            assert_eq!(spec.description, attack, "the field is the value, byte for byte");
            assert_eq!(spec.name.as_str(), "redis/a");
            assert!(spec.rotation.is_none(), "{attack:?} added [rotation]");
            assert_eq!(
                redis(&out[0]).admin_user,
                "default",
                "{attack:?} added admin_user"
            );
            assert_eq!(
                out[0].text.lines().count(),
                tpl.lines().count() + 1,
                "no line added"
            );
        }
    }

    #[test]
    fn a_field_that_breaks_a_value_is_reported_at_the_field_without_its_value() {
        let instances = TWO.replace("user = \"carts\"", "user = \"p4ss\\\"word\"");
        let e = errors(run(TEMPLATE, &instances));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("inst.toml:13:1: redis.user: instance cache-02: "),
            "{e:?}"
        );
        assert!(e[0].ends_with("(template tpl.toml:10:8)"), "{e:?}");
        assert!(!e[0].contains("p4ss"), "{e:?}");
    }

    #[test]
    fn an_unknown_placeholder_is_the_template_s_error() {
        let tpl = TEMPLATE.replace("user = \"{user}\"", "user = \"{usr}\"");
        let e = errors(run(&tpl, TWO));
        assert_eq!(
            e,
            vec![
                "inst.toml:6:1: instance.user: the template has no placeholder {user}; remove the field or use it (and in 1 other instance)",
                "tpl.toml:10:8: redis.user: placeholder {usr}: no instance has a field `usr`",
            ]
        );
    }

    #[test]
    fn a_missing_field_is_the_instance_s_error() {
        let instances = TWO.replace("host = \"10.0.4.11\"\n", "");
        let e = errors(run(TEMPLATE, &instances));
        assert_eq!(
            e,
            vec![
                "inst.toml:9:1: instance.host: instance cache-02: missing field `host` (template tpl.toml:7:8 uses it)"
            ]
        );
    }

    #[test]
    fn typed_fields_must_fit() {
        let instances = TWO.replace("port = \"6379\"", "port = \"63 79\"");
        let e = errors(run(TEMPLATE, &instances));
        assert_eq!(
            e,
            vec![
                "inst.toml:12:1: instance.port: instance cache-02: `port` is not an integer, which template tpl.toml:8:8 needs for redis.port"
            ]
        );
    }

    #[test]
    fn names_must_be_unique_across_instances_and_existing_files() {
        let tpl = TEMPLATE.replace("redis/{instance}", "redis/{user}");
        let instances = TWO.replace("carts", "sessions");
        let e = errors(run(&tpl, &instances));
        assert_eq!(
            e,
            // The name comes from one field, so the error points at that field.
            vec![
                "inst.toml:13:1: name: instance cache-02: secret redis/sessions is already declared in inst.toml:2:1 (instance cache-01) (template tpl.toml:2:8)"
            ]
        );
        let existing = ("/out/old.toml", "name = \"redis/cache-02\"\ntype = \"Generic\"\n");
        let e = errors(run_with(TEMPLATE, ("inst.toml", TWO), &[existing], &[]));
        assert_eq!(
            e,
            vec![
                "inst.toml:10:1: name: instance cache-02: secret redis/cache-02 is already declared in /out/old.toml (template tpl.toml:2:8)"
            ]
        );
    }

    #[test]
    fn instance_names_are_safe_file_names_and_unique() {
        for bad in ["../x", "a/b", ".hidden", "-rf", "", "a b"] {
            let instances = TWO.replace("cache-02", bad);
            let e = errors(run(TEMPLATE, &instances));
            assert!(
                e.iter()
                    .any(|e| e.starts_with("inst.toml:10:1: instance: `instance` names the file")),
                "{bad:?}: {e:?}"
            );
        }
        let instances = TWO.replace("cache-02", "cache-01");
        let e = errors(run(TEMPLATE, &instances));
        assert_eq!(
            e,
            vec!["inst.toml:10:1: instance: instance cache-01 is already declared on line 2"]
        );
        let instances = TWO.replace("instance = \"cache-02\"\n", "");
        let e = errors(run(TEMPLATE, &instances));
        assert!(
            e[0].starts_with("inst.toml:9:1: instance: missing field `instance`"),
            "{e:?}"
        );
    }

    #[test]
    fn an_existing_target_is_never_replaced() {
        let e = errors(run_with(
            TEMPLATE,
            ("inst.toml", TWO),
            &[],
            &["/out/cache-02.toml"],
        ));
        assert_eq!(
            e,
            vec![
                "inst.toml:10:1: instance: instance cache-02: /out/cache-02.toml exists already; create-bulk never overwrites a file"
            ]
        );
    }

    #[test]
    fn a_template_mistake_every_instance_shares_is_reported_once() {
        let tpl = TEMPLATE.replace(
            "privilege = \"ReadWrite\"",
            "privilege = \"ReadWrite\"\nprivilage = \"x\"",
        );
        let e = errors(run(&tpl, TWO));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("tpl.toml:12:1: redis.privilage: "), "{e:?}");
        assert!(e[0].ends_with("(in every instance)"), "{e:?}");
    }

    #[test]
    fn malformed_placeholders_are_refused() {
        let cases = [
            ("description = \"{\"", "unclosed `{`"),
            ("description = \"}\"", "unmatched `}`"),
            ("description = \"{1x}\"", "is not a placeholder"),
            ("description = \"{}\"", "is not a placeholder"),
            ("description = \"{a:float}\"", "unknown placeholder type `float`"),
            ("description = \"port {a:int}\"", "must be the whole string"),
            ("description = \"{a:list}\"", "is an array's only element"),
            (
                "description = [\"x\", \"{a:list}\"]",
                "must be the only element of its array",
            ),
            ("\"{a}\" = \"x\"", "not in keys"),
        ];
        for (line, message) in cases {
            let tpl = format!("name = \"x/{{instance}}\"\ntype = \"Generic\"\n{line}\n");
            let e = errors(run(&tpl, "[[instance]]\ninstance = \"a\"\n"));
            assert_eq!(e.len(), 1, "{line}: {e:?}");
            assert!(e[0].starts_with("tpl.toml:3:"), "{line}: {e:?}");
            assert!(e[0].contains(message), "{line}: {e:?}");
        }
    }

    #[test]
    fn doubled_braces_are_literal_braces() {
        let tpl = "name = \"x/{instance}\"\ntype = \"Generic\"\ndescription = \"{{{instance}}} {{x}}\"\n";
        let out = run(tpl, "[[instance]]\ninstance = \"a\"\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out[0].spec.description, "{a} {x}");
        // Placeholder-looking text in a field is not expanded again.
        let tpl = "name = \"x/{instance}\"\ntype = \"Generic\"\ndescription = \"{d}\"\n";
        let out = run(tpl, "[[instance]]\ninstance = \"a\"\nd = \"{instance}\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out[0].spec.description, "{instance}");
    }

    #[test]
    fn origins_map_back_through_longer_and_shorter_values() {
        let source = Source::new("t".into(), "a = \"{x}\"\nb = \"{y}\"\nc = 1\n".to_owned());
        let t = Template::parse(source).unwrap_or_else(|e| panic!("{e:?}"));
        let r = t
            .render("#\n", |f| if f == "x" { "a much longer value" } else { "" })
            .unwrap_or_else(|_| panic!("renders"));
        assert_eq!(r.text, "#\na = \"a much longer value\"\nb = \"\"\nc = 1\n");
        let c = r.text.find("c = 1").expect("c");
        assert_eq!(r.origin(c), (t.source.text.find("c = 1").expect("c"), None));
        assert_eq!(r.origin(r.text.find("much").expect("x")), (4, Some(0)));
        assert_eq!(r.origin(r.text.find("b =").expect("b")), (10, None));
    }
}
