//! The typed values of the configuration: each is parsed once, from the file (serde), an
//! environment variable or a flag (clap, through `FromStr`), and printed back the same way by
//! `config print` (`Display`), so that what `print` writes, `check` accepts.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use agent_bridge_actors::router;
use agent_bridge_actors::ttl_sweeper::Archive;
use serde::{Deserialize, Serialize};

/// Implements serde through `FromStr` and `Display`, the one parser a value has.
macro_rules! serde_via_str {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
    )*};
}

/// When `sent` is answered (`durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    // Variants carry no doc comments: clap would print them as a second list in --help.
    Sync,
    Async,
}

impl From<Durability> for router::Durability {
    fn from(d: Durability) -> Self {
        match d {
            Durability::Sync => router::Durability::Sync,
            Durability::Async => router::Durability::Async,
        }
    }
}

/// How log lines look (`log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Where expired messages go before deletion (`archive`): `""` (dropped), `store` or `file:PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ArchiveTarget(pub Archive);

impl FromStr for ArchiveTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "none" => Ok(Self(Archive::None)),
            "store" => Ok(Self(Archive::Store)),
            other => match other.strip_prefix("file:") {
                Some(path) if !path.is_empty() => Ok(Self(Archive::File(PathBuf::from(path)))),
                _ => Err(format!("{other:?}: use \"\", \"store\" or \"file:PATH\"")),
            },
        }
    }
}

impl fmt::Display for ArchiveTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Archive::None => Ok(()),
            Archive::Store => f.write_str("store"),
            Archive::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

/// The retention presets, shortest first.
const PRESETS: [(&str, u64); 4] = [("immediate", 60), ("short", 3600), ("medium", 24 * 3600), ("long", 7 * 24 * 3600)];

/// How long a stored message is kept: a preset or a duration; `None` is permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RetentionPeriod(pub Option<Duration>);

impl FromStr for RetentionPeriod {
    type Err = String;
    fn from_str(v: &str) -> Result<Self, String> {
        if v == "permanent" {
            return Ok(Self(None));
        }
        if let Some((_, s)) = PRESETS.iter().find(|(name, _)| *name == v) {
            return Ok(Self(Some(Duration::from_secs(*s))));
        }
        // A bare number is seconds; anything else is a humantime duration ("90s", "15m", "2h 30m", "3d").
        let d = match v.parse::<u64>() {
            Ok(s) => Duration::from_secs(s),
            Err(_) => humantime::parse_duration(v).map_err(|e| {
                format!("{v:?}: {e}: use immediate, short, medium, long, permanent or a duration like 90s, 15m, 2h or 3d")
            })?,
        };
        Ok(Self(Some(d.max(Duration::from_secs(1)))))
    }
}

impl fmt::Display for RetentionPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(d) = self.0 else { return f.write_str("permanent") };
        match PRESETS.iter().find(|(_, s)| Duration::from_secs(*s) == d) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}", humantime::format_duration(d)),
        }
    }
}

/// Retention per message type (`retention_types`): `"log=short,audit=permanent"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct RetentionTypes(pub BTreeMap<String, RetentionPeriod>);

impl FromStr for RetentionTypes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut by_type = BTreeMap::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (t, v) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not type=preset"))?;
            let period = v.trim().parse().map_err(|e| format!("{pair:?}: {e}"))?;
            by_type.insert(t.trim().to_owned(), period);
        }
        Ok(Self(by_type))
    }
}

impl fmt::Display for RetentionTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (t, period)) in self.0.iter().enumerate() {
            write!(f, "{}{t}={period}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

serde_via_str!(ArchiveTarget, RetentionPeriod, RetentionTypes);

/// A comma-separated setting as TOML may also write it: a string or a list of strings (what a
/// Helm chart renders from a YAML list); `["a", "b"]` reads as `"a,b"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ListOrString {
    Text(String),
    List(Vec<String>),
    Table(BTreeMap<String, String>),
}

impl ListOrString {
    fn joined(self) -> String {
        match self {
            ListOrString::Text(s) => s,
            ListOrString::List(items) => items.join(","),
            ListOrString::Table(pairs) => pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        }
    }
}

/// `deserialize_with` of the comma-separated settings: a string or a list of strings.
pub fn comma_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = ListOrString::deserialize(d).map_err(|_| serde::de::Error::custom("expected a string or a list of strings"))?;
    match v {
        ListOrString::Table(_) => Err(serde::de::Error::custom("a table where a string or a list of strings is expected")),
        v => Ok(v.joined()),
    }
}

/// `retention_types` from TOML: `"log=short,audit=permanent"` or a table `{ log = "short" }`.
impl<'de> Deserialize<'de> for RetentionTypes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = ListOrString::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected \"type=preset,...\" or a table of type = preset"))?
            .joined();
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The actors' retention policy from the two settings.
pub fn retention(default: RetentionPeriod, by_type: &RetentionTypes) -> router::Retention {
    router::Retention { default: default.0, by_type: by_type.0.iter().map(|(t, p)| (t.clone(), p.0)).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(s: &str) -> Result<Option<Duration>, String> {
        s.parse::<RetentionPeriod>().map(|p| p.0)
    }

    #[test]
    fn retention_presets_and_durations() {
        assert_eq!(period("short"), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(period("permanent"), Ok(None));
        assert_eq!(period("90s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(period("90"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(period("2h"), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(period("3d"), Ok(Some(Duration::from_secs(3 * 86400))));
        assert!(period("soon").expect_err("refused").contains("immediate, short"));
        assert!("log".parse::<RetentionTypes>().is_err());
    }

    #[test]
    fn values_print_as_they_parse() {
        for s in ["log=short,audit=permanent,x=1m 30s", ""] {
            let t: RetentionTypes = s.parse().expect("parse");
            assert_eq!(t.to_string().parse::<RetentionTypes>(), Ok(t.clone()), "{s}");
        }
        assert_eq!("7d".parse::<RetentionPeriod>().map(|p| p.to_string()), Ok("long".into()));
        for s in ["", "store", "file:/tmp/a.ndjson"] {
            assert_eq!(s.parse::<ArchiveTarget>().map(|a| a.to_string()), Ok(s.to_owned()));
        }
        assert!("file:".parse::<ArchiveTarget>().is_err() && "disk".parse::<ArchiveTarget>().is_err());
    }
}
