//! Reading `relay.toml` permissively: a value of the wrong type, a
//! negative number or an unknown enum word does not stop the reading.
//! It is set aside (its default applies meanwhile) and reported with the
//! key and a fix, together with every other mistake [`super::validate`]
//! finds, so an admin fixes the file in one pass.
//!
//! The typed structs stay the only schema: a value is tried in place, as
//! the one entry of an otherwise empty file, and kept only if the typed
//! reading takes it; tables and arrays of tables are tried member by
//! member when they fail as a whole.

use super::{Config, ConfigError};
use serde::Deserialize;
use toml::{Table, Value};

/// One step of a key's path.
#[derive(Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// The typed config and the values set aside, each as an error.
pub fn read(table: Table) -> (Config, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut kept = Table::new();
    for (key, value) in table {
        if let Some(v) = clean(&[Seg::Key(key.clone())], value, &mut errors) {
            kept.insert(key, v);
        }
    }
    let config = Config::deserialize(Value::Table(kept)).unwrap_or_else(|e| {
        errors.push(error(&[], &e.to_string()));
        Config::default()
    });
    (config, errors)
}

/// `value` at `path`, without the members the typed reading refuses.
fn clean(path: &[Seg], value: Value, errors: &mut Vec<ConfigError>) -> Option<Value> {
    let Err(e) = Config::deserialize(wrap(path, value.clone())) else {
        return Some(value);
    };
    match value {
        Value::Table(t) => {
            let mut kept = Table::new();
            for (k, v) in t {
                let mut sub = path.to_vec();
                sub.push(Seg::Key(k.clone()));
                if let Some(v) = clean(&sub, v, errors) {
                    kept.insert(k, v);
                }
            }
            Some(Value::Table(kept))
        }
        Value::Array(items) if items.iter().all(Value::is_table) => {
            let kept = items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let mut sub = path.to_vec();
                    sub.push(Seg::Index(i));
                    clean(&sub, item, errors)
                })
                .collect();
            Some(Value::Array(kept))
        }
        _ => {
            errors.push(error(path, e.message()));
            None
        }
    }
}

/// The value as the only entry of a file (array elements tried alone).
fn wrap(path: &[Seg], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, seg| match seg {
        Seg::Key(k) => Value::Table(Table::from_iter([(k.clone(), inner)])),
        Seg::Index(_) => Value::Array(vec![inner]),
    })
}

fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn error(path: &[Seg], message: &str) -> ConfigError {
    let message = message.trim();
    ConfigError { key: dotted(path), problem: message.to_string(), fix: fix(message) }
}

/// A fix in words, from serde's description of what was expected.
pub fn fix(message: &str) -> String {
    let expected = message.rsplit_once("expected ").map_or("", |(_, e)| e).trim_end_matches('.');
    if let Some(words) = expected.strip_prefix("one of ") {
        return format!("use one of {words}");
    }
    // serde's words for an enum of one or two variants: "`a` or `b`".
    if expected.starts_with('`') {
        return format!("use {expected}");
    }
    let number = ["usize", "u64", "u32", "u16", "u8"].iter().any(|t| expected.contains(t));
    if number {
        return "write a whole number of 0 or more, without quotes".into();
    }
    if expected.contains("i64") || expected.contains("i32") {
        return "write a whole number, without quotes".into();
    }
    match expected {
        e if e.contains("bool") => "write `true` or `false`, without quotes".into(),
        e if e.contains("string") || e.contains("path") => "put the value in double quotes".into(),
        e if e.contains("sequence") => "write a list, e.g. [\"a\", \"b\"]".into(),
        e if e.contains("map") || e.contains("struct") => "write a table, e.g. [section] or { key = value }".into(),
        _ => "see the commented relay.toml for this key's form".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(String, String)> {
        let (_, errors) = read(text.parse::<Table>().unwrap());
        errors.into_iter().map(|e| (e.key, e.fix)).collect()
    }

    #[test]
    fn every_bad_value_is_named_and_the_rest_is_kept() {
        let text = "[limits]\nmax_recipients = \"many\"\nmax_connections = -1\nmax_message_size = 4096\n[[listener]]\naddress = \"127.0.0.1:1\"\n[[listener]]\ntls = \"sometimes\"\n[tls]\nself_signed_if_missing = \"yes\"\n[server]\ndata_dir = 5\n";
        let got = problems(text);
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["limits.max_connections", "limits.max_recipients", "listener[1].tls", "server.data_dir", "tls.self_signed_if_missing"]);
        assert!(got[0].1.contains("whole number"), "{got:?}");
        assert!(got[2].1.contains("`starttls`"), "{got:?}");
        assert!(got[3].1.contains("double quotes"), "{got:?}");
        assert!(got[4].1.contains("true"), "{got:?}");
        let (config, _) = read(text.parse::<Table>().unwrap());
        assert_eq!(config.limits.max_message_size, 4096, "good values are kept");
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.listeners[0].address, "127.0.0.1:1");
    }

    #[test]
    fn fixes_in_words() {
        let cases = [
            ("unknown variant `x`, expected one of `starttls`, `implicit`, `none`", "use one of `starttls`, `implicit`, `none`"),
            ("unknown variant `strict`, expected `normalize` or `reject`", "use `normalize` or `reject`"),
            ("invalid value: integer `-1`, expected usize", "write a whole number of 0 or more, without quotes"),
            ("invalid type: string \"x\", expected a boolean", "write `true` or `false`, without quotes"),
            ("invalid type: integer `5`, expected a string", "put the value in double quotes"),
            ("invalid type: string \"a\", expected a sequence", "write a list, e.g. [\"a\", \"b\"]"),
        ];
        for (message, want) in cases {
            assert_eq!(fix(message), want, "{message}");
        }
    }

    #[test]
    fn a_good_file_has_no_problems() {
        assert!(problems(super::super::EMBEDDED_DEFAULT).is_empty());
    }
}
