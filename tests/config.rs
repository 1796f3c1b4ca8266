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

/// Type and range mistakes do not hide the others: each is named with
/// its key and a fix, in one report.
#[test]
fn type_errors_are_collected_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[limits]\nmax_recipients = \"many\"\nmax_connections = -5\n[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"sometimes\"\n[server]\nhostname = \"bad host\"\n";
    let errs = errors(text, dir.path());
    assert_key(&errs, "limits.max_recipients", "whole number");
    assert_key(&errs, "limits.max_connections", "whole number");
    assert_key(&errs, "listener[0].tls", "use one of `starttls`, `implicit`, `none`");
    assert_key(&errs, "server.hostname", "not a host name");
}

#[test]
fn empty_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let errs = errors("[server]\ndata_dir = \"\"\n[tls]\ncert = \"\"\nkey = \"\"\n", dir.path());
    assert_key(&errs, "server.data_dir", "empty");
    assert_key(&errs, "tls.cert", "empty");
    assert_key(&errs, "tls.key", "empty");
}

/// A certificate and a key from two different pairs: serve's TLS set-up
/// refuses them, so the check does too.
#[test]
fn certificate_and_key_must_belong_together() {
    let dir = tempfile::tempdir().unwrap();
    mismatched_pair(dir.path());
    let errs = errors("[tls]\ncert = \"a.crt\"\nkey = \"b.key\"\n", dir.path());
    assert_key(&errs, "tls.key", "does not belong to the certificate");
}

fn mismatched_pair(dir: &Path) {
    use herald::clock::Clock;
    let now = herald::clock::SystemClock.now_secs();
    herald::tls::generate_self_signed("relay.test", &dir.join("a.crt"), &dir.join("a.key"), now).unwrap();
    herald::tls::generate_self_signed("relay.test", &dir.join("b.crt"), &dir.join("b.key"), now).unwrap();
}

#[test]
fn listeners_admin_and_bounces_do_not_clash() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[[listener]]\naddress = \"127.0.0.1:2600\"\n[[listener]]\naddress = \"0.0.0.0:2601\"\n[admin]\naddress = \"127.0.0.1:2601\"\ntoken = \"0123456789abcdef0123\"\n[bounces]\naddress = \"127.0.0.1:2600\"\n";
    let errs = errors(text, dir.path());
    assert_key(&errs, "admin.address", "collides with `listener[1].address`");
    assert_key(&errs, "bounces.address", "submission listener");
    // Port 0 (any free port) never clashes.
    let ok = "[[listener]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"0123456789abcdef0123\"\n[bounces]\naddress = \"127.0.0.1:0\"\n";
    validate(&Config::parse(ok, "ok", dir.path()).unwrap()).unwrap();
}

/// `herald config check` and `herald serve` agree on every broken file
/// of this suite: both refuse it, naming the same key.
#[test]
fn check_and_serve_agree_on_every_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    mismatched_pair(dir.path());
    let base = "[bounces]\naddress = \"\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n";
    let cases: &[(&str, &str)] = &[
        ("[limits]\nmax_recipients = \"many\"\n", "limits.max_recipients"),
        ("[limits]\nmax_connections = -1\n", "limits.max_connections"),
        ("[queue]\nworkers = 0\n", "queue.workers"),
        ("[delivery]\ntls = \"maybe\"\n", "delivery.tls"),
        ("[tls]\ncert = \"a.crt\"\nkey = \"b.key\"\n", "tls.key"),
        ("[tls]\ncert = \"\"\n", "tls.cert"),
        ("[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"0123456789abcdef0123\"\n[[listener]]\naddress = \"127.0.0.1:2602\"\n[[route]]\ndomain = \"*\"\nhost = \"x\"\nport = 70000\n", "route[0].port"),
        ("[log]\nlevel = \"[[[\"\n", "log.level"),
        ("[server]\ndata_dir = \"\"\n", "server.data_dir"),
        ("[admin]\naddress = \"127.0.0.1:2603\"\ntoken = \"0123456789abcdef0123\"\n[[listener]]\naddress = \"127.0.0.1:2603\"\n", "admin.address"),
        ("[bounces]\naddress = \"127.0.0.1:2604\"\n[[listener]]\naddress = \"127.0.0.1:2604\"\n", "bounces.address"),
        ("[limits]\nmax_line_length = 1\n[colour]\nx = 1\n", "limits.max_line_length"),
    ];
    for (i, (extra, key)) in cases.iter().enumerate() {
        // Later tables of the same name would be a TOML syntax error:
        // the case's own tables come first, the base fills in the rest.
        let text = match (extra.contains("[[listener]]"), extra.contains("[bounces]")) {
            (true, true) => extra.to_string(),
            (true, false) => format!("{extra}[bounces]\naddress = \"\"\n"),
            (false, _) => format!("{extra}{base}"),
        };
        let file = dir.path().join(format!("broken{i}.toml"));
        std::fs::write(&file, &text).unwrap();
        let check = std::process::Command::new(env!("CARGO_BIN_EXE_herald")).args(["config", "check", "--config"]).arg(&file).output().unwrap();
        let check_err = String::from_utf8_lossy(&check.stderr);
        assert!(!check.status.success(), "check accepted {text}");
        assert!(check_err.contains(key), "check does not name `{key}`: {check_err}");
        let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--config"])
            .arg(&file)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = serve.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = serve.kill();
                panic!("serve started on a file check refuses: {text}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut serve_err = String::new();
        std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut serve_err).unwrap();
        assert!(!status.success());
        assert!(serve_err.contains(key), "serve does not name `{key}`: {serve_err}");
    }
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
    // A wrong word is reported with every other mistake, by `validate`.
    let errs = errors("[limits]\nbare_newline = \"strict\"\n", dir.path());
    assert_key(&errs, "limits.bare_newline", "use `normalize` or `reject`");
}
