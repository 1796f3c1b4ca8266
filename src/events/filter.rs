//! Which event types a webhook or a reader wants: a list of patterns,
//! each an exact type (`message.failed`) or a glob ending in `*`
//! (`message.*`, `*`). Pure, so it is a table test.

use super::EventKind;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeFilter {
    patterns: Vec<String>,
}

impl TypeFilter {
    /// Everything.
    pub fn all() -> TypeFilter {
        TypeFilter { patterns: vec!["*".into()] }
    }

    /// Checks each pattern; the error names the first that matches no type.
    pub fn new(patterns: &[String]) -> Result<TypeFilter, String> {
        if patterns.is_empty() {
            return Ok(TypeFilter::all());
        }
        for p in patterns {
            if !EventKind::ALL.iter().any(|k| matches(p, k.as_str())) {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(format!("`{p}` matches no event type (types: {}; a trailing `*` matches a prefix)", known.join(", ")));
            }
        }
        Ok(TypeFilter { patterns: patterns.to_vec() })
    }

    pub fn wants(&self, kind: EventKind) -> bool {
        self.patterns.iter().any(|p| matches(p, kind.as_str()))
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let cases: &[(&[&str], EventKind, bool)] = &[
            (&[], EventKind::Failed, true),
            (&["*"], EventKind::DomainVerified, true),
            (&["message.*"], EventKind::Failed, true),
            (&["message.*"], EventKind::DomainFailing, false),
            (&["message.failed", "message.bounced"], EventKind::Bounced, true),
            (&["message.failed"], EventKind::Delivered, false),
            (&["domain.*"], EventKind::DomainPending, true),
        ];
        for (patterns, kind, want) in cases {
            let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
            assert_eq!(TypeFilter::new(&patterns).unwrap().wants(*kind), *want, "{patterns:?} {kind:?}");
        }
        assert!(TypeFilter::new(&["mesage.*".into()]).unwrap_err().contains("`mesage.*` matches no event type"));
    }
}
