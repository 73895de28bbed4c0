use super::*;
use clap::Parser;

/// `serve`'s arguments as clap parses them (the process's own BRIDGE_* variables apply too;
/// the test runner sets none).
#[derive(Debug, Parser)]
struct Serve {
    #[command(flatten)]
    args: ServeArgs,
}

fn load(argv: &[&str]) -> Result<Config, ConfigError> {
    let serve = Serve::try_parse_from(std::iter::once("serve").chain(argv.iter().copied())).expect("arguments");
    Config::load(&serve.args)
}

fn file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).expect("write");
    (dir, path.display().to_string())
}

#[test]
fn defaults_load_and_validate() {
    let c = load(&[]).expect("defaults");
    assert_eq!(c, Config::load(&ServeArgs::default()).expect("defaults"));
    assert_eq!(c.bind, "127.0.0.1:5001".parse().expect("addr"));
    assert_eq!(c.max_frame_bytes, 1024 * 1024);
    assert_eq!((c.durability, c.log_format), (Durability::Sync, LogFormat::Text));
    assert_eq!(c.retention().for_type("any"), Some(Duration::from_secs(86400)));
}

#[test]
fn every_key_is_a_flag_and_a_variable_of_its_name() {
    let cmd = <Serve as clap::CommandFactory>::command();
    let defaults: toml::Table = toml::from_str(DEFAULT_CONFIG).expect("defaults");
    for key in defaults.keys() {
        let arg = cmd.get_arguments().find(|a| a.get_id() == key.as_str()).unwrap_or_else(|| panic!("{key}: no flag"));
        assert_eq!(arg.get_long(), Some(key.replace('_', "-").as_str()), "{key}");
        let env = format!("BRIDGE_{}", key.to_ascii_uppercase());
        assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(&env)), "{key}");
        assert!(!arg.is_required_set(), "{key}: the file's default makes the flag optional");
    }
    assert_eq!(cmd.get_arguments().count(), defaults.len() + 1, "every flag but --config is a key of the file");
}

#[test]
fn flags_override_file() {
    let (_dir, path) = file("bind = \"127.0.0.1:7000\"\nsession_queue = 7\ndurability = \"async\"\n");
    let c = load(&["--config", &path, "--session-queue", "9", "--in-memory"]).expect("load");
    assert_eq!((c.bind.port(), c.session_queue, c.durability, c.in_memory), (7000, 9, Durability::Async, true));
    let c = load(&["--config", &path, "--durability", "sync", "--in-memory", "false"]).expect("load");
    assert_eq!((c.session_queue, c.durability, c.in_memory), (7, Durability::Sync, false));
    let c = load(&["--retention-types", "log=short, audit=permanent", "--archive", "file:/tmp/x"]).expect("load");
    assert_eq!(c.retention().for_type("log"), Some(Duration::from_secs(3600)));
    assert_eq!(c.retention().for_type("audit"), None);
    assert_eq!(c.archive.to_string(), "file:/tmp/x");
}

#[test]
fn a_bad_value_names_its_key() {
    let (_dir, path) = file("durability = \"fast\"\n");
    let err = load(&["--config", &path]).expect_err("refused").to_string();
    assert!(err.contains(&path) && err.contains("durability: unknown variant `fast`") && err.contains("`sync`"), "{err}");
    let (_dir, path) = file("retention_types = \"log\"\n");
    let err = load(&["--config", &path]).expect_err("refused").to_string();
    assert!(err.contains("retention_types: \"log\" is not type=preset"), "{err}");
    let (_dir, path) = file("session_queue = \"many\"\n");
    let err = load(&["--config", &path]).expect_err("refused").to_string();
    assert!(err.contains("session_queue: invalid type"), "{err}");
    let err = Serve::try_parse_from(["serve", "--log-format", "xml"]).expect_err("refused").to_string();
    assert!(err.contains("--log-format") && err.contains("text, json"), "{err}");
    let err = Serve::try_parse_from(["serve", "--bind", "nowhere"]).expect_err("refused").to_string();
    assert!(err.contains("--bind"), "{err}");
}

#[test]
fn lists_and_tables_read_as_the_comma_separated_settings() {
    let (_dir, path) = file(
        "cors_origins = [\"https://claude.ai\", \"https://x.example\"]\nallowed_hosts = []\n\
         guest_permissions = [\"read\"]\n[retention_types]\nlog = \"short\"\naudit = \"permanent\"\n",
    );
    let c = load(&["--config", &path]).expect("load");
    assert_eq!(c.cors_origin_list(), ["https://claude.ai", "https://x.example"]);
    assert_eq!((c.allowed_hosts.as_str(), c.guest_permissions.as_str()), ("", "read"));
    assert_eq!(c.retention().for_type("log"), Some(Duration::from_secs(3600)));
    assert_eq!(c.retention().for_type("audit"), None);
    let (_dir, path) = file("cors_origins = 3\n");
    let err = load(&["--config", &path]).expect_err("refused").to_string();
    assert!(err.contains("cors_origins: expected a string or a list of strings"), "{err}");
    let (_dir, path) = file("[retention_types]\nlog = \"soon\"\n");
    let err = load(&["--config", &path]).expect_err("refused").to_string();
    assert!(err.contains("retention_types") && err.contains("soon"), "{err}");
}

#[test]
fn clear_errors() {
    let (_dir, path) = file("bnid = \"x\"\n");
    let err = load(&["--config", &path]).expect_err("refused").to_string();
    assert!(err.contains("unknown key \"bnid\""), "{err}");
    let open = load(&["--bind", "0.0.0.0:5001"]).expect("load");
    let err = open.check_exposure(false).expect_err("refused").to_string();
    assert!(err.contains("--insecure") && err.contains("without authentication"), "{err}");
    assert!(open.check_exposure(true).is_ok(), "with auth on, any bind is fine");
    assert!(load(&["--bind", "0.0.0.0:5001", "--insecure"]).expect("load").check_exposure(false).is_ok());
    assert!(load(&[]).expect("load").check_exposure(false).is_ok());
    let err = load(&["--jwt-secret", "short"]).expect_err("refused").to_string();
    assert!(err.contains("32 bytes"), "{err}");
    let err = load(&["--guest-permissions", "read,fly"]).expect_err("refused").to_string();
    assert!(err.contains("guest_permissions"), "{err}");
    let err = load(&["--cors-origins", "claude.ai"]).expect_err("refused").to_string();
    assert!(err.contains("cors_origins"), "{err}");
    let secret = "s".repeat(40);
    assert!(!format!("{:?}", load(&["--jwt-secret", &secret]).expect("load").redacted()).contains(&secret));
    let err = load(&["--max-frame-bytes", "3"]).expect_err("refused").to_string();
    assert!(err.contains("max_frame_bytes"), "{err}");
}
