//! Variants: the readings of an undocumented vendor behaviour the simulator can play, so that an
//! adapter is tested against every plausible way the real vendor might go, not only the one guess
//! the adapter and the default simulator happen to share.
//!
//! Each simulated vendor declares its own variants in its `Spec` (`{vendor}.{name}`: a flag, or a
//! number in a range, with what the vendor then does); the few every vendor plays are declared
//! here ([`SHARED`]). Set at start (`snapgate simulate --variant NAME[=VALUE]`, repeatable) or at
//! run time on the control plane (`GET`/`PUT`/`DELETE /_sim/variants`). This file owns only the
//! parsing and the shared cell; each vendor file reads the variants it plays by name.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::Vendor;

/// One variant a simulated vendor can play.
#[derive(Debug)]
pub struct VariantSpec {
    /// `{vendor}.{what}` (or `restore.…`, `rate_limit.…` for those every vendor plays).
    pub name: &'static str,
    pub value: VariantValue,
    /// What the simulated vendor then does.
    pub meaning: &'static str,
}

/// What a variant takes.
#[derive(Clone, Copy, Debug)]
pub enum VariantValue {
    /// On when named (`NAME`, `NAME=true`).
    Flag,
    /// An integer in a range (`NAME=N`).
    Number { min: i64, max: i64 },
}

impl VariantSpec {
    pub const fn flag(name: &'static str, meaning: &'static str) -> Self {
        Self {
            name,
            value: VariantValue::Flag,
            meaning,
        }
    }

    pub const fn number(name: &'static str, min: i64, max: i64, meaning: &'static str) -> Self {
        Self {
            name,
            value: VariantValue::Number { min, max },
            meaning,
        }
    }
}

/// A restore's new resource (VM, volume) fails to build.
pub const RESTORE_NEW_RESOURCE_FAILS: &str = "restore.new_resource_fails";
/// A restore's new resource ends in a status no page names.
pub const RESTORE_NEW_RESOURCE_UNKNOWN: &str = "restore.new_resource_unknown";
/// 429 faults carry no `Retry-After`.
pub const RATE_LIMIT_NO_RETRY_AFTER: &str = "rate_limit.no_retry_after";

/// The variants every vendor plays.
pub const SHARED: &[VariantSpec] = &[
    VariantSpec::flag(
        RESTORE_NEW_RESOURCE_FAILS,
        "the VM or volume a restore makes fails to build",
    ),
    VariantSpec::flag(
        RESTORE_NEW_RESOURCE_UNKNOWN,
        "the VM or volume a restore makes ends in a status no page names",
    ),
    VariantSpec::flag(
        RATE_LIMIT_NO_RETRY_AFTER,
        "429 faults carry no `Retry-After`",
    ),
];

/// Another name for a shared variant, kept for the scripts that use it.
const ALIASES: [(&str, &str); 1] = [("429-without-retry-after", RATE_LIMIT_NO_RETRY_AFTER)];

/// Every variant: the shared ones, then each vendor's, in vendor order.
pub fn all() -> impl Iterator<Item = &'static VariantSpec> {
    SHARED
        .iter()
        .chain(Vendor::ALL.into_iter().flat_map(|v| v.variants().iter()))
}

/// Every variant name.
pub fn names() -> Vec<&'static str> {
    all().map(|v| v.name).collect()
}

fn spec(name: &str) -> Option<&'static VariantSpec> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, to)| *to);
    all().find(|v| v.name == name)
}

/// The active variants (a flag on is `1`); `Default` is the simulator's own reading of every
/// vendor. Cheap to clone: every request carries a copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variants(Arc<BTreeMap<&'static str, i64>>);

impl Variants {
    /// Whether a flag is on. `name` must be declared (a misspelt read is a bug, not "off").
    pub fn flag(&self, name: &str) -> bool {
        self.number(name).is_some_and(|n| n != 0)
    }

    /// A number variant's value, if set.
    pub fn number(&self, name: &str) -> Option<i64> {
        debug_assert!(spec(name).is_some(), "variant `{name}` is not declared");
        self.0.get(name).copied()
    }

    /// Sets variants from `NAME` or `NAME=VALUE` (the form of `--variant`), several joined
    /// by commas.
    pub fn apply(&mut self, specs: &str) -> Result<(), String> {
        for one in specs.split(',').filter(|s| !s.trim().is_empty()) {
            let (name, value) = match one.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (one.trim(), None),
            };
            self.set(name, value)?;
        }
        Ok(())
    }

    /// Sets one variant; flags take no value (or `true`/`false`), numbers require one.
    pub fn set(&mut self, name: &str, value: Option<&str>) -> Result<(), String> {
        let Some(declared) = spec(name) else {
            return Err(format!(
                "unknown variant `{name}` (known: {})",
                names().join(", ")
            ));
        };
        let number = match declared.value {
            VariantValue::Flag => match value {
                None | Some("true") => 1,
                Some("false") => 0,
                Some(other) => {
                    return Err(format!(
                        "variant `{name}` is a flag; `{other}` is not true/false"
                    ))
                }
            },
            VariantValue::Number { min, max } => {
                let raw =
                    value.ok_or_else(|| format!("variant `{name}` needs a value: {name}=N"))?;
                raw.parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        format!("variant `{name}` takes an integer {min}..={max}, not `{raw}`")
                    })?
            }
        };
        let map = Arc::make_mut(&mut self.0);
        match (declared.value, number) {
            (VariantValue::Flag, 0) => map.remove(declared.name),
            _ => map.insert(declared.name, number),
        };
        Ok(())
    }

    /// Sets every variant of a JSON object `{name: true | number}` on top of the defaults.
    pub fn from_json(map: &serde_json::Map<String, Value>) -> Result<Self, String> {
        let mut v = Variants::default();
        for (name, value) in map {
            let text = match value {
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                other => {
                    return Err(format!(
                        "variant `{name}`: `{other}` is not a flag or number"
                    ))
                }
            };
            v.set(name, Some(&text))?;
        }
        Ok(v)
    }

    /// The variants set, as `{name: true | number}`.
    pub fn to_json(&self) -> BTreeMap<&'static str, Value> {
        self.0
            .iter()
            .map(|(name, n)| {
                let value = match spec(name).map(|s| s.value) {
                    Some(VariantValue::Flag) => Value::Bool(true),
                    _ => Value::from(*n),
                };
                (*name, value)
            })
            .collect()
    }
}

/// The variants every vendor reads, changeable at run time.
#[derive(Debug, Default)]
pub(super) struct VariantCell(RwLock<Variants>);

impl VariantCell {
    pub(super) fn new(v: Variants) -> Self {
        Self(RwLock::new(v))
    }

    pub(super) fn get(&self) -> Variants {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn put(&self, v: Variants) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_variant_parses_and_round_trips_through_json() {
        let mut v = Variants::default();
        for declared in all() {
            let spec = match declared.value {
                VariantValue::Flag => declared.name.to_owned(),
                VariantValue::Number { max, .. } => format!("{}={max}", declared.name),
            };
            v.apply(&spec).unwrap();
        }
        let json = serde_json::to_value(v.to_json()).unwrap();
        assert_eq!(json.as_object().unwrap().len(), names().len());
        assert_eq!(Variants::from_json(json.as_object().unwrap()), Ok(v));
    }

    #[test]
    fn names_are_unique_and_each_vendors_carry_its_name() {
        let mut seen = std::collections::HashSet::new();
        for declared in all() {
            assert!(seen.insert(declared.name), "{} twice", declared.name);
        }
        for vendor in Vendor::ALL {
            for declared in vendor.variants() {
                let prefix = format!("{vendor}.");
                assert!(declared.name.starts_with(&prefix), "{}", declared.name);
            }
        }
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let mut v = Variants::default();
        let (flag, number) = (
            all()
                .find(|s| matches!(s.value, VariantValue::Flag))
                .unwrap(),
            all()
                .find(|s| matches!(s.value, VariantValue::Number { .. }))
                .unwrap(),
        );
        assert!(v.apply(number.name).unwrap_err().contains("needs a value"));
        let VariantValue::Number { max, .. } = number.value else {
            unreachable!()
        };
        let too_big = format!("{}={}", number.name, max.saturating_add(1));
        assert!(v.apply(&too_big).unwrap_err().contains("takes an integer"));
        assert!(v
            .apply(&format!("{}=maybe", flag.name))
            .unwrap_err()
            .contains("is a flag"));
        assert!(v.apply("nope").unwrap_err().contains("unknown variant"));
        v.apply("429-without-retry-after").unwrap();
        assert!(v.flag(RATE_LIMIT_NO_RETRY_AFTER));
        v.apply("429-without-retry-after=false").unwrap();
        assert_eq!(v, Variants::default());
    }
}
