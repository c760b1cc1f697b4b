//! `rotd secret create-bulk`, end to end: the examples render into files `rotd check` accepts, and
//! anything wrong writes nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rotd_e2e::{Env, repo_root};

/// Files in a directory, sorted; hidden ones too, so a leftover temporary would show.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The 1-based number of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("present") + 1
}

fn example(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("config/examples/bulk").join(name)).expect("example")
}

/// The example template with its admin password files under `env`, and those files, mode 0600.
fn example_template(env: &Env, instances: &[&str]) {
    let admin = env.path("redis");
    std::fs::create_dir_all(&admin).expect("mkdir");
    for i in instances {
        let f = admin.join(format!("{i}-admin.pw"));
        std::fs::write(&f, "admin-password\n").expect("pw");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let text = example("redis-template.toml").replace("/etc/rotd/redis/", &format!("{}/", admin.display()));
    env.write("redis-template.toml", &text);
}

fn create_bulk(env: &Env, instances: &str, extra: &[&str]) -> rotd_e2e::Run {
    let template = env.path("redis-template.toml");
    let instances = env.path(instances);
    let mut args = vec![
        "secret",
        "create-bulk",
        "--template",
        template.to_str().expect("utf8"),
        "--instances",
        instances.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    env.run(&args)
}

const FLEET: [&str; 3] = ["sessions-eu", "sessions-us", "carts-eu"];

#[test]
fn the_examples_render_into_files_rotd_check_accepts() {
    let mut texts = Vec::new();
    for instances in ["redis-instances.toml", "redis-instances.csv"] {
        let env = Env::new();
        example_template(&env, &FLEET);
        env.write(instances, &example(instances));
        std::fs::set_permissions(env.path("secrets.d"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
        let r = create_bulk(&env, instances, &["-o", "json"]);
        assert_eq!(r.code, 0, "{instances}: {}", r.stderr);
        let out: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
        let names: Vec<&str> = out
            .as_array()
            .expect("array")
            .iter()
            .map(|o| o["SecretName"].as_str().expect("name"))
            .collect();
        assert_eq!(
            names,
            ["redis/sessions-eu", "redis/sessions-us", "redis/carts-eu"]
        );
        assert_eq!(
            out[0]["File"],
            env.path("secrets.d/sessions-eu.toml").to_str().expect("utf8")
        );
        assert_eq!(
            listing(&env.path("secrets.d")),
            ["carts-eu.toml", "sessions-eu.toml", "sessions-us.toml"]
        );
        let meta = std::fs::metadata(env.path("secrets.d/carts-eu.toml")).expect("meta");
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o640,
            "readable like the 0750 directory"
        );

        let check = env.ok(&["check"]);
        assert!(check.contains("ok (3 secrets declared"), "{check}");
        let text = std::fs::read_to_string(env.path("secrets.d/carts-eu.toml")).expect("read");
        assert!(text.contains("\nport = 6380\n"), "{text}");
        assert!(text.contains("\nnodes = []\n"), "{text}");
        texts.push(text.replace(env.dir.path().to_str().expect("utf8"), "<dir>"));
    }
    assert_eq!(texts[0], texts[1], "the CSV is the same fleet as the TOML");
}

#[test]
fn a_thousand_instances() {
    let env = Env::new();
    env.write(
        "redis-template.toml",
        "name = \"cache/{instance}\"\ntype = \"Redis\"\n[redis]\nhost = \"{host}\"\n\
         admin = { secret = \"platform/redis-admin\" }\nuser = \"{user}\"\nprivilege = \"ReadOnly\"\n",
    );
    let mut csv = String::from("instance,host,user\n");
    for i in 0..1000 {
        csv.push_str(&format!("c{i:04},10.1.{}.{},app{i}\n", i / 250, i % 250 + 1));
    }
    env.write("fleet.csv", &csv);
    let clock = rotd_core::Clock::system();
    let start = clock.instant();
    let r = create_bulk(&env, "fleet.csv", &[]);
    let took = clock.elapsed(start);
    assert_eq!(r.code, 0, "{}", r.stderr);
    println!("create-bulk wrote 1,000 secret files in {took:?}");
    assert_eq!(listing(&env.path("secrets.d")).len(), 1000);
    let start = clock.instant();
    let check = env.ok(&["check"]);
    println!("rotd check loaded them in {:?}", clock.elapsed(start));
    assert!(check.contains("ok (1000 secrets declared"), "{check}");
}

#[test]
fn an_existing_file_is_never_overwritten_and_nothing_is_written() {
    let env = Env::new();
    example_template(&env, &FLEET);
    env.write("redis-instances.toml", &example("redis-instances.toml"));
    let mine = "name = \"mine\"\ntype = \"Generic\"\n";
    env.write("secrets.d/sessions-us.toml", mine);
    let r = create_bulk(&env, "redis-instances.toml", &[]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    let line = line_of(&example("redis-instances.toml"), "instance = \"sessions-us\"");
    let at = format!("redis-instances.toml:{line}:1: instance: instance sessions-us: ");
    assert!(r.stderr.contains(&at), "{at}\n{}", r.stderr);
    assert!(r.stderr.contains("exists already"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was written"), "{}", r.stderr);
    assert_eq!(listing(&env.path("secrets.d")), ["sessions-us.toml"]);
    assert_eq!(
        std::fs::read_to_string(env.path("secrets.d/sessions-us.toml")).expect("read"),
        mine
    );

    // The same run twice: the second refuses every file and changes none.
    let env = Env::new();
    example_template(&env, &FLEET);
    env.write("redis-instances.toml", &example("redis-instances.toml"));
    assert_eq!(create_bulk(&env, "redis-instances.toml", &[]).code, 0);
    let before: Vec<String> = FLEET
        .iter()
        .map(|i| std::fs::read_to_string(env.path(&format!("secrets.d/{i}.toml"))).expect("read"))
        .collect();
    let r = create_bulk(&env, "redis-instances.toml", &[]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert_eq!(r.stderr.matches("exists already").count(), 3, "{}", r.stderr);
    let after: Vec<String> = FLEET
        .iter()
        .map(|i| std::fs::read_to_string(env.path(&format!("secrets.d/{i}.toml"))).expect("read"))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn one_bad_instance_writes_nothing_and_is_named_with_its_line() {
    let env = Env::new();
    example_template(&env, &FLEET);
    // An account name Redis users may not have, and that looks like a password: it must not be echoed.
    let instances = example("redis-instances.toml").replace("user = \"carts\"", "user = \"Hunter2!pw\"");
    env.write("redis-instances.toml", &instances);
    let r = create_bulk(&env, "redis-instances.toml", &[]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    let line = line_of(&instances, "Hunter2!pw");
    let at = format!("redis-instances.toml:{line}:1: redis.user: instance carts-eu: ");
    assert!(r.stderr.contains(&at), "{at}\n{}", r.stderr);
    let template_line = line_of(&example("redis-template.toml"), "user = \"{user}\"");
    let from = format!("redis-template.toml:{template_line}:8)");
    assert!(r.stderr.contains(&from), "{from}\n{}", r.stderr);
    assert!(!r.stderr.contains("Hunter2"), "{}", r.stderr);
    assert!(
        r.stderr.contains("1 error found; nothing was written"),
        "{}",
        r.stderr
    );
    assert!(listing(&env.path("secrets.d")).is_empty());

    // A missing admin password file is what `rotd check` would refuse too.
    let env = Env::new();
    example_template(&env, &FLEET[..2]);
    env.write("redis-instances.toml", &example("redis-instances.toml"));
    let r = create_bulk(&env, "redis-instances.toml", &[]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(
        r.stderr.contains("redis.admin: instance carts-eu: cannot read"),
        "{}",
        r.stderr
    );
    assert!(listing(&env.path("secrets.d")).is_empty());
}

#[test]
fn quotes_and_newlines_in_a_field_cannot_add_keys() {
    let env = Env::new();
    env.write(
        "redis-template.toml",
        "name = \"web/{instance}\"\ntype = \"Generic\"\ndescription = \"{note}\"\n",
    );
    // A CSV cell with quotes and line breaks that, pasted into the TOML, would add a key and a section.
    env.write(
        "i.csv",
        "instance,note\na,\"x\"\"\ninitial_version = \"\"evil\"\"\n[rotation]\ninterval = \"\"1m\"\n",
    );
    let r = create_bulk(&env, "i.csv", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(env.path("secrets.d/a.toml")).expect("read");
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.ends_with(
            "description = \"x\\\"\\ninitial_version = \\\"evil\\\"\\n[rotation]\\ninterval = \\\"1m\"\n"
        ),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("initial_version") || l.starts_with('[')),
        "{text}"
    );
    env.ok(&["check"]);
}

#[test]
fn duplicate_secret_names_are_refused() {
    let env = Env::new();
    env.write(
        "redis-template.toml",
        "name = \"app/{team}\"\ntype = \"Generic\"\n",
    );
    env.write("i.csv", "instance,team\na,pay\nb,web\nc,pay\n");
    let r = create_bulk(&env, "i.csv", &[]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("i.csv:4:3: name: instance c: secret app/pay is already declared in "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("i.csv:2:1 (instance a)"), "{}", r.stderr);
    assert!(listing(&env.path("secrets.d")).is_empty());

    // Against the secrets directory too, when the files go elsewhere.
    env.write("secrets.d/web.toml", "name = \"app/web\"\ntype = \"Generic\"\n");
    std::fs::create_dir(env.path("staging")).expect("mkdir");
    env.write("i.csv", "instance,team\na,pay\nb,web\n");
    let staging = env.path("staging");
    let r = create_bulk(&env, "i.csv", &["--out-dir", staging.to_str().expect("utf8")]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("i.csv:3:3: name: instance b: secret app/web is already declared in "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("secrets.d/web.toml"), "{}", r.stderr);
    assert!(listing(&staging).is_empty());
}

#[test]
fn an_unknown_placeholder_is_refused() {
    let env = Env::new();
    env.write(
        "redis-template.toml",
        "name = \"app/{instance}\"\ntype = \"Generic\"\ndescription = \"owned by {owner}\"\n",
    );
    env.write("i.toml", "[[instance]]\ninstance = \"a\"\n");
    let r = create_bulk(&env, "i.toml", &[]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "redis-template.toml:3:15: description: placeholder {owner}: no instance has a field `owner`"
        ),
        "{}",
        r.stderr
    );
    assert!(listing(&env.path("secrets.d")).is_empty());
}

#[test]
fn dry_run_and_out_dir() {
    let env = Env::new();
    example_template(&env, &FLEET);
    env.write("redis-instances.csv", &example("redis-instances.csv"));
    let r = create_bulk(&env, "redis-instances.csv", &["--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("redis/carts-eu"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("dry run: 3 secret files valid, nothing written"),
        "{}",
        r.stderr
    );
    assert!(listing(&env.path("secrets.d")).is_empty());

    let r = create_bulk(&env, "redis-instances.csv", &["--out-dir", "/nonexistent/dir"]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("output directory /nonexistent/dir does not exist"),
        "{}",
        r.stderr
    );

    std::fs::create_dir(env.path("out")).expect("mkdir");
    let out = env.path("out");
    let r = create_bulk(
        &env,
        "redis-instances.csv",
        &["--out-dir", out.to_str().expect("utf8")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(listing(&out).len(), 3);
    assert!(listing(&env.path("secrets.d")).is_empty());
}

/// The README's walkthrough of create-bulk, taken from README.md itself so the two cannot drift.
#[test]
fn the_readme_walkthrough_works() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    let start = readme
        .find("cat > /tmp/token-template.toml <<'TOML'\n")
        .expect("the walkthrough's template");
    let body = &readme[start..];
    let body = &body[body.find('\n').expect("line") + 1..];
    let template = &body[..body.find("TOML\n").expect("end of the heredoc")];
    let printf = body
        .lines()
        .find(|l| l.starts_with("printf '"))
        .expect("the walkthrough's CSV");
    let csv = printf["printf '".len()..printf.rfind("' >").expect("end")].replace("\\n", "\n");

    let env = Env::new();
    env.write("token-template.toml", template);
    env.write("tokens.csv", &csv);
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "secret".to_owned(),
            "create-bulk".to_owned(),
            "--template".to_owned(),
            env.path("token-template.toml").display().to_string(),
            "--instances".to_owned(),
            env.path("tokens.csv").display().to_string(),
        ];
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a
    };
    let run = |extra: &[&'static str]| {
        let a = args(extra);
        env.run(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    assert_eq!(run(&["--dry-run"]).code, 0);
    assert!(listing(&env.path("secrets.d")).is_empty());
    let r = run(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(listing(&env.path("secrets.d")), ["billing.toml", "search.toml"]);
    let r = run(&[]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(
        r.stderr.contains("2 errors found; nothing was written"),
        "{}",
        r.stderr
    );
    let check = env.ok(&["check"]);
    assert!(check.contains("ok (2 secrets declared"), "{check}");
    let r = env.run(&["secret", "create-bulk", "--help"]);
    assert!(r.stdout.contains("--instances"), "{}", r.stdout);
}
