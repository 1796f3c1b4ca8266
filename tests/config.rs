//! Configuration mistakes: each class is reported with the key named, and
//! all of them together, and the relay refuses to start.

use herald::config::{Config, ConfigErrors, validate};
use std::path::Path;

fn errors(text: &str, dir: &Path) -> ConfigErrors {
    let config = Config::parse(text, "test", dir).expect("parses");
    validate(&config).expect_err("must be refused")
}

fn assert_key(errs: &ConfigErrors, key: &str, words: &str) {
    let hit = errs.0.iter().find(|e| e.key == key).unwrap_or_else(|| panic!("no error for `{key}` in:\n{errs}"));
    let text = hit.to_string();
    assert!(text.contains(words), "error for `{key}` should say `{words}`: {text}");
}

#[test]
fn embedded_default_is_valid() {
    let config = Config::parse(herald::config::EMBEDDED_DEFAULT, "embedded", Path::new(".")).unwrap();
    validate(&config).unwrap();
    assert_eq!(config.listeners.len(), 2);
    assert_eq!(config.users.len(), 1);
}

#[test]
fn empty_file_is_a_loopback_relay() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse("", "empty", dir.path()).unwrap();
    validate(&config).unwrap();
    assert!(config.listeners.iter().all(|l| l.socket_addr().ip().is_loopback()));
}

#[test]
fn unknown_key_is_named_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let errs = errors("[limits]\nmax_mesage_size = 10\n[colour]\nx = 1\n", dir.path());
    assert_key(&errs, "limits.max_mesage_size", "did you mean `max_message_size`");
    assert_key(&errs, "colour", "unknown key");
}

#[test]
fn bad_listener_address() {
    let dir = tempfile::tempdir().unwrap();
    let errs = errors("[[listener]]\naddress = \"localhost:25x\"\n[[listener]]\naddress = \"127.0.0.1:2525\"\n[[listener]]\naddress = \"127.0.0.1:2525\"\n", dir.path());
    assert_key(&errs, "listener[0].address", "127.0.0.1:2525");
    assert_key(&errs, "listener[2].address", "used by two listeners");
}

#[test]
fn unreadable_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("k.pem"), "not a key").unwrap();
    let errs = errors("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n", dir.path());
    assert_key(&errs, "tls.cert", "no certificate");
    assert_key(&errs, "tls.key", "private key");

    let errs = errors("[tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"\nself_signed_if_missing = false\n", dir.path());
    assert_key(&errs, "tls.cert", "does not exist");
}

#[test]
fn impossible_limits() {
    let dir = tempfile::tempdir().unwrap();
    let errs = errors("[limits]\nmax_line_length = 100\nmax_message_size = 10\nmax_connections = 0\nmax_auth_failures = 0\ncommand_timeout_secs = 0\n", dir.path());
    assert_key(&errs, "limits.max_line_length", "between 512 and 4096");
    assert_key(&errs, "limits.max_message_size", "between 1024");
    assert_key(&errs, "limits.max_connections", "between 1");
    assert_key(&errs, "limits.max_auth_failures", "between 1");
    assert_key(&errs, "limits.command_timeout_secs", "between 1");
}

#[test]
fn bad_network_and_password_hash() {
    let dir = tempfile::tempdir().unwrap();
    let errs = errors("[relay]\nallow_networks = [\"10.0.0.0/33\", \"10.1.0.0/16\"]\n[[user]]\nname = \"app\"\npassword_hash = \"hunter2\"\n", dir.path());
    assert_key(&errs, "relay.allow_networks[0]", "CIDR");
    assert!(!errs.0.iter().any(|e| e.key == "relay.allow_networks[1]"));
    assert_key(&errs, "user[0].password_hash", "herald passwd");
}

#[test]
fn every_problem_is_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let errs = errors("[server]\nhostname = \"bad host\"\nfoo = 1\n[[listener]]\naddress = \"nowhere\"\n[limits]\nmax_recipients = 0\n[log]\nlevel = \"[[[\"\n", dir.path());
    for key in ["server.hostname", "server.foo", "listener[0].address", "limits.max_recipients", "log.level"] {
        assert!(errs.0.iter().any(|e| e.key == key), "missing `{key}` in:\n{errs}");
    }
}

#[test]
fn type_errors_name_the_key() {
    let err = Config::parse("[limits]\nmax_recipients = \"many\"\n", "relay.toml", Path::new(".")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("max_recipients") || text.contains("limits"), "{text}");
}

/// `herald config check` and `herald serve` refuse a bad file with the
/// keys named and a non-zero exit.
#[test]
fn binary_refuses_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, "[limits]\nmax_line_length = 1\n[[listener]]\naddress = \"x\"\n").unwrap();
    for args in [&["config", "check", "--config"][..], &["serve", "--config"][..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald")).args(args).arg(&file).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("limits.max_line_length") && stderr.contains("listener[0].address"), "{stderr}");
    }
}

#[test]
fn bare_newline_takes_normalize_or_reject() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse("", "empty", dir.path()).unwrap();
    assert_eq!(config.limits.bare_newline, herald::config::BareNewline::Normalize, "the default");
    let config = Config::parse("[limits]\nbare_newline = \"reject\"\n", "test", dir.path()).unwrap();
    assert_eq!(config.limits.bare_newline, herald::config::BareNewline::Reject);
    let err = Config::parse("[limits]\nbare_newline = \"strict\"\n", "test", dir.path()).expect_err("refused").to_string();
    assert!(err.contains("bare_newline") && err.contains("`normalize`") && err.contains("`reject`"), "{err}");
}
